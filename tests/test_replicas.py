"""Client-side load balancing over three real server processes, surviving the loss of one mid-run."""

from __future__ import annotations

import re
import sys
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from service.audio.store import UploadStore
from tests.conftest import DATA
from tests.processes import ServiceProcess
from tests.test_lifecycle import server_env
from transcribe_client import TranscribeClient

pytestmark = pytest.mark.slow
CALLS = 24
KILL_AFTER = 9


@dataclass
class Replica:
    """One server process and where to reach it."""

    process: ServiceProcess
    port: int
    metrics_url: str

    def calls_ok(self) -> float:
        """Successful Transcribe calls this replica has served, from its /metrics."""
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            text = response.read().decode()
        found = re.search(r'transcribe_calls_total\{code="OK",method="[^"]*/Transcribe"\} ([0-9.]+)', text)
        return float(found.group(1)) if found else 0.0


def start_replica(tmp_path: Path, index: int) -> Replica:
    """Start a server process on an ephemeral port and wait until it serves."""
    process = ServiceProcess(
        [sys.executable, "-m", "service"],
        server_env(tmp_path / f"replica{index}", TRANSCRIBE_METRICS_PORT="0", TRANSCRIBE_METRICS_HOST="127.0.0.1"),
    )
    port = int(process.wait_for(r"listening on 127\.0\.0\.1:(\d+)").group(1))
    url = process.wait_for(r"metrics on (http://\S+/metrics)").group(1)
    process.wait_for(r"backends ready; serving")
    return Replica(process, port, url)


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[list[Replica]]:
    """Three serving replicas, stopped afterwards."""
    started = [start_replica(tmp_path, i) for i in range(3)]
    yield started
    for replica in started:
        replica.process.stop()
    for index in range(len(started)):
        # A killed replica leaves its run folder, as a crash does; the next start on that folder sweeps it.
        restarted = UploadStore(tmp_path / f"replica{index}" / "uploads")
        restarted.open()
        restarted.close()
    uploads_and_job_audio = [*tmp_path.glob("replica*/uploads"), *tmp_path.glob("replica*/data/audio")]
    assert [p for folder in uploads_and_job_audio for p in folder.rglob("*") if p.is_file()] == []


def test_calls_spread_over_replicas_and_survive_losing_one(replicas: list[Replica]) -> None:
    """round_robin spreads calls over all three replicas; after one is killed every call still succeeds."""
    audio = (DATA / "speech_en.ogg").read_bytes()
    with TranscribeClient([f"127.0.0.1:{r.port}" for r in replicas], timeout=120) as client:

        def one(_: int) -> str:
            return client.transcribe(audio, stream=False).text

        with ThreadPoolExecutor(max_workers=3) as pool:
            first = list(pool.map(one, range(KILL_AFTER)))
            assert all(replica.calls_ok() >= 1 for replica in replicas)
            victim = replicas[1]
            rest = pool.map(one, range(KILL_AFTER, CALLS))
            victim.process.popen.kill()
            victim.process.popen.wait(timeout=30)
            texts = first + list(rest)
    assert len(texts) == CALLS
    assert all("fox" in text.lower() for text in texts)
    survivors = [replicas[0], replicas[2]]
    assert sum(r.calls_ok() for r in survivors) >= CALLS - KILL_AFTER
