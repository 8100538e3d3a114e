"""Admission control: a bounded number of calls in a stage; the rest are refused at once, never queued forever."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from service.errors import Overloaded


class AdmissionGate:
    """Counts calls inside a stage (running plus queued) and refuses any beyond its capacity."""

    def __init__(self, name: str, capacity: int, retry_after_seconds: float) -> None:
        self.name = name
        self.capacity = capacity
        self.retry_after_seconds = retry_after_seconds
        self.in_flight = 0

    def check(self) -> None:
        """Raise Overloaded with a retry hint when no place is free now."""
        if self.in_flight >= self.capacity:
            raise Overloaded(
                f"the {self.name} is at capacity ({self.capacity} calls); retry later",
                metadata={"stage": self.name, "capacity": str(self.capacity)},
                retry_after_seconds=self.retry_after_seconds,
            )

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Hold a place for the duration of the block, or raise Overloaded with a retry hint."""
        self.check()
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
