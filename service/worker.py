"""`transcribe-worker`: a Celery worker that runs transcription jobs on the same core as the server, models loaded
once per process."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import av.logging
from pydantic import ValidationError

from service.jobs.celery_queue import QUEUE_NAME, TASK_NAME, celery_app
from service.logs import configure_logging
from service.settings import Settings, describe_invalid
from service.wiring import App, build_app

log = logging.getLogger("service.worker")

T = TypeVar("T")


class _LoopThread:
    """An asyncio event loop in a thread of its own, where the core runs; Celery's threads submit work to it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="core-loop", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)


async def _start(app: App) -> None:
    app.store.open()
    await app.jobs.open()
    await app.transcriber.start()
    await app.jobs.start()


async def _stop(app: App) -> None:
    await app.jobs.aclose()
    await app.transcriber.aclose()
    app.store.close()


def main(argv: list[str] | None = None) -> None:
    """Entry point of `transcribe-worker`: reads the settings, loads the backends, consumes the job queue."""
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"transcribe-worker: invalid configuration: {describe_invalid(exc)}", file=sys.stderr)
        raise SystemExit(2) from None
    if settings.broker_url is None:
        print("transcribe-worker: set TRANSCRIBE_BROKER_URL (redis://host:port/db) to run jobs", file=sys.stderr)
        raise SystemExit(2)
    configure_logging(settings.log_level, settings.log_format)
    av.logging.set_level(av.logging.PANIC)
    app = build_app(settings)
    core = _LoopThread()
    core.run(_start(app))
    celery = celery_app(settings.broker_url.get_secret_value())

    @celery.task(name=TASK_NAME)  # type: ignore[untyped-decorator]
    def run_job(job_id: str) -> None:
        core.run(app.executor.run(job_id))

    name = f"transcribe-worker-{os.getpid()}@{socket.gethostname()}"
    log.info("worker %s consuming %s with %d job thread(s)", name, QUEUE_NAME, settings.jobs_workers)
    try:
        celery.worker_main(
            [
                "worker",
                "--pool=threads",
                f"--concurrency={settings.jobs_workers}",
                f"--queues={QUEUE_NAME}",
                f"--hostname={name}",
                f"--loglevel={settings.log_level}",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                *(argv or []),
            ]
        )
    finally:
        core.run(_stop(app))
        core.stop()
        log.info("worker stopped")


if __name__ == "__main__":
    main(sys.argv[1:])
