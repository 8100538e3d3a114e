"""Where job records live: the store contract, and SQLite in the data folder for the embedded default."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

from service.errors import JobQueueFull
from service.jobs.model import Job, JobState, decode, encode

Change = Callable[[Job], Job | None]
"""A transition: the job's next record, or None to leave it as it is."""
Cursor = tuple[float, str]
"""Where a page ends: the (create_time, id) of its last job; pages run newest first."""

T = TypeVar("T")


def queue_full(max_queued: int) -> JobQueueFull:
    """The error for a submission beyond the job queue's bound."""
    return JobQueueFull(
        f"the job queue is full ({max_queued} jobs waiting); retry later",
        metadata={"max_queued_jobs": str(max_queued)},
        retry_after_seconds=5.0,
    )


class JobStore(Protocol):
    """Job records, changed only through atomic transitions, so any number of servers and workers can share them."""

    async def open(self) -> None:
        """Connect (and create what is missing)."""

    async def close(self) -> None:
        """Disconnect."""

    async def add(self, job: Job, max_queued: int) -> None:
        """Store a new queued job durably; JobQueueFull when `max_queued` jobs already wait."""

    async def get(self, job_id: str) -> Job | None:
        """The job, or None."""

    async def update(self, job_id: str, change: Change) -> tuple[Job, bool] | None:
        """Apply `change` atomically; the job after it and whether it changed, or None when there is no such job."""

    async def delete(self, job_id: str) -> Job | None:
        """Remove the job; what it was, or None."""

    async def page(self, states: frozenset[JobState] | None, after: Cursor | None, limit: int) -> list[Job]:
        """Up to `limit` jobs in `states` (all when None), newest first, after the cursor."""

    async def unfinished(self) -> list[Job]:
        """Every queued or running job, oldest first."""

    async def stale(self, now: float) -> list[str]:
        """Running jobs whose worker's lease ran out before `now`."""

    async def expired(self, now: float) -> list[str]:
        """Finished jobs whose retention ended before `now`."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    create_time REAL NOT NULL,
    lease_until REAL,
    expire_time REAL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_time ON jobs (create_time DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, create_time);
"""


class SqliteJobStore:
    """Job records in one SQLite file (WAL, synchronous FULL): a returned add() survives kill -9 and power loss."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._owner: int | None = None

    async def open(self) -> None:
        """Open or create the database."""
        await asyncio.to_thread(self._open)

    def _open(self) -> None:
        owner = os.open(self.path.with_suffix(".lock"), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(owner)
            raise RuntimeError(
                f"another server uses the jobs in {self.path.parent}; give each server its own TRANSCRIBE_DATA_DIR, "
                "or set TRANSCRIBE_BROKER_URL to share jobs through Redis"
            ) from None
        self._owner = owner
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
        self._db = db

    async def close(self) -> None:
        """Close the database."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
            if self._owner is not None:
                os.close(self._owner)
                self._owner = None

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                if self._db is None:
                    raise RuntimeError("the job store is closed")
                return fn(self._db)

        return await asyncio.to_thread(locked)

    async def add(self, job: Job, max_queued: int) -> None:
        """Insert in one transaction with the count of waiting jobs."""

        def add(db: sqlite3.Connection) -> None:
            with _Transaction(db):
                (queued,) = db.execute("SELECT count(*) FROM jobs WHERE state = ?", (JobState.QUEUED.value,)).fetchone()
                if queued >= max_queued:
                    raise queue_full(max_queued)
                db.execute("INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?)", _row(job))

        await self._run(add)

    async def get(self, job_id: str) -> Job | None:
        """Read one job."""
        return await self._run(lambda db: _get(db, job_id))

    async def update(self, job_id: str, change: Change) -> tuple[Job, bool] | None:
        """Read, change and write in one immediate transaction."""

        def update(db: sqlite3.Connection) -> tuple[Job, bool] | None:
            with _Transaction(db):
                job = _get(db, job_id)
                if job is None:
                    return None
                changed = change(job)
                if changed is None:
                    return job, False
                db.execute("REPLACE INTO jobs VALUES (?, ?, ?, ?, ?, ?)", _row(changed))
                return changed, True

        return await self._run(update)

    async def delete(self, job_id: str) -> Job | None:
        """Delete one job."""

        def delete(db: sqlite3.Connection) -> Job | None:
            with _Transaction(db):
                job = _get(db, job_id)
                db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
                return job

        return await self._run(delete)

    async def page(self, states: frozenset[JobState] | None, after: Cursor | None, limit: int) -> list[Job]:
        """One page, newest first."""
        where: list[str] = []
        args: list[str | float] = []
        if states is not None:
            where.append(f"state IN ({','.join('?' * len(states))})")
            args += [s.value for s in states]
        if after is not None:
            where.append("(create_time < ? OR (create_time = ? AND id < ?))")
            args += [after[0], after[0], after[1]]
        sql = "SELECT body FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY create_time DESC, id DESC LIMIT ?"
        return await self._run(lambda db: _jobs(db.execute(sql, [*args, limit])))

    async def unfinished(self) -> list[Job]:
        """Queued and running jobs, oldest first."""
        sql = "SELECT body FROM jobs WHERE state IN (?, ?) ORDER BY create_time, id"
        return await self._run(lambda db: _jobs(db.execute(sql, (JobState.QUEUED.value, JobState.RUNNING.value))))

    async def stale(self, now: float) -> list[str]:
        """Running jobs past their lease."""
        sql = "SELECT id FROM jobs WHERE state = ? AND lease_until < ?"
        return await self._run(lambda db: [r[0] for r in db.execute(sql, (JobState.RUNNING.value, now))])

    async def expired(self, now: float) -> list[str]:
        """Finished jobs past their retention."""
        sql = "SELECT id FROM jobs WHERE expire_time < ?"
        return await self._run(lambda db: [r[0] for r in db.execute(sql, (now,))])


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *_: object) -> None:
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")


def _row(job: Job) -> tuple[str, str, float, float | None, float | None, str]:
    return job.id, job.state.value, job.create_time, job.lease_until, job.expire_time, encode(job)


def _get(db: sqlite3.Connection, job_id: str) -> Job | None:
    row = db.execute("SELECT body FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return None if row is None else decode(row[0])


def _jobs(rows: Sequence[tuple[str]] | sqlite3.Cursor) -> list[Job]:
    return [decode(row[0]) for row in rows]
