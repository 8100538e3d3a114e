"""transcribe-cli: transcribe audio files or live audio, list models and check health from the command line."""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any, Protocol

from google.protobuf import json_format
from tqdm import tqdm

from transcribe.v1 import transcribe_service_pb2 as pb
from transcribe_client.client import DEFAULT_TARGET, LIVE_CHUNK_SECONDS, Audio, PcmFormat, TranscribeClient
from transcribe_client.errors import TranscribeError
from transcribe_client.formats import FORMATS, live_to_json, render

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

_COMMANDS = ("transcribe", "live", "health", "models")
_TOP_LEVEL_FLAGS = ("-h", "--help")
_SUFFIX_FORMATS = {".json": "json", ".srt": "srt", ".vtt": "vtt", ".txt": "text"}
_TARGET_SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:", "vsock:")
LIVE_SAMPLE_RATE = 16000
"""`live FILE` decodes any container to 16 kHz mono LINEAR16, the rate the models hear."""
_CLEAR_LINE = "\r\x1b[2K"

_EPILOG = f"""\
`{PROG} FILE [options]` is short for `{PROG} transcribe FILE [options]`.
`{PROG} live FILE` plays FILE at real-time pace and prints results as they come;
`arecord -f S16_LE -r 16000 -c 1 | {PROG} live -` transcribes a microphone.

exit codes: 0 success; 1 local error (such as a missing file); 2 usage error;
3 health reports a status other than SERVING; 64 + the gRPC status code when
the call fails (grpcurl's convention: 67 INVALID_ARGUMENT, 68 DEADLINE_EXCEEDED,
72 RESOURCE_EXHAUSTED, 78 UNAVAILABLE, 80 UNAUTHENTICATED); 130 interrupted.
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
    commands = parser.add_subparsers(dest="command", metavar="{transcribe,live,health,models}", required=True)

    transcribe = commands.add_parser(
        "transcribe", parents=[connection], help="transcribe an audio file (the default command)"
    )
    transcribe.add_argument("file", metavar="FILE", help="the audio file, or - to read standard input")
    mode = transcribe.add_mutually_exclusive_group()
    mode.add_argument(
        "--stream",
        dest="stream",
        action="store_true",
        default=None,
        help="upload in chunks with TranscribeStream (default: for files over 4 MiB and standard input)",
    )
    mode.add_argument("--no-stream", dest="stream", action="store_false", help="send the file in one message")
    transcribe.add_argument("--backend", choices=("local", "openai"), help="default: the server's")
    transcribe.add_argument("--model", default="", help="a model name from `models` (default: the backend's)")
    transcribe.add_argument("--language", default="", help="spoken language, e.g. en (default: detect)")
    transcribe.add_argument("--task", choices=("transcribe", "translate"), default="transcribe")
    transcribe.add_argument("--prompt", default="", help="text that guides style and spelling")
    transcribe.add_argument("--temperature", type=float, help="sampling temperature from 0 to 1")
    transcribe.add_argument("--words", action="store_true", help="request word timestamps")
    transcribe.add_argument(
        "--format",
        choices=FORMATS,
        help="output format (default: from the --output suffix, else text)",
    )
    transcribe.add_argument("--output", "-o", metavar="FILE", help="write the result here, not to stdout")
    transcribe.add_argument(
        "--pcm-rate", type=_positive_int, metavar="HZ", help="the input is headerless LINEAR16 at HZ"
    )
    transcribe.add_argument(
        "--pcm-channels", type=_positive_int, metavar="N", help="channels of headerless input (default: 1)"
    )
    transcribe.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    _add_live_parser(commands, connection)

    health = commands.add_parser("health", parents=[connection], help="check the server's health")
    health.add_argument("--service", default="", help="the service to check (default: the whole server)")

    models = commands.add_parser("models", parents=[connection], help="list the server's models")
    models.add_argument("--format", choices=("text", "json"), default="text")
    return parser


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


def _transcribe(args: argparse.Namespace) -> int:
    pcm = None
    if args.pcm_rate is not None:
        pcm = PcmFormat(sample_rate_hertz=args.pcm_rate, channels=args.pcm_channels or 1)
    elif args.pcm_channels is not None:
        raise _UsageError("--pcm-channels needs --pcm-rate")
    output_format = args.format or _SUFFIX_FORMATS.get(Path(args.output or "").suffix.lower(), "text")
    audio: Audio
    if args.file == "-":
        if sys.stdin.isatty():
            raise _UsageError("refusing to read audio from a terminal; pipe or redirect it to standard input")
        audio = sys.stdin.buffer
    else:
        audio = args.file
    progress = _Progress(enabled=not args.quiet and sys.stderr.isatty())
    try:
        with _client(args) as client:
            transcript = client.transcribe(
                audio,
                stream=args.stream,
                backend=args.backend,
                model=args.model,
                language=args.language,
                prompt=args.prompt,
                temperature=args.temperature,
                task=args.task,
                word_timestamps=args.words,
                pcm=pcm,
                timeout=args.timeout,
                progress=progress,
            )
    finally:
        progress.close()
    _write(render(transcript, output_format), args.output)
    return EXIT_OK


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
                backend=args.backend,
                model=args.model,
                language=args.language,
                prompt=args.prompt,
                temperature=args.temperature,
                task=args.task,
                word_timestamps=args.words,
                timeout=args.timeout,
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
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = ("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)
    _write("".join(line.rstrip() + "\n" for line in lines))
    return EXIT_OK


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
