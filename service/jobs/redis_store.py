"""Job records in Redis, shared by every server and worker of a deployment; changes are optimistic transactions."""

from __future__ import annotations

import heapq
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import WatchError

from service.jobs.model import Job, JobState, decode, encode
from service.jobs.store import Change, Cursor, queue_full

_PREFIX = "transcribe:jobs:"
_BY_TIME = _PREFIX + "by-time"
_LEASES = _PREFIX + "leases"
_EXPIRY = _PREFIX + "expiry"

# Counts the waiting jobs and stores the new one in one atomic step.
_ADD = """
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[4]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
return 1
"""


def _job_key(job_id: str) -> str:
    return f"{_PREFIX}job:{job_id}"


def _state_key(state: JobState) -> str:
    return f"{_PREFIX}state:{state.value}"


class RedisJobStore:
    """Each job is a JSON value; sorted sets index it by time, state, lease and expiry."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._redis: Redis | None = None

    @property
    def _db(self) -> Redis:
        if self._redis is None:
            raise RuntimeError("the job store is closed")
        return self._redis

    async def open(self) -> None:
        """Connect and check that the server answers."""
        self._redis = Redis.from_url(self._url, socket_timeout=10.0, socket_connect_timeout=10.0)
        await self._redis.ping()

    async def close(self) -> None:
        """Disconnect."""
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def add(self, job: Job, max_queued: int) -> None:
        """Store the job with the queue's bound checked in the same script."""
        keys = [_job_key(job.id), _BY_TIME, _state_key(JobState.QUEUED)]
        added = await self._db.eval(_ADD, 3, *keys, encode(job), repr(job.create_time), job.id, max_queued)
        if not added:
            raise queue_full(max_queued)

    async def get(self, job_id: str) -> Job | None:
        """Read one job."""
        body = await self._db.get(_job_key(job_id))
        return None if body is None else decode(body)

    async def update(self, job_id: str, change: Change) -> tuple[Job, bool] | None:
        """Watch, read, change and write; again from the start when another writer came first."""
        key = _job_key(job_id)
        async with self._db.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    body = await pipe.get(key)
                    if body is None:
                        return None
                    job = decode(body)
                    changed = change(job)
                    if changed is None:
                        await pipe.unwatch()  # type: ignore[no-untyped-call]
                        return job, False
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.set(key, encode(changed))
                    _reindex(pipe, job, changed)
                    await pipe.execute()
                    return changed, True
                except WatchError:
                    continue

    async def delete(self, job_id: str) -> Job | None:
        """Remove the job and its index entries."""
        key = _job_key(job_id)
        async with self._db.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    body = await pipe.get(key)
                    if body is None:
                        return None
                    job = decode(body)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.delete(key)
                    pipe.zrem(_BY_TIME, job_id)
                    pipe.zrem(_state_key(job.state), job_id)
                    pipe.zrem(_LEASES, job_id)
                    pipe.zrem(_EXPIRY, job_id)
                    await pipe.execute()
                    return job
                except WatchError:
                    continue

    async def page(self, states: frozenset[JobState] | None, after: Cursor | None, limit: int) -> list[Job]:
        """Merge the newest ids of each wanted state's index (or the time index), then read the jobs."""
        indexes = [_BY_TIME] if states is None else [_state_key(s) for s in sorted(states, key=lambda s: s.value)]
        candidates: list[list[tuple[float, str]]] = []
        for index in indexes:
            candidates.append(await self._newest(index, after, limit))
        merged = heapq.merge(*candidates, reverse=True)
        ids = [job_id for _, job_id in merged][:limit]
        bodies = await self._db.mget([_job_key(i) for i in ids]) if ids else []
        return [decode(body) for body in bodies if body is not None]

    async def _newest(self, index: str, after: Cursor | None, limit: int) -> list[tuple[float, str]]:
        found: list[tuple[float, str]] = []
        top: float | str = "+inf" if after is None else repr(after[0])
        offset = 0
        while len(found) < limit:
            batch = cast(
                list[tuple[bytes, float]],
                await self._db.zrevrangebyscore(index, top, "-inf", start=offset, num=limit, withscores=True),
            )
            if not batch:
                break
            offset += len(batch)
            for member, score in batch:
                job_id = member.decode()
                if after is None or (score, job_id) < after:
                    found.append((score, job_id))
        return found[:limit]

    async def unfinished(self) -> list[Job]:
        """Queued and running jobs, oldest first."""
        ids: list[bytes] = []
        for state in (JobState.QUEUED, JobState.RUNNING):
            ids += cast(list[bytes], await self._db.zrange(_state_key(state), 0, -1))
        bodies = await self._db.mget([_job_key(i.decode()) for i in ids]) if ids else []
        return sorted((decode(b) for b in bodies if b is not None), key=lambda j: (j.create_time, j.id))

    async def stale(self, now: float) -> list[str]:
        """Running jobs past their lease."""
        return _ids(await self._db.zrangebyscore(_LEASES, "-inf", f"({now!r}"))

    async def expired(self, now: float) -> list[str]:
        """Finished jobs past their retention."""
        return _ids(await self._db.zrangebyscore(_EXPIRY, "-inf", f"({now!r}"))


def _ids(members: Any) -> list[str]:
    return [member.decode() for member in cast(list[bytes], members)]


def _reindex(pipe: Any, before: Job, after: Job) -> None:
    if before.state is not after.state:
        pipe.zrem(_state_key(before.state), after.id)
        pipe.zadd(_state_key(after.state), {after.id: after.create_time})
    if after.lease_until is None:
        pipe.zrem(_LEASES, after.id)
    else:
        pipe.zadd(_LEASES, {after.id: after.lease_until})
    if after.expire_time is not None:
        pipe.zadd(_EXPIRY, {after.id: after.expire_time})
