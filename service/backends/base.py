"""The small interface every transcription backend implements."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Protocol

from service.domain import (
    AudioFile,
    BackendKind,
    ModelDescription,
    Progress,
    Segment,
    Transcript,
    TranscriptionOptions,
)

SegmentSink = Callable[[Sequence[Segment]], None]
"""Takes the next segments of a transcript, in order, as they are finished."""
finished_segments: ContextVar[SegmentSink | None] = ContextVar("finished_segments", default=None)
"""Set by the core around `transcribe()` when its caller wants segments early. A backend that finishes a recording
in parts may call it, on the event loop, with each part's segments in order as the finished prefix grows (the
transcript it returns still holds them all); one that cannot ignores it. A context variable rather than a parameter,
so backends that never report early need no change."""


class TranscriptionBackend(Protocol):
    """An engine family that turns a validated audio file into a transcript, off the event loop."""

    kind: BackendKind
    workers: int
    """Calls the backend runs at once; admission allows a bounded queue beyond this."""

    async def start(self) -> None:
        """Get ready to serve (load the default model, open clients); raise if that is impossible."""
        ...

    def check(self, options: TranscriptionOptions) -> None:
        """Reject options this backend cannot honour, before any audio is read."""
        ...

    async def transcribe(
        self,
        audio: AudioFile,
        options: TranscriptionOptions,
        deadline: float | None = None,
        progress: Progress | None = None,
    ) -> Transcript:
        """Transcribe a validated file; `deadline` is the caller's, on the time.monotonic() clock.

        `progress` is called on the event loop as audio seconds are done. Files derived from the upload (a
        re-encoded piece, say) go next to it and are deleted by the backend.
        """
        ...

    def models(self) -> list[ModelDescription]:
        """The models this backend can serve."""
        ...

    async def aclose(self) -> None:
        """Release threads, clients and models."""
        ...
