"""Prometheus metrics: call counts, latencies, audio processed, in-flight calls, queue depth, models."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from service.core.transcriber import Transcriber

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_RTF_BUCKETS = (0.5, 1, 2, 5, 10, 20, 50, 100, 200)


class CallMetrics:
    """The metrics one server exports, in a registry of its own."""

    def __init__(self, transcriber: Transcriber) -> None:
        self.registry = CollectorRegistry()
        self.calls = Counter(
            "transcribe_calls", "Finished RPCs by method and status code.", ["method", "code"], registry=self.registry
        )
        self.latency = Histogram(
            "transcribe_call_latency_seconds",
            "Wall time of RPCs, from the first byte to the status.",
            ["method"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "transcribe_in_flight_calls", "RPCs being handled now.", ["method"], registry=self.registry
        )
        self.audio_seconds = Counter(
            "transcribe_audio_seconds",
            "Seconds of audio transcribed, by backend and model.",
            ["backend", "model"],
            registry=self.registry,
        )
        self.real_time_factor = Histogram(
            "transcribe_real_time_factor",
            "Audio seconds per wall second of each successful transcription call.",
            ["backend", "model"],
            buckets=_RTF_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_DomainCollector(transcriber))


class _DomainCollector(Collector):
    """Reads queue depth and model state from the domain at scrape time."""

    def __init__(self, transcriber: Transcriber) -> None:
        self._transcriber = transcriber

    def collect(self) -> Iterator[GaugeMetricFamily]:
        queue = GaugeMetricFamily(
            "transcribe_queue_depth",
            "Recordings ready for a backend: running on its workers or queued for them.",
            labels=["backend"],
        )
        for kind, gate in self._transcriber.gates.items():
            queue.add_metric([kind.value], gate.in_flight)
        loaded = GaugeMetricFamily("transcribe_model_loaded", "1 when the model is in memory.", labels=["model"])
        load_time = GaugeMetricFamily(
            "transcribe_model_load_seconds", "How long the last load of the model took.", labels=["model"]
        )
        for model in self._transcriber.models():
            loaded.add_metric([model.name], 1.0 if model.loaded else 0.0)
            if model.load_seconds is not None:
                load_time.add_metric([model.name], model.load_seconds)
        yield queue
        yield loaded
        yield load_time
