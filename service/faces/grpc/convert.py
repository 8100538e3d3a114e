"""Conversions between transcribe.v1 messages and domain values."""

from __future__ import annotations

from google.longrunning import operations_proto_pb2 as lro
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

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
    VoiceActivity,
    Word,
)
from service.errors import FieldViolation, InvalidConfig
from service.faces.grpc.errors import internal_rich_status, rich_status
from service.jobs.model import Job, JobState
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


_LIVE_FORMATS = {
    pb.LIVE_AUDIO_FORMAT_LINEAR16: LiveFormat.LINEAR16,
    pb.LIVE_AUDIO_FORMAT_WEBM_OPUS: LiveFormat.WEBM_OPUS,
    pb.LIVE_AUDIO_FORMAT_OGG_OPUS: LiveFormat.OGG_OPUS,
}
_VOICE_EVENTS = {
    VoiceActivity.SPEECH_BEGIN: pb.VOICE_ACTIVITY_EVENT_TYPE_SPEECH_BEGIN,
    VoiceActivity.SPEECH_END: pb.VOICE_ACTIVITY_EVENT_TYPE_SPEECH_END,
}


def live_options_from_proto(live: pb.LiveConfig) -> LiveOptions:
    """Domain live options from a LiveConfig message."""
    violations = []
    audio_format = _LIVE_FORMATS.get(live.audio_format)
    if audio_format is None:
        violations.append(FieldViolation("live_config.audio_format", "must be LINEAR16, WEBM_OPUS or OGG_OPUS"))
    pcm = None
    if audio_format is LiveFormat.LINEAR16:
        pcm = RawPcmFormat(sample_rate_hz=live.sample_rate_hertz, channels=live.audio_channel_count)
        if not 8000 <= pcm.sample_rate_hz <= 192000:
            violations.append(FieldViolation("live_config.sample_rate_hertz", "must be between 8000 and 192000"))
        if not 1 <= pcm.channels <= 8:
            violations.append(FieldViolation("live_config.audio_channel_count", "must be between 1 and 8"))
    if live.config.HasField("explicit_decoding_config"):
        violations.append(FieldViolation("live_config.config.explicit_decoding_config", "set audio_format instead"))
    if violations or audio_format is None:
        raise InvalidConfig("the live config is invalid", violations=violations)
    try:
        transcription = options_from_proto(live.config)
    except InvalidConfig as error:
        raise error.within("live_config") from None
    return LiveOptions(
        transcription=transcription,
        audio_format=audio_format,
        pcm=pcm,
        interim_results=live.interim_results,
        voice_activity_events=live.voice_activity_events,
        speech_start_timeout=_seconds(live.speech_start_timeout) if live.HasField("speech_start_timeout") else None,
        speech_end_timeout=_seconds(live.speech_end_timeout) if live.HasField("speech_end_timeout") else None,
    )


def live_event_to_proto(event: LiveEvent) -> pb.TranscribeLiveResponse:
    """A response carrying one live result or one voice activity event."""
    if isinstance(event, LiveResult):
        result = pb.LiveResult(
            text=event.text,
            is_final=event.is_final,
            stability=event.stability,
            start_offset=duration(event.start),
            end_offset=duration(event.end),
            words=[_word(word) for word in event.words],
            language_code=event.language,
        )
        return pb.TranscribeLiveResponse(results=[result])
    return pb.TranscribeLiveResponse(
        voice_activity=pb.VoiceActivityEvent(type=_VOICE_EVENTS[event.kind], offset=duration(event.offset))
    )


def backend_to_proto(kind: BackendKind) -> pb.Backend.ValueType:
    """The Backend enum value of a backend kind."""
    return _BACKENDS_OUT[kind]


def _seconds(value: Duration) -> float:
    return value.ToNanoseconds() / 1e9


def _word(word: Word) -> pb.WordInfo:
    return pb.WordInfo(
        start_offset=duration(word.start), end_offset=duration(word.end), word=word.text, probability=word.probability
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
                words=[_word(word) for word in segment.words],
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


OPERATIONS_PREFIX = "operations/"
_JOB_STATES = {
    JobState.QUEUED: pb.JOB_STATE_QUEUED,
    JobState.RUNNING: pb.JOB_STATE_RUNNING,
    JobState.SUCCEEDED: pb.JOB_STATE_SUCCEEDED,
    JobState.FAILED: pb.JOB_STATE_FAILED,
    JobState.CANCELLED: pb.JOB_STATE_CANCELLED,
}


def job_to_operation(job: Job) -> lro.Operation:
    """The google.longrunning.Operation of a job: metadata always; response or error once it is done."""
    metadata = pb.TranscriptionJobMetadata(
        state=_JOB_STATES[job.state],
        progress_percent=min(100, int(job.progress * 100)),
        create_time=_timestamp(job.create_time),
        update_time=_timestamp(job.update_time),
        uri=job.shown_uri,
        attempt=job.attempt,
        worker=job.worker,
    )
    if job.start_time is not None:
        metadata.start_time.CopyFrom(_timestamp(job.start_time))
    if job.expire_time is not None:
        metadata.expire_time.CopyFrom(_timestamp(job.expire_time))
    if job.duration is not None:
        metadata.audio_duration.CopyFrom(duration(job.duration))
    operation = lro.Operation(name=OPERATIONS_PREFIX + job.id, done=job.state.done)
    operation.metadata.Pack(metadata)
    if job.transcript is not None:
        operation.response.Pack(pb.SubmitTranscriptionResponse(transcript=transcript_to_proto(job.transcript)))
    elif job.failure is not None:
        error = job.failure.error()
        operation.error.CopyFrom(internal_rich_status() if error is None else rich_status(error))
    return operation


def job_state_from_name(name: str) -> JobState | None:
    """The state a filter names, with or without the JOB_STATE_ prefix, in any case; None for an unknown name."""
    wanted = name.upper().removeprefix("JOB_STATE_")
    return next((state for state in JobState if state.name == wanted), None)


def _timestamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(round(seconds * 1e9))
    return stamp
