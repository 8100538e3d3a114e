"""Decode audio in-process with PyAV: Whisper's input (16 kHz mono), FLAC for APIs."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

WHISPER_SAMPLE_RATE = 16000
_INT16_FULL_SCALE = 32768.0


def whisper_resampler() -> av.AudioResampler:
    """16 kHz mono 16-bit, as Whisper's own loader (ffmpeg -f s16le) produces."""
    return av.AudioResampler(format="s16", layout="mono", rate=WHISPER_SAMPLE_RATE)


class WhisperInputWriter:
    """Appends decoded frames to a file as Whisper's input: raw 16 kHz mono 16-bit little-endian PCM."""

    def __init__(self, path: Path) -> None:
        self._resampler = whisper_resampler()
        self._file = os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")

    def write(self, frame: av.AudioFrame | None) -> None:
        """Resample one decoded frame and append it; None flushes what the resampler holds."""
        if frame is not None:
            frame.pts = None
        for out in self._resampler.resample(frame):
            self._file.write(_int16(out).astype("<i2", copy=False).tobytes())

    def close(self) -> None:
        """Flush the resampler and close the file."""
        try:
            self.write(None)
        finally:
            self._file.close()


def read_whisper_input(path: Path, start: float = 0.0, end: float | None = None) -> npt.NDArray[np.float32]:
    """Samples written by WhisperInputWriter, from `start` to `end` seconds, as float32 in [-1, 1]."""
    first = max(0, round(start * WHISPER_SAMPLE_RATE))
    count = -1 if end is None else max(0, round(end * WHISPER_SAMPLE_RATE) - first)
    samples = np.fromfile(path, dtype="<i2", count=count, offset=2 * first).astype(np.float32)
    samples /= _INT16_FULL_SCALE
    return samples


def encode_flac(samples: npt.NDArray[np.float32], dst: Path) -> None:
    """Write 16 kHz mono samples as a FLAC file (lossless for what Whisper hears)."""
    pcm = np.clip(np.round(samples * _INT16_FULL_SCALE), -32768, 32767).astype(np.int16).reshape(1, -1)
    with av.open(str(dst), mode="w", format="flac") as out:
        encoder = out.add_stream("flac", rate=WHISPER_SAMPLE_RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = WHISPER_SAMPLE_RATE
        for packet in encoder.encode(frame):
            out.mux(packet)
        out.mux(encoder.encode(None))


def decode_to_whisper_input(path: Path) -> npt.NDArray[np.float32]:
    """The first audio stream of a file as Whisper's input, float32 in [-1, 1]."""
    resampler = whisper_resampler()
    pieces: list[npt.NDArray[np.int16]] = []
    with av.open(str(path), mode="r", metadata_errors="ignore") as container:
        for frame in container.decode(container.streams.audio[0]):
            frame.pts = None
            pieces.extend(_int16(out) for out in resampler.resample(frame))
        pieces.extend(_int16(out) for out in resampler.resample(None))
    if not pieces:
        return np.zeros(0, dtype=np.float32)
    samples = np.concatenate(pieces).astype(np.float32)
    samples /= _INT16_FULL_SCALE
    return samples


def resample_to_whisper(resampler: av.AudioResampler, frame: av.AudioFrame | None) -> npt.NDArray[np.float32]:
    """One decoded frame (None flushes) through a whisper_resampler(), as float32 samples in [-1, 1]."""
    if frame is not None:
        frame.pts = None
    pieces = [_int16(out) for out in resampler.resample(frame)]
    if not pieces:
        return np.zeros(0, dtype=np.float32)
    samples = np.concatenate(pieces).astype(np.float32)
    samples /= _INT16_FULL_SCALE
    return samples


def _int16(frame: av.AudioFrame) -> npt.NDArray[np.int16]:
    return frame.to_ndarray().reshape(-1).astype(np.int16, copy=False)


def transcode_to_flac(src: Path, dst: Path) -> None:
    """Re-encode the first audio stream as 16 kHz mono FLAC (lossless for what Whisper hears)."""
    resampler = whisper_resampler()
    with (
        av.open(str(src), mode="r", metadata_errors="ignore") as inp,
        av.open(str(dst), mode="w", format="flac") as out,
    ):
        encoder = out.add_stream("flac", rate=WHISPER_SAMPLE_RATE, layout="mono")
        for frame in inp.decode(inp.streams.audio[0]):
            frame.pts = None
            for converted in resampler.resample(frame):
                out.mux(encoder.encode(converted))
        for converted in resampler.resample(None):
            out.mux(encoder.encode(converted))
        out.mux(encoder.encode(None))
