"""The jobs API every face calls: submit, get, list, wait, cancel, delete; plus the upkeep that runs beside it."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import AsyncIterable, Callable
from typing import Protocol

from service.audio.fetch import UriFetcher, redact_uri
from service.core.transcriber import Transcriber
from service.domain import TranscriptionOptions
from service.errors import JobNotFound
from service.jobs.audio import JobAudio
from service.jobs.model import Job, JobState, request_cancel, requeue
from service.jobs.runner import Leases
from service.jobs.store import Cursor, JobStore
from service.threads import to_the_end

log = logging.getLogger(__name__)

_WAIT_POLL_SECONDS = 0.2


class JobDispatcher(Protocol):
    """Hands stored jobs to whatever runs them: this process, or a queue that workers read."""

    async def start(self) -> None:
        """Begin running (or sending) jobs."""

    async def dispatch(self, job_id: str) -> None:
        """Have a stored, queued job run."""

    def interrupt(self, job_id: str) -> None:
        """Stop the job at once if it runs in this process (its cancellation is already recorded)."""

    async def aclose(self) -> None:
        """Stop."""


class JobService:
    """Accepts jobs durably, answers for any job in the store, and keeps the store tidy (lost leases, retention)."""

    def __init__(
        self,
        *,
        store: JobStore,
        dispatcher: JobDispatcher,
        transcriber: Transcriber,
        fetcher: UriFetcher,
        audio: JobAudio,
        leases: Leases,
        max_queued: int,
    ) -> None:
        self.store = store
        self.audio = audio
        self._dispatcher = dispatcher
        self._transcriber = transcriber
        self._fetcher = fetcher
        self._leases = leases
        self._max_queued = max_queued
        self._upkeep: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Open the store and the audio folder: jobs are accepted (and queued) from now on."""
        self.audio.open()
        await self.store.open()
        self._upkeep = asyncio.create_task(self._tidy_forever())

    async def start(self) -> None:
        """Start running jobs (once the backends are ready)."""
        await self._dispatcher.start()

    async def aclose(self) -> None:
        """Stop the upkeep and the dispatcher, then close the store."""
        if self._upkeep is not None:
            self._upkeep.cancel()
            await asyncio.gather(self._upkeep, return_exceptions=True)
        await self._dispatcher.aclose()
        await self.store.close()

    async def submit(
        self,
        options: TranscriptionOptions,
        *,
        audio: AsyncIterable[bytes] | None = None,
        uri: str | None = None,
        abandoned: Callable[[], bool] = lambda: False,
    ) -> Job:
        """Store a new job (its audio first, then its record) and have it run; the job as stored.

        A caller that dies mid-upload can look, for a moment, like one that finished, so `abandoned` is asked once
        the audio is stored: a cut-off upload never becomes a job."""
        self._transcriber.check(options)
        job_id = uuid.uuid4().hex
        name = None
        if uri is not None:
            self._fetcher.check(uri)
        elif audio is not None:
            name = await self.audio.store(job_id, audio, self._transcriber.upload_limit(options))
            if abandoned():
                self.audio.remove(name)
                raise asyncio.CancelledError("the caller went away before its audio was complete")
        else:
            raise ValueError("a job needs audio or a URI")
        now = time.time()
        job = Job(
            id=job_id,
            state=JobState.QUEUED,
            options=options,
            create_time=now,
            update_time=now,
            audio=name,
            uri=uri,
            shown_uri="" if uri is None else redact_uri(uri),
        )
        # A caller cancelled from here on may or may not learn of its job, but the job is whole: stored with its
        # audio and dispatched, or neither.
        await to_the_end(self._enqueue(job))
        return job

    async def _enqueue(self, job: Job) -> None:
        try:
            await self.store.add(job, self._max_queued)
        except BaseException:
            self.audio.remove(job.audio)
            raise
        await self._dispatcher.dispatch(job.id)
        log.info("job %s: queued", job.id)

    async def get(self, job_id: str) -> Job:
        """The job; JobNotFound when there is none."""
        job = await self.store.get(job_id)
        if job is None:
            raise _not_found(job_id)
        return job

    async def page(self, states: frozenset[JobState] | None, after: Cursor | None, limit: int) -> list[Job]:
        """Up to `limit` jobs, newest first."""
        return await self.store.page(states, after, limit)

    async def cancel(self, job_id: str) -> Job:
        """Cancel the job: a queued one never starts, a running one stops; a finished one stays as it is."""
        change = functools.partial(request_cancel, now=time.time(), retention_seconds=self._leases.retention_seconds)
        result = await self.store.update(job_id, change)
        if result is None:
            raise _not_found(job_id)
        job, _ = result
        if job.state is JobState.CANCELLED:
            self.audio.remove(job.audio)
        else:
            self._dispatcher.interrupt(job_id)
        return job

    async def delete(self, job_id: str) -> None:
        """Remove the job and its audio at once (a running one is cancelled first)."""
        job = await self.cancel(job_id)
        await self.store.delete(job_id)
        self.audio.remove(job.audio)

    async def wait(self, job_id: str, seconds: float) -> Job:
        """The job once it is done, or as it is when `seconds` have passed."""
        deadline = time.monotonic() + seconds
        while True:
            job = await self.get(job_id)
            left = deadline - time.monotonic()
            if job.state.done or left <= 0:
                return job
            await asyncio.sleep(min(_WAIT_POLL_SECONDS, left))

    async def tidy(self, now: float) -> None:
        """Queue again the jobs whose worker was lost, and delete finished jobs (and audio) whose retention ended."""
        for job_id in await self.store.stale(now):
            change = functools.partial(requeue, now=now, retention_seconds=self._leases.retention_seconds)
            result = await self.store.update(job_id, change)
            if result is not None and result[1] and result[0].state is JobState.QUEUED:
                log.warning("job %s: its worker %s was lost; it runs again", job_id, result[0].worker)
                await self._dispatcher.dispatch(job_id)
        for job_id in await self.store.expired(now):
            job = await self.store.delete(job_id)
            if job is not None:
                self.audio.remove(job.audio)

    async def _tidy_forever(self) -> None:
        while True:
            await asyncio.sleep(self._leases.lease_seconds / 2)
            try:
                await self.tidy(time.time())
            except Exception:
                log.exception("tidying the job store failed; trying again later")


def _not_found(job_id: str) -> JobNotFound:
    return JobNotFound("no such job (it may have been deleted or expired)", metadata={"job": job_id})
