"""Upload files in a private per-process folder: 0600 files, a 0700 folder, swept after a crash."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import shutil
import tempfile
from pathlib import Path

from service.errors import AudioTooLarge
from service.threads import ignoring_stop, in_thread

log = logging.getLogger(__name__)

_LOCK_NAME = ".lock"
_FLUSH_BYTES = 1024 * 1024


class UploadStore:
    """Owns this process's upload folder; every upload lives and dies inside it."""

    def __init__(self, parent: Path | None = None) -> None:
        base = Path(parent) if parent is not None else Path(tempfile.gettempdir())
        self.root = base / f"transcribe-{os.getuid()}"
        self.run_dir = self.root / f"run-{os.getpid()}-{secrets.token_hex(4)}"
        self._lock_fd: int | None = None

    def open(self) -> None:
        """Create the private folders, hold this run's lock and sweep folders of dead runs."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        root_stat = self.root.lstat()
        if root_stat.st_uid != os.getuid() or not self.root.is_dir() or self.root.is_symlink():
            raise RuntimeError(f"upload folder {self.root} is not a private folder of this user")
        os.chmod(self.root, 0o700)
        self.sweep()
        self.run_dir.mkdir(mode=0o700)
        fd = os.open(self.run_dir / _LOCK_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._lock_fd = fd

    def sweep(self) -> int:
        """Remove run folders whose process no longer holds their lock; returns how many."""
        removed = 0
        for run in self.root.glob("run-*"):
            if run == self.run_dir or not run.is_dir():
                continue
            if _lock_is_free(run / _LOCK_NAME):
                shutil.rmtree(run, ignore_errors=True)
                removed += 1
        if removed:
            log.info("removed %d upload folder(s) left by stopped servers", removed)
        return removed

    def close(self) -> None:
        """Delete this run's folder and everything still in it."""
        shutil.rmtree(self.run_dir, ignore_errors=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def new_upload(self, max_bytes: int) -> Upload:
        """A new empty upload file that refuses to grow past max_bytes."""
        return Upload(self.run_dir, max_bytes)

    def new_scratch_path(self) -> Path:
        """A new, unused path in this run's folder, for a short-lived file its user deletes."""
        return self.run_dir / f"{secrets.token_hex(8)}.scratch"

    def files(self) -> list[Path]:
        """Upload files currently on disk (for tests and diagnostics)."""
        return sorted(p for p in self.run_dir.glob("*") if p.name != _LOCK_NAME)


def _lock_is_free(lock_path: Path) -> bool:
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


class Upload:
    """One upload being written: buffered appends off the event loop, a hard byte limit, one owner."""

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.stem = secrets.token_hex(8)
        self.path = folder / f"{self.stem}.upload"
        self.max_bytes = max_bytes
        self.size = 0
        self._buffer = bytearray()
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._extra: list[Path] = []

    async def write(self, chunk: bytes) -> None:
        """Append a chunk; raises AudioTooLarge, without writing, when the limit would be passed."""
        if self.size + len(chunk) > self.max_bytes:
            raise _too_large(self.max_bytes)
        self.size += len(chunk)
        if len(chunk) >= _FLUSH_BYTES:
            await self._flush()
            await in_thread(ignoring_stop(_write_all, self._require_fd(), chunk))
            return
        self._buffer += chunk
        if len(self._buffer) >= _FLUSH_BYTES:
            await self._flush()

    def check_size(self, max_bytes: int) -> None:
        """Raise AudioTooLarge when the upload holds more than `max_bytes`, a limit learnt only after it arrived."""
        if self.size > max_bytes:
            raise _too_large(max_bytes)

    def _require_fd(self) -> int:
        if self._fd is None:
            raise RuntimeError("the upload is already finished")
        return self._fd

    async def finish(self) -> None:
        """Flush what is buffered and close the file."""
        await self._flush()
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    async def _flush(self) -> None:
        if not self._buffer or self._fd is None:
            return
        data = bytes(self._buffer)
        self._buffer.clear()
        await in_thread(ignoring_stop(_write_all, self._fd, data))

    def rename(self, extension: str) -> Path:
        """Give the finished file the extension of its detected container."""
        target = self.path.with_name(f"{self.stem}.{extension}")
        os.replace(self.path, target)
        self.path = target
        return target

    def sibling(self, extension: str) -> Path:
        """A path for a derived file that is deleted with this upload."""
        path = self.path.with_name(f"{self.stem}-{len(self._extra)}.{extension}")
        self._extra.append(path)
        return path

    def discard(self) -> None:
        """Close and delete the file and any derived files; safe to call more than once."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        self._buffer.clear()
        for path in (self.path, *self._extra):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _too_large(max_bytes: int) -> AudioTooLarge:
    return AudioTooLarge(
        f"audio is larger than the limit of {max_bytes} bytes", metadata={"limit_bytes": str(max_bytes)}
    )


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
