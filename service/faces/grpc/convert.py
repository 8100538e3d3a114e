"""Conversions between transcribe.v1 messages and domain values."""

from __future__ import annotations

from google.protobuf.duration_pb2 import Duration

from service.domain import BackendKind, ModelDescription, RawPcmFormat, Task, Transcript, TranscriptionOptions
from service.errors import FieldViolation, InvalidConfig
from transcribe.v1 import transcribe_service_pb2 as pb

_BACKENDS = {
    pb.BACKEND_UNSPECIFIED: None,
    pb.BACKEND_OPENAI: BackendKind.OPENAI,
    pb.BACKEND_LOCAL: BackendKind.LOCAL,
}
_BACKENDS_OUT = {kind: value for value, kind in _BACKENDS.items() if kind is not None}
_TASKS = {
    pb.TASK_UNSPECIFIED: Task.TRANSCRIBE,
    pb.TASK_TRANSCRIBE: Task.TRANSCRIBE,
    pb.TASK_TRANSLATE: Task.TRANSLATE,
}


def options_from_proto(config: pb.TranscriptionConfig) -> TranscriptionOptions:
    """Domain options from a config message; enum values this server does not know are rejected."""
    violations = []
    if config.backend not in _BACKENDS:
        violations.append(FieldViolation("config.backend", "is not a known Backend value"))
    if config.task not in _TASKS:
        violations.append(FieldViolation("config.task", "is not a known Task value"))
    raw_pcm = None
    if config.HasField("explicit_decoding_config"):
        decoding = config.explicit_decoding_config
        if decoding.encoding != pb.AUDIO_ENCODING_LINEAR16:
            violations.append(
                FieldViolation("config.explicit_decoding_config.encoding", "must be AUDIO_ENCODING_LINEAR16")
            )
        raw_pcm = RawPcmFormat(sample_rate_hz=decoding.sample_rate_hertz, channels=decoding.audio_channel_count)
    if violations:
        raise InvalidConfig("the transcription config is invalid", violations=violations)
    return TranscriptionOptions(
        backend=_BACKENDS[config.backend],
        model=config.model.strip(),
        language=config.language_code.strip() or None,
        prompt=config.prompt,
        temperature=config.temperature if config.HasField("temperature") else None,
        task=_TASKS[config.task],
        word_timestamps=config.enable_word_time_offsets,
        raw_pcm=raw_pcm,
    )


def duration(seconds: float) -> Duration:
    """A Duration message from seconds."""
    message = Duration()
    message.FromNanoseconds(round(max(seconds, 0.0) * 1e9))
    return message


def transcript_to_proto(transcript: Transcript) -> pb.Transcript:
    """A Transcript message from a domain transcript."""
    return pb.Transcript(
        text=transcript.text,
        language_code=transcript.language,
        language_probability=transcript.language_probability,
        audio_duration=duration(transcript.duration),
        backend=_BACKENDS_OUT[transcript.backend],
        model=transcript.model,
        segments=[
            pb.TranscriptSegment(
                start_offset=duration(segment.start),
                end_offset=duration(segment.end),
                text=segment.text,
                average_log_probability=segment.avg_logprob,
                no_speech_probability=segment.no_speech_prob,
                words=[
                    pb.WordInfo(
                        start_offset=duration(word.start),
                        end_offset=duration(word.end),
                        word=word.text,
                        probability=word.probability,
                    )
                    for word in segment.words
                ],
            )
            for segment in transcript.segments
        ],
    )


def model_to_proto(model: ModelDescription) -> pb.ModelInfo:
    """A ModelInfo message from a domain model description."""
    return pb.ModelInfo(
        name=model.name,
        backend=_BACKENDS_OUT[model.backend],
        engine=model.engine,
        loaded=model.loaded,
        multilingual=model.multilingual,
        is_default=model.is_default,
    )
