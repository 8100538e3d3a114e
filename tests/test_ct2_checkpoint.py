"""Bundled CTranslate2 Whisper models and their conversion into openai-whisper checkpoints."""

from __future__ import annotations

import base64
import gzip
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch

from service.engines.bundled import (
    BUNDLED_BASE,
    BUNDLED_TINY_EN,
    base_ct2_dir,
    bundled_ct2_dir,
    tiny_en_ct2_dir,
)
from service.engines.ct2_checkpoint import (
    alignment_heads_dump,
    ct2_alignment_heads,
    openai_whisper_checkpoint,
    read_ct2_model,
)

SPEECH = Path(__file__).parent / "data" / "speech_en.wav"
EXPECTED_WORDS = ("quick", "fox", "lazy", "dog")

Audio = npt.NDArray[np.float32]


@pytest.fixture(scope="module")
def speech() -> Audio:
    """The spoken test sentence as 16 kHz mono float32, decoded once for both engines."""
    if not SPEECH.is_file():
        pytest.skip(f"{SPEECH} is missing")
    from faster_whisper import decode_audio

    audio: Audio = decode_audio(str(SPEECH))
    return audio


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny.en checkpoint converted once into a temporary cache shared by this module."""
    return openai_whisper_checkpoint(tiny_en_ct2_dir(), tmp_path_factory.mktemp("cache"), BUNDLED_TINY_EN)


@pytest.fixture(scope="module")
def tiny_openai(tiny_checkpoint: Path) -> Any:
    """The converted tiny.en checkpoint loaded by openai-whisper."""
    import whisper

    return whisper.load_model(str(tiny_checkpoint), device="cpu")


@pytest.fixture(scope="module")
def tiny_faster() -> Any:
    """The bundled tiny.en folder loaded by faster-whisper in float32, the reference for token equality."""
    from faster_whisper import WhisperModel

    return WhisperModel(str(tiny_en_ct2_dir()), device="cpu", compute_type="float32")


@pytest.fixture(scope="module")
def tiny_openai_greedy(tiny_openai: Any, speech: Audio) -> dict[str, Any]:
    """openai-whisper's beam-1 transcription of the sentence, shared by the tests that read it."""
    return openai_transcribe(tiny_openai, speech, beam_size=1)


def decode_options(beam_size: int) -> dict[str, Any]:
    """Greedy-or-beam decoding options both engines accept, without temperature fallback."""
    return {
        "beam_size": beam_size,
        "temperature": 0.0,
        "condition_on_previous_text": False,
        "language": "en",
    }


def openai_transcribe(model: Any, audio: Audio, beam_size: int, **extra: Any) -> dict[str, Any]:
    """Transcribe with openai-whisper in float32."""
    result: dict[str, Any] = model.transcribe(audio, fp16=False, **decode_options(beam_size), **extra)
    return result


def faster_segments(model: Any, audio: Audio, beam_size: int, **extra: Any) -> list[Any]:
    """Transcribe with faster-whisper and collect the segments."""
    segments, _ = model.transcribe(audio, **decode_options(beam_size), **extra)
    return list(segments)


def openai_heads_mask(dump: bytes, n_text_layer: int, n_text_head: int) -> npt.NDArray[np.bool_]:
    """Decode an alignment-heads dump exactly as Whisper.set_alignment_heads does."""
    raw = gzip.decompress(base64.b85decode(dump))
    return np.frombuffer(raw, dtype=bool).reshape(n_text_layer, n_text_head)


def test_reads_tiny_en_model_bin() -> None:
    """model.bin parses to a WhisperSpec with float16 weights, scalars, the projection alias and config."""
    model = read_ct2_model(tiny_en_ct2_dir())

    assert (model.spec_name, model.revision) == ("WhisperSpec", 3)
    assert model.variables["decoder/embeddings/weight"].shape == (51864, 384)
    assert model.variables["decoder/embeddings/weight"].dtype == np.float16
    assert model.variables["encoder/layer_0/self_attention/linear_0/weight"].shape == (3 * 384, 384)
    assert int(model.variables["decoder/num_heads"]) == 6
    assert model.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    assert model.config["suppress_ids_begin"] == [220, 50256]


@pytest.mark.parametrize("name", [BUNDLED_TINY_EN, BUNDLED_BASE])
def test_alignment_heads_dump_matches_openai_whisper(name: str, tmp_path: Path) -> None:
    """The dump built from a bundled config selects the same heads as openai-whisper's own table."""
    import whisper

    ct2_dir = bundled_ct2_dir(name, tmp_path)
    assert ct2_dir is not None
    n_text_layer, n_text_head = {BUNDLED_TINY_EN: (4, 6), BUNDLED_BASE: (6, 8)}[name]

    ours = alignment_heads_dump(ct2_alignment_heads(ct2_dir), n_text_layer, n_text_head)

    assert np.array_equal(
        openai_heads_mask(ours, n_text_layer, n_text_head),
        openai_heads_mask(whisper._ALIGNMENT_HEADS[name], n_text_layer, n_text_head),
    )


def test_checkpoint_holds_dims_float32_weights_and_heads(tiny_checkpoint: Path) -> None:
    """The checkpoint carries ModelDimensions, float32 tensors, the file's position tables and the heads."""
    checkpoint = torch.load(tiny_checkpoint, weights_only=True)
    state = checkpoint["model_state_dict"]
    ct2 = read_ct2_model(tiny_en_ct2_dir()).variables

    assert checkpoint["dims"] == {
        "n_mels": 80,
        "n_audio_ctx": 1500,
        "n_audio_state": 384,
        "n_audio_head": 6,
        "n_audio_layer": 4,
        "n_vocab": 51864,
        "n_text_ctx": 448,
        "n_text_state": 384,
        "n_text_head": 6,
        "n_text_layer": 4,
    }
    assert {tensor.dtype for tensor in state.values()} == {torch.float32}
    assert "decoder.blocks.0.attn.key.bias" not in state
    assert np.array_equal(
        state["encoder.positional_embedding"].numpy(),
        ct2["encoder/position_encodings/encodings"].astype(np.float32),
    )
    assert [tuple(pair) for pair in checkpoint["alignment_heads"]] == ct2_alignment_heads(tiny_en_ct2_dir())


def test_checkpoint_is_reused_until_model_bin_changes(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """A second request returns the cached file untouched; one older than model.bin is reconverted."""
    before = tiny_checkpoint.stat()
    assert list(tiny_checkpoint.parent.iterdir()) == [tiny_checkpoint]
    assert before.st_mode & 0o777 == 0o644
    again = openai_whisper_checkpoint(tiny_en_ct2_dir(), tiny_checkpoint.parent.parent, BUNDLED_TINY_EN)
    assert again == tiny_checkpoint
    assert (again.stat().st_ino, again.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)

    stale = tmp_path / "openai-whisper" / f"{BUNDLED_TINY_EN}.pt"
    stale.parent.mkdir()
    stale.write_bytes(b"stale")
    model_bin_mtime = (tiny_en_ct2_dir() / "model.bin").stat().st_mtime
    os.utime(stale, (model_bin_mtime - 10, model_bin_mtime - 10))

    rebuilt = openai_whisper_checkpoint(tiny_en_ct2_dir(), tmp_path, BUNDLED_TINY_EN)

    assert rebuilt.stat().st_size == before.st_size
    assert list(rebuilt.parent.iterdir()) == [rebuilt]


def test_converted_tiny_en_transcribes_the_sentence(tiny_openai_greedy: dict[str, Any]) -> None:
    """openai-whisper loads the converted tiny.en by path and hears the expected words."""
    text = tiny_openai_greedy["text"].lower()

    for word in EXPECTED_WORDS:
        assert word in text


@pytest.mark.parametrize("beam_size", [1, 5])
def test_converted_tiny_en_matches_faster_whisper_tokens(
    tiny_openai: Any, tiny_openai_greedy: dict[str, Any], tiny_faster: Any, speech: Audio, beam_size: int
) -> None:
    """The converted checkpoint decodes exactly the token ids faster-whisper decodes from the source."""
    result = tiny_openai_greedy if beam_size == 1 else openai_transcribe(tiny_openai, speech, beam_size)
    ours = result["segments"]
    reference = faster_segments(tiny_faster, speech, beam_size)

    assert [segment["tokens"] for segment in ours] == [segment.tokens for segment in reference]


def test_word_timestamps_follow_faster_whisper(
    tiny_checkpoint: Path, tiny_openai: Any, tiny_faster: Any, speech: Audio
) -> None:
    """With the checkpoint's alignment heads applied, word starts increase and match faster-whisper."""
    heads = [tuple(pair) for pair in torch.load(tiny_checkpoint, weights_only=True)["alignment_heads"]]
    dims = tiny_openai.dims
    tiny_openai.set_alignment_heads(alignment_heads_dump(heads, dims.n_text_layer, dims.n_text_head))

    result = openai_transcribe(tiny_openai, speech, beam_size=1, word_timestamps=True)
    words = [word for segment in result["segments"] for word in segment["words"]]
    reference_segments = faster_segments(tiny_faster, speech, 1, word_timestamps=True)
    reference = [word for segment in reference_segments for word in segment.words]

    starts = [word["start"] for word in words]
    assert len(words) >= len(EXPECTED_WORDS)
    assert starts == sorted(starts)
    assert starts[0] < starts[-1]
    assert [word["word"] for word in words] == [word.word for word in reference]
    assert np.allclose(starts, [word.start for word in reference], atol=0.05)


def test_base_joins_once_and_runs_in_both_engines(tmp_path: Path, speech: Audio) -> None:
    """The split base model joins once and, as is and converted, tells both engines the speech is English."""
    import whisper
    from faster_whisper import WhisperModel

    ct2_dir = base_ct2_dir(tmp_path)
    joined = (ct2_dir / "model.bin").stat()
    assert ct2_dir == tmp_path / "ct2" / "base"
    assert sorted(path.name for path in ct2_dir.iterdir()) == [
        "config.json",
        "model.bin",
        "tokenizer.json",
        "vocabulary.txt",
    ]

    assert base_ct2_dir(tmp_path) == ct2_dir
    rejoined = (ct2_dir / "model.bin").stat()
    assert (rejoined.st_ino, rejoined.st_mtime_ns) == (joined.st_ino, joined.st_mtime_ns)

    faster = WhisperModel(str(ct2_dir), device="cpu", compute_type="int8")
    assert faster.detect_language(speech)[0] == "en"

    checkpoint = openai_whisper_checkpoint(ct2_dir, tmp_path, BUNDLED_BASE)
    model = whisper.load_model(str(checkpoint), device="cpu")
    assert model.is_multilingual
    _, probabilities = model.detect_language(whisper.log_mel_spectrogram(whisper.pad_or_trim(speech)))
    assert max(probabilities, key=probabilities.get) == "en"


def test_concurrent_joins_leave_one_complete_folder(tmp_path: Path) -> None:
    """Two racing joins both return the complete folder and leave no temporary files behind."""
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(base_ct2_dir(tmp_path))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    ct2_dir = tmp_path / "ct2" / "base"
    assert results == [ct2_dir, ct2_dir]
    assert not [path for path in ct2_dir.iterdir() if path.name.endswith(".tmp")]
    assert read_ct2_model(ct2_dir).spec_name == "WhisperSpec"


def test_only_bundled_names_have_a_folder(tmp_path: Path) -> None:
    """Names other than tiny.en and base are not bundled."""
    assert bundled_ct2_dir(BUNDLED_TINY_EN, tmp_path) == tiny_en_ct2_dir()
    assert bundled_ct2_dir("small", tmp_path) is None
    assert not (tmp_path / "ct2").exists()
