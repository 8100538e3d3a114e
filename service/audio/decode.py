"""Decode audio in-process with PyAV: 16 kHz mono float32 for Whisper, FLAC for APIs."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

WHISPER_SAMPLE_RATE = 16000


def decode_to_whisper_input(path: Path) -> npt.NDArray[np.float32]:
    """The first audio stream resampled to 16 kHz mono float32 in [-1, 1], as Whisper expects."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=WHISPER_SAMPLE_RATE)
    pieces: list[npt.NDArray[np.float32]] = []
    with av.open(str(path), mode="r", metadata_errors="ignore") as container:
        stream = container.streams.audio[0]
        for frame in container.decode(stream):
            frame.pts = None
            pieces.extend(_plane(out) for out in resampler.resample(frame))
        pieces.extend(_plane(out) for out in resampler.resample(None))
    if not pieces:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(pieces)


def _plane(frame: av.AudioFrame) -> npt.NDArray[np.float32]:
    return frame.to_ndarray().reshape(-1).astype(np.float32, copy=False)


def transcode_to_flac(src: Path, dst: Path) -> None:
    """Re-encode the first audio stream as 16 kHz mono FLAC (lossless for what Whisper hears)."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=WHISPER_SAMPLE_RATE)
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
