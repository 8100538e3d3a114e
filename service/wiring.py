"""The wiring: settings in, then the upload store, engines, backends, the core and the call recorder, built once."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.audio.fetch import UriFetcher, UriPolicy
from service.audio.store import UploadStore
from service.backends.base import TranscriptionBackend
from service.backends.local import LocalBackend
from service.backends.openai_api import OpenAIBackend
from service.calls.log import CallRecorder
from service.calls.metrics import CallMetrics
from service.core.live import LiveLimits, LiveRecognizer, LiveTranscriber
from service.core.transcriber import Transcriber
from service.domain import BackendKind
from service.engines.base import LocalEngine
from service.engines.catalog import local_model_specs
from service.engines.faster_whisper import FasterWhisperEngine
from service.engines.openai_whisper import OpenAIWhisperEngine
from service.jobs.audio import JobAudio
from service.jobs.runner import EmbeddedRunner, JobExecutor, Leases
from service.jobs.service import JobDispatcher, JobService
from service.jobs.store import JobStore, SqliteJobStore
from service.settings import Settings


@dataclass
class App:
    """Everything a face or a worker runs on, built once from the settings; nothing is loaded yet."""

    settings: Settings
    store: UploadStore
    transcriber: Transcriber
    live: LiveTranscriber
    fetcher: UriFetcher
    jobs: JobService
    executor: JobExecutor
    metrics: CallMetrics | None
    recorder: CallRecorder


def build_local_engine(settings: Settings) -> LocalEngine[Any]:
    """The local engine the settings name."""
    threads = settings.local_cpu_threads or max(1, (os.cpu_count() or 1) // settings.local_workers)
    if settings.local_engine == "openai-whisper":
        return OpenAIWhisperEngine(
            cache_dir=settings.model_cache_dir,
            replicas=settings.local_workers + settings.live_workers,
            cpu_threads=threads,
            beam_size=settings.local_beam_size,
        )
    return FasterWhisperEngine(
        cache_dir=settings.model_cache_dir,
        compute_type=settings.local_compute_type,
        cpu_threads=threads,
        num_workers=settings.local_workers + settings.live_workers,
        beam_size=settings.local_beam_size,
        vad_filter=settings.local_vad_filter,
    )


def build_backends(settings: Settings) -> dict[BackendKind, TranscriptionBackend]:
    """The local backend always; the API backend when a key is set."""
    backends: dict[BackendKind, TranscriptionBackend] = {
        BackendKind.LOCAL: LocalBackend(
            engine=build_local_engine(settings),
            specs=local_model_specs(settings.local_model, settings.model_cache_dir),
            default_model=settings.local_model,
            workers=settings.local_workers,
            max_loaded=settings.local_max_loaded_models,
            idle_seconds=settings.local_model_idle_seconds,
            batch_size=settings.local_batch_size,
            windowed_min_seconds=settings.local_batched_min_seconds,
            live_workers=settings.live_workers,
        )
    }
    if settings.openai_api_key is not None:
        backends[BackendKind.OPENAI] = OpenAIBackend(
            api_key=settings.openai_api_key.get_secret_value(),
            base_url=settings.openai_base_url,
            default_model=settings.openai_model,
            timeout_seconds=settings.openai_timeout_seconds,
            max_retries=settings.openai_max_retries,
            workers=settings.openai_workers,
            max_request_bytes=settings.openai_max_request_bytes,
            piece_seconds=settings.openai_piece_seconds,
            piece_concurrency=settings.openai_piece_concurrency,
        )
    return backends


def build_jobs(settings: Settings, transcriber: Transcriber, fetcher: UriFetcher) -> tuple[JobService, JobExecutor]:
    """The jobs: in this process on SQLite by default; on Celery workers, with records in Redis, given a broker."""
    audio = JobAudio(settings.data_dir / "audio")
    leases = Leases(lease_seconds=settings.jobs_lease_seconds, retention_seconds=settings.jobs_retention_seconds)
    store: JobStore
    dispatcher: JobDispatcher
    if settings.broker_url is None:
        store = SqliteJobStore(settings.data_dir / "jobs.sqlite3")
    else:
        from service.jobs.redis_store import RedisJobStore

        store = RedisJobStore(settings.broker_url.get_secret_value())
    executor = JobExecutor(
        store=store,
        transcriber=transcriber,
        fetcher=fetcher,
        audio=audio,
        worker=f"{socket.gethostname()}:{os.getpid()}",
        leases=leases,
    )
    if settings.broker_url is None:
        dispatcher = EmbeddedRunner(executor, store, settings.jobs_workers, settings.jobs_retention_seconds)
    else:
        from service.jobs.celery_queue import CeleryQueue

        dispatcher = CeleryQueue(settings.broker_url.get_secret_value())
    service = JobService(
        store=store,
        dispatcher=dispatcher,
        transcriber=transcriber,
        fetcher=fetcher,
        audio=audio,
        leases=leases,
        max_queued=settings.jobs_queue_size,
    )
    return service, executor


def build_app(settings: Settings, backends: Mapping[BackendKind, TranscriptionBackend] | None = None) -> App:
    """Wire the upload store, backends, the core and the call recorder."""
    store = UploadStore(settings.temp_dir)
    chosen = backends if backends is not None else build_backends(settings)
    transcriber = Transcriber(
        store=store,
        backends=chosen,
        default_backend=BackendKind(settings.default_backend),
        upload_limits={kind: settings.max_bytes_for(kind.value) for kind in BackendKind},
        max_audio_seconds=settings.max_audio_seconds,
        queue_sizes={BackendKind.LOCAL: settings.local_queue_size, BackendKind.OPENAI: settings.openai_queue_size},
        max_concurrent_uploads=settings.max_concurrent_uploads,
        retry_after_seconds=settings.overload_retry_after_seconds,
    )
    live = LiveTranscriber(
        store=store,
        backends={kind: backend for kind, backend in chosen.items() if isinstance(backend, LiveRecognizer)},
        default_backend=BackendKind(settings.default_backend),
        limits=LiveLimits(
            max_sessions=settings.live_max_sessions,
            max_session_seconds=settings.live_max_session_seconds,
            speech_end_seconds=settings.live_speech_end_seconds,
            interim_interval_seconds=settings.live_interim_interval_seconds,
        ),
        retry_after_seconds=settings.overload_retry_after_seconds,
    )
    fetcher = build_uri_fetcher(settings)
    jobs, executor = build_jobs(settings, transcriber, fetcher)
    metrics = CallMetrics(transcriber) if settings.metrics_port is not None else None
    return App(
        settings=settings,
        store=store,
        transcriber=transcriber,
        live=live,
        fetcher=fetcher,
        jobs=jobs,
        executor=executor,
        metrics=metrics,
        recorder=CallRecorder(metrics),
    )


def build_uri_fetcher(settings: Settings) -> UriFetcher:
    """The fetcher of audio URIs, under the allowlist, ports, timeouts and redirect limit the settings give."""
    policy = UriPolicy.from_text(
        settings.uri_allowlist,
        settings.uri_allowed_ports,
        connect_timeout_seconds=settings.uri_connect_timeout_seconds,
        read_timeout_seconds=settings.uri_read_timeout_seconds,
        total_timeout_seconds=settings.uri_timeout_seconds,
        max_redirects=settings.uri_max_redirects,
    )
    return UriFetcher(policy)
