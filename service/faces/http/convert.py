"""Conversions between the HTTP face's wire formats (OpenAI's forms and bodies, live messages) and domain values."""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi.responses import JSONResponse, PlainTextResponse, Response

from service.domain import (
    BackendKind,
    LiveEvent,
    LiveFormat,
    LiveOptions,
    LiveResult,
    ModelDescription,
    RawPcmFormat,
    Task,
    Transcript,
    TranscriptionOptions,
)
from service.engines.languages import language_names
from service.errors import FieldViolation, InvalidConfig
from service.faces.grpc.convert import transcript_to_proto
from transcribe_client.formats import to_srt, to_vtt

RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
GRANULARITIES = ("word", "segment")
DEFAULT_MODEL = "whisper-1"
"""The name OpenAI clients send by default; it means the server's default backend and model."""
_GRANULARITY_FIELDS = ("timestamp_granularities[]", "timestamp_granularities")
_TRUE, _FALSE = frozenset({"true", "1", "yes", "on"}), frozenset({"false", "0", "no", "off", ""})


@dataclass(frozen=True)
class AudioRequest:
    """One request of the audio routes: the domain options, and how the answer is written."""

    options: TranscriptionOptions
    response_format: str = "json"
    granularities: frozenset[str] = frozenset({"segment"})
    stream: bool = False


def route_model(name: str, models: Sequence[ModelDescription]) -> tuple[BackendKind | None, str]:
    """The backend and model a name picks.

    Empty or `whisper-1`: the server's default backend and its default model. A name the local backend lists: that
    local model. Any other name: the API backend when it is configured (the API judges the name), else the local
    backend, which refuses it as a model it does not serve.
    """
    if name in ("", DEFAULT_MODEL):
        return None, ""
    if any(m.name == name and m.backend is BackendKind.LOCAL for m in models):
        return BackendKind.LOCAL, name
    if any(m.backend is BackendKind.OPENAI for m in models):
        return BackendKind.OPENAI, name
    return BackendKind.LOCAL, name


def audio_request(fields: Mapping[str, list[str]], task: Task, models: Sequence[ModelDescription]) -> AudioRequest:
    """The request the form's fields make; raises InvalidConfig naming every field with a value it cannot take."""
    violations: list[FieldViolation] = []

    def one(name: str) -> str | None:
        values = fields.get(name, [])
        if len(values) > 1:
            violations.append(FieldViolation(name, "must be given at most once"))
        return values[0].strip() if values else None

    response_format = one("response_format") or "json"
    if response_format not in RESPONSE_FORMATS:
        violations.append(FieldViolation("response_format", f"must be one of {', '.join(RESPONSE_FORMATS)}"))
    temperature = None
    if (given := one("temperature")) is not None:
        try:
            temperature = float(given)
        except ValueError:
            violations.append(FieldViolation("temperature", "must be a number"))
    granularities = frozenset(value.strip() for name in _GRANULARITY_FIELDS for value in fields.get(name, []))
    if not granularities <= set(GRANULARITIES):
        violations.append(FieldViolation("timestamp_granularities[]", f"must be among {', '.join(GRANULARITIES)}"))
    stream = (one("stream") or "").lower()
    if stream not in _TRUE | _FALSE:
        violations.append(FieldViolation("stream", "must be true or false"))
    model = one("model") or ""
    language = one("language") if task is Task.TRANSCRIBE else None
    prompt = one("prompt") or ""
    if violations:
        raise InvalidConfig("the request is invalid", violations=violations)
    backend, model = route_model(model, models)
    verbose = response_format == "verbose_json"
    return AudioRequest(
        options=TranscriptionOptions(
            backend=backend,
            model=model,
            language=language or None,
            prompt=prompt,
            temperature=temperature,
            task=task,
            word_timestamps=verbose and "word" in granularities,
        ),
        response_format=response_format,
        granularities=granularities or frozenset({"segment"}),
        stream=task is Task.TRANSCRIBE and stream in _TRUE,
    )


def transcript_response(transcript: Transcript, request: AudioRequest) -> Response:
    """The transcript in the response format asked for."""
    match request.response_format:
        case "text":
            return PlainTextResponse(f"{transcript.text}\n")
        case "srt":
            return PlainTextResponse(to_srt(transcript_to_proto(transcript)))
        case "vtt":
            return PlainTextResponse(to_vtt(transcript_to_proto(transcript)), media_type="text/vtt")
        case "verbose_json":
            return JSONResponse(verbose_json(transcript, request))
    body: dict[str, Any] = {"text": transcript.text}
    if request.options.task is Task.TRANSCRIBE:
        body["usage"] = usage(transcript)
    return JSONResponse(body)


def usage(transcript: Transcript) -> dict[str, Any]:
    """OpenAI's usage of a duration-billed model: whole seconds of audio."""
    return {"type": "duration", "seconds": math.ceil(transcript.duration)}


def verbose_json(transcript: Transcript, request: AudioRequest) -> dict[str, Any]:
    """OpenAI's verbose_json: duration, language name, text, segments (and words when asked for)."""
    task = request.options.task
    body: dict[str, Any] = {
        "task": task.value,
        "language": language_names().get(transcript.language, transcript.language),
        "duration": round(transcript.duration, 3),
        "text": transcript.text,
    }
    if "segment" in request.granularities:
        temperature = request.options.temperature or 0.0
        body["segments"] = [
            {
                "id": number,
                "seek": round(segment.start * 100),
                "start": round(segment.start, 3),
                "end": round(segment.end, 3),
                "text": segment.text,
                "tokens": [],
                "temperature": temperature,
                "avg_logprob": segment.avg_logprob,
                "compression_ratio": _compression_ratio(segment.text),
                "no_speech_prob": segment.no_speech_prob,
            }
            for number, segment in enumerate(transcript.segments)
        ]
    if task is Task.TRANSCRIBE and "word" in request.granularities:
        body["words"] = [
            {"word": word.text.strip(), "start": round(word.start, 3), "end": round(word.end, 3)}
            for segment in transcript.segments
            for word in segment.words
        ]
    if task is Task.TRANSCRIBE:
        body["usage"] = usage(transcript)
    return body


def _compression_ratio(text: str) -> float:
    # Whisper's own measure of repetition: text bytes over their zlib size.
    data = text.encode()
    return round(len(data) / len(zlib.compress(data)), 3) if data else 0.0


def stream_events(transcript: Transcript) -> Iterator[str]:
    """Server-sent events: a `transcript.text.delta` per segment, then `transcript.text.done` with the whole text."""
    texts = [s.text.strip() for s in transcript.segments if s.text.strip()] or [transcript.text]
    for number, text in enumerate(t for t in texts if t):
        yield delta_event(text, first=number == 0)
    yield done_event(transcript)


def delta_event(text: str, *, first: bool) -> str:
    """The `transcript.text.delta` event of one segment's text (later ones start with a space)."""
    return _event({"type": "transcript.text.delta", "delta": text if first else f" {text}"})


def done_event(transcript: Transcript) -> str:
    """The `transcript.text.done` event, with the whole text."""
    return _event({"type": "transcript.text.done", "text": transcript.text})


def error_event(body: dict[str, Any]) -> str:
    """An `error` event carrying OpenAI's error body, for a stream that fails once its deltas have begun."""
    return _event({"type": "error", **body})


def _event(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def model_objects(models: Sequence[ModelDescription], created: int) -> list[dict[str, Any]]:
    """OpenAI model objects: `whisper-1` (the server's default), then every model each backend lists."""
    objects = [{"id": DEFAULT_MODEL, "object": "model", "created": created, "owned_by": "transcribe"}]
    for model in models:
        if all(o["id"] != model.name for o in objects):
            objects.append({"id": model.name, "object": "model", "created": created, "owned_by": model.backend.value})
    return objects


LIVE_FORMATS = {"webm-opus": LiveFormat.WEBM_OPUS, "ogg-opus": LiveFormat.OGG_OPUS, "linear16": LiveFormat.LINEAR16}
"""The `audio_format` values of a live config: MediaRecorder's containers, or headerless 16-bit little-endian PCM."""
_LIVE_TEXT = ("model", "language", "prompt", "audio_format")
_LIVE_FLAGS = {"interim_results": True, "voice_activity_events": False, "word_timestamps": False}
_LIVE_NUMBERS = ("temperature", "speech_start_timeout", "speech_end_timeout")
_LIVE_PCM = {"sample_rate": (16000, 8000, 192000), "channels": (1, 1, 8)}
_LIVE_FIELDS = frozenset({"type", *_LIVE_TEXT, *_LIVE_FLAGS, *_LIVE_NUMBERS, *_LIVE_PCM})


def live_options(config: object, models: Sequence[ModelDescription]) -> LiveOptions:
    """The options a live config message asks for; raises InvalidConfig naming every field it cannot take."""
    if not isinstance(config, dict):
        raise InvalidConfig("the first message must be the live config, a JSON object")
    violations: list[FieldViolation] = []
    if config.get("type", "config") != "config":
        violations.append(FieldViolation("type", "must be config (or left out) in the first message"))
    violations.extend(FieldViolation(name, "is not a live config field") for name in sorted(set(config) - _LIVE_FIELDS))
    text: dict[str, str] = {}
    for name in _LIVE_TEXT:
        value = config.get(name, "")
        if isinstance(value, str):
            text[name] = value.strip()
        else:
            violations.append(FieldViolation(name, "must be a string"))
    flags = {name: config.get(name, default) for name, default in _LIVE_FLAGS.items()}
    violations.extend(FieldViolation(name, "must be true or false") for name, v in flags.items() if type(v) is not bool)
    numbers = _live_numbers(config, violations)
    audio_format = LIVE_FORMATS.get(text.get("audio_format", ""))
    if audio_format is None:
        violations.append(FieldViolation("audio_format", f"must be one of {', '.join(LIVE_FORMATS)}"))
    pcm = _live_pcm(config, audio_format, violations)
    if violations or audio_format is None:
        problems = "; ".join(f"{v.field} {v.description}" for v in violations)
        raise InvalidConfig(f"the live config is invalid: {problems}", violations=violations)
    backend, model = route_model(text["model"], models)
    return LiveOptions(
        transcription=TranscriptionOptions(
            backend=backend,
            model=model,
            language=text["language"] or None,
            prompt=text["prompt"],
            temperature=numbers["temperature"],
            word_timestamps=bool(flags["word_timestamps"]),
        ),
        audio_format=audio_format,
        pcm=RawPcmFormat(pcm["sample_rate"], pcm["channels"]) if audio_format is LiveFormat.LINEAR16 else None,
        interim_results=bool(flags["interim_results"]),
        voice_activity_events=bool(flags["voice_activity_events"]),
        speech_start_timeout=numbers["speech_start_timeout"],
        speech_end_timeout=numbers["speech_end_timeout"],
    )


def _live_numbers(config: dict[str, Any], violations: list[FieldViolation]) -> dict[str, float | None]:
    numbers: dict[str, float | None] = {}
    for name in _LIVE_NUMBERS:
        value = config.get(name)
        if value is not None and (type(value) not in (int, float) or not math.isfinite(value)):
            violations.append(FieldViolation(name, "must be a number"))
            value = None
        elif name == "speech_start_timeout" and value is not None and value <= 0:
            violations.append(FieldViolation(name, "must be a positive number of seconds"))
        numbers[name] = value
    return numbers


def _live_pcm(
    config: dict[str, Any], audio_format: LiveFormat | None, violations: list[FieldViolation]
) -> dict[str, int]:
    pcm: dict[str, int] = {}
    for name, (default, low, high) in _LIVE_PCM.items():
        value = config.get(name, default)
        if type(value) is not int or not low <= value <= high:
            violations.append(FieldViolation(name, f"must be a whole number from {low} to {high}"))
        elif name in config and audio_format is not LiveFormat.LINEAR16:
            violations.append(FieldViolation(name, "applies to linear16 audio only"))
        pcm[name] = value
    return pcm


def live_event_message(event: LiveEvent) -> dict[str, Any]:
    """The JSON message of a live result (interim or final) or of a voice activity event; times in seconds."""
    if not isinstance(event, LiveResult):
        return {"type": "voice_activity", "event": event.kind.value, "offset": round(event.offset, 3)}
    message: dict[str, Any] = {
        "type": "result",
        "text": event.text,
        "is_final": event.is_final,
        "stability": event.stability,
        "start": round(event.start, 3),
        "end": round(event.end, 3),
        "language": event.language,
    }
    if event.words:
        message["words"] = [
            {
                "word": word.text.strip(),
                "start": round(word.start, 3),
                "end": round(word.end, 3),
                "probability": round(word.probability, 3),
            }
            for word in event.words
        ]
    return message
