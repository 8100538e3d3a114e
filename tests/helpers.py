"""Small assertions and builders shared by the end-to-end tests and the benchmarks."""

from __future__ import annotations

import asyncio
import collections
import re
import struct
from collections.abc import AsyncIterator, Iterable

import grpc
import numpy as np
import numpy.typing as npt
from google.rpc import error_details_pb2, status_pb2

from transcribe.v1 import transcribe_service_pb2 as pb
from transcribe.v1 import transcribe_service_pb2_grpc as pb_grpc

CHUNK = 64 * 1024


def linear16(samples: npt.NDArray[np.float32]) -> bytes:
    """Samples in [-1, 1] as headerless 16-bit little-endian PCM, rounded and clipped."""
    return np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2").tobytes()


def words_of(text: str) -> set[str]:
    """Lower-case words of a transcript, punctuation removed."""
    return set(re.findall(r"[a-z']+", text.lower()))


def assert_has_words(text: str, expected: Iterable[str]) -> None:
    """Every expected word appears in the lower-cased text ("shells" matches "seashells")."""
    lowered = text.lower()
    missing = [word for word in expected if word not in lowered]
    assert not missing, f"missing {missing} in {text!r}"


async def stream_of(
    config: pb.TranscriptionConfig | None, data: bytes, chunk: int = CHUNK
) -> AsyncIterator[pb.TranscribeStreamRequest]:
    """A well-formed upload stream: config first, then the bytes in chunks."""
    if config is not None:
        yield pb.TranscribeStreamRequest(config=config)
    for start in range(0, len(data), chunk):
        yield pb.TranscribeStreamRequest(audio_content=data[start : start + chunk])


def error_details(error: grpc.aio.AioRpcError) -> tuple[error_details_pb2.ErrorInfo, list[tuple[str, str]]]:
    """The ErrorInfo and BadRequest field violations an error status carries."""
    raw = dict(error.trailing_metadata() or ()).get("grpc-status-details-bin")
    assert raw is not None, "the error carries no google.rpc.Status details"
    status = status_pb2.Status.FromString(raw)
    assert status.code == error.code().value[0]
    info = error_details_pb2.ErrorInfo()
    violations: list[tuple[str, str]] = []
    infos = 0
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            detail.Unpack(info)
            infos += 1
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.extend((v.field, v.description) for v in bad.field_violations)
    assert infos == 1, "exactly one ErrorInfo is expected"
    assert info.domain == "transcribe.v1"
    return info, violations


def wav_header(*, channels: int, rate: int, data_bytes: int, bits: int = 16, format_tag: int = 1) -> bytes:
    """A 44-byte RIFF/WAVE header that says whatever it is told, true or not."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", format_tag, channels, rate, rate * block, block, bits)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", data_bytes)
    )


async def statuses_of_refused_uploads(
    stub: pb_grpc.TranscribeServiceAsyncStub, *, rounds: int = 5, concurrency: int = 16
) -> collections.Counter[tuple[grpc.StatusCode, str]]:
    """Code and ErrorInfo reason of `rounds` x `concurrency` concurrent 2 MiB uploads the server refuses.

    The server refuses them while their clients are still writing, the case in which grpcio's asyncio client can
    lose the status to INTERNAL (https://github.com/grpc/grpc/issues/36066); an INTERNAL comes with no reason.
    """

    async def refused() -> tuple[grpc.StatusCode, str]:
        try:
            await stub.TranscribeStream(stream_of(pb.TranscriptionConfig(), bytes(2 * 1024 * 1024)), timeout=60)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.INTERNAL:
                return error.code(), ""
            return error.code(), error_details(error)[0].reason
        raise AssertionError("the upload was not refused")

    outcomes: collections.Counter[tuple[grpc.StatusCode, str]] = collections.Counter()
    for _ in range(rounds):
        outcomes.update(await asyncio.gather(*(refused() for _ in range(concurrency))))
    return outcomes
