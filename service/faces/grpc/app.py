"""Builds the grpc.aio server of the gRPC face: servicer, interceptors, health, reflection, limits, keepalive."""

from __future__ import annotations

import grpc
from google.longrunning import operations_grpc_pb2 as lro_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from service.audio.fetch import UriFetcher
from service.calls.auth import TokenCheck
from service.calls.log import CallRecorder
from service.core.live import LiveTranscriber
from service.core.transcriber import Transcriber
from service.faces.grpc import operations
from service.faces.grpc.interceptors import BearerTokenInterceptor, CallInterceptor, Linger
from service.faces.grpc.servicer import TranscribeServicer
from service.jobs.service import JobService
from service.settings import Settings
from transcribe.v1 import transcribe_service_pb2 as pb
from transcribe.v1 import transcribe_service_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["TranscribeService"].full_name


def create_server(
    settings: Settings,
    transcriber: Transcriber,
    live: LiveTranscriber,
    recorder: CallRecorder,
    *,
    jobs: JobService,
    fetcher: UriFetcher,
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """A bound, not yet started server (NOT_SERVING), its port, and its health servicer."""
    # The call interceptor comes first, so it wraps the handlers later interceptors return and maps their errors.
    interceptors: list[grpc.aio.ServerInterceptor] = [
        CallInterceptor(recorder, Linger(settings.stream_linger_seconds, settings.stream_linger_bytes))
    ]
    if tokens := settings.bearer_tokens():
        interceptors.append(BearerTokenInterceptor(TokenCheck(tokens)))
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", 16 * 1024 * 1024),
            ("grpc.keepalive_time_ms", round(settings.keepalive_time_seconds * 1000)),
            ("grpc.keepalive_timeout_ms", 20_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ("grpc.http2.max_ping_strikes", 2),
            ("grpc.max_connection_age_ms", round(settings.max_connection_age_seconds * 1000)),
        ],
    )
    pb_grpc.add_TranscribeServiceServicer_to_server(
        TranscribeServicer(transcriber, live, jobs, fetcher, settings.stream_idle_timeout_seconds), server
    )
    lro_grpc.add_OperationsServicer_to_server(  # type: ignore[no-untyped-call]
        operations.OperationsServicer(jobs), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (
            SERVICE_NAME,
            operations.SERVICE_NAME,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    address = f"{settings.host}:{settings.port}"
    credentials = server_credentials(settings)
    port = server.add_insecure_port(address) if credentials is None else server.add_secure_port(address, credentials)
    return server, port, health_servicer


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials from the settings' files (mutual TLS when a client CA is set), or None for plaintext."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    client_ca = settings.tls_client_ca_file.read_bytes() if settings.tls_client_ca_file else None
    return grpc.ssl_server_credentials(
        [(settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


async def set_serving(health_servicer: health.aio.HealthServicer, serving: bool) -> None:
    """Report the overall and the TranscribeService health."""
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, status)
