"""Audio of a live stream as it arrives: LINEAR16 or a WebM/Ogg Opus stream, decoded to 16 kHz mono samples."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import av
import av.error
import numpy as np
import numpy.typing as npt

from service.audio.decode import WHISPER_SAMPLE_RATE, resample_to_whisper, whisper_resampler
from service.domain import LiveFormat, RawPcmFormat
from service.errors import TruncatedAudio, UndecodableAudio

Samples = npt.NDArray[np.float32]
Deliver = Callable[[Samples], None]
_CONTAINERS = {LiveFormat.WEBM_OPUS: "matroska", LiveFormat.OGG_OPUS: "ogg"}
# Audio lost in a stream (WebM's demuxer skips damaged bytes to the next cluster) shows as a jump in the frames'
# timestamps: it is heard as silence, so later offsets stay true. A jump this long is refused instead.
_GAP_SECONDS = 0.05
_MAX_GAP_SECONDS = 30.0


class PcmDecoder:
    """Headerless 16-bit little-endian PCM: whole frames are resampled as they come; a partial frame waits."""

    def __init__(self, fmt: RawPcmFormat, deliver: Deliver) -> None:
        self._fmt = fmt
        self._deliver = deliver
        self._frame_bytes = 2 * fmt.channels
        self._pending = b""
        self._resampler = whisper_resampler()

    def push(self, data: bytes) -> None:
        """Decode the whole frames now available and deliver their samples."""
        data = self._pending + data
        whole = len(data) // self._frame_bytes * self._frame_bytes
        self._pending = data[whole:]
        if whole:
            interleaved = np.frombuffer(data[:whole], dtype="<i2").reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(interleaved, format="s16", layout=_layout(self._fmt.channels))
            frame.sample_rate = self._fmt.sample_rate_hz
            self._deliver(resample_to_whisper(self._resampler, frame))

    def abort(self) -> None:
        """Stop decoding: nothing runs apart from push, so there is nothing to stop."""

    def close(self) -> None:
        """Deliver what the resampler still holds; a partial frame left over is an error."""
        self._deliver(resample_to_whisper(self._resampler, None))
        if self._pending:
            raise TruncatedAudio(
                f"LINEAR16 audio with {self._fmt.channels} channel(s) must be a whole number of "
                f"{self._frame_bytes}-byte frames"
            )


class ContainerDecoder:
    """A WebM or Ogg stream decoded incrementally in a thread of its own; samples are delivered from that thread."""

    def __init__(self, audio_format: LiveFormat, deliver: Deliver, fail: Callable[[Exception], None]) -> None:
        self._format = audio_format
        self._deliver = deliver
        self._fail = fail
        self._chunks: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._buffer = b""
        self._ended = False
        self._thread = threading.Thread(target=self._run, name="live-decode", daemon=True)
        self._thread.start()

    def push(self, data: bytes) -> None:
        """Hand bytes to the decoding thread."""
        if data:
            self._chunks.put(data)

    def close(self) -> None:
        """Signal the end of the stream and wait (briefly) for the thread to decode the rest."""
        self._chunks.put(None)
        self._thread.join(timeout=10)

    def abort(self) -> None:
        """Stop decoding without waiting."""
        self._chunks.put(None)

    def read(self, size: int = -1) -> bytes:
        """The file interface PyAV reads from: what has arrived, up to `size` bytes; it waits only while nothing
        has (PyAV asks for 32 KiB at a time, which at Opus bitrates is many seconds of audio)."""
        while not self._ended and not self._buffer:
            self._take(self._chunks.get())
        while not self._ended and (size < 0 or len(self._buffer) < size):
            try:
                self._take(self._chunks.get_nowait())
            except queue.Empty:
                break
        if size < 0:
            size = len(self._buffer)
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _take(self, chunk: bytes | None) -> None:
        if chunk is None:
            self._ended = True
        else:
            self._buffer += chunk

    def _run(self) -> None:
        resampler = whisper_resampler()
        decoded = 0
        heard_until: float | None = None
        try:
            with av.open(self, mode="r", format=_CONTAINERS[self._format], metadata_errors="ignore") as container:
                if not container.streams.audio:
                    raise UndecodableAudio("the live stream holds no audio")
                for frame in container.decode(container.streams.audio[0]):
                    start = frame.time if frame.time is not None else heard_until
                    if start is not None and heard_until is not None:
                        self._fill(start - heard_until)
                    decoded += frame.samples
                    self._deliver(resample_to_whisper(resampler, frame))
                    if start is not None:
                        heard_until = start + frame.samples / frame.sample_rate
            self._deliver(resample_to_whisper(resampler, None))
        except UndecodableAudio as error:
            self._fail(error)
        except (av.error.FFmpegError, ValueError, UnicodeDecodeError) as error:
            message = "the live stream could not be decoded" if decoded == 0 else "the live stream stopped decoding"
            failure = UndecodableAudio(message, metadata={"audio_format": self._format.value})
            failure.__cause__ = error
            self._fail(failure)

    def _fill(self, gap: float) -> None:
        """Silence in place of audio the stream lost."""
        if gap > _MAX_GAP_SECONDS:
            raise UndecodableAudio(
                f"the live stream's timestamps jump ahead by more than {_MAX_GAP_SECONDS:g} seconds",
                metadata={"audio_format": self._format.value},
            )
        if gap > _GAP_SECONDS:
            self._deliver(np.zeros(round(gap * WHISPER_SAMPLE_RATE), dtype=np.float32))


def _layout(channels: int) -> str:
    return {1: "mono", 2: "stereo"}.get(channels, f"{channels}c")
