"""The jobs' audio folder: a job's upload is on disk, synced, before its record says the job exists."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

from service.audio.store import Upload
from service.errors import EmptyAudio
from service.threads import ignoring_stop, in_thread

_CHUNK_BYTES = 1024 * 1024
_PARTIAL_UPLOAD_MAX_AGE_SECONDS = 3600.0


class JobAudio:
    """Stores each job's audio as `<job id>.audio` in one folder that every server and worker of a deployment reads."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def open(self) -> None:
        """Create the folder (private to this user) and drop partial uploads that stopped growing an hour ago: left
        by a process that died (the folder may be shared with servers still receiving theirs)."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        stale = time.time() - _PARTIAL_UPLOAD_MAX_AGE_SECONDS
        for partial in self.folder.glob("*.upload"):
            with contextlib.suppress(FileNotFoundError):
                if partial.stat().st_mtime < stale:
                    partial.unlink()

    def path(self, name: str) -> Path:
        """Where a stored file is."""
        return self.folder / name

    async def store(self, job_id: str, audio: AsyncIterable[bytes], max_bytes: int) -> str:
        """Write the audio, sync it and give it its final name; the name. Nothing is left behind on failure."""
        upload = Upload(self.folder, max_bytes)
        try:
            async for chunk in audio:
                await upload.write(chunk)
            await upload.finish()
            if upload.size == 0:
                raise EmptyAudio("the request carries no audio bytes")
            name = f"{job_id}.audio"
            try:
                await in_thread(ignoring_stop(_sync_and_rename, upload.path, self.folder / name))
            except asyncio.CancelledError:
                self.remove(name)
                raise
            return name
        finally:
            upload.discard()

    def remove(self, name: str | None) -> None:
        """Delete a stored file, if it is still there."""
        if name is not None:
            with contextlib.suppress(FileNotFoundError):
                (self.folder / name).unlink()

    def names(self) -> list[str]:
        """Every stored file (for tests and diagnostics)."""
        return sorted(p.name for p in self.folder.glob("*") if p.is_file())


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    """The bytes of a file, read off the event loop."""
    with path.open("rb") as file:
        while chunk := await asyncio.to_thread(file.read, _CHUNK_BYTES):
            yield chunk


def _sync_and_rename(src: Path, dst: Path) -> None:
    fd = os.open(src, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(src, dst)
    folder = os.open(dst.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
