"""Give freed heap memory back to the operating system once a burst of calls is over."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    trim: Callable[[int], int] | None = getattr(ctypes.CDLL(name), "malloc_trim", None)
    return trim


def release_free_memory() -> None:
    """Ask glibc to return free heap pages (large upload and decode buffers) to the OS; a no-op elsewhere."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
