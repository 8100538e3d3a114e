"""transcribe-cli: transcribe audio files or live audio, run transcription jobs, list models and check health."""

from __future__ import annotations

import argparse
import contextlib
import errno
import itertools
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any, Protocol, TypedDict

import grpc
from google.protobuf import json_format
from tqdm import tqdm

from transcribe.v1 import transcribe_service_pb2 as pb
from transcribe_client.client import (
    DEFAULT_TARGET,
    LIVE_CHUNK_SECONDS,
    Audio,
    BackendName,
    PcmFormat,
    TaskName,
    TranscribeClient,
)
from transcribe_client.errors import TranscribeError
from transcribe_client.formats import FORMATS, job_to_dict, job_to_json, live_to_json, render
from transcribe_client.jobs import MAX_PAGE_SIZE, Job, JobState

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_LOCAL_ERROR",
    "EXIT_NOT_SERVING",
    "EXIT_OK",
    "EXIT_RPC_BASE",
    "EXIT_USAGE",
    "LIVE_SAMPLE_RATE",
    "build_parser",
    "main",
    "paced",
]

PROG = "transcribe-cli"
EXIT_OK = 0
EXIT_LOCAL_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_SERVING = 3
EXIT_RPC_BASE = 64
EXIT_INTERRUPTED = 130

_COMMANDS = ("transcribe", "submit", "jobs", "live", "health", "models")
_TOP_LEVEL_FLAGS = ("-h", "--help")
_SUFFIX_FORMATS = {".json": "json", ".srt": "srt", ".vtt": "vtt", ".txt": "text"}
_TARGET_SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:", "vsock:")
LIVE_SAMPLE_RATE = 16000
"""`live FILE` decodes any container to 16 kHz mono LINEAR16, the rate the models hear."""
_CLEAR_LINE = "\r\x1b[2K"
_STATE_NAMES = tuple(state.value.lower() for state in JobState if state is not JobState.UNSPECIFIED)

_EPILOG = f"""\
`{PROG} FILE [options]` is short for `{PROG} transcribe FILE [options]`.
`{PROG} live FILE` plays FILE at real-time pace and prints results as they come;
`arecord -f S16_LE -r 16000 -c 1 | {PROG} live -` transcribes a microphone.
`{PROG} submit FILE` starts a job on the server and prints its name; `--wait`
waits for its transcript. `{PROG} jobs list|get|wait|cancel|delete` follow jobs.

exit codes: 0 success; 1 local error (such as a missing file); 2 usage error;
3 health reports a status other than SERVING; 64 + the gRPC status code when
the call fails (grpcurl's convention: 67 INVALID_ARGUMENT, 68 DEADLINE_EXCEEDED,
72 RESOURCE_EXHAUSTED, 78 UNAVAILABLE, 80 UNAUTHENTICATED), and when a job that
is waited for fails (its own code; 65 CANCELLED when it was cancelled, 68 when
--wait-timeout passes first); 130 interrupted.
"""


class _UsageError(Exception):
    """A command-line mistake found after parsing, reported with exit code 2."""


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be zero or more: {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _connection_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection")
    group.add_argument(
        "--address",
        default=os.environ.get("TRANSCRIBE_ADDRESS") or DEFAULT_TARGET,
        help="server address: HOST:PORT, a gRPC target such as dns:///HOST:PORT, or comma-separated "
        "IP:PORT addresses to balance over (default: $TRANSCRIBE_ADDRESS or %(default)s)",
    )
    group.add_argument(
        "--timeout", type=_positive_float, help="deadline of the call in seconds (default: 300; none for live)"
    )
    group.add_argument(
        "--token",
        default=os.environ.get("TRANSCRIBE_TOKEN") or None,
        help="bearer token sent as authorization metadata (default: $TRANSCRIBE_TOKEN)",
    )
    group.add_argument("--tls", action="store_true", help="use TLS with the system's root certificates")
    group.add_argument("--ca-cert", metavar="FILE", help="PEM root certificates to verify the server (TLS)")
    group.add_argument("--cert", metavar="FILE", help="PEM client certificate chain (mutual TLS)")
    group.add_argument("--key", metavar="FILE", help="PEM client private key (mutual TLS)")
    return parent


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with the transcribe, live, health and models subcommands."""
    connection = _connection_options()
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Transcribe audio with a transcribe.v1.TranscribeService server.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(
        dest="command", metavar="{transcribe,live,submit,jobs,health,models}", required=True
    )

    transcribe = commands.add_parser(
        "transcribe", parents=[connection], help="transcribe an audio file (the default command)"
    )
    _add_audio_options(
        transcribe,
        stream_help="upload in chunks with TranscribeStream (default: for files over 4 MiB and standard input)",
    )
    transcribe.add_argument(
        "--format",
        choices=FORMATS,
        help="output format (default: from the --output suffix, else text)",
    )
    transcribe.add_argument("--output", "-o", metavar="FILE", help="write the result here, not to stdout")
    transcribe.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    _add_submit_parser(commands, connection)
    _add_jobs_parser(commands, connection)
    _add_live_parser(commands, connection)

    health = commands.add_parser("health", parents=[connection], help="check the server's health")
    health.add_argument("--service", default="", help="the service to check (default: the whole server)")

    models = commands.add_parser("models", parents=[connection], help="list the server's models")
    models.add_argument("--format", choices=("text", "json"), default="text")
    return parser


def _add_audio_options(parser: argparse.ArgumentParser, *, stream_help: str) -> None:
    """FILE or --uri, streaming and the transcription config: the options of transcribe and submit."""
    parser.add_argument(
        "file", metavar="FILE", nargs="?", help="the audio file, or - to read standard input (or give --uri)"
    )
    parser.add_argument("--uri", metavar="URL", help="an http or https URL the server fetches the audio from")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--stream", dest="stream", action="store_true", default=None, help=stream_help)
    mode.add_argument("--no-stream", dest="stream", action="store_false", help="send the file in one message")
    parser.add_argument("--backend", choices=("local", "openai"), help="default: the server's")
    parser.add_argument("--model", default="", help="a model name from `models` (default: the backend's)")
    parser.add_argument("--language", default="", help="spoken language, e.g. en (default: detect)")
    parser.add_argument("--task", choices=("transcribe", "translate"), default="transcribe")
    parser.add_argument("--prompt", default="", help="text that guides style and spelling")
    parser.add_argument("--temperature", type=float, help="sampling temperature from 0 to 1")
    parser.add_argument("--words", action="store_true", help="request word timestamps")
    parser.add_argument("--pcm-rate", type=_positive_int, metavar="HZ", help="the input is headerless LINEAR16 at HZ")
    parser.add_argument(
        "--pcm-channels", type=_positive_int, metavar="N", help="channels of headerless input (default: 1)"
    )


def _add_wait_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait-timeout",
        type=_non_negative_float,
        metavar="SECONDS",
        help="give up waiting after SECONDS, exit 68 and leave the job running (default: wait until it is done)",
    )


def _add_submit_parser(commands: Any, connection: argparse.ArgumentParser) -> None:
    submit = commands.add_parser(
        "submit",
        parents=[connection],
        help="start a transcription job on the server and print its name (--wait: its transcript)",
        description="Start a transcription job: the server stores the audio (or the URL) and returns at once with "
        "the job's operation name, which `jobs wait|get|cancel|delete` take. With --wait, show the job's progress on "
        "standard error (redrawn in place on a terminal, a line per change elsewhere) and print the transcript when "
        "it is done. --timeout is the deadline of each call, not of the job.",
    )
    _add_audio_options(
        submit,
        stream_help="upload in chunks with SubmitTranscriptionStream (default: for files and standard input)",
    )
    submit.add_argument("--wait", action="store_true", help="wait for the job and print its transcript")
    _add_wait_timeout(submit)
    submit.add_argument(
        "--format",
        choices=FORMATS,
        help="with --wait, the transcript's format (default: from the --output suffix, else text); without it, "
        "json prints the job as JSON",
    )
    submit.add_argument("--output", "-o", metavar="FILE", help="write the result here, not to stdout")
    submit.add_argument("--quiet", "-q", action="store_true", help="no upload bar, no job progress")


def _add_jobs_parser(commands: Any, connection: argparse.ArgumentParser) -> None:
    jobs = commands.add_parser(
        "jobs",
        help="list, get, wait for, cancel or delete transcription jobs",
        description="Follow the transcription jobs that `submit` started, by their operation names.",
    )
    actions = jobs.add_subparsers(dest="jobs_command", metavar="{list,get,wait,cancel,delete}", required=True)

    listing = actions.add_parser(
        "list", parents=[connection], help="list jobs, newest first: name, state, progress, created, duration"
    )
    listing.add_argument(
        "--state",
        action="append",
        choices=_STATE_NAMES,
        help="only jobs in this state (repeat for any of several)",
    )
    listing.add_argument("--limit", type=_positive_int, metavar="N", help="at most N jobs (default: all)")
    listing.add_argument(
        "--page-size",
        type=_positive_int,
        metavar="N",
        help=f"jobs per call, up to {MAX_PAGE_SIZE} (default: --limit, else the server's 50)",
    )
    listing.add_argument("--format", choices=("text", "json"), default="text", help="json: an array of jobs")

    get = actions.add_parser("get", parents=[connection], help="show one job")
    get.add_argument("name", metavar="NAME", help='the operation name, "operations/..."')
    get.add_argument("--format", choices=("text", "json"), default="text")

    wait = actions.add_parser(
        "wait",
        parents=[connection],
        help="wait for a job and print its transcript; a failed job exits with its error's code",
    )
    wait.add_argument("name", metavar="NAME", help='the operation name, "operations/..."')
    _add_wait_timeout(wait)
    wait.add_argument(
        "--format", choices=FORMATS, help="the transcript's format (default: from the --output suffix, else text)"
    )
    wait.add_argument("--output", "-o", metavar="FILE", help="write the transcript here, not to stdout")
    wait.add_argument("--quiet", "-q", action="store_true", help="no progress")

    cancel = actions.add_parser(
        "cancel", parents=[connection], help="cancel a job: a queued job never starts, a running one stops"
    )
    cancel.add_argument("name", metavar="NAME", help='the operation name, "operations/..."')

    delete = actions.add_parser(
        "delete", parents=[connection], help="delete a job's record and audio (cancelling it if it still runs)"
    )
    delete.add_argument("name", metavar="NAME", help='the operation name, "operations/..."')


def _add_live_parser(commands: Any, connection: argparse.ArgumentParser) -> None:
    live = commands.add_parser(
        "live",
        parents=[connection],
        help="transcribe while the audio plays (TranscribeLive): results as they are recognized",
        description="Send audio at the pace it is spoken and print results as they come: on a terminal the "
        "interim text of the current utterance is redrawn in place and every final result is printed as a line; "
        "elsewhere only final results are printed. Interrupt once to stop sending and get the last results, twice "
        "to quit at once. A live call has no deadline unless --timeout is given.",
    )
    live.add_argument(
        "file",
        metavar="FILE",
        help="an audio file in any container, decoded to 16 kHz mono; or - to read headerless 16-bit "
        "little-endian PCM from standard input (see --pcm-rate)",
    )
    live.add_argument(
        "--speed",
        type=_non_negative_float,
        metavar="N",
        help="play FILE at N times real time; 0 sends it as fast as possible (default: 1; standard input is "
        "sent as it arrives)",
    )
    interim = live.add_mutually_exclusive_group()
    interim.add_argument(
        "--interim",
        dest="interim",
        action="store_true",
        default=None,
        help="ask for interim results (default: on a terminal or with --format json)",
    )
    interim.add_argument("--no-interim", dest="interim", action="store_false", help="final results only")
    live.add_argument(
        "--vad-events", action="store_true", help="ask for voice activity events (speech began, speech ended)"
    )
    live.add_argument(
        "--endpoint-ms",
        type=_positive_int,
        metavar="MS",
        help="the pause that ends an utterance, in milliseconds (default: the server's, 500)",
    )
    live.add_argument("--format", choices=("text", "json"), default="text", help="json: one object per response")
    live.add_argument("--backend", choices=("local", "openai"), help="default: the server's")
    live.add_argument("--model", default="", help="a model name from `models` (default: the backend's)")
    live.add_argument("--language", default="", help="spoken language, e.g. en (default: detect)")
    live.add_argument("--task", choices=("transcribe", "translate"), default="transcribe")
    live.add_argument("--prompt", default="", help="text that guides style and spelling")
    live.add_argument("--temperature", type=float, help="sampling temperature from 0 to 1")
    live.add_argument("--words", action="store_true", help="request word timestamps (shown with --format json)")
    live.add_argument(
        "--pcm-rate",
        type=_positive_int,
        metavar="HZ",
        help="the input is headerless LINEAR16 at HZ (standard input always is; default there: 16000)",
    )
    live.add_argument(
        "--pcm-channels", type=_positive_int, metavar="N", help="channels of headerless input (default: 1)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (args_list[0] not in _COMMANDS and args_list[0] not in _TOP_LEVEL_FLAGS):
        args_list.insert(0, "transcribe")
    try:
        args = build_parser().parse_args(args_list)
    except SystemExit as exc:  # argparse exits on --help and on usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "transcribe": _transcribe,
        "submit": _submit,
        "jobs": _jobs,
        "live": _live,
        "health": _health,
        "models": _models,
    }
    try:
        return handlers[args.command](args)
    except _UsageError as exc:
        _complain(f"error: {exc}")
        return EXIT_USAGE
    except TranscribeError as exc:
        _complain(str(exc))
        for field, description in exc.field_violations:
            _complain(f"  {field}: {description}", prefix=False)
        return exc.exit_code
    except OSError as exc:
        _complain(_describe_os_error(exc))
        return EXIT_LOCAL_ERROR
    except KeyboardInterrupt:
        _complain("interrupted")
        return EXIT_INTERRUPTED


def _pcm(args: argparse.Namespace) -> PcmFormat | None:
    if args.pcm_rate is not None:
        return PcmFormat(sample_rate_hertz=args.pcm_rate, channels=args.pcm_channels or 1)
    if args.pcm_channels is not None:
        raise _UsageError("--pcm-channels needs --pcm-rate")
    return None


def _audio(args: argparse.Namespace) -> Audio | None:
    """The audio FILE names (standard input for -), or None when --uri names it."""
    if args.uri is not None:
        if args.file is not None:
            raise _UsageError("give FILE or --uri, not both")
        if args.stream:
            raise _UsageError("--stream needs FILE; the server fetches --uri itself")
        return None
    if args.file is None:
        raise _UsageError("give the audio FILE (- for standard input) or --uri URL")
    if args.file == "-":
        if sys.stdin.isatty():
            raise _UsageError("refusing to read audio from a terminal; pipe or redirect it to standard input")
        return sys.stdin.buffer
    return str(args.file)


class _Options(TypedDict):
    """The transcription options every command that sends audio takes from its arguments."""

    backend: BackendName | None
    model: str
    language: str
    prompt: str
    temperature: float | None
    task: TaskName
    word_timestamps: bool
    timeout: float | None


def _options(args: argparse.Namespace) -> _Options:
    return _Options(
        backend=args.backend,
        model=args.model,
        language=args.language,
        prompt=args.prompt,
        temperature=args.temperature,
        task=args.task,
        word_timestamps=args.words,
        timeout=args.timeout,
    )


def _output_format(args: argparse.Namespace) -> str:
    return str(args.format or _SUFFIX_FORMATS.get(Path(args.output or "").suffix.lower(), "text"))


def _transcribe(args: argparse.Namespace) -> int:
    pcm = _pcm(args)
    output_format = _output_format(args)
    audio = _audio(args)
    progress = _Progress(enabled=not args.quiet and sys.stderr.isatty())
    try:
        with _client(args) as client:
            transcript = client.transcribe(
                audio,
                uri=args.uri,
                stream=args.stream,
                pcm=pcm,
                **_options(args),
                progress=progress,
            )
    finally:
        progress.close()
    _write(render(transcript, output_format), args.output)
    return EXIT_OK


def _submit(args: argparse.Namespace) -> int:
    pcm = _pcm(args)
    output_format = _output_format(args)
    audio = _audio(args)
    if args.wait_timeout is not None and not args.wait:
        raise _UsageError("--wait-timeout needs --wait")
    upload = _Progress(enabled=not args.quiet and sys.stderr.isatty())
    with _client(args) as client:
        try:
            job = client.submit(
                audio,
                uri=args.uri,
                stream=args.stream,
                pcm=pcm,
                **_options(args),
                progress=upload,
            )
        finally:
            upload.close()
        if not args.wait:
            _write(job_to_json(job) if output_format == "json" else job.name + "\n", args.output)
            return EXIT_OK
        if not args.quiet:
            _complain(f"submitted {job.name}")
        return _wait_and_write(client, job.name, args, output_format)


def _jobs(args: argparse.Namespace) -> int:
    handlers: dict[str, Callable[[TranscribeClient, argparse.Namespace], int]] = {
        "list": _jobs_list,
        "get": _jobs_get,
        "wait": lambda client, args: _wait_and_write(client, args.name, args, _output_format(args)),
        "cancel": _jobs_cancel,
        "delete": _jobs_delete,
    }
    with _client(args) as client:
        return handlers[args.jobs_command](client, args)


def _wait_and_write(client: TranscribeClient, name: str, args: argparse.Namespace, output_format: str) -> int:
    """Wait for the job, showing its progress, then write its transcript; a failed job raises its error."""
    progress = _JobProgress(enabled=not args.quiet, terminal=sys.stderr.isatty())
    try:
        # Without progress to show, each WaitOperation call may wait longer.
        job = client.wait_job(name, timeout=args.wait_timeout, on_progress=None if args.quiet else progress)
    except TimeoutError as exc:
        raise TranscribeError(grpc.StatusCode.DEADLINE_EXCEEDED, f"{exc}; it goes on running") from None
    except KeyboardInterrupt:
        progress.close()
        _complain(f"stopped waiting; the job goes on: {PROG} jobs wait {name}")
        raise
    finally:
        progress.close()
    _write(render(job.transcript or pb.Transcript(), output_format), args.output)
    return EXIT_OK


def _jobs_list(client: TranscribeClient, args: argparse.Namespace) -> int:
    page_size = args.page_size or (min(args.limit, MAX_PAGE_SIZE) if args.limit else None)
    if page_size is not None and page_size > MAX_PAGE_SIZE:
        raise _UsageError(f"--page-size must be at most {MAX_PAGE_SIZE}")
    found = client.list_jobs(state=args.state, page_size=page_size, timeout=args.timeout)
    jobs = list(itertools.islice(found, args.limit) if args.limit else found)
    if args.format == "json":
        _write(json.dumps([job_to_dict(job) for job in jobs], indent=2, ensure_ascii=False) + "\n")
        return EXIT_OK
    rows = [("NAME", "STATE", "PROGRESS", "CREATED", "DURATION")]
    rows.extend(
        (
            job.name,
            job.state.value.lower(),
            f"{job.progress_percent}%",
            _local_time(job.create_time),
            _clock(job.audio_duration.total_seconds()) if job.audio_duration is not None else "-",
        )
        for job in jobs
    )
    _write(_table(rows))
    return EXIT_OK


def _jobs_get(client: TranscribeClient, args: argparse.Namespace) -> int:
    job = client.get_job(args.name, timeout=args.timeout)
    if args.format == "json":
        _write(job_to_json(job))
        return EXIT_OK
    _write("".join(f"{key + ':':<10}{value}\n" for key, value in _job_fields(job)))
    return EXIT_OK


def _job_fields(job: Job) -> Iterator[tuple[str, str]]:
    yield "name", job.name
    yield "state", job.state.value.lower()
    yield "progress", f"{job.progress_percent}%"
    for key, value in (
        ("created", job.create_time),
        ("started", job.start_time),
        ("updated", job.update_time),
        ("expires", job.expire_time),
    ):
        if value is not None:
            yield key, _local_time(value)
    if job.audio_duration is not None:
        yield "duration", _clock(job.audio_duration.total_seconds())
    if job.uri:
        yield "uri", job.uri
    if job.attempt:
        yield "attempt", str(job.attempt)
    if job.worker:
        yield "worker", job.worker
    if job.error is not None:
        yield "error", str(job.error)
    if job.transcript is not None:
        yield "text", " ".join(render(job.transcript, "text").split())


def _jobs_cancel(client: TranscribeClient, args: argparse.Namespace) -> int:
    client.cancel_job(args.name, timeout=args.timeout)
    _write(args.name + "\n")
    return EXIT_OK


def _jobs_delete(client: TranscribeClient, args: argparse.Namespace) -> int:
    client.delete_job(args.name, timeout=args.timeout)
    _write(args.name + "\n")
    return EXIT_OK


def _local_time(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _clock(seconds: float) -> str:
    """A length as M:SS or H:MM:SS."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class _JobProgress:
    """A job's state and progress on stderr while the CLI waits: redrawn in place on a terminal, else a line per
    change."""

    def __init__(
        self,
        *,
        enabled: bool,
        terminal: bool,
        err: IO[str] | None = None,
        columns: Callable[[], int] = lambda: shutil.get_terminal_size().columns,
    ) -> None:
        self._enabled = enabled
        self._terminal = terminal
        self._err = err
        self._columns = columns
        self._last: tuple[JobState, int] | None = None
        self._drawn = False

    def __call__(self, job: Job) -> None:
        if not self._enabled:
            return
        err = self._err or sys.stderr
        text = f"{job.name}: {job.state.value.lower()} {job.progress_percent}%"
        if self._terminal:
            width = max(self._columns() - 1, 10)
            err.write(_CLEAR_LINE + text[:width])
            self._drawn = True
        elif (job.state, job.progress_percent) != self._last:
            err.write(text + "\n")
        self._last = (job.state, job.progress_percent)
        err.flush()

    def close(self) -> None:
        """Remove the line drawn on a terminal, so that what follows starts on a clean line."""
        if self._drawn:
            err = self._err or sys.stderr
            err.write(_CLEAR_LINE)
            err.flush()
            self._drawn = False


def _live(args: argparse.Namespace) -> int:
    if args.pcm_channels is not None and args.pcm_rate is None and args.file != "-":
        raise _UsageError("--pcm-channels needs --pcm-rate")
    source: _LiveSource
    if args.file == "-":
        if sys.stdin.isatty():
            raise _UsageError("refusing to read audio from a terminal; pipe or redirect it to standard input")
        source = _RawPcm(None, args.pcm_rate or LIVE_SAMPLE_RATE, args.pcm_channels or 1)
        speed = args.speed if args.speed is not None else 0.0
    elif args.pcm_rate is not None:
        source = _RawPcm(args.file, args.pcm_rate, args.pcm_channels or 1)
        speed = args.speed if args.speed is not None else 1.0
    else:
        source = _DecodedFile(args.file)
        speed = args.speed if args.speed is not None else 1.0
    source.check()
    terminal = sys.stdout.isatty()
    interim = args.interim if args.interim is not None else (args.format == "json" or terminal)
    stop = threading.Event()
    printer = _LivePrinter(sys.stdout, json_lines=args.format == "json", terminal=terminal)
    chunks = paced(source.chunks(), speed=speed, bytes_per_second=source.bytes_per_second, stop=stop)
    with _client(args) as client, _interrupt_stops(stop):
        try:
            responses = client.live(
                chunks,
                sample_rate=source.rate,
                channels=source.channels,
                interim_results=interim,
                voice_activity_events=args.vad_events,
                speech_end_timeout=args.endpoint_ms / 1000 if args.endpoint_ms is not None else None,
                **_options(args),
            )
            for response in responses:
                printer.show(response)
        finally:
            printer.close()
    return EXIT_INTERRUPTED if stop.is_set() else EXIT_OK


class _Stop(Protocol):
    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


def paced(
    chunks: Iterator[bytes],
    *,
    speed: float,
    bytes_per_second: float,
    stop: _Stop,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[bytes]:
    """The chunks, each held back until the moment its audio would have been spoken at `speed` times real time.

    Like a microphone, a chunk is released when its last sample has been "recorded"; speed 0 releases every chunk
    at once. Setting `stop` ends the stream (a live call then half-closes and the server sends the last results).
    """
    start = clock()
    sent = 0
    for chunk in chunks:
        if stop.is_set():
            return
        sent += len(chunk)
        if speed > 0:
            delay = start + sent / bytes_per_second / speed - clock()
            if delay > 0 and stop.wait(delay):
                return
        yield chunk


class _LiveSource(Protocol):
    rate: int
    channels: int

    @property
    def bytes_per_second(self) -> float: ...

    def check(self) -> None: ...

    def chunks(self) -> Iterator[bytes]: ...


class _RawPcm:
    """Headerless 16-bit little-endian PCM from a file or standard input (path None), in 100 ms chunks."""

    def __init__(self, path: str | None, rate: int, channels: int) -> None:
        self.path = path
        self.rate = rate
        self.channels = channels

    @property
    def bytes_per_second(self) -> float:
        return float(self.rate * self.channels * 2)

    def check(self) -> None:
        if self.path is not None:
            with open(self.path, "rb"):
                pass

    def chunks(self) -> Iterator[bytes]:
        size = max(1, round(self.rate * LIVE_CHUNK_SECONDS)) * self.channels * 2
        if self.path is None:
            yield from _read_chunks(sys.stdin.buffer, size)
            return
        with open(self.path, "rb") as file:
            yield from _read_chunks(file, size)


def _read_chunks(file: IO[bytes], size: int) -> Iterator[bytes]:
    # read(size) on a pipe waits for `size` bytes (or the end), so a chunk is a whole 100 ms.
    while chunk := file.read(size):
        yield chunk


class _DecodedFile:
    """An audio file in any container PyAV reads, decoded to 16 kHz mono LINEAR16 in 100 ms chunks."""

    rate = LIVE_SAMPLE_RATE
    channels = 1

    def __init__(self, path: str) -> None:
        self.path = path

    @property
    def bytes_per_second(self) -> float:
        return float(self.rate * 2)

    def check(self) -> None:
        """Fail before the call starts when the file is missing or holds no audio."""
        with self._open():
            pass

    def chunks(self) -> Iterator[bytes]:
        import av

        size = round(self.rate * LIVE_CHUNK_SECONDS) * 2
        pending = bytearray()
        with self._open() as container:
            resampler = av.AudioResampler(format="s16", layout="mono", rate=self.rate)
            frames = container.decode(container.streams.audio[0])
            while True:
                try:
                    frame = next(frames, None)
                    if frame is not None:
                        frame.pts = None  # the resampler needs no timestamps, and gaps in them upset it
                    for out in resampler.resample(frame):
                        pending += bytes(out.planes[0])[: out.samples * 2]
                except av.FFmpegError as exc:
                    raise OSError(errno.EINVAL, f"cannot decode the audio: {exc.strerror or exc}", self.path) from None
                while len(pending) >= size:
                    yield bytes(pending[:size])
                    del pending[:size]
                if frame is None:
                    break
        if pending:
            yield bytes(pending)

    @contextlib.contextmanager
    def _open(self) -> Iterator[Any]:
        import av

        try:
            container = av.open(self.path, mode="r", metadata_errors="ignore")
        except av.FFmpegError as exc:
            if isinstance(exc, OSError):
                raise
            raise OSError(errno.EINVAL, "not an audio file FFmpeg can decode", self.path) from None
        with container:
            if not container.streams.audio:
                raise OSError(errno.EINVAL, "has no audio stream", self.path)
            yield container


@contextlib.contextmanager
def _interrupt_stops(stop: threading.Event) -> Iterator[None]:
    """While live audio is sent, the first Ctrl-C stops the audio (the last results still come); the second quits."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupted(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _LivePrinter:
    """Shows live responses: JSON lines; or final results as lines, with the interim redrawn in place on a terminal."""

    def __init__(
        self,
        out: IO[str],
        *,
        json_lines: bool,
        terminal: bool,
        columns: Callable[[], int] = lambda: shutil.get_terminal_size().columns,
        err: IO[str] | None = None,
    ) -> None:
        self._out = out
        self._err = err
        self._json = json_lines
        self._terminal = terminal
        self._columns = columns
        self._interim = ""

    def show(self, response: pb.TranscribeLiveResponse) -> None:
        if self._json:
            self._out.write(live_to_json(response) + "\n")
            self._out.flush()
            return
        if response.HasField("voice_activity"):
            self._event(response.voice_activity)
        for result in response.results:
            text = " ".join(result.text.split())
            if result.is_final:
                self._clear()
                if text:
                    self._out.write(text + "\n")
            elif self._terminal:
                self._redraw(text)
        self._out.flush()

    def close(self) -> None:
        """Remove an interim left on the line, so that what follows starts on a clean line."""
        self._clear()
        self._out.flush()

    def _redraw(self, text: str) -> None:
        # The interim must fit on one line: \r only returns to the start of the line the cursor is on.
        width = max(self._columns() - 1, 10)
        shown = text if len(text) <= width else "…" + text[-(width - 1) :]
        self._out.write(_CLEAR_LINE + shown)
        self._interim = shown

    def _clear(self) -> None:
        if self._interim:
            self._out.write(_CLEAR_LINE)
            self._interim = ""

    def _event(self, event: pb.VoiceActivityEvent) -> None:
        # Events go to stderr so that standard output holds only the transcript.
        seconds = event.offset.seconds + event.offset.nanos / 1e9
        what = "began" if event.type == pb.VOICE_ACTIVITY_EVENT_TYPE_SPEECH_BEGIN else "ended"
        interim = self._interim
        self._clear()
        self._out.flush()
        err = self._err or sys.stderr
        err.write(f"[speech {what} at {seconds:.2f} s]\n")
        err.flush()
        if interim:
            self._out.write(interim)
            self._interim = interim


def _health(args: argparse.Namespace) -> int:
    with _client(args) as client:
        status = client.health(args.service, timeout=args.timeout)
    print(status)
    return EXIT_OK if status == "SERVING" else EXIT_NOT_SERVING


def _models(args: argparse.Namespace) -> int:
    with _client(args) as client:
        models = client.list_models(timeout=args.timeout)
    if args.format == "json":
        response = pb.ListModelsResponse(models=models)
        text = json_format.MessageToJson(response, indent=2, always_print_fields_with_no_presence=True)
        _write(text + "\n")
        return EXIT_OK
    rows = [("NAME", "BACKEND", "ENGINE", "LOADED", "MULTILINGUAL", "DEFAULT")]
    rows.extend(
        (
            model.name,
            pb.Backend.Name(model.backend).removeprefix("BACKEND_").lower(),
            model.engine,
            _yes_no(model.loaded),
            _yes_no(model.multilingual),
            _yes_no(model.is_default),
        )
        for model in models
    )
    _write(_table(rows))
    return EXIT_OK


def _table(rows: Sequence[Sequence[str]]) -> str:
    """Rows as left-aligned columns two spaces apart; the first row is the header."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = ("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)
    return "".join(line.rstrip() + "\n" for line in lines)


def _client(args: argparse.Namespace) -> TranscribeClient:
    if (args.cert is None) != (args.key is None):
        raise _UsageError("--cert and --key must be given together")
    address: str | list[str] = args.address
    if "," in args.address and not args.address.startswith(_TARGET_SCHEMES):
        address = args.address.split(",")
    kwargs: dict[str, Any] = {}
    if args.timeout is not None:
        kwargs["timeout"] = args.timeout
    try:
        return TranscribeClient(
            address,
            tls=args.tls,
            root_certificates=_read(args.ca_cert),
            certificate_chain=_read(args.cert),
            private_key=_read(args.key),
            token=args.token,
            **kwargs,
        )
    except ValueError as exc:
        raise _UsageError(str(exc)) from None


def _read(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def _write(text: str, path: str | None = None) -> None:
    if path and path != "-":
        Path(path).write_text(text, encoding="utf-8")
        return
    sys.stdout.write(text)
    sys.stdout.flush()


def _complain(message: str, *, prefix: bool = True) -> None:
    print(f"{PROG}: {message}" if prefix else message, file=sys.stderr)


def _describe_os_error(exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    return f"{exc.filename}: {reason}" if exc.filename else reason


class _Progress:
    """A tqdm upload bar on stderr, created on the first report of a streamed upload."""

    def __init__(self, *, enabled: bool, file: IO[str] | None = None) -> None:
        self._enabled = enabled
        self._file = file
        self._bar: Any = None
        self._lock = threading.Lock()
        self._closed = False

    def __call__(self, sent: int, total: int | None) -> None:
        if not self._enabled:
            return
        # gRPC calls this from the thread that sends the upload.
        with self._lock:
            if self._closed:
                return
            if self._bar is None:
                self._bar = tqdm(
                    total=total,
                    desc="uploading",
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    file=self._file or sys.stderr,
                    leave=False,
                    dynamic_ncols=True,
                )
            if total is not None and self._bar.total != total:
                self._bar.total = total
            self._bar.update(sent - self._bar.n)
            if total is not None and sent >= total:
                self._bar.set_description_str("transcribing")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._bar is not None:
                self._bar.close()
