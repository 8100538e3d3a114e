"""Work that a cancelled caller still waits for: blocking work in a thread that owns files the caller deletes, and
steps that must end as a unit."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class Stopped(Exception):
    """Raised by work that saw its stop event set: its caller was cancelled and wants nothing more from it."""


async def in_thread(fn: Callable[[threading.Event], R], executor: Executor | None = None) -> R:
    """Run `fn(stop)` in a thread and return its result; on cancellation set `stop`, wait for `fn` to end, re-raise.

    Awaiting `loop.run_in_executor` directly returns at once when the caller is cancelled while the thread goes on:
    a caller that then deletes its files or closes its descriptors races the thread still writing them (a file made
    after the delete stays on disk; a write lands in whatever file reused the descriptor). `fn` may watch `stop` and
    raise Stopped to end early. Work still queued when `stop` is set never runs, and is not waited for.
    """
    stop = threading.Event()
    lock = threading.Lock()
    started = False

    def work() -> R:
        nonlocal started
        with lock:
            if stop.is_set():
                raise Stopped
            started = True
        return fn(stop)

    running = asyncio.get_running_loop().run_in_executor(executor, work)
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        with lock:
            stop.set()
            wait = started
        running.add_done_callback(drop_outcome)
        if wait:
            await _outlast(running)
        raise


async def to_the_end(step: Awaitable[R]) -> R:
    """Await `step` to its end even when the caller is cancelled meanwhile, then let the cancellation go on: for
    steps that leave things inconsistent when cut in the middle."""
    running = asyncio.ensure_future(step)
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        running.add_done_callback(drop_outcome)
        await _outlast(running)
        raise


async def _outlast(running: asyncio.Future[Any]) -> None:
    while not running.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([running])


def drop_outcome(future: asyncio.Future[Any]) -> None:
    """Mark the outcome of work whose caller is gone as seen (its error, if any, matters to no one), so that asyncio
    does not log it."""
    if not future.cancelled():
        future.exception()


def ignoring_stop(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> Callable[[threading.Event], R]:
    """`fn(*args, **kwargs)` as work for in_thread, short enough to run to its end without watching the stop event."""
    call = functools.partial(fn, *args, **kwargs)
    return lambda _stop: call()
