"""Generate and cache the live benchmark's speech: turns in varied voices, natural pauses, WAV, exact text."""

from __future__ import annotations

import argparse
import json
import random
import re
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import wav_of_pcm
from bench.data.make_bench_audio import ESPEAK_RATE, RATE, Samples, resample, speak
from bench.data.make_long_audio import GENERATED, PARAGRAPHS, PITCHES, SPEEDS_WPM, VOICES, WORD_GAPS, build_cached

VERSION = 3
"""Bump when the audio this module makes changes, so cached recordings are made again."""
SENTENCE_GAPS_S = (0.3, 0.9)
"""Silence between two sentences of one speaker's turn."""
TURN_GAPS_S = (0.8, 1.5)
"""Silence between two turns (a new voice, rate and pitch)."""
TURN_SENTENCES = (1, 3)
LEAD_S = 0.5
"""Silence before the first word."""
TAIL_S = 0.25
"""Silence after the last word: a live client stops right after the speaker does."""
EDGE_S = 0.05
"""Silence kept around the voiced samples of each sentence (espeak-ng pads them with more)."""
VOICED_LEVEL = 300
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
SHORT_VERSION = 1
"""Bump when the short clips change."""
SHORT_SENTENCES = (
    "Turn on the lights in the kitchen.",
    "Set a timer for twelve minutes.",
    "What is the weather like in Berlin tomorrow?",
    "Please call my brother after lunch.",
    "The meeting has been moved to Thursday afternoon.",
    "Add milk, eggs and bread to the shopping list.",
    "Our quarterly revenue grew by eight percent.",
    "The patient reported mild pain in the left knee.",
    "Please remind me to water the plants.",
    "The library closes at nine on weekdays.",
    "Can you send the report before Friday?",
    "The train was delayed because of heavy snow.",
    "She planted tomatoes and beans in the garden.",
    "We need two more chairs for the conference room.",
    "The children played football until it got dark.",
    "My flight leaves from gate twenty three.",
    "He forgot his umbrella at the restaurant.",
    "Open the window, it is too warm in here.",
    "The museum has a new exhibition about ancient Egypt.",
    "I would like a cup of coffee with a little sugar.",
    "The engineer checked every cable twice.",
    "Please lower the volume of the music.",
    "The bakery on the corner sells fresh bread every morning.",
    "Next week we will visit our grandparents.",
    "The dog barked at the mailman again.",
    "Write down the phone number before you forget it.",
    "The river flooded the fields last spring.",
    "Stop the recording and save the file.",
    "Their new house has a large garden and a blue door.",
    "The teacher asked the students to read chapter five.",
    "Book a table for four people at seven thirty.",
    "The bridge will be closed for repairs until May.",
    "Thank you for waiting, your order is ready.",
    "The battery is almost empty, please plug in the charger.",
    "Most birds fly south when the winter comes.",
    "The doctor will see you in ten minutes.",
    "Lock the front door when you leave the house.",
    "This road leads to the old harbour.",
    "Could you repeat the last question please?",
    "The final score was three to one.",
)
"""Requests and remarks a caller says in a breath or three, none of them from the benchmark prose."""
SHORT_LEAD_S = (0.2, 0.6)
"""Silence before the first word of a short clip: a caller opens the stream just before speaking."""


@dataclass(frozen=True)
class Sentence:
    """One spoken sentence: its text, where its voiced samples start and end, and the voice."""

    text: str
    start: float
    end: float
    voice: str


@dataclass(frozen=True)
class LiveAudio:
    """A cached recording: 16 kHz mono 16-bit WAV, its exact text and sentence timings."""

    path: Path
    duration: float
    text: str
    sentences: tuple[Sentence, ...]
    generation_seconds: float
    generated_now: bool

    def pcm(self) -> bytes:
        """The samples as headerless LINEAR16 bytes."""
        with wave.open(str(self.path), "rb") as audio:
            return audio.readframes(audio.getnframes())


def folder(seconds: float) -> Path:
    """Where the recording of about this many seconds is cached."""
    return GENERATED / f"live_{seconds:g}s"


def sentences(seed: str) -> Iterator[str]:
    """The benchmark prose split into sentences, paragraphs in a seeded order, reshuffled on every pass."""
    rng = random.Random(seed)
    while True:
        order = list(PARAGRAPHS)
        rng.shuffle(order)
        for paragraph in order:
            yield from (s.strip() for s in _SENTENCE_END.split(paragraph) if s.strip())


def tight(samples: Samples) -> Samples:
    """espeak-ng output (ESPEAK_RATE) cut to its voiced samples plus EDGE_S on each side."""
    voiced = np.flatnonzero(np.abs(samples.astype(np.int32)) > VOICED_LEVEL)
    pad = int(EDGE_S * ESPEAK_RATE)
    return samples[max(int(voiced[0]) - pad, 0) : min(int(voiced[-1]) + pad + 1, len(samples))]


def silence(seconds: float) -> Samples:
    """(1, n) int16 zeros at RATE."""
    return np.zeros((1, round(seconds * RATE)), dtype=np.int16)


def generate(seconds: float, target: Path) -> dict[str, Any]:
    """Speak turns of 1-4 sentences, each turn in its own voice, rate, word gap and pitch, into target/audio.wav."""
    rng = random.Random(f"live {seconds:g}")
    texts = sentences(f"live {seconds:g}")
    spoken: list[dict[str, Any]] = []
    target.mkdir(parents=True)
    with wave.open(str(target / "audio.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        position = 0
        pending: list[Samples] = [silence(LEAD_S)]
        done = False
        while not done:
            voice, speed = VOICES[rng.randrange(len(VOICES))], SPEEDS_WPM[rng.randrange(len(SPEEDS_WPM))]
            word_gap, pitch = WORD_GAPS[rng.randrange(len(WORD_GAPS))], rng.randint(*PITCHES)
            for index in range(rng.randint(*TURN_SENTENCES)):
                text = next(texts)
                gap = silence(rng.uniform(*SENTENCE_GAPS_S) if index else rng.uniform(*TURN_GAPS_S))
                speech = resample(tight(speak(text, voice, speed, word_gap, pitch)))
                queued = position + sum(p.shape[1] for p in pending)
                start = queued + (gap.shape[1] if spoken else 0)
                if spoken and (start + speech.shape[1]) / RATE + TAIL_S > seconds:
                    done = True
                    break
                pending += [gap, speech] if spoken else [speech]
                spoken.append(
                    {
                        "text": text,
                        "start_s": round(start / RATE + EDGE_S, 3),
                        "end_s": round((start + speech.shape[1]) / RATE - EDGE_S, 3),
                        "voice": voice,
                        "speed_wpm": speed,
                        "word_gap": word_gap,
                        "pitch": pitch,
                    }
                )
                block = np.concatenate(pending, axis=1)
                out.writeframes(block.astype("<i2").tobytes())
                position += block.shape[1]
                pending = []
        out.writeframes(silence(TAIL_S).astype("<i2").tobytes())
        position += round(TAIL_S * RATE)
    text = " ".join(sentence["text"] for sentence in spoken)
    return {
        "about": (
            "Generated by bench/data/make_live_audio.py: turns of "
            f"{TURN_SENTENCES[0]}-{TURN_SENTENCES[1]} sentences, each turn in its own espeak-ng voice, rate "
            f"({min(SPEEDS_WPM)}-{max(SPEEDS_WPM)} wpm), word gap and pitch; sentences "
            f"{SENTENCE_GAPS_S[0]}-{SENTENCE_GAPS_S[1]} s apart, turns {TURN_GAPS_S[0]}-{TURN_GAPS_S[1]} s apart; "
            f"{LEAD_S} s of silence before the first word and {TAIL_S} s after the last; WAV 16-bit mono {RATE} Hz."
        ),
        "version": VERSION,
        "seconds": seconds,
        "file": "audio.wav",
        "duration_s": position / RATE,
        "words": len(text.split()),
        "text": text,
        "sentences": spoken,
    }


def ensure(seconds: float) -> LiveAudio:
    """The cached recording of about `seconds` seconds, generated first when missing or out of date."""
    started = time.perf_counter()
    generated_now = build_cached(
        folder(seconds), VERSION, lambda into: generate(seconds, into), "the live benchmark audio"
    )
    return load(seconds, time.perf_counter() - started, generated_now)


def load(seconds: float, generation_seconds: float = 0.0, generated_now: bool = False) -> LiveAudio:
    """The cached recording's path, text and sentences."""
    base = folder(seconds)
    manifest = json.loads((base / "references.json").read_text())
    spoken = tuple(
        Sentence(str(s["text"]), float(s["start_s"]), float(s["end_s"]), str(s["voice"])) for s in manifest["sentences"]
    )
    return LiveAudio(
        base / manifest["file"],
        float(manifest["duration_s"]),
        str(manifest["text"]),
        spoken,
        generation_seconds,
        generated_now,
    )


@dataclass(frozen=True)
class ShortClip:
    """One cached short recording: 16 kHz mono 16-bit WAV and its exact text."""

    path: Path
    duration: float
    text: str


def short_folder() -> Path:
    """Where the short clips are cached."""
    return GENERATED / "live_short"


def generate_short(target: Path) -> dict[str, Any]:
    """Speak SHORT_SENTENCES in a seeded order as clips of 1-3 sentences, each clip in its own voice, rate, word gap
    and pitch, into target/clip_NN.wav."""
    rng = random.Random("live short 1")
    order = list(SHORT_SENTENCES)
    rng.shuffle(order)
    target.mkdir(parents=True)
    clips: list[dict[str, Any]] = []
    while order:
        texts = order[: rng.randint(*TURN_SENTENCES)]
        order = order[len(texts) :]
        voice, speed = VOICES[rng.randrange(len(VOICES))], SPEEDS_WPM[rng.randrange(len(SPEEDS_WPM))]
        word_gap, pitch = WORD_GAPS[rng.randrange(len(WORD_GAPS))], rng.randint(*PITCHES)
        pieces = [silence(rng.uniform(*SHORT_LEAD_S))]
        for index, text in enumerate(texts):
            if index:
                pieces.append(silence(rng.uniform(*SENTENCE_GAPS_S)))
            pieces.append(resample(tight(speak(text, voice, speed, word_gap, pitch))))
        pieces.append(silence(TAIL_S))
        samples = np.concatenate(pieces, axis=1)
        name = f"clip_{len(clips):02d}.wav"
        (target / name).write_bytes(wav_of_pcm(samples.astype("<i2").tobytes()))
        clips.append({"file": name, "text": " ".join(texts), "duration_s": samples.shape[1] / RATE, "voice": voice})
    return {
        "about": (
            f"Generated by bench/data/make_live_audio.py: {len(SHORT_SENTENCES)} short sentences in clips of "
            f"{TURN_SENTENCES[0]}-{TURN_SENTENCES[1]}, each clip in its own espeak-ng voice, rate, word gap and pitch; "
            f"{SHORT_LEAD_S[0]}-{SHORT_LEAD_S[1]} s of silence before the first word, {TAIL_S} s after the last."
        ),
        "version": SHORT_VERSION,
        "clips": clips,
    }


def ensure_short() -> tuple[ShortClip, ...]:
    """The cached short clips, generated first when missing or out of date."""
    build_cached(short_folder(), SHORT_VERSION, generate_short, "the live benchmark's short clips")
    manifest = json.loads((short_folder() / "references.json").read_text())
    return tuple(
        ShortClip(short_folder() / clip["file"], float(clip["duration_s"]), str(clip["text"]))
        for clip in manifest["clips"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the recording (default 60)")
    args = parser.parse_args()
    audio = ensure(args.seconds)
    state = f"generated in {audio.generation_seconds:.0f} s" if audio.generated_now else "cached"
    print(
        f"{audio.path}: {audio.duration:.1f} s, {len(audio.text.split())} words, "
        f"{len(audio.sentences)} sentences ({state})"
    )


if __name__ == "__main__":
    main()
