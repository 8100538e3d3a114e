"""Whisper's language table, read from openai-whisper's own tokenizer data (no hand-written list)."""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType


@functools.cache
def _tokenizer_module() -> ModuleType:
    # whisper/__init__.py imports torch (a second and ~250 MB); its tokenizer module needs only tiktoken.
    package = importlib.util.find_spec("whisper")
    if package is None or not package.submodule_search_locations:
        raise RuntimeError("openai-whisper is not installed")
    path = Path(next(iter(package.submodule_search_locations))) / "tokenizer.py"
    spec = importlib.util.spec_from_file_location("_whisper_language_table", path)
    if spec is None or spec.loader is None:
        raise RuntimeError("openai-whisper's tokenizer module cannot be loaded")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def language_names() -> Mapping[str, str]:
    """Every language code Whisper models know, with its English name ("en" -> "english")."""
    names: dict[str, str] = dict(_tokenizer_module().LANGUAGES)
    return names


@functools.cache
def whisper_languages() -> frozenset[str]:
    """The language codes of multilingual Whisper models' language tokens."""
    return frozenset(language_names())


@functools.cache
def _codes_by_name() -> Mapping[str, str]:
    codes = {name.lower(): code for code, name in language_names().items()}
    codes.update({name.lower(): code for name, code in _tokenizer_module().TO_LANGUAGE_CODE.items()})
    return codes


def code_for_language(value: str) -> str | None:
    """The code of a language given by name ("Castilian", "english") or code ("en"); None when unknown."""
    key = value.strip().lower()
    if key in language_names():
        return key
    return _codes_by_name().get(key)
