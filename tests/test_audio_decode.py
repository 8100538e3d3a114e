"""Validation decodes each upload once and hands the local engines exactly what decoding the file gives."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from service.audio.decode import WHISPER_SAMPLE_RATE, decode_to_whisper_input, read_whisper_input
from service.audio.probe import probe, wrap_pcm_as_wav
from service.domain import RawPcmFormat
from service.errors import AudioTooLong
from service.threads import Stopped
from tests.conftest import DATA, Fixture
from tests.test_service_local import ENGLISH_FORMATS


@pytest.mark.parametrize("name", ENGLISH_FORMATS)
def test_samples_written_while_validating_equal_a_separate_decode(
    name: str, tmp_path: Path, spoken: dict[str, Fixture]
) -> None:
    """The 16 kHz mono input probe writes is sample for sample what decode_to_whisper_input returns."""
    written = tmp_path / "input.s16"
    info = probe(DATA / name, max_seconds=60, whisper_input=written)
    samples = read_whisper_input(written)
    written.unlink()
    expected = decode_to_whisper_input(DATA / name)
    assert samples.dtype == np.float32
    np.testing.assert_array_equal(samples, expected)
    assert len(samples) / WHISPER_SAMPLE_RATE == pytest.approx(info.duration, abs=0.05)
    assert info.duration == pytest.approx(spoken[name].duration, abs=0.01)
    assert 0.05 < float(np.abs(samples).max()) <= 1.0


def test_validation_that_fails_still_leaves_a_closed_partial_file(tmp_path: Path) -> None:
    """Audio over the duration limit is refused mid-decode; the partial input file is closed for its owner to delete."""
    written = tmp_path / "input.s16"
    with pytest.raises(AudioTooLong):
        probe(DATA / "speech_en.flac", max_seconds=2, whisper_input=written)
    assert 0 < written.stat().st_size < 3 * WHISPER_SAMPLE_RATE * 2
    written.unlink()


def test_a_stopped_probe_or_wrap_ends_before_its_work(tmp_path: Path) -> None:
    """Probing and wrapping PCM check their stop event as they go: set, they end with Stopped before any audio is
    decoded or copied, leaving their closed file for its owner to delete."""
    stop = threading.Event()
    stop.set()
    written = tmp_path / "input.s16"
    with pytest.raises(Stopped):
        probe(DATA / "speech_en.flac", max_seconds=60, whisper_input=written, stop=stop)
    assert written.stat().st_size == 0
    written.unlink()
    wav = tmp_path / "wrapped.wav"
    raw = tmp_path / "speech.pcm"
    raw.write_bytes(np.zeros(WHISPER_SAMPLE_RATE, dtype="<i2").tobytes())
    with pytest.raises(Stopped):
        wrap_pcm_as_wav(raw, wav, RawPcmFormat(sample_rate_hz=WHISPER_SAMPLE_RATE, channels=1), stop)
    assert wav.stat().st_size <= 44  # at most the header
    for path in (wav, raw):
        path.unlink()
