"""Typed server settings, read once from the environment by the composition root."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.audio.fetch import parse_allowed_ports, parse_allowlist

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
OPENAI_MAX_UPLOAD_BYTES = 25 * MIB
"""The OpenAI API's limit on one request."""
HOUR = 3600.0
DAY = 24 * HOUR
WEEK = 7 * DAY

BackendName = Literal["local", "openai"]
LocalEngineName = Literal["faster-whisper", "openai-whisper"]


class Settings(BaseSettings):
    """Every setting of the server; environment names are TRANSCRIBE_<FIELD> unless noted."""

    model_config = SettingsConfigDict(
        env_prefix="TRANSCRIBE_",
        extra="ignore",
        frozen=True,
        use_attribute_docstrings=True,
        allow_inf_nan=False,
    )

    host: str = "[::]"
    """Address to listen on; "[::]" listens on every interface (IPv4 and IPv6)."""
    port: int = Field(default=50051, ge=0, le=65535)
    """TCP port; 0 picks a free port (tests)."""
    http_host: str = "0.0.0.0"  # noqa: S104 (the HTTP face and its page are reached from outside the pod)
    """Address of the OpenAI-compatible HTTP face and the page; "::" listens on IPv6 (and IPv4 where dual-stack)."""
    http_port: int = Field(default=8000, ge=-1, le=65535)
    """TCP port of the OpenAI-compatible HTTP face and the page; 0 picks a free port; -1 turns the HTTP face off."""
    default_backend: BackendName = "local"
    """Backend used when a request says BACKEND_UNSPECIFIED."""

    max_audio_bytes: int = Field(default=GIB, ge=1024, le=16 * GIB)
    """Largest audio upload in bytes, for both backends: 1 KiB to 16 GiB, default 1 GiB. Bounds disk, not memory:
    the upload and, for the local backend, its 16 kHz 16-bit decode (115 MB per hour of audio) are on disk while a
    call runs. The API backend sends a large recording in pieces under the API's 25 MiB per request."""
    local_max_audio_bytes: int | None = Field(default=None, ge=1024, le=16 * GIB)
    """Largest upload in bytes for the local backend alone (1 KiB to 16 GiB); unset means max_audio_bytes."""
    max_message_bytes: int = Field(default=64 * MIB, ge=MIB, le=512 * MIB)
    """Largest single gRPC message in bytes: 1 MiB to 512 MiB, default 64 MiB. A unary Transcribe request carries
    the whole file in one message, held in memory, so this caps unary uploads; bigger files use TranscribeStream."""
    max_audio_seconds: float = Field(default=10 * HOUR, gt=0, le=DAY)
    """Longest audio accepted, in seconds: above 0, at most 86400 (24 hours), default 36000 (10 hours). Bounds disk
    (the 16 kHz 16-bit decode is 115 MB per hour) and time per call; memory stays flat because long recordings are
    transcribed in windows."""
    temp_dir: Path | None = None
    """Parent folder for upload files; unset uses the system temp folder (honours TMPDIR)."""
    local_queue_size: int = Field(default=8, ge=0, le=10_000)
    """Received and probed recordings allowed to wait for a local worker (0 to 10000); beyond workers + queue,
    calls get RESOURCE_EXHAUSTED at once. Uploads still arriving do not count."""
    openai_queue_size: int = Field(default=64, ge=0, le=10_000)
    """Received and probed recordings allowed to wait for an API worker (0 to 10000); beyond workers + queue, calls
    get RESOURCE_EXHAUSTED at once."""
    max_concurrent_uploads: int = Field(default=64, ge=1, le=10_000)
    """Recordings being received or probed at once, over all backends (1 to 10000)."""
    stream_idle_timeout_seconds: float = Field(default=30.0, gt=0, le=HOUR)
    """Seconds (above 0, at most 3600): a stream that sends nothing for this long ends with DEADLINE_EXCEEDED."""
    stream_linger_seconds: float = Field(default=2.0, ge=0, le=HOUR)
    """After refusing a stream the client is still sending, read and discard its messages for up to this many
    seconds (at most 3600) before sending the status, so asyncio clients receive the status instead of INTERNAL;
    0 turns this off."""
    stream_linger_bytes: int = Field(default=8 * MIB, ge=0, le=GIB)
    """The most bytes read and discarded that way per refused stream (0 to 1 GiB)."""
    overload_retry_after_seconds: float = Field(default=1.0, ge=0, le=HOUR)
    """The retry delay in seconds (0 to 3600) suggested (RetryInfo) when a call is refused for capacity."""
    grace_period_seconds: float = Field(default=30.0, ge=0, le=DAY)
    """Seconds (0 to 86400) in-flight calls may finish after SIGTERM/SIGINT before they are cancelled; 0 cancels
    them at once."""
    keepalive_time_seconds: float = Field(default=60.0, ge=1, le=DAY)
    """Interval in seconds (1 to 86400) of server keepalive pings on idle connections."""
    max_connection_age_seconds: float = Field(default=300.0, ge=1, le=WEEK)
    """Connections are closed (gracefully) after this many seconds (1 to 604800, a week), so clients re-resolve and
    spread over new replicas."""
    uri_allowlist: str = ""
    """Comma-separated host names and CIDR ranges (IPv4 or IPv6) audio may be fetched from although they are not
    public, e.g. "minio.internal,10.20.0.0/16"; empty (the default) fetches from public unicast addresses only."""
    uri_allowed_ports: str = "80,443"
    """Comma-separated TCP ports (1 to 65535) audio URIs may use, allowlisted hosts included; default 80 and 443."""
    uri_connect_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    """Seconds (above 0, at most 300) to resolve an audio URI's host and connect to it, per hop."""
    uri_read_timeout_seconds: float = Field(default=30.0, gt=0, le=HOUR)
    """Seconds (above 0, at most 3600) an audio URI's server may send nothing before the fetch ends."""
    uri_timeout_seconds: float = Field(default=600.0, gt=0, le=DAY)
    """Seconds (above 0, at most 86400) one whole fetch of an audio URI may take, redirects included."""
    uri_max_redirects: int = Field(default=5, ge=0, le=10)
    """Redirects (0 to 10) followed from an audio URI, each checked like the URI itself; 0 follows none."""

    live_max_sessions: int = Field(default=4, ge=0, le=1000)
    """Live transcription streams at once (0 turns live transcription off); one more is refused at once with
    RESOURCE_EXHAUSTED and RetryInfo."""
    live_workers: int = Field(default=2, ge=1, le=64)
    """Threads that recognize live utterances, apart from the file workers, so a long file never delays a live
    final; while both run they share the cores (the OS schedules local_workers + live_workers threads)."""
    live_max_session_seconds: float = Field(default=4 * HOUR, gt=0, le=DAY)
    """Seconds of audio one live stream may carry (at most 86400); beyond, it ends with OUT_OF_RANGE."""
    live_speech_end_seconds: float = Field(default=0.5, ge=0.2, le=5.0)
    """The pause, in seconds (0.2 to 5), that ends an utterance when the stream's config does not say."""
    live_interim_interval_seconds: float = Field(default=1.5, ge=0.1, le=10.0)
    """Seconds of new speech (0.1 to 10) between two interim recognitions of an utterance."""

    data_dir: Path = Field(default_factory=lambda: Path.home() / ".local" / "share" / "transcribe")
    """Folder of the jobs: their records (SQLite, embedded mode) and each uploaded job's audio until it is done. With
    a broker, every server and worker must see the same folder (a shared volume) for uploaded jobs."""
    broker_url: SecretStr | None = None
    """redis://host:port/db of a Redis server: jobs then run on Celery workers (`transcribe-worker`) and their
    records live in that Redis, shared by every server. Unset runs jobs inside the server (embedded)."""
    jobs_workers: int = Field(default=2, ge=1, le=64)
    """Jobs run at once by one server (embedded) or one worker process (1 to 64); they share the local backend's
    workers with direct calls."""
    jobs_queue_size: int = Field(default=1000, ge=1, le=1_000_000)
    """Jobs allowed to wait to run (1 to 1000000); one more is refused with RESOURCE_EXHAUSTED (JOB_QUEUE_FULL)."""
    jobs_retention_seconds: float = Field(default=DAY, ge=1, le=90 * DAY)
    """Seconds a finished job's record and result are kept before they are deleted (1 s to 90 days, default a
    day); a job's audio is deleted as soon as the job is done."""
    jobs_lease_seconds: float = Field(default=30.0, ge=1, le=HOUR)
    """A running job's worker renews its lease about every second; a job whose lease is this many seconds old (1 to
    3600) was lost with its worker and runs again on another."""

    local_engine: LocalEngineName = "faster-whisper"
    """Local engine: faster-whisper (CTranslate2, the fastest here) or openai-whisper (the reference)."""
    local_model: str = "tiny.en"
    """Default local model: a bundled name (tiny.en, base), an engine model name, or a folder/file path."""
    local_workers: int = Field(default=2, ge=1, le=64)
    """Local transcriptions running at once, 1 to 64 (threads; faster-whisper num_workers; openai-whisper
    replicas)."""
    local_cpu_threads: int = Field(default=0, ge=0, le=256)
    """CPU threads per local transcription, at most 256; 0 means cores / local_workers (at least 1)."""
    local_beam_size: int = Field(default=5, ge=1, le=16)
    """Beam width of local decoding at temperature 0, 1 to 16."""
    local_batch_size: int = Field(default=4, ge=1, le=64)
    """Clips of at most 30 s per task of a windowed recording, decoded as one batch (at most 64); 1 transcribes every
    recording whole, without windows."""
    local_batched_min_seconds: float = Field(default=60.0, ge=0, le=DAY)
    """Recordings at least this many seconds long (0 to 86400) are transcribed in windows (flat memory, every worker
    for a lone recording); 0 windows everything."""
    local_vad_filter: bool = True
    """faster-whisper: skip non-speech (Silero VAD), which suppresses hallucinated text on silence."""
    local_max_loaded_models: int = Field(default=2, ge=1, le=64)
    """Most local models kept in memory at once (1 to 64); the least recently used idle one is unloaded."""
    local_model_idle_seconds: float = Field(default=900.0, gt=0, le=WEEK)
    """Unload a local model (except while in use) after this many seconds without requests (at most 604800, a
    week)."""
    local_compute_type: str = "int8"
    """faster-whisper compute type on CPU (int8 or float32; the bundled float16 weights cannot run here)."""
    model_cache_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "transcribe")
    """Where converted and joined model files are cached."""

    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("TRANSCRIBE_OPENAI_API_KEY", "OPENAI_API_KEY")
    )
    """API key of the OpenAI-compatible backend (OPENAI_API_KEY); unset disables that backend."""
    openai_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("TRANSCRIBE_OPENAI_BASE_URL", "OPENAI_BASE_URL")
    )
    """Base URL of any OpenAI-compatible server (OPENAI_BASE_URL); unset uses api.openai.com."""
    openai_model: str = "gpt-4o-mini-transcribe"
    """Default model of the API backend."""
    openai_timeout_seconds: float = Field(default=120.0, gt=0, le=HOUR)
    """Timeout of one upstream API attempt, in seconds (above 0, at most 3600)."""
    openai_max_retries: int = Field(default=2, ge=0, le=10)
    """Upstream retries (with backoff, 0 to 10) on connection errors, 408, 409, 429 and 5xx; 0 never retries."""
    openai_workers: int = Field(default=8, ge=1, le=256)
    """Upstream API calls in flight at once, 1 to 256."""
    openai_max_request_bytes: int = Field(default=24 * MIB, ge=MIB, le=OPENAI_MAX_UPLOAD_BYTES)
    """Largest file sent to the API in one request (1 MiB to 25 MiB, the API's limit; the default leaves 1 MiB for
    the multipart envelope). Larger recordings are cut at pauses and sent in pieces."""
    openai_piece_seconds: float = Field(default=600.0, ge=30.0, le=HOUR)
    """Longest piece of a recording split for the API, in seconds (30 to 3600); capped so that a piece as 16 kHz
    FLAC always fits openai_max_request_bytes."""
    openai_piece_concurrency: int = Field(default=4, ge=1, le=64)
    """Pieces of one split recording sent at once (1 to 64), within openai_workers. Each piece's prompt ends with
    the text of the nearest earlier piece already transcribed; with 1, always the previous piece."""

    auth_tokens: SecretStr | None = None
    """Comma-separated bearer tokens; when set (or auth_tokens_file), every RPC but health needs one."""
    auth_tokens_file: Path | None = None
    """A file of bearer tokens, one per line (# starts a comment)."""
    tls_cert_file: Path | None = None
    """PEM server certificate chain; with tls_key_file, the server speaks TLS only."""
    tls_key_file: Path | None = None
    """PEM private key of tls_cert_file."""
    tls_client_ca_file: Path | None = None
    """PEM CA bundle; when set, clients must present a certificate it signed (mutual TLS)."""

    log_level: str = "INFO"
    """Python logging level name: DEBUG, INFO, WARNING, ERROR or CRITICAL (any case)."""
    log_format: Literal["text", "json"] = "text"
    """text, or json: one JSON object per line (with request_id and, for calls, method, code, latency)."""
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    """Port of the Prometheus /metrics endpoint; 0 picks a free port; unset turns metrics off."""
    metrics_host: str = "0.0.0.0"  # noqa: S104 (a metrics endpoint is scraped from outside the pod)
    """Address of the metrics endpoint."""

    @field_validator("uri_allowlist")
    @classmethod
    def _uri_allowlist_parses(cls, value: str) -> str:
        parse_allowlist(value)
        return value

    @field_validator("uri_allowed_ports")
    @classmethod
    def _uri_allowed_ports_parse(cls, value: str) -> str:
        parse_allowed_ports(value)
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level_is_known(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in logging.getLevelNamesMapping():
            raise ValueError("should be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @model_validator(mode="after")
    def _default_backend_is_usable(self) -> Settings:
        if self.default_backend == "openai" and self.openai_api_key is None:
            raise ValueError(
                "TRANSCRIBE_DEFAULT_BACKEND=openai needs an API key: set OPENAI_API_KEY "
                "(and OPENAI_BASE_URL for a compatible server), or use TRANSCRIBE_DEFAULT_BACKEND=local"
            )
        return self

    @model_validator(mode="after")
    def _tls_files_come_together(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("set both TRANSCRIBE_TLS_CERT_FILE and TRANSCRIBE_TLS_KEY_FILE, or neither")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("TRANSCRIBE_TLS_CLIENT_CA_FILE needs TRANSCRIBE_TLS_CERT_FILE and TRANSCRIBE_TLS_KEY_FILE")
        for path in (self.tls_cert_file, self.tls_key_file, self.tls_client_ca_file, self.auth_tokens_file):
            if path is not None and not path.is_file():
                raise ValueError(f"{path} is not a readable file")
        return self

    def bearer_tokens(self) -> list[str]:
        """Every configured bearer token (empty when authentication is off)."""
        tokens = []
        if self.auth_tokens is not None:
            tokens += [t.strip() for t in self.auth_tokens.get_secret_value().split(",")]
        if self.auth_tokens_file is not None:
            for line in self.auth_tokens_file.read_text().splitlines():
                tokens.append(line.split("#", 1)[0].strip())
        return [t for t in tokens if t]

    def max_bytes_for(self, backend: BackendName) -> int:
        """The upload limit of one backend."""
        if backend == "local" and self.local_max_audio_bytes is not None:
            return self.local_max_audio_bytes
        return self.max_audio_bytes


def env_names(field: str) -> list[str]:
    """The environment variables a setting is read from, by field name or by one of its aliases."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        names = [c for c in alias.choices if isinstance(c, str)] if isinstance(alias, AliasChoices) else []
        if field == name or field in names:
            return names or [f"{prefix}{name}".upper()]
    return [field.upper()]


def describe_invalid(error: ValidationError) -> str:
    """One line naming each invalid setting's environment variable and what is wrong with its value."""
    problems = []
    for detail in error.errors(include_url=False, include_input=False):
        message = str(detail["msg"]).removeprefix("Value error, ")
        if location := detail["loc"]:
            message = f"{' or '.join(env_names(str(location[0])))}: {message}"
        problems.append(" ".join(message.split()))
    return "; ".join(problems)
