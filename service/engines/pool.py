"""The model pool: loads local models lazily, shares them across requests, unloads idle ones and caps how many stay."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Generic

from service.engines.base import LocalEngine, ModelSpec, ModelT

log = logging.getLogger(__name__)


class ModelPool(Generic[ModelT]):
    """Loaded models by name; acquire() loads on first use, release() hands back, idle ones are unloaded."""

    def __init__(
        self,
        engine: LocalEngine[ModelT],
        specs: Mapping[str, ModelSpec],
        max_loaded: int,
        idle_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self.specs = dict(specs)
        self._max_loaded = max_loaded
        self._idle_seconds = idle_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {name: threading.Lock() for name in specs}
        self._loaded: dict[str, ModelT] = {}
        self._last_used: dict[str, float] = {}
        self._in_use: dict[str, int] = {}
        self.load_seconds: dict[str, float] = {}

    def is_loaded(self, name: str) -> bool:
        """Whether the model is in memory now."""
        return name in self._loaded

    def acquire(self, name: str) -> ModelT:
        """The loaded model, loading it first if needed; pair with release()."""
        with self._loading[name]:
            with self._lock:
                if name in self._loaded:
                    self._mark_used(name, +1)
                    return self._loaded[name]
            started = time.perf_counter()
            model = self._engine.load(self.specs[name])
            with self._lock:
                self.load_seconds[name] = time.perf_counter() - started
                self._loaded[name] = model
                self._mark_used(name, +1)
                self._evict_over_cap()
            log.info("loaded model %s in %.2fs", name, self.load_seconds[name])
            return model

    @contextlib.contextmanager
    def using(self, name: str) -> Iterator[ModelT]:
        """The loaded model for the duration of the block (acquire, then release)."""
        model = self.acquire(name)
        try:
            yield model
        finally:
            self.release(name)

    def release(self, name: str) -> None:
        """Hand a model back after a transcription."""
        with self._lock:
            self._mark_used(name, -1)

    def unload_idle(self) -> list[str]:
        """Unload models unused for longer than the idle time; returns their names."""
        now = self._clock()
        with self._lock:
            idle = [
                name
                for name in self._loaded
                if self._in_use.get(name, 0) == 0 and now - self._last_used.get(name, now) > self._idle_seconds
            ]
            for name in idle:
                del self._loaded[name]
        for name in idle:
            log.info("unloaded idle model %s", name)
        return idle

    def clear(self) -> None:
        """Drop every model."""
        with self._lock:
            self._loaded.clear()

    def _mark_used(self, name: str, delta: int) -> None:
        self._in_use[name] = self._in_use.get(name, 0) + delta
        self._last_used[name] = self._clock()

    def _evict_over_cap(self) -> None:
        while len(self._loaded) > self._max_loaded:
            idle = [n for n in self._loaded if self._in_use.get(n, 0) == 0]
            if not idle:
                return
            oldest = min(idle, key=lambda n: self._last_used.get(n, 0.0))
            del self._loaded[oldest]
            log.info("unloaded model %s to stay within %d loaded models", oldest, self._max_loaded)
