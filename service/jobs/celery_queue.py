"""Celery on Redis as the job queue: the app both sides configure, and the dispatcher servers send jobs with."""

from __future__ import annotations

import asyncio

from celery import Celery

TASK_NAME = "transcribe.run_job"
QUEUE_NAME = "transcribe-jobs"
VISIBILITY_TIMEOUT_SECONDS = 6 * 3600
"""When Redis hands an unacknowledged job message out again; the job's lease brings a lost job back much sooner."""


def celery_app(broker_url: str) -> Celery:
    """The Celery app: late acknowledgement, one message at a time per worker thread, no result backend."""
    app = Celery("transcribe", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        task_ignore_result=True,
        task_default_queue=QUEUE_NAME,
        task_serializer="json",
        accept_content=["json"],
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_SECONDS},
    )
    return app


class CeleryQueue:
    """Sends each stored job's id to the Celery queue; workers claim the job from the shared store."""

    def __init__(self, broker_url: str) -> None:
        self._app = celery_app(broker_url)

    async def start(self) -> None:
        """Nothing to start: workers run the jobs."""

    async def dispatch(self, job_id: str) -> None:
        """Send the job's message (off the event loop: kombu's client blocks)."""
        await asyncio.to_thread(self._app.send_task, TASK_NAME, args=[job_id], queue=QUEUE_NAME)

    def interrupt(self, job_id: str) -> None:
        """Nothing to do here: the job's worker sees the recorded cancellation when it next renews its lease."""

    async def aclose(self) -> None:
        """Release the broker connections."""
        await asyncio.to_thread(self._app.close)
