"""Validate an upload by decoding it with PyAV: container, codec, exact duration, truncation."""

from __future__ import annotations

import os
import struct
import threading
import wave
from pathlib import Path

import av
import av.error

from service.audio.decode import WhisperInputWriter
from service.domain import AudioInfo, RawPcmFormat
from service.errors import AudioTooLong, EmptyAudio, TruncatedAudio, UndecodableAudio
from service.threads import Stopped

# Container names as PyAV reports them, mapped to the file extension the file is given.
_EXTENSIONS = {
    "wav": "wav",
    "mp3": "mp3",
    "ogg": "ogg",
    "flac": "flac",
    "aac": "aac",
    "mov,mp4,m4a,3gp,3g2,mj2": "m4a",
    "matroska,webm": "webm",
    "aiff": "aiff",
    "caf": "caf",
    "asf": "wma",
    "amr": "amr",
    "w64": "w64",
}
_WEBM_CODECS = {"opus", "vorbis"}
# FFmpeg has standard layouts (and so a downmix to mono) for up to 8 channels.
MAX_CHANNELS = 8
# A file may decode a little shorter than its header says (encoder padding); more than this is truncation.
_TRUNCATION_TOLERANCE_SECONDS = 0.5
_TRUNCATION_TOLERANCE_RATIO = 0.02


def probe(
    path: Path, max_seconds: float, whisper_input: Path | None = None, stop: threading.Event | None = None
) -> AudioInfo:
    """Decode the whole first audio stream once; raise the domain error that describes what is wrong.

    With `whisper_input`, the decoded audio is also written there as Whisper's input (see WhisperInputWriter),
    so a local backend need not decode the file a second time. Once `stop` is set, the decoding ends with Stopped.
    """
    size = path.stat().st_size
    if size == 0:
        raise EmptyAudio("the request carries no audio bytes")
    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise UndecodableAudio("the bytes are not a supported audio format") from exc
    with container:
        if not container.streams.audio:
            raise UndecodableAudio("the file holds no audio stream")
        stream = container.streams.audio[0]
        if stream.codec_context is None:
            raise UndecodableAudio("the audio codec is not one this server can decode")
        codec = stream.codec_context.name
        rate = stream.codec_context.sample_rate or stream.rate or 0
        channels = stream.codec_context.channels
        if rate <= 0 or channels <= 0:
            raise UndecodableAudio("the audio stream has no sample rate or no channels")
        if channels > MAX_CHANNELS:
            raise UndecodableAudio(
                f"audio with more than {MAX_CHANNELS} channels is not supported",
                metadata={"channels": str(channels), "limit_channels": str(MAX_CHANNELS)},
            )
        declared = _declared_seconds(container, stream)
        if container.format.name == "wav":
            _check_riff_data_size(path, size)
        elif container.format.name == "ogg":
            _check_ogg_last_page(path, size)
        writer = WhisperInputWriter(whisper_input) if whisper_input is not None else None
        try:
            decoded = _decoded_seconds(container, stream, max_seconds, writer, stop)
        finally:
            if writer is not None:
                writer.close()
        container_name = container.format.name
    if decoded <= 0:
        raise EmptyAudio("the file holds no audio samples")
    if declared is not None and declared - decoded > max(
        _TRUNCATION_TOLERANCE_SECONDS, _TRUNCATION_TOLERANCE_RATIO * declared
    ):
        raise TruncatedAudio(
            "the file ends before the audio its header declares",
            metadata={"declared_seconds": f"{declared:.3f}", "decoded_seconds": f"{decoded:.3f}"},
        )
    return AudioInfo(
        container=container_name,
        extension=_extension(container_name, codec, container),
        codec=codec,
        duration=decoded,
        sample_rate=rate,
        channels=channels,
        size_bytes=size,
    )


def _declared_seconds(container: av.container.InputContainer, stream: av.AudioStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _check_riff_data_size(path: Path, size: int) -> None:
    """FFmpeg trims a WAV's duration to the bytes present, so compare the header's data size directly."""
    with path.open("rb") as fh:
        header = fh.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return
        while chunk := fh.read(8):
            if len(chunk) < 8:
                return
            chunk_id, chunk_size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if chunk_id == b"data":
                present = size - fh.tell()
                # 0 and 0xFFFFFFFF mean "unknown length" (streamed WAV writers).
                if chunk_size not in (0, 0xFFFFFFFF) and chunk_size > present:
                    raise TruncatedAudio(
                        "the file ends before the audio its header declares",
                        metadata={"declared_bytes": str(chunk_size), "present_bytes": str(present)},
                    )
                return
            fh.seek(chunk_size + (chunk_size & 1), 1)


def _check_ogg_last_page(path: Path, size: int) -> None:
    """FFmpeg drops a partial last Ogg page without a word, so check that the file ends where a page does."""
    tail_bytes = min(size, 256 * 1024)
    with path.open("rb") as fh:
        fh.seek(size - tail_bytes)
        tail = fh.read()
    start = tail.rfind(b"OggS")
    # A page header is 27 bytes plus one lacing byte per segment; the page body is the sum of the lacing values.
    while start >= 0:
        header = tail[start : start + 27]
        if len(header) == 27 and header[4] == 0:
            segments = header[26]
            lacing = tail[start + 27 : start + 27 + segments]
            end = start + 27 + segments + sum(lacing)
            if len(lacing) == segments and end == len(tail):
                return
            if end <= len(tail):
                start = tail.rfind(b"OggS", 0, start)
                continue
        raise TruncatedAudio("the Ogg file ends in the middle of a page")
    raise TruncatedAudio("the Ogg file ends in the middle of a page")


def _decoded_seconds(
    container: av.container.InputContainer,
    stream: av.AudioStream,
    max_seconds: float,
    writer: WhisperInputWriter | None,
    stop: threading.Event | None,
) -> float:
    samples = 0
    rate = 0
    try:
        for frame in container.decode(stream):
            if stop is not None and stop.is_set():
                raise Stopped
            rate = frame.sample_rate or rate
            samples += frame.samples
            if rate and samples / rate > max_seconds:
                raise AudioTooLong(
                    f"audio is longer than the limit of {max_seconds:g} seconds",
                    metadata={"limit_seconds": f"{max_seconds:g}"},
                )
            if writer is not None:
                writer.write(frame)
    except av.error.FFmpegError as exc:
        if samples == 0:
            raise UndecodableAudio("the audio could not be decoded") from exc
        raise TruncatedAudio("the audio stops in the middle of its data") from exc
    return samples / rate if rate else 0.0


def _extension(name: str, codec: str, container: av.container.InputContainer) -> str:
    if name == "matroska,webm":
        return "webm" if codec in _WEBM_CODECS else "mka"
    if name == "mov,mp4,m4a,3gp,3g2,mj2" and container.streams.video:
        return "mp4"
    if name in _EXTENSIONS:
        return _EXTENSIONS[name]
    return name.split(",", maxsplit=1)[0].replace("_", "")


def wrap_pcm_as_wav(raw: Path, wav_path: Path, fmt: RawPcmFormat, stop: threading.Event | None = None) -> None:
    """Copy headerless 16-bit PCM into a WAV file so every later step sees a container; Stopped once `stop` is set."""
    frame_bytes = 2 * fmt.channels
    size = raw.stat().st_size
    if size == 0:
        raise EmptyAudio("the request carries no audio bytes")
    if size % frame_bytes:
        raise TruncatedAudio(
            f"LINEAR16 audio with {fmt.channels} channel(s) must be a whole number of {frame_bytes}-byte frames"
        )
    fd = os.open(wav_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out, wave.open(out, "wb") as wav, raw.open("rb") as src:
        wav.setnchannels(fmt.channels)
        wav.setsampwidth(2)
        wav.setframerate(fmt.sample_rate_hz)
        while block := src.read(1024 * 1024):
            if stop is not None and stop.is_set():
                raise Stopped
            wav.writeframesraw(block)
