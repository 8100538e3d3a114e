"""The model pool: lazy loads, sharing, idle unloading and the cap on loaded models."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from service.domain import Segment, SpokenBefore
from service.engines.base import Clip, EngineRequest, EngineResult, ModelSpec, Samples
from service.engines.pool import ModelPool


class CountingEngine:
    """An engine that counts loads and blocks loading until released, to expose races."""

    name = "counting"

    def __init__(self) -> None:
        self.loads: list[str] = []
        self.release = threading.Event()
        self.release.set()

    def load(self, spec: ModelSpec) -> object:
        """Record the load and hand back a token object."""
        self.release.wait(10)
        self.loads.append(spec.name)
        return object()

    def transcribe(self, model: object, audio: Samples, request: EngineRequest) -> EngineResult:
        """Not used by these tests."""
        raise NotImplementedError

    def detect_language(self, model: object, audio: Samples) -> tuple[str, float]:
        """Not used by these tests."""
        raise NotImplementedError

    def transcribe_utterance(
        self, model: object, audio: Samples, request: EngineRequest, before: SpokenBefore | None = None
    ) -> EngineResult:
        """Not used by these tests."""
        raise NotImplementedError

    def transcribe_clips(
        self, model: object, audio: Samples, clips: Sequence[Clip], request: EngineRequest
    ) -> tuple[Segment, ...]:
        """Not used by these tests."""
        raise NotImplementedError


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


SPECS = {name: ModelSpec(name=name, source=name, multilingual=True) for name in ("a", "b", "c")}


def test_concurrent_first_requests_load_a_model_once() -> None:
    """Many threads asking for an unloaded model cause exactly one load and all get the same object."""
    engine = CountingEngine()
    engine.release.clear()
    pool: ModelPool[object] = ModelPool(engine, SPECS, max_loaded=2, idle_seconds=60)
    with ThreadPoolExecutor(max_workers=8) as threads:
        futures = [threads.submit(pool.acquire, "a") for _ in range(8)]
        engine.release.set()
        models = {id(f.result()) for f in futures}
    assert engine.loads == ["a"]
    assert len(models) == 1


def test_idle_models_are_unloaded_but_not_while_in_use() -> None:
    """A model idle past the TTL is unloaded; one still in use is kept however old."""
    clock = Clock()
    pool: ModelPool[object] = ModelPool(CountingEngine(), SPECS, max_loaded=3, idle_seconds=10, clock=clock)
    pool.acquire("a")
    pool.release("a")
    pool.acquire("b")
    clock.now = 11
    assert pool.unload_idle() == ["a"]
    assert not pool.is_loaded("a")
    assert pool.is_loaded("b")
    pool.release("b")
    clock.now = 22
    assert pool.unload_idle() == ["b"]


def test_cap_evicts_the_least_recently_used_idle_model() -> None:
    """Loading past the cap unloads the idle model used longest ago, never one in use."""
    clock = Clock()
    engine = CountingEngine()
    pool: ModelPool[object] = ModelPool(engine, SPECS, max_loaded=2, idle_seconds=1000, clock=clock)
    pool.acquire("a")
    pool.release("a")
    clock.now = 1
    pool.acquire("b")
    clock.now = 2
    pool.acquire("c")
    assert not pool.is_loaded("a")
    assert pool.is_loaded("b")
    assert pool.is_loaded("c")
    pool.acquire("a")
    assert pool.is_loaded("b")
    assert pool.is_loaded("c")
    assert pool.is_loaded("a")
    assert engine.loads == ["a", "b", "c", "a"]
