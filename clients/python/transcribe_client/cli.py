"""transcribe-cli: transcribe audio files, list models and check health from the command line."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from google.protobuf import json_format
from tqdm import tqdm

from transcribe.v1 import transcribe_service_pb2 as pb
from transcribe_client.client import DEFAULT_TARGET, Audio, PcmFormat, TranscribeClient
from transcribe_client.errors import TranscribeError
from transcribe_client.formats import FORMATS, render

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_LOCAL_ERROR",
    "EXIT_NOT_SERVING",
    "EXIT_OK",
    "EXIT_RPC_BASE",
    "EXIT_USAGE",
    "build_parser",
    "main",
]

PROG = "transcribe-cli"
EXIT_OK = 0
EXIT_LOCAL_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_SERVING = 3
EXIT_RPC_BASE = 64
EXIT_INTERRUPTED = 130

_COMMANDS = ("transcribe", "health", "models")
_TOP_LEVEL_FLAGS = ("-h", "--help")
_SUFFIX_FORMATS = {".json": "json", ".srt": "srt", ".vtt": "vtt", ".txt": "text"}
_TARGET_SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:", "vsock:")

_EPILOG = f"""\
`{PROG} FILE [options]` is short for `{PROG} transcribe FILE [options]`.

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
    group.add_argument("--timeout", type=_positive_float, help="deadline of the call in seconds (default: 300)")
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
    """The argument parser with the transcribe, health and models subcommands."""
    connection = _connection_options()
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Transcribe audio with a transcribe.v1.TranscribeService server.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="{transcribe,health,models}", required=True)

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

    health = commands.add_parser("health", parents=[connection], help="check the server's health")
    health.add_argument("--service", default="", help="the service to check (default: the whole server)")

    models = commands.add_parser("models", parents=[connection], help="list the server's models")
    models.add_argument("--format", choices=("text", "json"), default="text")
    return parser


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
