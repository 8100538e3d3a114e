"""in_thread and to_the_end: a cancelled caller waits for its running work to end, and queued work never runs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from service.threads import Stopped, ignoring_stop, in_thread, to_the_end

WAIT = 30.0


@pytest.fixture
def one_thread() -> Iterator[ThreadPoolExecutor]:
    """An executor with one thread, so a test can keep work queued behind a job it holds."""
    pool = ThreadPoolExecutor(max_workers=1)
    yield pool
    pool.shutdown(wait=True)


async def started(event: threading.Event) -> None:
    """Wait, off the event loop, until a thread sets `event`."""
    assert await asyncio.to_thread(event.wait, WAIT), "the thread work did not start"


async def test_the_result_and_the_error_of_the_work_come_back() -> None:
    """Without a cancel, in_thread is a plain call in a thread."""
    assert await in_thread(ignoring_stop(pow, 2, 10)) == 1024
    with pytest.raises(ZeroDivisionError):
        await in_thread(ignoring_stop(divmod, 1, 0))


async def test_a_cancelled_caller_waits_for_the_running_work_and_stops_it(tmp_path: Path) -> None:
    """Cancelled mid-work, the caller's CancelledError comes only after the work ended (it saw the stop event), so
    the file the work made is there for the caller to delete."""
    entered = threading.Event()
    made = tmp_path / "made"
    seen: list[bool] = []

    def work(stop: threading.Event) -> None:
        entered.set()
        seen.append(stop.wait(WAIT))
        made.write_bytes(b"late")
        raise Stopped

    task = asyncio.create_task(in_thread(work))
    await started(entered)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == [True], "the work did not see its stop event"
    assert made.read_bytes() == b"late", "the caller went on before the work ended"
    made.unlink()


async def test_a_second_cancel_does_not_cut_the_wait_short() -> None:
    """A caller cancelled again while it waits for the work still waits for the work's end."""
    entered, release = threading.Event(), threading.Event()
    ended = threading.Event()

    def work(_stop: threading.Event) -> None:
        entered.set()
        release.wait(WAIT)
        ended.set()

    task = asyncio.create_task(in_thread(work))
    await started(entered)
    task.cancel()
    await asyncio.sleep(0)  # the task takes the first cancel and starts waiting for the work
    task.cancel()
    await asyncio.sleep(0)
    assert not task.done(), "the second cancel ended the wait while the work was running"
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ended.is_set()


async def test_queued_work_of_a_cancelled_caller_never_runs(one_thread: ThreadPoolExecutor) -> None:
    """Work still queued behind a busy executor is not waited for, and does not run once the executor is free."""
    holding, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def hold() -> None:
        holding.set()
        release.wait(WAIT)

    blocker = asyncio.get_running_loop().run_in_executor(one_thread, hold)
    await started(holding)
    task = asyncio.create_task(in_thread(ignoring_stop(ran.append, "queued work"), one_thread))
    await asyncio.sleep(0)  # the work is submitted, behind the held job
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not release.is_set(), "the cancelled caller waited for the executor"
    release.set()
    await blocker
    await asyncio.get_running_loop().run_in_executor(one_thread, ran.append, "a later job")
    assert ran == ["a later job"]


async def test_a_step_run_to_the_end_outlives_its_callers_cancel() -> None:
    """to_the_end: the caller's cancel neither cuts the step short nor comes back before the step has ended."""
    entered, release = asyncio.Event(), asyncio.Event()
    done: list[str] = []

    async def step() -> None:
        entered.set()
        await release.wait()
        done.append("the step ended")

    task = asyncio.create_task(to_the_end(step()))
    await entered.wait()
    task.cancel()
    await asyncio.sleep(0)
    assert not task.done(), "the cancel came back before the step ended"
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert done == ["the step ended"]
