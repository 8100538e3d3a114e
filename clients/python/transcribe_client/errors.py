"""TranscribeError: a failed RPC (or a failed job) with the AIP-193 error details the server attached."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc import aio
from grpc_status import rpc_status

__all__ = [
    "ERROR_DOMAIN",
    "JOB_CANCELLED_REASON",
    "STATUS_DETAILS_KEY",
    "JobCancelledError",
    "TranscribeError",
    "from_rpc_error",
    "from_status",
]

ERROR_DOMAIN = "transcribe.v1"
STATUS_DETAILS_KEY = "grpc-status-details-bin"
JOB_CANCELLED_REASON = "JOB_CANCELLED"
_CODES: dict[int, grpc.StatusCode] = {int(code.value[0]): code for code in grpc.StatusCode}


class TranscribeError(Exception):
    """A failed call: the gRPC status plus the ErrorInfo and BadRequest details, when present."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        domain: str = "",
        metadata: dict[str, str] | None = None,
        field_violations: list[tuple[str, str]] | None = None,
        retry_delay: float | None = None,
    ) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.reason = reason
        self.domain = domain
        self.metadata: dict[str, str] = dict(metadata or {})
        self.field_violations: list[tuple[str, str]] = list(field_violations or [])
        self.retry_delay = retry_delay

    @property
    def exit_code(self) -> int:
        """The process exit code for this error, following grpcurl: 64 plus the numeric status code."""
        return 64 + int(self.code.value[0])

    def __str__(self) -> str:
        text = f"{self.code.name}: {self.message}"
        return f"{text} [{self.reason}]" if self.reason else text

    def __repr__(self) -> str:
        return f"TranscribeError(code={self.code.name}, message={self.message!r}, reason={self.reason!r})"


class JobCancelledError(TranscribeError):
    """A job that was cancelled before it finished: code CANCELLED, reason JOB_CANCELLED."""


def from_status(status: Any) -> TranscribeError:
    """Convert a google.rpc.Status, such as a failed job's Operation.error, into a TranscribeError.

    A CANCELLED status (a cancelled job) becomes a JobCancelledError.
    """
    code = _CODES.get(int(status.code), grpc.StatusCode.UNKNOWN)
    error_type = JobCancelledError if code is grpc.StatusCode.CANCELLED else TranscribeError
    error = error_type(code, str(status.message))
    _apply_details(error, status)
    return error


def from_rpc_error(error: grpc.RpcError) -> TranscribeError:
    """Convert a grpc.RpcError (sync or grpc.aio) into a TranscribeError."""
    code = _call_attr(error, "code") or grpc.StatusCode.UNKNOWN
    message = _call_attr(error, "details") or ""
    status: Any = None
    if not isinstance(error, aio.AioRpcError):
        # The sync call object checks that the rich status agrees with the call's status.
        try:
            status = rpc_status.from_call(error)
        except (ValueError, AttributeError, TypeError):
            status = None
    if status is None:
        status = _status_from_metadata(_call_attr(error, "trailing_metadata"))
    result = TranscribeError(code, str(message))
    if status is not None:
        _apply_details(result, status)
    return result


def _call_attr(error: grpc.RpcError, name: str) -> Any:
    method = getattr(error, name, None)
    if method is None:
        return None
    try:
        return method()
    except Exception:  # the error object may not carry a call
        return None


def _status_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> Any:
    for key, value in metadata or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            try:
                return status_pb2.Status.FromString(value)
            except Exception:  # a malformed trailer must not hide the real error
                return None
    return None


def _apply_details(error: TranscribeError, status: Any) -> None:
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            if not error.reason:
                error.reason = str(info.reason)
                error.domain = str(info.domain)
                error.metadata = {str(k): str(v) for k, v in info.metadata.items()}
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            error.field_violations.extend((str(v.field), str(v.description)) for v in bad.field_violations)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            error.retry_delay = float(retry.retry_delay.ToTimedelta().total_seconds())
