"""scripts/buf_breaking.sh fails a change that breaks the contract and passes one that only extends it."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO

BUF = REPO / ".tools" / "node_modules" / ".bin" / "buf"
PROTO = Path("protos/transcribe/v1/transcribe_service.proto")
PROMPT_FIELD = "  string prompt = 4;\n"


def git(work: Path, *args: str) -> None:
    """Run git in the scratch repository with a fixed identity."""
    subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", *args],
        cwd=work,
        check=True,
        capture_output=True,
    )


def scratch_repo(tmp_path: Path) -> Path:
    """A git repository on main whose one commit holds this project's contract and the check script."""
    work = tmp_path / "repo"
    shutil.copytree(REPO / "protos", work / "protos")
    shutil.copy(REPO / "buf.yaml", work / "buf.yaml")
    (work / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "buf_breaking.sh", work / "scripts" / "buf_breaking.sh")
    git(work, "init", "-q", "-b", "main")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "contract v1")
    return work


def remove_a_field(text: str) -> str:
    assert PROMPT_FIELD in text
    return text.replace(PROMPT_FIELD, "")


def add_a_field(text: str) -> str:
    assert PROMPT_FIELD in text
    return text.replace(PROMPT_FIELD, PROMPT_FIELD + "  // A new option, for this test.\n  bool new_option = 99;\n")


@pytest.fixture(scope="module", autouse=True)
def _buf_is_installed() -> None:
    assert BUF.exists(), "buf is missing: `make test` installs it (npm @bufbuild/buf)"


@pytest.mark.parametrize("committed", [True, False], ids=["committed", "uncommitted"])
@pytest.mark.parametrize(
    ("edit", "breaks"), [(remove_a_field, True), (add_a_field, False)], ids=["field-removed", "field-added"]
)
def test_the_check_fails_exactly_the_breaking_change(
    edit: Callable[[str], str], breaks: bool, committed: bool, tmp_path: Path
) -> None:
    """Removing a field fails the check against the previous contract; adding one passes, committed or not."""
    work = scratch_repo(tmp_path)
    proto = work / PROTO
    proto.write_text(edit(proto.read_text()))
    if committed:
        git(work, "commit", "-q", "-am", "contract v2")
    result = subprocess.run(
        ["bash", "scripts/buf_breaking.sh", str(BUF)], cwd=work, capture_output=True, text=True, check=False
    )
    output = result.stdout + result.stderr
    assert "skipped" not in output
    if breaks:
        assert result.returncode != 0, output
        assert "prompt" in output, output
    else:
        assert result.returncode == 0, output
        assert "no breaking change" in output, output
