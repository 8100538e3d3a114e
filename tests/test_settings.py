"""Settings: every numeric value is bounded, every accepted value builds a server, a bad one stops start-up cleanly."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import types
import typing
from typing import Any

import pytest
from annotated_types import Ge, Gt, Le
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from service.domain import AudioFile, BackendKind, ModelDescription, Progress, Transcript, TranscriptionOptions
from service.faces.grpc.app import create_server
from service.settings import GIB, MIB, Settings
from service.wiring import build_app
from tests.conftest import REPO


def number_type(info: FieldInfo) -> type[int] | type[float] | None:
    """int or float for a numeric field (optional or not), None for any other field."""
    options = set(typing.get_args(info.annotation)) - {types.NoneType} or {info.annotation}
    if options == {int}:
        return int
    if options == {float}:
        return float
    return None


NUMERIC = {name: kind for name, info in Settings.model_fields.items() if (kind := number_type(info)) is not None}
FLOATS = [name for name, kind in NUMERIC.items() if kind is float]


def constraint(name: str, kind: type[Ge | Gt | Le], attribute: str) -> int | float | None:
    """The value of a field's ge, gt or le constraint, or None when it has none."""
    for item in Settings.model_fields[name].metadata:
        if isinstance(item, kind):
            value = getattr(item, attribute)
            assert isinstance(value, int | float)
            return value
    return None


def highest(name: str) -> int | float:
    """The largest value a numeric field accepts, in the field's type."""
    top = constraint(name, Le, "le")
    assert top is not None, f"{name} has no upper bound"
    return NUMERIC[name](top)


def lowest(name: str) -> int | float:
    """The smallest value a numeric field accepts, in the field's type."""
    if (bottom := constraint(name, Ge, "ge")) is not None:
        return NUMERIC[name](bottom)
    above = constraint(name, Gt, "gt")
    assert above is not None, f"{name} has no lower bound"
    return int(above) + 1 if NUMERIC[name] is int else math.nextafter(above, math.inf)


def refused_fields(**values: Any) -> set[str]:
    """The fields Settings(**values) reports as invalid (empty when it accepts them)."""
    try:
        Settings(**values)
    except ValidationError as error:
        return {str(detail["loc"][0]) for detail in error.errors() if detail["loc"]}
    return set()


class IdleBackend:
    """A local backend that is never asked to transcribe: enough to wire a server."""

    kind = BackendKind.LOCAL
    workers = 1

    async def start(self) -> None:
        """Nothing to load."""

    def check(self, options: TranscriptionOptions) -> None:
        """Every option is fine."""

    async def transcribe(
        self,
        audio: AudioFile,
        options: TranscriptionOptions,
        deadline: float | None = None,
        progress: Progress | None = None,
    ) -> Transcript:
        """Never called by these tests."""
        raise NotImplementedError

    def models(self) -> list[ModelDescription]:
        """No models."""
        return []

    async def aclose(self) -> None:
        """Nothing to release."""


def test_defaults_fit_a_working_day_of_audio() -> None:
    """The defaults take 10 hours or 1 GiB of audio on both backends and 64 MiB gRPC messages."""
    defaults = {name: info.default for name, info in Settings.model_fields.items()}
    assert defaults["max_audio_bytes"] == GIB
    assert defaults["local_max_audio_bytes"] is None
    assert defaults["max_audio_seconds"] == 36_000
    assert defaults["max_message_bytes"] == 64 * MIB


def test_every_numeric_field_is_bounded_on_both_sides() -> None:
    """Each int or float setting declares a lower and an upper bound, so no typo reaches gRPC or asyncio."""
    assert {"max_audio_bytes", "max_message_bytes", "keepalive_time_seconds"} <= NUMERIC.keys()
    for name in NUMERIC:
        assert lowest(name) <= highest(name), name


def test_the_grpc_message_limit_stays_well_below_int32() -> None:
    """max_message_bytes, a C int inside gRPC, is bounded far below 2**31 whatever the upload limits are."""
    assert highest("max_message_bytes") <= 2**30
    assert refused_fields(max_message_bytes=2**31) == {"max_message_bytes"}
    assert refused_fields(max_audio_bytes=2**31) == set()


@pytest.mark.parametrize("name", sorted(NUMERIC))
def test_a_value_beyond_either_bound_is_refused(name: str) -> None:
    """A value just above the upper bound or just below the lower bound fails validation for that field."""
    top, bottom = highest(name), lowest(name)
    above = top + 1 if NUMERIC[name] is int else math.nextafter(top, math.inf)
    below = bottom - 1 if NUMERIC[name] is int else math.nextafter(bottom, -math.inf)
    assert refused_fields(**{name: above}) == {name}
    assert refused_fields(**{name: below}) == {name}


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, "inf", "-inf", "nan", "Infinity"])
@pytest.mark.parametrize("name", FLOATS)
def test_non_finite_floats_are_refused(name: str, value: float | str) -> None:
    """Infinity and NaN, as numbers or as typed in an environment variable, fail validation for a float setting."""
    assert refused_fields(**{name: value}) == {name}


@pytest.mark.parametrize("edge", [highest, lowest])
async def test_every_accepted_extreme_builds_a_server(edge: typing.Callable[[str], float]) -> None:
    """Settings with every numeric field at its upper (or lower) bound build a gRPC server; port 0 binds anywhere."""
    values: dict[str, Any] = {name: edge(name) for name in NUMERIC}
    settings = Settings(**values | {"host": "127.0.0.1", "port": 0})
    app = build_app(settings, {BackendKind.LOCAL: IdleBackend()})
    server, port, _ = create_server(
        settings, app.transcriber, app.live, app.recorder, jobs=app.jobs, fetcher=app.fetcher
    )
    try:
        assert port > 0
    finally:
        await server.stop(None)
        await app.transcriber.aclose()


@pytest.mark.parametrize(
    "bad",
    [
        {"TRANSCRIBE_MAX_AUDIO_BYTES": str(int(highest("max_audio_bytes")) + 1)},
        {
            "TRANSCRIBE_MAX_AUDIO_BYTES": "1e400",
            "TRANSCRIBE_MAX_MESSAGE_BYTES": str(2**31),
            "TRANSCRIBE_KEEPALIVE_TIME_SECONDS": "nan",
        },
    ],
    ids=["too-large", "several"],
)
def test_an_invalid_setting_stops_the_server_with_one_line_naming_its_variable(bad: dict[str, str]) -> None:
    """`python -m service` with out-of-range values exits 2 with one stderr line naming every bad variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRANSCRIBE_", "OPENAI_"))} | bad
    result = subprocess.run(
        [sys.executable, "-m", "service"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("transcribe-server: invalid configuration: ")
    for variable in bad:
        assert f"{variable}: " in lines[0]
