"""Python client library and CLI for the transcribe.v1 TranscribeService."""

from __future__ import annotations

from transcribe_client.client import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_TARGET,
    DEFAULT_TIMEOUT,
    STREAM_THRESHOLD,
    AsyncTranscribeClient,
    Audio,
    BackendName,
    PcmFormat,
    ProgressCallback,
    TaskName,
    TranscribeClient,
    channel_options,
    resolve_target,
    service_config,
    transcription_config,
)
from transcribe_client.errors import ERROR_DOMAIN, TranscribeError
from transcribe_client.formats import FORMATS, OutputFormat, render, to_json, to_srt, to_text, to_vtt

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_TARGET",
    "DEFAULT_TIMEOUT",
    "ERROR_DOMAIN",
    "FORMATS",
    "STREAM_THRESHOLD",
    "AsyncTranscribeClient",
    "Audio",
    "BackendName",
    "OutputFormat",
    "PcmFormat",
    "ProgressCallback",
    "TaskName",
    "TranscribeClient",
    "TranscribeError",
    "channel_options",
    "render",
    "resolve_target",
    "service_config",
    "to_json",
    "to_srt",
    "to_text",
    "to_vtt",
    "transcription_config",
]
