"""transcribe-cli's submit and jobs commands against real servers (run as a subprocess), and their usage errors."""

from __future__ import annotations

import asyncio
import io
import json
import re
import sys
from pathlib import Path

import pytest

from tests.conftest import DATA, Fixture, StartServer
from tests.fakes.file_server import FileServer
from tests.helpers import assert_has_words
from transcribe_client import Job, JobState, cli

CLI = str(Path(sys.executable).with_name("transcribe-cli"))
WAV = "speech_en.wav"
NAME = re.compile(r"^operations/[0-9a-f]{32}$")
UNREACHABLE = "127.0.0.1:1"


async def run_cli(*args: str) -> tuple[int, str, str]:
    """Run the installed CLI without blocking the server's event loop."""
    process = await asyncio.create_subprocess_exec(
        CLI,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 180)
    return process.returncode or 0, out.decode(), err.decode()


@pytest.mark.parametrize(
    "argv",
    [
        ["submit"],
        ["submit", "speech.wav", "--uri", "https://example.com/a.wav"],
        ["submit", "--uri", "https://example.com/a.wav", "--stream"],
        ["submit", "speech.wav", "--wait-timeout", "5"],
        ["transcribe", "--format", "json"],
        ["jobs"],
        ["jobs", "list", "--state", "finished"],
        ["jobs", "list", "--page-size", "1001"],
        ["jobs", "get"],
        ["jobs", "wait", "operations/x", "--wait-timeout", "-1"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Bad submit and jobs arguments exit 2 before anything is sent."""
    assert cli.main([*argv, "--address", UNREACHABLE]) == cli.EXIT_USAGE
    assert "error" in capsys.readouterr().err


def test_progress_redraws_on_a_terminal_and_prints_changes_elsewhere() -> None:
    """Waiting shows the job's state and percent: one line redrawn in place on a terminal, a line per change else."""
    reports = [
        Job(name="operations/a", state=JobState.QUEUED, done=False),
        Job(name="operations/a", state=JobState.RUNNING, done=False, progress_percent=40),
        Job(name="operations/a", state=JobState.RUNNING, done=False, progress_percent=40),
        Job(name="operations/a", state=JobState.SUCCEEDED, done=True, progress_percent=100),
    ]
    plain = io.StringIO()
    lines = cli._JobProgress(enabled=True, terminal=False, err=plain)
    for job in reports:
        lines(job)
    lines.close()
    assert plain.getvalue() == ("operations/a: queued 0%\noperations/a: running 40%\noperations/a: succeeded 100%\n")
    screen = io.StringIO()
    redrawn = cli._JobProgress(enabled=True, terminal=True, err=screen, columns=lambda: 20)
    for job in reports:
        redrawn(job)
    redrawn.close()
    assert "\n" not in screen.getvalue()
    assert screen.getvalue().count("\r\x1b[2K") == len(reports) + 1
    assert "\r\x1b[2Koperations/a: runni" in screen.getvalue()  # cut to the terminal's width
    quiet = io.StringIO()
    cli._JobProgress(enabled=False, terminal=False, err=quiet)(reports[0])
    assert quiet.getvalue() == ""


async def test_submit_wait_prints_progress_and_the_transcript(
    start_server: StartServer, spoken: dict[str, Fixture]
) -> None:
    """submit --wait names the job and prints its progress as lines on stderr, then the transcript in --format."""
    server = await start_server()
    fixture = spoken[WAV]
    code, out, err = await run_cli("submit", str(fixture.path), "--wait", "--format", "srt", "--address", server.target)
    assert code == 0, err
    assert out.startswith("1\n00:00:0")
    assert_has_words(out, fixture.expected_words)
    [submitted] = re.findall(r"submitted (operations/[0-9a-f]{32})", err)
    assert f"{submitted}: succeeded 100%\n" in err
    assert "\x1b" not in err  # no redrawing when stderr is not a terminal


async def test_submit_then_follow_the_job_with_jobs_commands(
    start_server: StartServer, spoken: dict[str, Fixture]
) -> None:
    """submit prints the name; jobs wait, get, list and delete work on it; after delete, get exits 64 + NOT_FOUND."""
    server = await start_server()
    fixture = spoken[WAV]
    address = ("--address", server.target)
    code, out, err = await run_cli("submit", str(fixture.path), *address)
    assert code == 0, err
    name = out.strip()
    assert NAME.match(name)
    code, out, err = await run_cli("jobs", "wait", name, "--format", "json", "--quiet", *address)
    assert code == 0, err
    assert_has_words(json.loads(out)["text"], fixture.expected_words)
    assert err == ""
    code, out, _ = await run_cli("jobs", "get", name, "--format", "json", *address)
    job = json.loads(out)
    assert (job["name"], job["state"], job["progress_percent"], job["attempt"]) == (name, "succeeded", 100, 1)
    assert_has_words(job["transcript"]["text"], fixture.expected_words)
    code, out, _ = await run_cli("jobs", "get", name, *address)
    assert code == 0
    assert re.search(r"^state:\s+succeeded$", out, re.M)
    assert re.search(r"^duration:\s+0:10$", out, re.M)
    code, out, _ = await run_cli("jobs", "list", *address)
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["NAME", "STATE", "PROGRESS", "CREATED", "DURATION"]
    assert row.split()[:3] == [name, "succeeded", "100%"]
    assert row.split()[-1] == "0:10"
    code, out, _ = await run_cli("jobs", "list", "--state", "failed", "--state", "queued", "--format", "json", *address)
    assert (code, json.loads(out)) == (0, [])
    code, out, _ = await run_cli("jobs", "delete", name, *address)
    assert (code, out) == (0, name + "\n")
    code, _, err = await run_cli("jobs", "get", name, *address)
    assert code == 64 + 5
    assert "JOB_NOT_FOUND" in err


async def test_a_failed_job_exits_as_a_direct_call_does(start_server: StartServer, tmp_path: Path) -> None:
    """Undecodable bytes exit 64 + INVALID_ARGUMENT with AUDIO_UNDECODABLE from transcribe and from submit --wait."""
    server = await start_server()
    junk = tmp_path / "junk.bin"
    junk.write_bytes((DATA / "not_audio.txt").read_bytes())
    direct = await run_cli("transcribe", str(junk), "--address", server.target)
    waited = await run_cli("submit", str(junk), "--wait", "--address", server.target)
    assert direct[0] == waited[0] == 64 + 3
    assert "AUDIO_UNDECODABLE" in direct[2]
    assert "AUDIO_UNDECODABLE" in waited[2]
    assert re.search(r"^operations/[0-9a-f]{32}: failed \d+%$", waited[2], re.M)
    code, out, _ = await run_cli("jobs", "list", "--state", "failed", "--format", "json", "--address", server.target)
    assert code == 0
    [job] = json.loads(out)
    assert (job["state"], job["error"]["code"], job["error"]["reason"]) == (
        "failed",
        "INVALID_ARGUMENT",
        "AUDIO_UNDECODABLE",
    )


async def test_cancel_a_queued_job_and_page_through_the_list(
    start_server: StartServer, spoken: dict[str, Fixture], files: FileServer
) -> None:
    """With the only worker held, a queued job is cancelled (jobs wait exits 64 + CANCELLED), the list pages and
    filters, and a wait that times out exits 64 + DEADLINE_EXCEEDED with the job still running."""
    server = await start_server(jobs_workers=1, **files.settings())
    address = ("--address", server.target)
    code, out, err = await run_cli("submit", "--uri", files.url("/held.wav"), *address)
    assert code == 0, err
    running = out.strip()
    assert await asyncio.to_thread(files.started.wait, 30), "the held job did not start fetching"
    code, out, err = await run_cli("submit", str(spoken[WAV].path), "--format", "json", *address)
    assert code == 0, err
    submitted = json.loads(out)
    assert (submitted["state"], submitted["done"], submitted["attempt"]) == ("queued", False, 0)
    queued = submitted["name"]
    assert NAME.match(queued)
    code, out, _ = await run_cli("jobs", "list", "--page-size", "1", "--format", "json", *address)
    assert [job["name"] for job in json.loads(out)] == [queued, running]
    code, out, _ = await run_cli("jobs", "list", "--limit", "1", *address)
    assert [line.split()[0] for line in out.splitlines()] == ["NAME", queued]
    code, out, _ = await run_cli("jobs", "list", "--state", "running", *address)
    assert [line.split()[:2] for line in out.splitlines()[1:]] == [[running, "running"]]
    code, out, _ = await run_cli("jobs", "cancel", queued, *address)
    assert (code, out) == (0, queued + "\n")
    code, _, err = await run_cli("jobs", "wait", queued, *address)
    assert code == 64 + 1
    assert "JOB_CANCELLED" in err
    code, out, _ = await run_cli("jobs", "list", "--state", "cancelled", "--format", "json", *address)
    assert [(job["name"], job["attempt"]) for job in json.loads(out)] == [(queued, 0)]
    code, _, err = await run_cli("jobs", "wait", running, "--wait-timeout", "0.2", *address)
    assert code == 64 + 4
    assert "not done after 0.2 s" in err
    code, out, _ = await run_cli("jobs", "get", running, "--format", "json", *address)
    assert json.loads(out)["state"] == "running"
    code, _, _ = await run_cli("jobs", "delete", running, *address)
    assert code == 0
    assert files.requests == ["/held.wav"]


async def test_transcribe_and_submit_take_a_uri(
    start_server: StartServer, spoken: dict[str, Fixture], files: FileServer
) -> None:
    """transcribe --uri prints the transcript of the fetched file, submit --uri --wait too; ftp exits 64 + 3."""
    server = await start_server(**files.settings())
    expected = spoken[WAV].expected_words
    address = ("--address", server.target)
    code, out, err = await run_cli("transcribe", "--uri", files.url("/speech.wav"), *address)
    assert code == 0, err
    assert_has_words(out, expected)
    code, out, err = await run_cli("submit", "--uri", files.url("/speech.wav"), "--wait", "--quiet", *address)
    assert code == 0, err
    assert_has_words(out, expected)
    code, _, err = await run_cli("transcribe", "--uri", "ftp://example.com/a.wav", *address)
    assert code == 64 + 3
    assert "URI_INVALID" in err
