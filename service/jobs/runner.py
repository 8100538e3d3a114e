"""Running jobs: one job's attempt (claim, lease, progress, cancellation, outcome), and the in-process runner."""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from service.audio.fetch import UriFetcher
from service.core.transcriber import Transcriber
from service.domain import Transcript
from service.jobs.audio import JobAudio, file_chunks
from service.jobs.model import INTERNAL_KIND, Job, JobFailure, JobState, claim, failed, holds, renew, requeue
from service.jobs.model import cancelled as cancelled_job
from service.jobs.model import succeeded as succeeded_job
from service.jobs.store import JobStore

log = logging.getLogger(__name__)


class _Stop(enum.Enum):
    CANCEL = "cancel"
    LOST = "lost"


@dataclass(frozen=True)
class Leases:
    """How a worker holds a job: it renews its lease every `renew_seconds`; a job whose lease ran out was lost."""

    lease_seconds: float
    retention_seconds: float

    @property
    def renew_seconds(self) -> float:
        """How often a running job's record is refreshed (progress, lease, cancellation)."""
        return min(1.0, self.lease_seconds / 3)


class JobExecutor:
    """Runs attempts of jobs on the core; many may run at once, on a server or a Celery worker."""

    def __init__(
        self,
        *,
        store: JobStore,
        transcriber: Transcriber,
        fetcher: UriFetcher,
        audio: JobAudio,
        worker: str,
        leases: Leases,
    ) -> None:
        self._store = store
        self._transcriber = transcriber
        self._fetcher = fetcher
        self._audio = audio
        self.worker = worker
        self._leases = leases
        self._running: dict[str, tuple[asyncio.Task[Transcript], list[_Stop]]] = {}

    def interrupt(self, job_id: str) -> None:
        """Stop the job at once if it runs here (its cancellation is already recorded)."""
        if (running := self._running.get(job_id)) is not None:
            task, stop = running
            stop.append(_Stop.CANCEL)
            task.cancel()

    async def run(self, job_id: str) -> None:
        """Claim the job and run this attempt to its end; returns at once when the job is not this worker's to run."""
        leases = self._leases
        change = functools.partial(
            claim,
            worker=self.worker,
            now=time.time(),
            lease_seconds=leases.lease_seconds,
            retention_seconds=leases.retention_seconds,
        )
        result = await self._store.update(job_id, change)
        if result is None or not result[1]:
            return
        job = result[0]
        if job.state is not JobState.RUNNING:
            self._audio.remove(job.audio)
            return
        log.info("job %s: attempt %d started on %s", job.id, job.attempt, self.worker)
        progress = _ProgressBox()
        work = asyncio.create_task(self._transcribe(job, progress))
        stop: list[_Stop] = []
        self._running[job.id] = (work, stop)
        watcher = asyncio.create_task(self._watch(job, work, stop, progress))
        try:
            transcript = await work
        except asyncio.CancelledError:
            if not stop:
                raise  # this process is stopping: the job stays running until its lease runs out or a restart
            if stop[0] is _Stop.CANCEL:
                await self._finish(
                    job, functools.partial(cancelled_job, now=time.time(), retention_seconds=self._retention)
                )
                log.info("job %s: cancelled", job.id)
            else:
                log.warning("job %s: another worker took it over; this attempt ends", job.id)
            return
        except Exception as error:
            failure = JobFailure.of(error)
            if failure.kind == INTERNAL_KIND:
                log.exception("job %s failed", job.id)
            else:
                log.info("job %s: failed (%s)", job.id, failure.kind)
            await self._finish(
                job, functools.partial(failed, failure=failure, now=time.time(), retention_seconds=self._retention)
            )
            return
        finally:
            self._running.pop(job.id, None)
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            if not work.done():
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
        await self._finish(
            job,
            functools.partial(succeeded_job, transcript=transcript, now=time.time(), retention_seconds=self._retention),
        )
        log.info("job %s: succeeded", job.id)

    @property
    def _retention(self) -> float:
        return self._leases.retention_seconds

    async def _finish(self, job: Job, done: functools.partial[Job]) -> None:
        def change(current: Job) -> Job | None:
            return done(current) if holds(current, self.worker) and current.attempt == job.attempt else None

        result = await self._store.update(job.id, change)
        if result is None or result[1]:  # deleted, or ended here; not when another worker took the job over
            self._audio.remove(job.audio)

    async def _transcribe(self, job: Job, progress: _ProgressBox) -> Transcript:
        audio: AsyncIterator[bytes]
        if job.audio is not None:
            audio = file_chunks(self._audio.path(job.audio))
        elif job.uri is not None:
            audio = self._fetcher.open(job.uri)
        else:
            raise RuntimeError(f"job {job.id} has no audio")
        return await self._transcriber.transcribe(job.options, audio, progress=progress.update)

    async def _watch(self, job: Job, work: asyncio.Task[Transcript], stop: list[_Stop], progress: _ProgressBox) -> None:
        leases = self._leases
        while not work.done():
            await asyncio.sleep(leases.renew_seconds)
            change = functools.partial(
                renew,
                worker=self.worker,
                now=time.time(),
                lease_seconds=leases.lease_seconds,
                progress=progress.fraction,
                duration=progress.total,
            )
            try:
                result = await self._store.update(job.id, change)
            except Exception:
                log.exception("job %s: renewing its lease failed; trying again", job.id)
                continue
            current = None if result is None else result[0]
            if current is None or current.cancel_requested:
                stop.append(_Stop.CANCEL)
            elif not holds(current, self.worker) or current.attempt != job.attempt:
                stop.append(_Stop.LOST)
            else:
                continue
            work.cancel()
            return


class _ProgressBox:
    def __init__(self) -> None:
        self.fraction = 0.0
        self.total: float | None = None

    def update(self, done: float, total: float) -> None:
        if total > 0 and math.isfinite(total):
            self.fraction, self.total = done / total, total


class EmbeddedRunner:
    """Runs jobs in this server process, `workers` at a time, from an in-memory queue rebuilt from the store."""

    def __init__(self, executor: JobExecutor, store: JobStore, workers: int, retention_seconds: float) -> None:
        self._executor = executor
        self._store = store
        self._workers = workers
        self._retention_seconds = retention_seconds
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Queue every job an earlier process left unfinished (this process owns the data folder), then run."""
        for job in await self._store.unfinished():
            if job.state is JobState.RUNNING:
                # Every lease is stale here: the process that held it is gone.
                change = functools.partial(requeue, now=math.inf, retention_seconds=self._retention_seconds)
                await self._store.update(job.id, change)
                log.info("job %s: interrupted by a stop; it runs again", job.id)
            self._queue.put_nowait(job.id)
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self._workers)]

    async def dispatch(self, job_id: str) -> None:
        """Queue a stored job."""
        self._queue.put_nowait(job_id)

    def interrupt(self, job_id: str) -> None:
        """Stop a job running here at once."""
        self._executor.interrupt(job_id)

    async def aclose(self) -> None:
        """Stop taking jobs; running ones are cancelled and stay recorded as running, to run again after a start."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _work(self) -> None:
        while True:
            job_id = await self._queue.get()
            try:
                await self._executor.run(job_id)
            except Exception:
                log.exception("job %s: the runner failed; it runs again after a restart", job_id)
