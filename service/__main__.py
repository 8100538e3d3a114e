"""The composition root: settings once, then backends, the transcriber and the gRPC server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass

import av.logging
from grpc_health.v1 import health
from prometheus_client import start_http_server
from pydantic import ValidationError

from service.audio.store import UploadStore
from service.backends.base import TranscriptionBackend
from service.backends.faster_whisper_engine import FasterWhisperEngine
from service.backends.local import LocalBackend, LocalEngine
from service.backends.openai_api import OpenAIBackend
from service.backends.openai_whisper_engine import OpenAIWhisperEngine
from service.domain import BackendKind
from service.logs import configure_logging
from service.models.registry import local_model_specs
from service.server.app import create_server, set_serving
from service.server.metrics import CallMetrics
from service.settings import Settings
from service.transcriber import Transcriber

log = logging.getLogger("service")


@dataclass
class App:
    """Everything the server runs on, built once from the settings."""

    settings: Settings
    store: UploadStore
    transcriber: Transcriber


def build_local_engine(settings: Settings) -> LocalEngine:
    """The local engine the settings name."""
    threads = settings.local_cpu_threads or max(1, (os.cpu_count() or 1) // settings.local_workers)
    if settings.local_engine == "openai-whisper":
        return OpenAIWhisperEngine(
            cache_dir=settings.model_cache_dir,
            replicas=settings.local_workers,
            cpu_threads=threads,
            beam_size=settings.local_beam_size,
        )
    return FasterWhisperEngine(
        cache_dir=settings.model_cache_dir,
        compute_type=settings.local_compute_type,
        cpu_threads=threads,
        num_workers=settings.local_workers,
        beam_size=settings.local_beam_size,
        batch_size=settings.local_batch_size,
        batched_min_seconds=settings.local_batched_min_seconds,
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
        )
    return backends


def build_app(settings: Settings, backends: Mapping[BackendKind, TranscriptionBackend] | None = None) -> App:
    """Wire the upload store, backends and transcriber; nothing is loaded yet."""
    store = UploadStore(settings.temp_dir)
    transcriber = Transcriber(
        store=store,
        backends=backends if backends is not None else build_backends(settings),
        default_backend=BackendKind(settings.default_backend),
        upload_limits={kind: settings.max_bytes_for(kind.value) for kind in BackendKind},
        max_audio_seconds=settings.max_audio_seconds,
        queue_sizes={BackendKind.LOCAL: settings.local_queue_size, BackendKind.OPENAI: settings.openai_queue_size},
        max_concurrent_uploads=settings.max_concurrent_uploads,
        stream_idle_seconds=settings.stream_idle_timeout_seconds,
        retry_after_seconds=settings.overload_retry_after_seconds,
    )
    return App(settings=settings, store=store, transcriber=transcriber)


async def start_backends(app: App, health_servicer: health.aio.HealthServicer) -> None:
    """Load models, then report SERVING."""
    await app.transcriber.start()
    await set_serving(health_servicer, serving=True)
    log.info("backends ready; serving")


async def serve(app: App, stop: asyncio.Event, listening: asyncio.Future[int] | None = None) -> None:
    """Serve until `stop` is set, then drain in-flight calls within the grace period."""
    settings = app.settings
    app.store.open()
    metrics = CallMetrics(app.transcriber) if settings.metrics_port is not None else None
    server, port, health_servicer = create_server(settings, app.transcriber, metrics)
    metrics_server = None
    if metrics is not None and settings.metrics_port is not None:
        metrics_server, _ = start_http_server(settings.metrics_port, settings.metrics_host, registry=metrics.registry)
        log.info("metrics on http://%s:%d/metrics", settings.metrics_host, metrics_server.server_port)
    await set_serving(health_servicer, serving=False)
    await server.start()
    log.info(
        "listening on %s:%d with %s%s (NOT_SERVING until the backends are ready)",
        settings.host,
        port,
        "mutual TLS" if settings.tls_client_ca_file else "TLS" if settings.tls_cert_file else "plaintext",
        ", bearer tokens required" if settings.bearer_tokens() else "",
    )
    if listening is not None:
        listening.set_result(port)
    loading = asyncio.create_task(start_backends(app, health_servicer))
    stopping = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({loading, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if loading in done and loading.exception() is None:
            await stopping
        elif loading in done:
            log.error("backends failed to start: %s", loading.exception())
            raise SystemExit(1)
    finally:
        log.info("shutting down: NOT_SERVING, draining for up to %gs", settings.grace_period_seconds)
        loading.cancel()
        stopping.cancel()
        await health_servicer.enter_graceful_shutdown()
        await server.stop(settings.grace_period_seconds)
        await app.transcriber.aclose()
        app.store.close()
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()
        log.info("stopped")


async def _main(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(build_app(settings), stop)


def main() -> None:
    """Entry point of `python -m service` and `transcribe-server`."""
    try:
        settings = Settings()
    except ValidationError as exc:
        messages = "; ".join(str(error["msg"]).removeprefix("Value error, ") for error in exc.errors())
        print(f"transcribe-server: invalid configuration: {messages}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_level, settings.log_format)
    av.logging.set_level(av.logging.PANIC)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(settings))


if __name__ == "__main__":
    main()
