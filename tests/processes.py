"""Child processes the tests and the benchmarks start (servers, workers, redis-server): their output kept by a
thread, lines waited for, stopped gently."""

from __future__ import annotations

import collections
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REDIS_STOP_SECONDS = 30.0


class ProcessFailed(RuntimeError):
    """A child process exited, or time ran out, before it wrote the line waited for."""


class ServiceProcess:
    """A child process started in the repo whose output (stdout and stderr together) a thread keeps, its last `keep`
    lines; `wait_for` blocks until a line matches, `stop` sends SIGTERM and then SIGKILL."""

    def __init__(self, argv: list[str], env: Mapping[str, str], *, keep: int = 10_000) -> None:
        self.popen = subprocess.Popen(
            argv,
            env=dict(env),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._lines: collections.deque[str] = collections.deque(maxlen=keep)
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name=f"{Path(argv[0]).name}-output", daemon=True)
        self._reader.start()

    @classmethod
    def started(
        cls,
        argv: list[str],
        env: Mapping[str, str],
        ready: str | re.Pattern[str],
        *,
        seconds: float = 120.0,
        stop_seconds: float = 60.0,
        keep: int = 10_000,
    ) -> tuple[ServiceProcess, re.Match[str]]:
        """A child process once it has written a line matching `ready`, and that match; stopped again (within
        `stop_seconds`) if the line never comes."""
        process = cls(argv, env, keep=keep)
        try:
            return process, process.wait_for(ready, seconds)
        except BaseException:
            process.stop(stop_seconds)
            raise

    @property
    def pid(self) -> int:
        """The process id."""
        return self.popen.pid

    def running(self) -> bool:
        """Whether the process has not exited."""
        return self.popen.poll() is None

    def log_tail(self, lines: int = 200) -> str:
        """The last lines the process wrote."""
        with self._changed:
            return "".join(list(self._lines)[-lines:])

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, pattern: str | re.Pattern[str], seconds: float = 120.0) -> re.Match[str]:
        """The first kept line matching `pattern`; ProcessFailed when the process exits or time runs out first."""
        deadline = time.monotonic() + seconds
        regex = re.compile(pattern)
        with self._changed:
            while True:
                for line in self._lines:
                    if match := regex.search(line):
                        return match
                left = deadline - time.monotonic()
                if left <= 0 or (not self.running() and not self._reader.is_alive()):
                    tail = self.log_tail(40)
                    raise ProcessFailed(f"no line matching {regex.pattern!r} from {self.popen.args!r}:\n{tail}")
                self._changed.wait(timeout=min(left, 1.0))

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
        if self.running():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._reader.join(timeout=10)


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_redis(binary: str, folder: Path, *, keep: int = 10_000) -> tuple[ServiceProcess, str]:
    """A redis-server on a free loopback port that saves nothing (working in `folder`), once it accepts
    connections, and its URL."""
    port = free_port()
    argv = [
        binary,
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(folder),
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    redis, _ = ServiceProcess.started(
        argv, os.environ, "Ready to accept connections", seconds=30, stop_seconds=REDIS_STOP_SECONDS, keep=keep
    )
    return redis, f"redis://127.0.0.1:{port}/0"
