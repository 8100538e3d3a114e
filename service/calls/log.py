"""One log line and the metrics of every finished call, whatever face it came through."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from service.calls.metrics import CallMetrics

log = logging.getLogger("service.calls")


@dataclass(frozen=True)
class CallOutcome:
    """How a call ended: its method, status name (OK, INVALID_ARGUMENT, ...), reason and what it transcribed."""

    method: str
    code: str
    seconds: float
    reason: str = ""
    audio_seconds: float | None = None
    backend: str = ""
    model: str = ""


class CallRecorder:
    """Writes the call log and updates the metrics (when they are on)."""

    def __init__(self, metrics: CallMetrics | None) -> None:
        self._metrics = metrics

    def started(self, method: str) -> None:
        """Count a call in flight."""
        if self._metrics is not None:
            self._metrics.in_flight.labels(method).inc()

    def finished(self, outcome: CallOutcome) -> None:
        """Log the call (never its audio, text or credentials) and record it in the metrics."""
        audio = outcome.audio_seconds
        log.info(
            "%s %s %.1fms",
            outcome.method,
            outcome.code,
            outcome.seconds * 1000,
            extra={
                "rpc_method": outcome.method,
                "code": outcome.code,
                "reason": outcome.reason or None,
                "latency_ms": round(outcome.seconds * 1000, 1),
                "audio_seconds": round(audio, 3) if audio is not None else None,
                "backend": outcome.backend or None,
                "model": outcome.model or None,
            },
        )
        if self._metrics is None:
            return
        metrics = self._metrics
        metrics.in_flight.labels(outcome.method).dec()
        metrics.calls.labels(outcome.method, outcome.code).inc()
        metrics.latency.labels(outcome.method).observe(outcome.seconds)
        if audio is not None and outcome.backend:
            metrics.audio_seconds.labels(outcome.backend, outcome.model).inc(audio)
            if outcome.seconds > 0:
                metrics.real_time_factor.labels(outcome.backend, outcome.model).observe(audio / outcome.seconds)
