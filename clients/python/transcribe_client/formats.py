"""Render a Transcript as plain text, JSON, SubRip (SRT) or WebVTT; a live response or a job as JSON."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, Literal, get_args

from google.protobuf import duration_pb2, json_format

from transcribe.v1 import transcribe_service_pb2 as pb
from transcribe_client.jobs import Job

__all__ = [
    "FORMATS",
    "OutputFormat",
    "job_to_dict",
    "job_to_json",
    "live_to_dict",
    "live_to_json",
    "render",
    "to_json",
    "to_srt",
    "to_text",
    "to_vtt",
]

OutputFormat = Literal["text", "json", "srt", "vtt"]
FORMATS: tuple[str, ...] = get_args(OutputFormat)


def to_text(transcript: pb.Transcript) -> str:
    """The transcript's text on one line, ending with a newline (empty when there is no speech)."""
    text = transcript.text.strip()
    if not text:
        text = " ".join(segment.text.strip() for segment in transcript.segments if segment.text.strip())
    return f"{text}\n" if text else ""


def to_json(transcript: pb.Transcript) -> str:
    """The transcript as indented proto3 JSON (camelCase names, every field present)."""
    return (
        json_format.MessageToJson(
            transcript,
            indent=2,
            always_print_fields_with_no_presence=True,
            ensure_ascii=False,
        )
        + "\n"
    )


def to_srt(transcript: pb.Transcript) -> str:
    """The transcript as SubRip subtitles, one numbered cue per segment."""
    blocks = [
        f"{number}\n{_timestamp(start, ',')} --> {_timestamp(end, ',')}\n{text}\n"
        for number, (start, end, text) in enumerate(_cues(transcript), start=1)
    ]
    return "\n".join(blocks)


def to_vtt(transcript: pb.Transcript) -> str:
    """The transcript as WebVTT subtitles, one cue per segment."""
    blocks = ["WEBVTT\n"]
    blocks.extend(
        f"{_timestamp(start, '.')} --> {_timestamp(end, '.')}\n{_vtt_escape(text)}\n"
        for start, end, text in _cues(transcript)
    )
    return "\n".join(blocks)


_RENDERERS: dict[str, Callable[[pb.Transcript], str]] = {
    "text": to_text,
    "json": to_json,
    "srt": to_srt,
    "vtt": to_vtt,
}


def render(transcript: pb.Transcript, output_format: str = "text") -> str:
    """Render the transcript in one of FORMATS."""
    try:
        renderer = _RENDERERS[output_format]
    except KeyError:
        raise ValueError(f"unknown format {output_format!r}; expected one of {', '.join(FORMATS)}") from None
    return renderer(transcript)


def live_to_dict(response: pb.TranscribeLiveResponse) -> dict[str, Any]:
    """A live response as plain data: results (text, is_final, stability, offsets in seconds, the language when
    known, words on finals that have them), the voice activity event (type "speech_begin" or "speech_end", offset in
    seconds) and the backend and model (in the first response); fields the response does not carry are left out."""
    data: dict[str, Any] = {}
    if response.results:
        data["results"] = [_live_result(result) for result in response.results]
    if response.HasField("voice_activity"):
        event = response.voice_activity
        name = pb.VoiceActivityEventType.Name(event.type).removeprefix("VOICE_ACTIVITY_EVENT_TYPE_").lower()
        data["voice_activity"] = {"type": name, "offset": _seconds(event.offset)}
    if response.backend != pb.BACKEND_UNSPECIFIED:
        data["backend"] = pb.Backend.Name(response.backend).removeprefix("BACKEND_").lower()
    if response.model:
        data["model"] = response.model
    return data


def live_to_json(response: pb.TranscribeLiveResponse) -> str:
    """A live response as one line of JSON (see live_to_dict), without the newline."""
    return json.dumps(live_to_dict(response), ensure_ascii=False)


def job_to_dict(job: Job) -> dict[str, Any]:
    """A job as plain data: name, state (lower case), done, progress_percent, times (RFC 3339 UTC), audio_duration
    (seconds), uri, attempt, worker, and the transcript (proto3 JSON, as to_json writes it) or the error (code,
    message, reason, metadata); fields the job does not have are left out."""
    data: dict[str, Any] = {
        "name": job.name,
        "state": job.state.value.lower(),
        "done": job.done,
        "progress_percent": job.progress_percent,
    }
    for key, value in (
        ("create_time", job.create_time),
        ("start_time", job.start_time),
        ("update_time", job.update_time),
        ("expire_time", job.expire_time),
    ):
        if value is not None:
            data[key] = _rfc3339(value)
    if job.audio_duration is not None:
        data["audio_duration"] = round(job.audio_duration.total_seconds(), 3)
    if job.uri:
        data["uri"] = job.uri
    data["attempt"] = job.attempt
    if job.worker:
        data["worker"] = job.worker
    if job.transcript is not None:
        data["transcript"] = json.loads(to_json(job.transcript))
    if job.error is not None:
        data["error"] = {
            "code": job.error.code.name,
            "message": job.error.message,
            "reason": job.error.reason,
            "metadata": dict(job.error.metadata),
        }
    return data


def job_to_json(job: Job) -> str:
    """A job as indented JSON (see job_to_dict), ending with a newline."""
    return json.dumps(job_to_dict(job), indent=2, ensure_ascii=False) + "\n"


def _rfc3339(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _live_result(result: pb.LiveResult) -> dict[str, Any]:
    data: dict[str, Any] = {
        "text": result.text,
        "is_final": result.is_final,
        "stability": round(result.stability, 3),
        "start_offset": _seconds(result.start_offset),
        "end_offset": _seconds(result.end_offset),
    }
    if result.language_code:
        data["language_code"] = result.language_code
    if result.words:
        data["words"] = [
            {
                "word": word.word,
                "start_offset": _seconds(word.start_offset),
                "end_offset": _seconds(word.end_offset),
                "probability": round(word.probability, 3),
            }
            for word in result.words
        ]
    return data


def _seconds(duration: duration_pb2.Duration) -> float:
    return round(duration.seconds + duration.nanos / 1e9, 3)


def _milliseconds(duration: duration_pb2.Duration) -> int:
    return max(0, duration.seconds * 1000 + round(duration.nanos / 1_000_000))


def _cues(transcript: pb.Transcript) -> Iterator[tuple[int, int, str]]:
    """(start ms, end ms, text) for every segment with text, or one cue for the whole audio."""
    if not transcript.segments:
        text = _one_line(transcript.text)
        if text:
            yield 0, _milliseconds(transcript.audio_duration), text
        return
    for segment in transcript.segments:
        text = _one_line(segment.text)
        if not text:
            continue
        start = _milliseconds(segment.start_offset)
        yield start, max(start, _milliseconds(segment.end_offset)), text


def _one_line(text: str) -> str:
    # A blank line ends a cue in both formats, so a cue's text is kept on one line.
    return " ".join(text.split())


def _timestamp(milliseconds: int, separator: str) -> str:
    hours, rest = divmod(milliseconds, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{millis:03d}"


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
