"""Worker threads shared fairly: every job's tasks queue apart, and a free worker serves the jobs in turn (urgent
jobs first)."""

from __future__ import annotations

import asyncio
import collections
import functools
import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

_Task = tuple[Callable[[], Any], "Future[Any]", Callable[[], None] | None]


class FairWorkerPool:
    """A fixed set of threads. A lone job gets every thread; several jobs get one task each in turn, the tasks of
    urgent jobs before any other queued task."""

    def __init__(self, workers: int, name: str) -> None:
        self.workers = workers
        self.name = name
        self._ready = threading.Condition()
        self._queues: collections.OrderedDict[int, collections.deque[_Task]] = collections.OrderedDict()
        self._ids = itertools.count()
        self._urgent: set[int] = set()
        self._stopped = False
        self._threads = [threading.Thread(target=self._serve, name=f"{name}-{i}", daemon=True) for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def job(self, *, urgent: bool = False, after: Callable[[], None] | None = None) -> WorkerJob:
        """A new job: its tasks run in the order submitted, interleaved fairly with other jobs' tasks; an urgent
        job's queued tasks start before those of the others. `after` runs on the worker once each task's result has
        been handed over, before the worker takes another task (housekeeping the caller does not wait for)."""
        job_id = next(self._ids)
        if urgent:
            with self._ready:
                self._urgent.add(job_id)
        return WorkerJob(self, job_id, after)

    def shutdown(self) -> None:
        """Cancel every queued task; running tasks finish in their threads, which then end."""
        with self._ready:
            self._stopped = True
            for queue in self._queues.values():
                for _, future, _ in queue:
                    future.cancel()
            self._queues.clear()
            self._ready.notify_all()

    def join(self, within: float) -> bool:
        """After shutdown: wait up to `within` seconds for the tasks still running to end (a process that exits while
        a worker is inside native code can abort); whether every thread has ended."""
        deadline = time.monotonic() + within
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def _submit(self, job_id: int, fn: Callable[[], Any], after: Callable[[], None] | None) -> Future[Any]:
        future: Future[Any] = Future()
        with self._ready:
            if self._stopped:
                future.cancel()
                return future
            self._queues.setdefault(job_id, collections.deque()).append((fn, future, after))
            self._ready.notify()
        return future

    def _forget(self, job_id: int) -> None:
        with self._ready:
            self._urgent.discard(job_id)
            for _, future, _ in self._queues.pop(job_id, ()):
                future.cancel()

    def _next(self) -> _Task | None:
        with self._ready:
            while True:
                waiting = [job_id for job_id, queue in self._queues.items() if queue]
                if waiting:
                    job_id = next((j for j in waiting if j in self._urgent), waiting[0])
                    task = self._queues[job_id].popleft()
                    self._queues.move_to_end(job_id)
                    return task
                if self._stopped:
                    return None
                self._ready.wait()

    def _serve(self) -> None:
        while (task := self._next()) is not None:
            fn, future, after = task
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn()
            except BaseException as exc:  # handed to the awaiting caller
                future.set_exception(exc)
            else:
                future.set_result(result)
            if after is not None:
                after()


class WorkerJob:
    """One caller's share of a FairWorkerPool; closing it drops the tasks it has not started."""

    def __init__(self, pool: FairWorkerPool, job_id: int, after: Callable[[], None] | None = None) -> None:
        self._pool = pool
        self._id = job_id
        self._after = after

    async def run(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run fn in the pool when this job's turn comes; cancelling the await drops it if it has not started."""
        future = self._pool._submit(self._id, functools.partial(fn, *args, **kwargs), self._after)
        result: R = await asyncio.wrap_future(future)
        return result

    def close(self) -> None:
        """Drop every task of this job that has not started."""
        self._pool._forget(self._id)
