"""A loopback HTTP server that imitates OpenAI's audio transcription and translation endpoints.

The real OpenAI API is not reachable from tests, so :class:`FakeOpenAIServer` serves
``POST /v1/audio/transcriptions`` and ``POST /v1/audio/translations`` on 127.0.0.1 with the
same wire behaviour as the real endpoints: multipart/form-data requests, bearer-key auth,
the 25 MiB body limit, the accepted file extensions, the per-model response formats and the
``{"error": {"message", "type", "param", "code"}}`` error shape. Faults (error statuses,
slow or hung responses, connection resets, malformed JSON) are scripted per request with
:meth:`FakeOpenAIServer.enqueue` or for every request with
:meth:`FakeOpenAIServer.set_default_fault`. By default every transcription says
:data:`DEFAULT_TRANSCRIPT`; ``transcript_for`` (e.g. :func:`describe_duration`) makes each
answer depend on its request instead.

Only the standard library is used, so the fake exercises the real ``openai`` SDK end to end::

    with FakeOpenAIServer() as server:
        client = openai.OpenAI(api_key=server.api_key, base_url=server.base_url, max_retries=0)
        client.audio.transcriptions.create(model="whisper-1", file=("a.wav", b"RIFF", "audio/wav"))
        assert server.requests[0].form["model"] == "whisper-1"
"""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import math
import re
import socket
import socketserver
import string
import struct
import sys
import threading
import time
import uuid
import wave
import zlib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_LANGUAGE",
    "DEFAULT_TRANSCRIPT",
    "MAX_BODY_BYTES",
    "SECONDS_PER_WORD",
    "SUPPORTED_EXTENSIONS",
    "FakeOpenAIServer",
    "Fault",
    "ReceivedRequest",
    "TranscriptFor",
    "audio_seconds",
    "describe_duration",
]

DEFAULT_API_KEY: Final = "test-key"
DEFAULT_TRANSCRIPT: Final = "hello from the fake api"
DEFAULT_LANGUAGE: Final = "english"
MAX_BODY_BYTES: Final = 26_214_400
"""The real API's request size limit (25 MiB), applied to the whole multipart body."""
SECONDS_PER_WORD: Final = 0.5
"""Each word of the transcript lasts this long in the derived segments, words and duration."""
SUPPORTED_EXTENSIONS: Final = ("flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm")
"""File name extensions the real API accepts, in the order its error message lists them."""

TRANSCRIPTIONS_PATH: Final = "/v1/audio/transcriptions"
TRANSLATIONS_PATH: Final = "/v1/audio/translations"
_RESPONSE_FORMATS: Final = ("json", "text", "srt", "verbose_json", "vtt")
_GPT_TRANSCRIBE_FORMATS: Final = ("json", "text")
_GRANULARITIES: Final = ("word", "segment")
_READ_CHUNK: Final = 1 << 20
_POLL_INTERVAL: Final = 0.05
_JOIN_TIMEOUT: Final = 5.0

_LANGUAGE_NAMES: Final[Mapping[str, str]] = {
    "ar": "arabic",
    "de": "german",
    "en": "english",
    "es": "spanish",
    "fr": "french",
    "hi": "hindi",
    "it": "italian",
    "ja": "japanese",
    "ko": "korean",
    "nl": "dutch",
    "pl": "polish",
    "pt": "portuguese",
    "ru": "russian",
    "sv": "swedish",
    "tr": "turkish",
    "uk": "ukrainian",
    "zh": "chinese",
}

_ErrorCode = str | int | None

# Default error bodies for status faults, modelled on what the real API (and its CDN) return.
_STATUS_ERRORS: Final[Mapping[int, tuple[str, str, _ErrorCode]]] = {
    400: ("Bad request.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to sample from this model.", "invalid_request_error", None),
    404: ("The model does not exist or you do not have access to it.", "invalid_request_error", None),
    408: ("Request timed out.", "timeout", None),
    409: ("Conflict.", "invalid_request_error", None),
    429: (
        "Rate limit reached for requests in organization org-fake on requests per min (RPM): "
        "Limit 3, Used 3, Requested 1. Visit https://platform.openai.com/account/rate-limits to learn more.",
        "requests",
        "rate_limit_exceeded",
    ),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    502: ("Bad gateway.", "cf_bad_gateway", 502),
    503: ("The server is overloaded or not ready yet.", "server_error", None),
    504: ("Gateway timeout.", "cf_gateway_timeout", 504),
}


@dataclass(frozen=True)
class Fault:
    """How the server misbehaves for one request (see :meth:`FakeOpenAIServer.enqueue`).

    At most one of ``status``, ``reset``, ``malformed_json`` and ``hang`` may be set.
    ``delay_seconds`` combines with any of them; on its own it delays a normal answer.
    """

    status: int | None = None
    """Answer with this status code and an OpenAI error body (or ``body`` when given)."""
    message: str | None = None
    """Overrides the error message of a ``status`` fault."""
    error_type: str | None = None
    """Overrides ``error.type`` of a ``status`` fault."""
    error_code: str | int | None = None
    """Overrides ``error.code`` of a ``status`` fault (e.g. ``"insufficient_quota"`` for a 429)."""
    body: bytes | None = None
    """Raw response body of a ``status`` fault, sent as-is instead of the OpenAI error JSON."""
    headers: Mapping[str, str] = field(default_factory=dict, hash=False)
    """Extra response headers of a ``status`` or ``malformed_json`` fault."""
    retry_after: float | None = None
    """Seconds sent as ``retry-after`` (rounded up) and ``retry-after-ms``; 429 defaults to 1 s."""
    delay_seconds: float = 0.0
    """Wait this long before answering; interrupted (the connection is dropped) when the server stops."""
    reset: bool = False
    """Read the request, then close the socket abruptly with a TCP RST and no response."""
    malformed_json: bool = False
    """Answer 200 with ``content-type: application/json`` and a truncated JSON body."""
    hang: bool = False
    """Read the request and never answer; the connection is dropped when the server stops."""

    def __post_init__(self) -> None:
        modes = sum((self.status is not None, self.reset, self.malformed_json, self.hang))
        if modes > 1:
            raise ValueError("a Fault sets at most one of status, reset, malformed_json and hang")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"invalid HTTP status {self.status}")
        if self.body is not None and self.status is None:
            raise ValueError("a Fault body needs a status")
        if self.delay_seconds < 0 or not math.isfinite(self.delay_seconds):
            raise ValueError("delay_seconds must be a finite number >= 0")
        if self.retry_after is not None and (self.retry_after < 0 or not math.isfinite(self.retry_after)):
            raise ValueError("retry_after must be a finite number >= 0")

    @classmethod
    def rate_limited(cls, retry_after: float = 1.0, *, code: str = "rate_limit_exceeded") -> Fault:
        """A 429 with a ``retry-after`` header (``code="insufficient_quota"`` for the quota variant)."""
        return cls(status=429, retry_after=retry_after, error_code=code)

    @classmethod
    def server_error(cls, status: int = 500, *, retry_after: float | None = None) -> Fault:
        """A 5xx with the real API's error body for that status."""
        return cls(status=status, retry_after=retry_after)

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        """A normal answer sent only after ``seconds``."""
        return cls(delay_seconds=seconds)

    @classmethod
    def connection_reset(cls) -> Fault:
        """An abrupt TCP reset after the request has been read."""
        return cls(reset=True)

    @classmethod
    def bad_json(cls) -> Fault:
        """A 200 whose JSON body is cut off mid-object."""
        return cls(malformed_json=True)

    @classmethod
    def hung(cls) -> Fault:
        """A request that is read but never answered until the server stops."""
        return cls(hang=True)


@dataclass(frozen=True)
class ReceivedRequest:
    """One HTTP request as the fake server received it (recorded before any fault applies)."""

    method: str
    path: str
    """The request path without the query string, e.g. ``/v1/audio/transcriptions``."""
    headers: Mapping[str, str]
    """Request headers with lower-cased names (the last value wins for repeated names)."""
    form: Mapping[str, str]
    """Non-file multipart fields, the last value winning for repeated names."""
    form_lists: Mapping[str, tuple[str, ...]]
    """Every value of every non-file multipart field, in order (e.g. ``timestamp_granularities[]``)."""
    file_name: str | None
    file_content_type: str | None
    file_bytes: bytes = field(repr=False)
    """The uploaded file's exact bytes; empty when absent or when the body exceeded the size limit."""
    body_size: int
    """Size of the request body in bytes, whether or not it was kept."""
    fault: Fault | None
    """The fault applied to this request, or ``None`` when it was answered normally."""

    @property
    def timestamp_granularities(self) -> tuple[str, ...]:
        """The requested granularities, with or without the ``[]`` suffix on the field name."""
        return self.form_lists.get("timestamp_granularities[]", ()) + self.form_lists.get("timestamp_granularities", ())


TranscriptFor = Callable[[ReceivedRequest], str]
"""Computes a successful transcription's text from the request it answers."""

_FLAC_MAGIC: Final = b"fLaC"
_FLAC_STREAMINFO_TYPE: Final = 0
_FLAC_SAMPLES_BITS: Final = 36


def audio_seconds(data: bytes) -> float | None:
    """How long an uploaded FLAC or PCM WAV file lasts, from its header; ``None`` for other or broken files."""
    if data.startswith(_FLAC_MAGIC) and len(data) >= 26 and data[4] & 0x7F == _FLAC_STREAMINFO_TYPE:
        # STREAMINFO: 20 bits sample rate, 3 channels, 5 bits per sample, 36 total samples (0 when unknown).
        packed = int.from_bytes(data[18:26], "big")
        rate, samples = packed >> 44, packed & ((1 << _FLAC_SAMPLES_BITS) - 1)
        return samples / rate if rate and samples else None
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            frames, rate = wav.getnframes(), wav.getframerate()
    except (wave.Error, EOFError, struct.error):
        return None
    return frames / rate if rate else None


def describe_duration(request: ReceivedRequest) -> str:
    """A transcript naming the uploaded audio's length to the millisecond: ``"audio of 599.872 seconds."``."""
    seconds = audio_seconds(request.file_bytes)
    return "audio of unknown length." if seconds is None else f"audio of {seconds:.3f} seconds."


# --------------------------------------------------------------------------------------------
# Request parsing
# --------------------------------------------------------------------------------------------


class _MultipartError(Exception):
    """The multipart body cannot be parsed."""


@dataclass(frozen=True)
class _FilePart:
    name: str
    content_type: str | None
    data: bytes


@dataclass(frozen=True)
class _Form:
    fields: tuple[tuple[str, str], ...]
    file: _FilePart | None

    def last(self, name: str) -> str | None:
        values = [value for key, value in self.fields if key == name]
        return values[-1] if values else None

    def all(self, *names: str) -> tuple[str, ...]:
        return tuple(value for key, value in self.fields if key in names)


_PARAM_RE: Final = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def _parse_header_value(value: str) -> tuple[str, dict[str, str]]:
    """Split ``form-data; name="file"; filename="a.wav"`` into its main value and parameters."""
    main, _, _ = value.partition(";")
    params: dict[str, str] = {}
    for match in _PARAM_RE.finditer(value[len(main) :]):
        raw = match.group(2).strip()
        if len(raw) >= 2 and raw.startswith('"') and raw.endswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[match.group(1).lower()] = raw
    return main.strip().lower(), params


def _parse_part(part: bytes) -> tuple[str, dict[str, str], str | None, bytes]:
    """Return the field name, Content-Disposition parameters, content type and content of a part."""
    if part.startswith(b"\r\n"):
        raw_headers, content = b"", part[2:]
    else:
        raw_headers, separator, content = part.partition(b"\r\n\r\n")
        if not separator:
            raise _MultipartError("a multipart part has no header terminator")
    headers: dict[str, str] = {}
    for line in raw_headers.decode("utf-8", "replace").split("\r\n"):
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    disposition, params = _parse_header_value(headers.get("content-disposition", ""))
    if disposition != "form-data" or "name" not in params:
        raise _MultipartError("a multipart part lacks Content-Disposition: form-data; name=...")
    return params["name"], params, headers.get("content-type"), content


def _parse_multipart(body: bytes, boundary: str) -> _Form:
    if not boundary:
        raise _MultipartError("the multipart content-type has no boundary")
    delimiter = b"--" + boundary.encode("latin-1")
    position = body.find(delimiter)
    if position < 0:
        raise _MultipartError("the multipart body does not contain its boundary")
    position += len(delimiter)
    fields: list[tuple[str, str]] = []
    file: _FilePart | None = None
    while not body.startswith(b"--", position):
        if not body.startswith(b"\r\n", position):
            raise _MultipartError("malformed multipart boundary line")
        end = body.find(b"\r\n" + delimiter, position + 2)
        if end < 0:
            raise _MultipartError("the multipart body is not terminated")
        name, params, content_type, content = _parse_part(body[position + 2 : end])
        position = end + 2 + len(delimiter)
        if "filename" not in params:
            fields.append((name, content.decode("utf-8", "replace")))
        elif name == "file" and file is None:
            file = _FilePart(params["filename"], content_type, content)
    return _Form(tuple(fields), file)


# --------------------------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


def _json_reply(status: int, payload: object, headers: Mapping[str, str] | None = None) -> _Reply:
    return _Reply(status, json.dumps(payload).encode(), "application/json", headers or {})


class _ApiError(Exception):
    """An error answer in the real API's ``{"error": {...}}`` shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: _ErrorCode = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        error = {"message": message, "type": type_, "param": param, "code": code}
        self.reply = _json_reply(status, {"error": error}, headers)


def _fault_reply(fault: Fault, model: str | None) -> _Reply:
    assert fault.status is not None
    headers: dict[str, str] = {}
    retry_after = fault.retry_after
    if retry_after is None and fault.status == 429:
        retry_after = 1.0
    if retry_after is not None:
        headers["retry-after"] = str(math.ceil(retry_after))
        headers["retry-after-ms"] = str(round(retry_after * 1000))
    if fault.status == 429:
        headers.update({"x-ratelimit-limit-requests": "3", "x-ratelimit-remaining-requests": "0"})
    headers.update({name.lower(): value for name, value in fault.headers.items()})
    if fault.body is not None:
        content_type = headers.pop("content-type", "application/json")
        return _Reply(fault.status, fault.body, content_type, headers)
    fallback_type = "server_error" if fault.status >= 500 else "invalid_request_error"
    message, type_, code = _STATUS_ERRORS.get(fault.status, (f"HTTP {fault.status}", fallback_type, None))
    if fault.status == 429 and fault.error_code == "insufficient_quota":
        message, type_ = _QUOTA_MESSAGE, "insufficient_quota"
    elif fault.status == 429 and model:
        message = message.replace("for requests", f"for {model}")
    return _ApiError(
        fault.status,
        fault.message if fault.message is not None else message,
        type_=fault.error_type if fault.error_type is not None else type_,
        code=fault.error_code if fault.error_code is not None else code,
        headers=headers,
    ).reply


_QUOTA_MESSAGE: Final = (
    "You exceeded your current quota, please check your plan and billing details. For more information on "
    "this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors."
)
_NO_KEY_MESSAGE: Final = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using "
    "Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) "
    "if you're accessing the API from your browser and are prompted for a username and password. You can "
    "obtain an API key from https://platform.openai.com/account/api-keys."
)


def _mask_key(key: str) -> str:
    if len(key) <= 8:
        return "*" * len(key)
    return f"{key[:3]}{'*' * (len(key) - 7)}{key[-4:]}"


def _is_gpt_transcribe(model: str) -> bool:
    """Whether ``model`` is one of the ``gpt-4o-*transcribe`` family, which only speaks json and text."""
    return model.startswith("gpt-") and "transcribe" in model


def _format_timestamp(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


@dataclass(frozen=True)
class _Transcript:
    """Segments and words derived deterministically from a transcript string."""

    text: str

    @property
    def words(self) -> list[str]:
        return self.text.split()

    @property
    def duration(self) -> float:
        return len(self.words) * SECONDS_PER_WORD

    def segments(self, temperature: float) -> list[dict[str, Any]]:
        """One segment per sentence (a word ending in ``.``, ``!`` or ``?`` closes it)."""
        groups: list[list[int]] = [[]]
        for index, word in enumerate(self.words):
            groups[-1].append(index)
            if word.endswith((".", "!", "?")):
                groups.append([])
        segments: list[dict[str, Any]] = []
        for group in (g for g in groups if g):
            start = group[0] * SECONDS_PER_WORD
            words = [self.words[i] for i in group]
            segments.append(
                {
                    "id": len(segments),
                    "seek": int(start // 30) * 3000,
                    "start": start,
                    "end": (group[-1] + 1) * SECONDS_PER_WORD,
                    "text": " " + " ".join(words),
                    "tokens": [50364 + zlib.crc32(word.encode()) % 50000 for word in words],
                    "temperature": temperature,
                    "avg_logprob": -0.25,
                    "compression_ratio": 1.2,
                    "no_speech_prob": 0.01,
                }
            )
        return segments

    def word_timestamps(self) -> list[dict[str, Any]]:
        """One entry per word, stripped of surrounding punctuation like the real API's words."""
        stamps: list[dict[str, Any]] = []
        for index, word in enumerate(self.words):
            bare = word.strip(string.punctuation)
            if bare:
                start = index * SECONDS_PER_WORD
                stamps.append({"word": bare, "start": start, "end": start + SECONDS_PER_WORD})
        return stamps

    def subtitles(self, vtt: bool) -> str:
        blocks = ["WEBVTT\n"] if vtt else []
        for segment in self.segments(0.0):
            times = " --> ".join(_format_timestamp(segment[key], "." if vtt else ",") for key in ("start", "end"))
            number = "" if vtt else f"{segment['id'] + 1}\n"
            blocks.append(f"{number}{times}\n{segment['text'].strip()}\n")
        return "\n".join(blocks) + "\n"

    def usage(self, model: str, prompt: str) -> dict[str, Any]:
        if not _is_gpt_transcribe(model):
            return {"type": "duration", "seconds": math.ceil(self.duration)}
        audio_tokens = max(1, math.ceil(self.duration * 10))
        text_tokens = len(prompt.split())
        output_tokens = len(self.words)
        return {
            "type": "tokens",
            "input_tokens": audio_tokens + text_tokens,
            "input_token_details": {"text_tokens": text_tokens, "audio_tokens": audio_tokens},
            "output_tokens": output_tokens,
            "total_tokens": audio_tokens + text_tokens + output_tokens,
        }


@dataclass(frozen=True)
class _AudioRequest:
    """The validated options of a transcription or translation request."""

    task: str
    model: str
    response_format: str
    granularities: tuple[str, ...]
    temperature: float
    language_code: str
    prompt: str


def _validate_file(form: _Form) -> None:
    if form.file is None:
        raise _ApiError(400, "Missing required parameter: 'file'.", param="file", code="missing_required_parameter")
    name = form.file.name
    extension = name.rpartition(".")[2].lower() if "." in name else ""
    if extension not in SUPPORTED_EXTENSIONS:
        raise _ApiError(
            400,
            f"Invalid file format. Supported formats: {list(SUPPORTED_EXTENSIONS)}",
            param="file",
            code="invalid_value",
        )
    if not form.file.data:
        raise _ApiError(
            400,
            "Audio file is too short. Minimum audio length is 0.1 seconds.",
            param="file",
            code="audio_too_short",
        )


def _validate_temperature(text: str | None) -> float:
    try:
        temperature = float(text) if text else 0.0
    except ValueError:
        temperature = math.nan
    if not 0.0 <= temperature <= 1.0:
        raise _ApiError(
            400,
            f"Invalid 'temperature': expected a number between 0 and 1, got {text!r}.",
            param="temperature",
            code="invalid_value",
        )
    return temperature


def _validate_audio_request(path: str, form: _Form) -> _AudioRequest:
    """Check a parsed multipart request the way the real API does, raising :class:`_ApiError`."""
    model = form.last("model")
    if not model:
        raise _ApiError(400, "you must provide a model parameter")
    _validate_file(form)
    response_format = form.last("response_format") or "json"
    if response_format not in _RESPONSE_FORMATS:
        raise _ApiError(400, f"'{response_format}' is not one of {list(_RESPONSE_FORMATS)} - 'response_format'")
    if _is_gpt_transcribe(model) and response_format not in _GPT_TRANSCRIBE_FORMATS:
        raise _ApiError(
            400,
            f"response_format '{response_format}' is not compatible with model '{model}'. "
            "Use 'json' or 'text' instead.",
            param="response_format",
            code="unsupported_value",
        )
    granularities = form.all("timestamp_granularities[]", "timestamp_granularities")
    for granularity in granularities:
        if granularity not in _GRANULARITIES:
            raise _ApiError(400, f"'{granularity}' is not one of {list(_GRANULARITIES)} - 'timestamp_granularities'")
    temperature = _validate_temperature(form.last("temperature"))
    if form.last("stream") == "true":
        raise _ApiError(
            400,
            "The fake OpenAI server does not implement stream=true.",
            param="stream",
            code="unsupported_value",
        )
    return _AudioRequest(
        task="transcribe" if path == TRANSCRIPTIONS_PATH else "translate",
        model=model,
        response_format=response_format,
        granularities=granularities,
        temperature=temperature,
        language_code=(form.last("language") or "").lower(),
        prompt=form.last("prompt") or "",
    )


def _audio_reply(request: _AudioRequest, *, transcript: str, default_language: str) -> _Reply:
    """The successful answer to a validated request, shaped by its response_format."""
    result = _Transcript(transcript)
    headers = {"openai-model": request.model}
    if request.response_format == "text":
        return _Reply(200, (result.text + "\n").encode(), "text/plain; charset=utf-8", headers)
    if request.response_format in ("srt", "vtt"):
        subtitles = result.subtitles(vtt=request.response_format == "vtt")
        return _Reply(200, subtitles.encode(), "text/plain; charset=utf-8", headers)
    transcribing = request.task == "transcribe"
    payload: dict[str, Any] = {"text": result.text}
    if request.response_format == "verbose_json":
        language = _LANGUAGE_NAMES.get(request.language_code, default_language) if transcribing else "english"
        payload = {"task": request.task, "language": language, "duration": result.duration, **payload}
        if not request.granularities or "segment" in request.granularities:
            payload["segments"] = result.segments(request.temperature)
        if transcribing and "word" in request.granularities:
            payload["words"] = result.word_timestamps()
    if transcribing:
        payload["usage"] = result.usage(request.model, request.prompt)
    return _json_reply(200, payload, headers)


# --------------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Incoming:
    """A request as read off the socket, before any fault or validation."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes | None
    """The body, or ``None`` when it exceeded :data:`MAX_BODY_BYTES` and was discarded."""
    size: int
    content_type: str
    form: _Form | None
    form_error: str | None

    def record(self, fault: Fault | None) -> ReceivedRequest:
        form, file = self.form, self.form.file if self.form else None
        return ReceivedRequest(
            method=self.method,
            path=self.path,
            headers=self.headers,
            form=dict(form.fields) if form else {},
            form_lists=_group(form.fields) if form else {},
            file_name=file.name if file else None,
            file_content_type=file.content_type if file else None,
            file_bytes=file.data if file else b"",
            body_size=self.size,
            fault=fault,
        )


def _group(pairs: Sequence[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
    grouped: dict[str, tuple[str, ...]] = {}
    for name, value in pairs:
        grouped[name] = (*grouped.get(name, ()), value)
    return grouped


class _HTTPServer(http.server.HTTPServer):
    """An HTTPServer that runs each connection in a thread the owning fake can track and join."""

    def __init__(self, owner: FakeOpenAIServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall on a broken resolver.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name=f"fake-openai-conn-{client_address[1]}",
            daemon=True,
        )
        self.owner._track(request, thread)
        thread.start()

    def _serve_connection(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            self.owner._untrack(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (a call cancelled or past its deadline) is expected, not an error to print over
        # another test's output.
        if not self.owner._stopping.is_set() and not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-openai/1.0"
    sys_version = ""
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet."""

    def do_POST(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    # -- plumbing ----------------------------------------------------------------------------

    def _read_body(self) -> tuple[bytes | None, int]:
        """Read the whole body; return it (or ``None`` past the size limit) and its size."""
        chunks: list[bytes] = []
        size = 0

        def read_exactly(count: int) -> None:
            nonlocal size
            while count > 0:
                data = self.rfile.read(min(count, _READ_CHUNK))
                if not data:
                    raise ConnectionError("the client closed the connection mid-body")
                size += len(data)
                count -= len(data)
                if size <= MAX_BODY_BYTES:
                    chunks.append(data)
                else:
                    chunks.clear()

        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            while chunk_size := int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16):
                read_exactly(chunk_size)
                self.rfile.readline(1024)
            while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                pass  # trailer fields
        else:
            read_exactly(int(self.headers.get("content-length") or 0))
        return (b"".join(chunks) if size <= MAX_BODY_BYTES else None), size

    def _read_request(self) -> _Incoming:
        body, size = self._read_body()
        headers = {name.lower(): value for name, value in self.headers.items()}
        content_type, params = _parse_header_value(headers.get("content-type", ""))
        form: _Form | None = None
        form_error: str | None = None
        if body is not None and content_type == "multipart/form-data":
            try:
                form = _parse_multipart(body, params.get("boundary", ""))
            except _MultipartError as exc:
                form_error = str(exc)
        return _Incoming(
            method=self.command,
            path=urlsplit(self.path).path,
            headers=headers,
            body=body,
            size=size,
            content_type=content_type,
            form=form,
            form_error=form_error,
        )

    def _send(self, reply: _Reply, request_id: str) -> None:
        self.send_response(reply.status)
        self.send_header("content-type", reply.content_type)
        self.send_header("content-length", str(len(reply.body)))
        self.send_header("openai-version", "2020-10-01")
        self.send_header("openai-processing-ms", "7")
        self.send_header("x-request-id", request_id)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)
        self.wfile.flush()

    def _reset(self) -> None:
        """Close the socket with SO_LINGER 0, so the peer receives a TCP RST instead of a FIN."""
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()  # releases the makefile() reference so close() closes the descriptor now
        self.connection.close()

    # -- request handling ---------------------------------------------------------------------

    def _handle(self) -> None:
        owner = self.server.owner
        request_id = f"req_{uuid.uuid4().hex}"
        try:
            incoming = self._read_request()
        except (OSError, ValueError):
            self.close_connection = True
            return
        fault = owner._next_fault()
        received = incoming.record(fault)
        owner._record(received)
        if fault is None:
            self._send(self._normal_reply(incoming, received), request_id)
            return
        if fault.delay_seconds and owner._stopping.wait(fault.delay_seconds):
            self.close_connection = True  # the server is stopping: drop the request unanswered
        elif fault.hang:
            owner._stopping.wait()
            self.close_connection = True
        elif fault.reset:
            self.close_connection = True
            self._reset()
        elif fault.malformed_json:
            truncated = b'{"text": "' + owner.transcript.encode() + b'", "usage": {"type": '
            headers = {name.lower(): value for name, value in fault.headers.items()}
            self._send(_Reply(200, truncated, "application/json", headers), request_id)
        elif fault.status is not None:
            model = incoming.form.last("model") if incoming.form else None
            self._send(_fault_reply(fault, model), request_id)
        else:
            self._send(self._normal_reply(incoming, received), request_id)

    def _normal_reply(self, incoming: _Incoming, received: ReceivedRequest) -> _Reply:
        try:
            self._check_envelope(incoming)
            assert incoming.form is not None
            request = _validate_audio_request(incoming.path, incoming.form)
        except _ApiError as error:
            return error.reply
        owner = self.server.owner
        transcript_for = owner.transcript_for
        transcript = owner.transcript if transcript_for is None else transcript_for(received)
        return _audio_reply(request, transcript=transcript, default_language=owner.language)

    def _check_envelope(self, incoming: _Incoming) -> None:
        """Authentication, routing, size limit and content type, in the real API's order."""
        expected_key = self.server.owner.api_key
        if expected_key is not None:
            scheme, _, key = incoming.headers.get("authorization", "").partition(" ")
            key = key.strip()
            if scheme.lower() != "bearer" or not key:
                raise _ApiError(401, _NO_KEY_MESSAGE)
            if key != expected_key:
                raise _ApiError(
                    401,
                    f"Incorrect API key provided: {_mask_key(key)}. You can find your API key at "
                    "https://platform.openai.com/account/api-keys.",
                    code="invalid_api_key",
                )
        if incoming.method != "POST" or incoming.path not in (TRANSCRIPTIONS_PATH, TRANSLATIONS_PATH):
            raise _ApiError(404, f"Invalid URL ({incoming.method} {incoming.path})")
        if incoming.body is None:
            raise _ApiError(
                413,
                f"Maximum content size limit ({MAX_BODY_BYTES}) exceeded ({incoming.size} bytes read)",
                type_="server_error",
            )
        if incoming.content_type != "multipart/form-data":
            raise _ApiError(
                400,
                f"Invalid Content-Type header ({incoming.headers.get('content-type', '')}), expected "
                "multipart/form-data. (HINT: If you're using curl, you can pass -H "
                "'Content-Type: multipart/form-data')",
            )
        if incoming.form is None:
            raise _ApiError(400, f"Could not parse multipart form: {incoming.form_error}")


class FakeOpenAIServer:
    """A real HTTP server on 127.0.0.1 that answers like OpenAI's audio endpoints.

    Use it as a context manager; ``base_url`` is ready for ``openai.OpenAI(base_url=...)``.
    ``transcript``, ``transcript_for``, ``language`` and ``api_key`` may be changed at any time
    and apply to the next request.
    """

    transcript: str
    """The text every successful transcription returns; segments and words derive from it."""
    transcript_for: TranscriptFor | None
    """When set, each successful transcription's text is ``transcript_for(request)`` instead of ``transcript``."""
    language: str
    """The language name reported by verbose_json when the request names no known language code."""
    api_key: str | None
    """The bearer key requests must carry; ``None`` disables the check."""

    def __init__(
        self,
        *,
        api_key: str | None = DEFAULT_API_KEY,
        transcript: str = DEFAULT_TRANSCRIPT,
        transcript_for: TranscriptFor | None = None,
        language: str = DEFAULT_LANGUAGE,
    ) -> None:
        self.api_key = api_key
        self.transcript = transcript
        self.transcript_for = transcript_for
        self.language = language
        self._lock = threading.Lock()
        self._received = threading.Condition(self._lock)
        self._requests: list[ReceivedRequest] = []
        self._faults: deque[Fault] = deque()
        self._default_fault: Fault | None = None
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._serve_thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        """Bind an ephemeral port and serve in a daemon thread; returns ``self``."""
        if self._httpd is not None:
            raise RuntimeError("the fake OpenAI server is already started")
        self._stopping.clear()
        self._httpd = _HTTPServer(self)
        self._serve_thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL},
            name=f"fake-openai-{self.port}",
            daemon=True,
        )
        self._serve_thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop every open connection (hung ones too) and join all threads."""
        httpd, serve_thread = self._httpd, self._serve_thread
        if httpd is None or serve_thread is None:
            return
        self._stopping.set()
        httpd.shutdown()  # no new connections are accepted once this returns
        serve_thread.join(_JOIN_TIMEOUT)
        with self._lock:
            connections = dict(self._connections)
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + _JOIN_TIMEOUT
        for thread in connections.values():
            thread.join(max(0.0, deadline - time.monotonic()))
        httpd.server_close()
        self._httpd = self._serve_thread = None
        leaked = [thread.name for thread in connections.values() if thread.is_alive()]
        if leaked or serve_thread.is_alive():
            raise RuntimeError(f"fake OpenAI server threads did not stop: {leaked}")

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses ------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the fake OpenAI server is not started")
        return self._httpd.server_port

    @property
    def base_url(self) -> str:
        """The SDK base URL, e.g. ``http://127.0.0.1:54321/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- recorded requests -------------------------------------------------------------------

    @property
    def requests(self) -> list[ReceivedRequest]:
        """A snapshot of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def wait_for_requests(self, count: int, timeout: float = 2.0) -> list[ReceivedRequest]:
        """Block until at least ``count`` requests were received; raise ``TimeoutError`` otherwise."""
        with self._received:
            if not self._received.wait_for(lambda: len(self._requests) >= count, timeout):
                raise TimeoutError(f"expected {count} requests, received {len(self._requests)}")
            return list(self._requests)

    # -- faults ---------------------------------------------------------------------------------

    def enqueue(self, *faults: Fault) -> None:
        """Apply ``faults`` to the next requests, one each in FIFO order, then behave normally again."""
        with self._lock:
            self._faults.extend(faults)

    def set_default_fault(self, fault: Fault | None) -> None:
        """Apply ``fault`` to every request for which no enqueued fault is pending (``None`` clears it)."""
        with self._lock:
            self._default_fault = fault

    def clear_faults(self) -> None:
        """Drop enqueued faults and the default fault."""
        with self._lock:
            self._faults.clear()
            self._default_fault = None

    @property
    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    # -- used by the handler threads ---------------------------------------------------------

    def _next_fault(self) -> Fault | None:
        with self._lock:
            return self._faults.popleft() if self._faults else self._default_fault

    def _record(self, request: ReceivedRequest) -> None:
        with self._received:
            self._requests.append(request)
            self._received.notify_all()

    def _track(self, sock: socket.socket, thread: threading.Thread) -> None:
        with self._lock:
            self._connections[sock] = thread

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._connections.pop(sock, None)
