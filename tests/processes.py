"""Server and worker processes the tests start: stderr collected by a thread, lines waited for, stopped gently."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time

from tests.conftest import REPO


class ServiceProcess:
    """A child process whose stderr is collected by a thread; `wait_for` blocks until a line matches."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.popen = subprocess.Popen(argv, env=env, cwd=REPO, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, pattern: str, seconds: float = 120.0) -> re.Match[str]:
        """The first stderr line matching `pattern`; fails when the process exits or time runs out first."""
        deadline = time.monotonic() + seconds
        regex = re.compile(pattern)
        with self._changed:
            while True:
                for line in self.lines:
                    if match := regex.search(line):
                        return match
                left = deadline - time.monotonic()
                if left <= 0 or (self.popen.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no line matching {pattern!r}:\n{''.join(self.lines[-40:])}")
                self._changed.wait(timeout=min(left, 1.0))

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._reader.join(timeout=10)
