"""The local model catalogue: the bundled models plus the one the settings name."""

from __future__ import annotations

import functools
from pathlib import Path

from service.engines.base import ModelSpec
from service.engines.bundled import BUNDLED_BASE, BUNDLED_TINY_EN, base_ct2_dir, tiny_en_ct2_dir


def local_model_specs(default_model: str, cache_dir: Path) -> dict[str, ModelSpec]:
    """Every model the local backend serves, keyed by the name requests use; nothing is read from disk yet."""
    specs = {
        BUNDLED_TINY_EN: ModelSpec(
            name=BUNDLED_TINY_EN, source=BUNDLED_TINY_EN, multilingual=False, ct2_dir=tiny_en_ct2_dir
        ),
        BUNDLED_BASE: ModelSpec(
            name=BUNDLED_BASE,
            source=BUNDLED_BASE,
            multilingual=True,
            ct2_dir=functools.partial(base_ct2_dir, cache_dir),
        ),
    }
    if default_model not in specs:
        specs[default_model] = ModelSpec(
            name=default_model, source=default_model, multilingual=not _english_only(default_model)
        )
    return specs


def _english_only(name: str) -> bool:
    return Path(name).name.removesuffix(".pt").endswith(".en")
