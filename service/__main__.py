"""Hosts the faces (gRPC; HTTP unless turned off): `python -m service` reads the settings once, wires the app and
serves until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from wsgiref.simple_server import WSGIServer

import av.logging
from grpc_health.v1 import health
from prometheus_client import start_http_server
from pydantic import ValidationError

from service.faces.grpc.app import create_server, set_serving
from service.faces.http import Readiness, create_app, create_server_for
from service.logs import configure_logging
from service.settings import Settings, describe_invalid
from service.wiring import App, build_app

log = logging.getLogger("service")


async def start_backends(app: App, health_servicer: health.aio.HealthServicer, readiness: Readiness) -> None:
    """Load models, then report SERVING (and ready over HTTP)."""
    await app.transcriber.start()
    await app.jobs.start()
    await set_serving(health_servicer, serving=True)
    readiness.ready = True
    log.info("backends ready; serving")


async def open_folders(app: App) -> None:
    """Open the upload folder and the jobs (their store and audio folder); exit when they cannot be opened."""
    app.store.open()
    try:
        await app.jobs.open()
    except (OSError, RuntimeError) as error:
        log.error("cannot open the jobs: %s", error)
        app.store.close()
        raise SystemExit(1) from None


def start_metrics(app: App) -> WSGIServer | None:
    """The Prometheus endpoint, when metrics are on."""
    settings = app.settings
    if app.metrics is None or settings.metrics_port is None:
        return None
    metrics_server, _ = start_http_server(settings.metrics_port, settings.metrics_host, registry=app.metrics.registry)
    log.info("metrics on http://%s:%d/metrics", settings.metrics_host, metrics_server.server_port)
    return metrics_server


async def serve(app: App, stop: asyncio.Event, listening: asyncio.Future[int] | None = None) -> None:
    """Serve until `stop` is set, then drain in-flight calls within the grace period."""
    settings = app.settings
    await open_folders(app)
    server, port, health_servicer = create_server(
        settings, app.transcriber, app.live, app.recorder, jobs=app.jobs, fetcher=app.fetcher
    )
    readiness = Readiness()
    http_server = None
    if settings.http_port >= 0:
        face = create_app(settings, app.transcriber, app.live, app.recorder, readiness)
        http_server = create_server_for(face, settings)
    metrics_server = start_metrics(app)
    await set_serving(health_servicer, serving=False)
    try:
        http_port = await http_server.start() if http_server is not None else None
    except OSError as error:
        log.error(
            "cannot serve HTTP on %s:%d (%s); set TRANSCRIBE_HTTP_PORT, or -1 to turn the HTTP face off",
            settings.http_host,
            settings.http_port,
            error.strerror,
        )
        await app.jobs.aclose()
        app.store.close()
        raise SystemExit(1) from None
    await server.start()
    log.info(
        "listening on %s:%d with %s%s (NOT_SERVING until the backends are ready)",
        settings.host,
        port,
        "mutual TLS" if settings.tls_client_ca_file else "TLS" if settings.tls_cert_file else "plaintext",
        ", bearer tokens required" if settings.bearer_tokens() else "",
    )
    if http_server is not None and http_port is not None:
        log.info(
            "HTTP face (OpenAI-compatible API, the page at /) on %s://%s:%d",
            http_server.scheme,
            settings.http_host,
            http_port,
        )
    if listening is not None:
        listening.set_result(port)
    loading = asyncio.create_task(start_backends(app, health_servicer, readiness))
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
        readiness.ready = False
        await health_servicer.enter_graceful_shutdown()
        await app.live.drain()
        await asyncio.gather(
            server.stop(settings.grace_period_seconds), *([http_server.stop()] if http_server is not None else [])
        )
        await app.jobs.aclose()
        await app.transcriber.settle(settings.grace_period_seconds)
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
        print(f"transcribe-server: invalid configuration: {describe_invalid(exc)}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_level, settings.log_format)
    av.logging.set_level(av.logging.PANIC)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(settings))


if __name__ == "__main__":
    main()
