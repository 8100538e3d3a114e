"""The bundled multilingual base model detects Spanish and French and translates them to English."""

from __future__ import annotations

import pytest

from tests.conftest import DATA, Fixture, StartServer
from tests.helpers import assert_has_words
from transcribe.v1 import transcribe_service_pb2 as pb

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("name", "language"), [("speech_es.wav", "es"), ("speech_fr.wav", "fr")])
async def test_detects_the_spoken_language(
    name: str, language: str, start_server: StartServer, spoken: dict[str, Fixture]
) -> None:
    """With no language given, base reports the spoken language, its probability, and native text."""
    server = await start_server()
    config = pb.TranscriptionConfig(model="base")
    response = await server.stub.Transcribe(
        pb.TranscribeRequest(content=(DATA / name).read_bytes(), config=config), timeout=300
    )
    transcript = response.transcript
    assert transcript.language_code == language
    assert transcript.language_probability > 0.5
    assert transcript.model == "base"
    assert_has_words(transcript.text, spoken[name].expected_words)


@pytest.mark.parametrize(("name", "native"), [("speech_es.wav", "familia"), ("speech_fr.wav", "famille")])
async def test_translates_to_english(
    name: str, native: str, start_server: StartServer, spoken: dict[str, Fixture]
) -> None:
    """Task translate turns Spanish and French speech into English text."""
    server = await start_server()
    config = pb.TranscriptionConfig(model="base", task=pb.TASK_TRANSLATE)
    response = await server.stub.Transcribe(
        pb.TranscribeRequest(content=(DATA / name).read_bytes(), config=config), timeout=300
    )
    text = response.transcript.text.lower()
    assert_has_words(text, spoken[name].translated_words)
    assert native not in text


async def test_models_load_on_demand(start_server: StartServer) -> None:
    """A model is loaded on first use and then listed as loaded."""
    server = await start_server()
    await server.stub.Transcribe(
        pb.TranscribeRequest(
            content=(DATA / "speech_fr.wav").read_bytes(), config=pb.TranscriptionConfig(model="base")
        ),
        timeout=300,
    )
    models = {m.name: m for m in (await server.stub.ListModels(pb.ListModelsRequest(), timeout=10)).models}
    assert models["base"].loaded
    assert models["tiny.en"].loaded
