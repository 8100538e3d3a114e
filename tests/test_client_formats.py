"""Tests for rendering a Transcript as text, JSON, SRT and WebVTT."""

from __future__ import annotations

import json

import pytest
from google.protobuf import duration_pb2

from transcribe.v1 import transcribe_service_pb2 as pb
from transcribe_client.formats import FORMATS, render, to_json, to_srt, to_text, to_vtt


def duration(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromMilliseconds(round(seconds * 1000))
    return value


def segment(start: float, end: float, text: str) -> pb.TranscriptSegment:
    return pb.TranscriptSegment(start_offset=duration(start), end_offset=duration(end), text=text)


@pytest.fixture
def transcript() -> pb.Transcript:
    """A transcript with an hour-long segment, an empty segment and markup characters."""
    return pb.Transcript(
        text=" Hello there. General <Kenobi> & co.",
        language_code="en",
        language_probability=0.5,
        audio_duration=duration(3725.25),
        backend=pb.BACKEND_LOCAL,
        model="base",
        segments=[
            segment(1.5, 3.0, " Hello there."),
            segment(3.0, 3.0, "   "),
            segment(3.0, 3725.25, " General <Kenobi>\n& co."),
        ],
    )


def test_text_is_the_stripped_transcript(transcript: pb.Transcript) -> None:
    """Text output is the whole text without the model's leading space, ending in a newline."""
    assert to_text(transcript) == "Hello there. General <Kenobi> & co.\n"
    assert to_text(pb.Transcript()) == ""


def test_srt_numbers_cues_and_uses_comma_milliseconds(transcript: pb.Transcript) -> None:
    """SRT has numbered cues with HH:MM:SS,mmm times and skips segments without text."""
    assert to_srt(transcript) == (
        "1\n00:00:01,500 --> 00:00:03,000\nHello there.\n\n2\n00:00:03,000 --> 01:02:05,250\nGeneral <Kenobi> & co.\n"
    )


def test_vtt_has_header_dot_milliseconds_and_escapes(transcript: pb.Transcript) -> None:
    """WebVTT starts with its header, uses HH:MM:SS.mmm times and escapes markup characters."""
    assert to_vtt(transcript) == (
        "WEBVTT\n"
        "\n"
        "00:00:01.500 --> 00:00:03.000\n"
        "Hello there.\n"
        "\n"
        "00:00:03.000 --> 01:02:05.250\n"
        "General &lt;Kenobi&gt; &amp; co.\n"
    )


def test_without_segments_one_cue_spans_the_audio() -> None:
    """A transcript with only text becomes one cue from zero to the audio duration."""
    only_text = pb.Transcript(text=" Just text.", audio_duration=duration(2.5))
    assert to_srt(only_text) == "1\n00:00:00,000 --> 00:00:02,500\nJust text.\n"
    assert to_vtt(only_text) == "WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nJust text.\n"
    assert to_srt(pb.Transcript()) == ""
    assert to_vtt(pb.Transcript()) == "WEBVTT\n"


def test_json_uses_proto3_json_names(transcript: pb.Transcript) -> None:
    """JSON output is proto3 JSON: camelCase names, enum names and durations as seconds strings."""
    data = json.loads(to_json(transcript))
    assert data["text"] == " Hello there. General <Kenobi> & co."
    assert data["languageCode"] == "en"
    assert data["languageProbability"] == 0.5
    assert data["audioDuration"] == "3725.250s"
    assert data["backend"] == "BACKEND_LOCAL"
    assert data["segments"][0]["startOffset"] == "1.500s"
    assert data["segments"][0]["endOffset"] == "3s"
    assert data["segments"][0]["noSpeechProbability"] == 0


def test_render_dispatches_by_name(transcript: pb.Transcript) -> None:
    """render() picks the renderer by format name and rejects unknown names."""
    assert FORMATS == ("text", "json", "srt", "vtt")
    assert render(transcript, "srt") == to_srt(transcript)
    assert render(transcript) == to_text(transcript)
    with pytest.raises(ValueError, match="unknown format"):
        render(transcript, "docx")
