"""Regenerate the benchmark clips and references.json with espeak-ng and PyAV (needs espeak-ng)."""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import wave
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import av
import numpy as np
import numpy.typing as npt

DATA_DIR = Path(__file__).resolve().parent
RATE = 16_000
ESPEAK_RATE = 22_050  # espeak-ng always synthesises at 22.05 kHz
VOICE = "en-us"
SPEED_WPM = 175  # espeak -s: a steady, unhurried rate
WORD_GAP = 6  # espeak -g, in units of 10 ms
PARAGRAPH_GAP_S = 0.8  # silence between paragraphs
EDGE_PAD_S = 0.3  # silence kept before the first and after the last voiced sample of a paragraph
BIT_RATE = 20_000  # Opus bits per second

# Plain prose: American spelling, no numbers, no contractions, no words Whisper may split or join.
CLIPS: dict[str, list[str]] = {
    "speech_60s.ogg": [
        "The old lighthouse keeper climbed the narrow stairs every evening before the sun went down. "
        "He carried a small lamp, a wool blanket, and a book about the history of the sea. "
        "From the top of the tower, he could see the fishing boats coming home across the calm water. "
        "Some nights the wind was gentle and the waves were quiet. Other nights the storm clouds rolled "
        "in from the west, and the rain beat against the glass. On those nights he stayed awake until "
        "morning, watching the light turn slowly above the rocks.",
        "He did not mind the long hours. He liked the sound of the gulls and the smell of salt in the "
        "air. When the sailors came into the harbor, they often waved at the tower, and he always waved "
        "back. In the spring, his sister visited him with fresh bread and news from the village. They sat "
        "together on the steps and talked about the weather, the harvest, and the people they knew when "
        "they were young.",
    ],
    "speech_5min.ogg": [
        "Every town has a market, but the market in our valley was special. It opened early on the last "
        "day of the week, long before most people were awake. Farmers arrived in old trucks filled with "
        "apples, carrots, potatoes, and bright yellow squash. A woman with a wide straw hat sold honey in "
        "glass jars, and children gathered around her table to taste it from small wooden spoons. The "
        "baker brought warm loaves wrapped in paper, and the smell drifted across the square like an "
        "invitation.",
        "My grandmother taught me how to bake bread when I was still a child. She believed that good "
        "bread needed patience more than skill. We mixed flour, water, salt, and yeast in a large bowl, "
        "and then we waited. While the dough rested, she told me stories about her own mother, who had "
        "baked for the whole street during a hard winter. When the dough had risen, we pressed it down, "
        "shaped it into loaves, and placed them in the oven. The kitchen became warm and quiet, and we "
        "watched the crust turn golden through the small window in the door.",
        "The river that runs past the village is wide and slow in the summer. People take boats out in "
        "the afternoon and drift under the willow trees. Ducks follow the boats, hoping for crumbs, and "
        "herons stand very still in the shallow water near the bank. In the autumn, the river changes. "
        "Heavy rain in the hills makes the water rise, and the current becomes fast and brown. Nobody "
        "takes a boat out then. Instead, people walk along the path above the river and watch the leaves "
        "being carried away toward the sea.",
        "Gardening is a lesson in hope. You plant a seed in cold soil and trust that something will grow. "
        "Some plants are easy and forgiving, while others need careful attention every day. Tomatoes want "
        "sun and steady water. Roses want rich soil and protection from insects. Beans climb anything you "
        "give them, and pumpkins spread across the ground until they cover every path. Weeds, of course, "
        "grow faster than anything else. By the end of the "
        "season, the garden is crowded and untidy, but the baskets in the kitchen are full.",
        "The public library stands at the corner of the main street, in a building made of red brick. "
        "Inside, the rooms are calm and bright. Tall windows let in the afternoon light, and the wooden "
        "floors creak softly under your feet. Students sit at long tables with their notebooks open, and "
        "older readers rest in deep chairs near the fireplace. The librarian knows almost every visitor "
        "by name. She can find a book about any subject, from ancient Egypt to the habits of bees, and "
        "she always seems happy to help.",
        "Last spring, a group of friends decided to walk to the top of the mountain behind the town. They "
        "started at dawn, carrying water, sandwiches, and warm jackets. The trail began in a forest of "
        "pine trees, where the air was cool and smelled of resin. Higher up, the trees became smaller and "
        "the path turned rocky and steep. They stopped often to rest and to look back at the valley "
        "below. When they finally reached the summit, the wind was strong and cold, but the view was "
        "wonderful. They could see the river, the market square, and even the roof of the library.",
        "Not long ago, I found an old letter in a drawer of my desk. It was written by a friend who had "
        "moved to a distant country many years before. The paper was thin and the ink had faded, but the "
        "words were still clear. She described a city by the ocean, a small apartment with a blue door, "
        "and a neighbor who played the violin every night. She wrote that she missed the valley, the "
        "market, and the smell of fresh bread. Reading her letter again made me smile, and I decided to "
        "write back, even though I was not sure the address was still correct.",
        "People sometimes ask why anyone would choose to live in such a quiet place. The answer is "
        "simple. Here, the days have a gentle rhythm, and neighbors still know each other. You can hear "
        "the birds in the morning and see the stars at night. On warm evenings, neighbors sit outside and "
        "talk until the sky turns dark. Life is not always easy, and the winters "
        "can be long, but there is a feeling of belonging that is hard to find anywhere else. For many of "
        "us, that feeling is worth more than anything a busy city could offer.",
    ],
}

Samples = npt.NDArray[np.int16]


def speak(text: str, voice: str = VOICE, speed: int = SPEED_WPM, word_gap: int = WORD_GAP, pitch: int = 50) -> Samples:
    """Synthesise text with espeak-ng; mono int16 at ESPEAK_RATE with the edge silence trimmed."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "speech.wav"
        argv = ["espeak-ng", "-v", voice, "-s", str(speed), "-g", str(word_gap), "-p", str(pitch), "-w", str(out)]
        subprocess.run([*argv, text], check=True)
        with wave.open(str(out), "rb") as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (ESPEAK_RATE, 1, 2)
            samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
    voiced = np.flatnonzero(np.abs(samples.astype(np.int32)) > 300)
    pad = int(EDGE_PAD_S * ESPEAK_RATE)
    return samples[max(int(voiced[0]) - pad, 0) : min(int(voiced[-1]) + pad, len(samples))]


def resample(samples: Samples) -> Samples:
    """Resample mono int16 from ESPEAK_RATE to RATE with PyAV; returns shape (1, n)."""
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = ESPEAK_RATE
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    out = [f.to_ndarray() for f in [*resampler.resample(frame), *resampler.resample(None)]]
    return np.concatenate(out, axis=1).astype(np.int16)


class OpusWriter:
    """Ogg/Opus at RATE written from (1, n) int16 pieces of any size, bit-exact so reruns give the same bytes."""

    BLOCK = 960 * RATE // 48_000 * 50  # one second of 20 ms frames

    def __init__(self, path: Path) -> None:
        self._container = av.open(str(path), mode="w", format="ogg")
        self._container.flags |= cast(int, av.container.Flags.bitexact.value)
        stream = self._container.add_stream("libopus", rate=RATE)
        assert isinstance(stream, av.AudioStream)
        stream.layout = "mono"
        stream.bit_rate = BIT_RATE
        stream.codec_context.flags |= int(av.codec.context.Flags.bitexact.value)
        self._stream = stream
        self._pending: Samples = np.zeros((1, 0), dtype=np.int16)
        self._pts = 0
        self.samples = 0
        """Samples given to write() so far."""

    def write(self, samples: Samples) -> None:
        """Queue samples; every whole second queued is encoded and written."""
        self.samples += samples.shape[1]
        pending = np.concatenate([self._pending, samples], axis=1)
        whole = pending.shape[1] - pending.shape[1] % self.BLOCK
        for offset in range(0, whole, self.BLOCK):
            self._encode(pending[:, offset : offset + self.BLOCK])
        self._pending = pending[:, whole:]

    def _encode(self, block: Samples) -> None:
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = Fraction(1, RATE)
        self._container.mux(self._stream.encode(frame))
        self._pts += block.shape[1]

    def close(self) -> None:
        """Encode what is left, flush the encoder and close the file."""
        try:
            if self._pending.shape[1]:
                self._encode(self._pending)
            self._container.mux(self._stream.encode(None))
        finally:
            self._container.close()

    def __enter__(self) -> OpusWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def encode_opus(path: Path, samples: Samples) -> None:
    """Encode (1, n) int16 samples at RATE as Ogg/Opus, bit-exact so reruns give the same bytes."""
    with OpusWriter(path) as writer:
        writer.write(samples)


def decoded_seconds(path: Path) -> float:
    """Seconds of audio in the file, counted by decoding every frame."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return round(sum(frame.samples for frame in container.decode(stream)) / stream.rate, 3)


def make_clip(name: str, paragraphs: list[str]) -> dict[str, Any]:
    """Speak, join and encode one clip; return its references.json entry."""
    gap = np.zeros((1, int(PARAGRAPH_GAP_S * RATE)), dtype=np.int16)
    pieces: list[Samples] = []
    for index, paragraph in enumerate(paragraphs):
        if index:
            pieces.append(gap)
        pieces.append(resample(speak(paragraph)))
    path = DATA_DIR / name
    encode_opus(path, np.concatenate(pieces, axis=1))
    text = " ".join(paragraphs)
    return {
        "file": name,
        "text": text,
        "words": len(text.split()),
        "duration_s": decoded_seconds(path),
        "bytes": path.stat().st_size,
    }


def check(references: dict[str, Any]) -> None:
    """Transcribe each clip with the bundled tiny.en (faster-whisper int8, beam 5) and print the WER."""
    from faster_whisper import WhisperModel

    from bench.wer import word_error_rate
    from service.engines.bundled import tiny_en_ct2_dir

    model = WhisperModel(str(tiny_en_ct2_dir()), device="cpu", compute_type="int8")
    for entry in references["clips"]:
        segments, _ = model.transcribe(str(DATA_DIR / entry["file"]), language="en", beam_size=5)
        text = " ".join(s.text.strip() for s in segments)
        print(f"{entry['file']}: WER {word_error_rate(entry['text'], text):.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="also transcribe the clips with tiny.en")
    args = parser.parse_args()
    references: dict[str, Any] = {
        "about": (
            f"Generated by make_bench_audio.py: espeak-ng {VOICE} at -s {SPEED_WPM} -g {WORD_GAP}, "
            f"paragraphs joined with {PARAGRAPH_GAP_S} s of silence, Ogg/Opus {BIT_RATE // 1000} kbps "
            f"mono {RATE} Hz. 'text' is the exact text spoken."
        ),
        "clips": [make_clip(name, paragraphs) for name, paragraphs in CLIPS.items()],
    }
    (DATA_DIR / "references.json").write_text(json.dumps(references, indent=2) + "\n")
    for entry in references["clips"]:
        print(f"{entry['file']}: {entry['duration_s']} s, {entry['words']} words, {entry['bytes']:,} bytes")
    if args.check:
        check(references)


if __name__ == "__main__":
    main()
