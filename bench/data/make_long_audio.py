"""Generate and cache a long espeak-ng recording, its 5-minute cuts and their texts in bench/data/generated."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.data.make_bench_audio import BIT_RATE, CLIPS, RATE, OpusWriter, Samples, resample, speak

GENERATED = Path(__file__).resolve().parent / "generated"
VERSION = 1
"""Bump when the audio this module makes changes, so cached recordings are made again."""
PASSAGE_SECONDS = 300.0
PASSAGE_GAP_S = 2.4
"""Silence between passages; the cuts split it in the middle."""
PARAGRAPH_GAPS_S = (0.4, 2.0)
VOICES = (
    "en-us",
    "en-gb-x-rp",
    "en-us+m3",
    "en-gb",
    "en-us+f3",
    "en-us-nyc",
    "en-gb+f4",
    "en-us+m7",
    "en-gb-x-gbclan",
    "en-us+f2",
    "en-us-nyc+m2",
    "en-gb-x-gbcwmd",
    "en-us+klatt",
    "en-gb+m1",
    "en-us+f5",
)
"""espeak-ng voices and variants that the bundled tiny.en transcribes with a WER under about 10%."""
SPEEDS_WPM = (150, 160, 170, 180, 190)
WORD_GAPS = (0, 2, 4, 6)
PITCHES = (35, 65)

# Plain prose like make_bench_audio's: no numbers, no contractions, no words Whisper may split or join.
EXTRA_PARAGRAPHS = (
    "The train to the coast leaves the station a little after noon. Most passengers carry small bags and "
    "paper cups of coffee, and they settle into their seats as the city slides away behind them. Soon the "
    "houses give way to open fields, then to low hills covered with sheep. A conductor walks slowly through "
    "the cars, checking tickets and answering questions about the stops ahead. Near the end of the journey, "
    "the air changes. Through the open windows comes the smell of salt, and the first glimpse of the sea "
    "makes the children press their faces against the glass.",
    "Every winter the pond behind the school freezes for a few weeks. The teachers measure the ice each "
    "morning, and when it is thick enough, they hang a white flag on the fence. That flag is the signal the "
    "whole town waits for. Families bring skates, folding chairs, and flasks of hot chocolate. The younger "
    "children hold hands and move in careful circles near the edge, while the older ones race from one side "
    "to the other. When the sun goes down, someone lights a small fire on the bank, and people stand around "
    "it to warm their hands before walking home.",
    "The museum on the hill holds a collection of clocks from many different countries. Some are tall and "
    "made of dark polished wood, with heavy brass weights that swing behind glass doors. Others are so small "
    "that they fit inside a ring. The guide explains how each one was built and who might have owned it. "
    "Visitors are always surprised by the sound of the room at the top of the hour, when dozens of clocks "
    "strike together. For a moment the air is full of bells, chimes, and tiny birds that spring out of "
    "painted doors and then disappear again.",
    "A good cook once told me that soup is the most forgiving dish in the world. You can begin with almost "
    "anything: an onion, a few carrots, a handful of beans, and whatever herbs are growing near the door. The "
    "secret, she said, is time. A pot that simmers slowly for the whole afternoon will always taste better "
    "than one that is rushed. She kept a large pot on the back of her stove through most of the cold season, "
    "adding vegetables as they came from the garden, and nobody who visited her kitchen ever left hungry.",
    "Our neighbor keeps bees in a row of white boxes at the bottom of his field. On summer mornings he puts "
    "on a veil and long gloves and walks slowly among the hives, lifting the lids to look at the frames "
    "inside. He says that bees can sense when a person is nervous, so he moves without hurry and speaks to "
    "them in a low voice. In the late summer he collects the honey and pours it into jars that glow like "
    "amber in the sunlight. He gives most of it away to friends and keeps only a little for himself.",
    "The storm arrived in the middle of the night. First came the wind, which rattled the windows and bent "
    "the trees along the road. Then the rain began, heavy and loud, drumming on the roof until it was "
    "impossible to sleep. We sat together in the kitchen with a candle, listening to the thunder move across "
    "the valley. By morning the sky was clear and pale, and the garden was covered with broken branches and "
    "leaves. The river had risen over the lower path, but the old stone bridge still stood, as it had for "
    "longer than anyone could remember.",
    "Learning to play the piano takes patience and a great deal of practice. At first the fingers feel slow "
    "and clumsy, and even a simple melody seems impossible. The teacher asks you to play the same short "
    "passage again and again, more slowly than you would like. Then one day, almost without noticing, you "
    "play it smoothly from beginning to end. That small success makes the long hours feel worthwhile. Many "
    "people who started as children say that the habit of steady practice helped them in every other part "
    "of their lives.",
    "The fishing village lies at the end of a narrow road that winds between the cliffs. Its houses are "
    "painted in bright colors, blue and yellow and pink, so that the fishermen can see them from far out at "
    "sea. In the early morning the harbor is busy with people mending nets, loading boxes of ice, and "
    "calling to each other across the water. By the afternoon the boats have gone, and the village becomes "
    "quiet again. Only the cats remain on the docks, waiting patiently in the sun for the boats to come "
    "back with their catch.",
    "When my brother was young, he wanted to become an astronaut. He read every book about the planets that "
    "he could find, and he drew careful pictures of rockets on the backs of old envelopes. On clear nights "
    "he carried a blanket into the yard and lay on his back, naming the stars and the shapes they made. Our "
    "parents bought him a small telescope, and he spent hours looking at the craters of the moon. He never "
    "traveled into space, but he became a teacher, and now he tells his own students about the sky.",
    "The bakery on the corner opens before dawn, and the windows are already bright when the first buses "
    "pass. Inside, the bakers move quickly between the ovens and the long wooden tables, shaping dough, "
    "brushing loaves with egg, and sliding trays of rolls onto the racks to cool. The first customers are "
    "usually workers on their way to the early shift, who buy warm bread and strong coffee. Later come "
    "parents with small children, students with heavy bags, and older people who stop to talk with the "
    "owner about the weather and the news.",
    "The forest path is soft with fallen needles, and every step is almost silent. Tall trees close in on "
    "both sides, and the light that reaches the ground is green and gentle. Now and then a bird calls from "
    "somewhere high above, and a squirrel runs along a branch and vanishes. After an hour of walking, the "
    "path comes out at a small clearing with a wooden bench and a view of the lake below. It is a good place "
    "to sit and eat lunch, to listen to the wind in the branches, and to forget about the world for a while.",
    "My aunt has kept a diary every day since she was a young woman. The notebooks fill three shelves in her "
    "study, each one labeled with the season it covers. She writes about the weather, the people she meets, "
    "the books she reads, and the small events of ordinary days. She says that the diary is not for anyone "
    "else to read, but sometimes she opens an old notebook and reads a page aloud. It is strange and "
    "wonderful to hear about a rainy afternoon from long ago, described as if it happened yesterday.",
    "The repair shop at the end of the street is crowded with old radios, lamps, and bicycles. The man who "
    "runs it can fix almost anything, and he works slowly and carefully at a bench covered with tools. "
    "Customers bring him things that other shops have refused to touch: a broken music box, a clock that "
    "stopped long ago, a sewing machine that belonged to a grandmother. He studies each one for a long time "
    "before he begins. When the work is done, he explains what was wrong and shows how to keep it running "
    "for many more years.",
    "On the first warm day of spring, the whole town seems to come outside at once. People open their "
    "windows and hang their blankets over the railings to air. Children ride bicycles in the street, and "
    "neighbors who have not spoken all winter stop to talk at their gates. The park fills with families "
    "spreading blankets on the grass, and the ice cream seller returns to his usual place by the fountain. "
    "Even the dogs seem happier, running in circles and chasing the pigeons that gather near the benches.",
)
PARAGRAPHS: tuple[str, ...] = (*(p for clip in CLIPS.values() for p in clip), *EXTRA_PARAGRAPHS)


@dataclass(frozen=True)
class Cut:
    """One 5-minute file cut from the long recording, and the text spoken in it."""

    path: Path
    start: float
    duration: float
    text: str


@dataclass(frozen=True)
class LongAudio:
    """The long recording, its text, and the same audio in 5-minute cuts."""

    path: Path
    duration: float
    text: str
    cuts: tuple[Cut, ...]
    generation_seconds: float
    generated_now: bool


@dataclass(frozen=True)
class Voice:
    """How one passage is spoken."""

    voice: str
    speed: int
    word_gap: int
    pitch: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return dict(self.__dict__)


def folder(minutes: float) -> Path:
    """Where the recording of this many minutes is cached."""
    return GENERATED / f"long_{minutes:g}min"


def passage_voice(index: int) -> Voice:
    """The voice, rate, word gap and pitch of passage `index`, the same on every run."""
    rng = random.Random(index)
    return Voice(
        voice=VOICES[index % len(VOICES)],
        speed=SPEEDS_WPM[rng.randrange(len(SPEEDS_WPM))],
        word_gap=WORD_GAPS[rng.randrange(len(WORD_GAPS))],
        pitch=rng.randint(*PITCHES),
    )


def silence(seconds: float) -> Samples:
    """(1, n) int16 zeros at RATE."""
    return np.zeros((1, round(seconds * RATE)), dtype=np.int16)


def passage(index: int, target: float) -> tuple[Samples, list[str], Voice]:
    """Paragraphs in a shuffled order in one voice, pauses of varied length between them, until about `target` s."""
    voice = passage_voice(index)
    rng = random.Random(f"passage {index}")
    order = list(PARAGRAPHS)
    rng.shuffle(order)
    pieces: list[Samples] = []
    spoken: list[str] = []
    seconds = 0.0
    for text in order:
        if spoken and seconds >= target - 20:
            break
        if spoken:
            pieces.append(silence(rng.uniform(*PARAGRAPH_GAPS_S)))
        pieces.append(resample(speak(text, voice.voice, voice.speed, voice.word_gap, voice.pitch)))
        spoken.append(text)
        seconds = sum(piece.shape[1] for piece in pieces) / RATE
    return np.concatenate(pieces, axis=1), spoken, voice


def generate(minutes: float, target: Path) -> dict[str, Any]:
    """Speak passages of about 5 minutes into target/long.ogg and target/cut_NN.ogg, one passage in memory at once."""
    total = minutes * 60
    target.mkdir(parents=True)
    cuts: list[dict[str, Any]] = []
    half_gap = silence(PASSAGE_GAP_S / 2)
    with OpusWriter(target / "long.ogg") as long_writer:
        for index in itertools.count():
            remaining = total - long_writer.samples / RATE
            samples, spoken, voice = passage(index, min(PASSAGE_SECONDS, remaining))
            last = remaining - samples.shape[1] / RATE < 30 + PASSAGE_GAP_S
            parts = [half_gap] if index else []
            parts += [samples] if last else [samples, half_gap]
            piece = np.concatenate(parts, axis=1)
            name = f"cut_{index:02d}.ogg"
            start = long_writer.samples / RATE
            with OpusWriter(target / name) as cut_writer:
                cut_writer.write(piece)
            long_writer.write(piece)
            text = " ".join(spoken)
            cuts.append(
                {
                    "file": name,
                    "start_s": start,
                    "duration_s": piece.shape[1] / RATE,
                    "words": len(text.split()),
                    **voice.to_json(),
                    "text": text,
                }
            )
            if last:
                break
    duration = long_writer.samples / RATE
    text = " ".join(cut["text"] for cut in cuts)
    return {
        "about": (
            "Generated by bench/data/make_long_audio.py: passages of about 5 minutes, each in its own espeak-ng "
            f"voice, rate, word gap and pitch, paragraphs {PARAGRAPH_GAPS_S[0]}-{PARAGRAPH_GAPS_S[1]} s apart, "
            f"passages {PASSAGE_GAP_S} s apart; Ogg/Opus {BIT_RATE // 1000} kbps mono {RATE} Hz. The cuts split "
            "the silence between passages in the middle and together are the long recording."
        ),
        "version": VERSION,
        "minutes": minutes,
        "long": {"file": "long.ogg", "duration_s": duration, "words": len(text.split()), "text": text},
        "cuts": cuts,
    }


def ensure(minutes: float) -> LongAudio:
    """The cached recording of about `minutes` minutes, generated first when missing or out of date."""
    started = time.perf_counter()
    generated_now = build_cached(folder(minutes), VERSION, lambda into: generate(minutes, into), "the long recording")
    return load(minutes, time.perf_counter() - started, generated_now)


def build_cached(final: Path, version: int, make: Callable[[Path], dict[str, Any]], what: str) -> bool:
    """Make generated audio in `final` unless its references.json already has `version`; True when made now.

    It is made in a `.partial` folder beside it and swapped in whole, so an interrupted run leaves no half cache.
    """
    manifest = final / "references.json"
    if manifest.is_file() and json.loads(manifest.read_text()).get("version") == version:
        return False
    if shutil.which("espeak-ng") is None:
        raise RuntimeError(f"espeak-ng is needed to generate {what}: apt-get install -y espeak-ng")
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    made = make(partial)
    (partial / "references.json").write_text(json.dumps(made, indent=2) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)
    return True


def load(minutes: float, generation_seconds: float = 0.0, generated_now: bool = False) -> LongAudio:
    """The cached recording's paths and texts."""
    base = folder(minutes)
    manifest = json.loads((base / "references.json").read_text())
    cuts = tuple(
        Cut(base / cut["file"], float(cut["start_s"]), float(cut["duration_s"]), str(cut["text"]))
        for cut in manifest["cuts"]
    )
    long = manifest["long"]
    return LongAudio(
        base / long["file"], float(long["duration_s"]), str(long["text"]), cuts, generation_seconds, generated_now
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=180.0, help="length of the long recording (default 180)")
    args = parser.parse_args()
    audio = ensure(args.minutes)
    state = f"generated in {audio.generation_seconds:.0f} s" if audio.generated_now else "cached"
    print(
        f"{audio.path}: {audio.duration / 60:.1f} min, {len(audio.text.split())} words, "
        f"{audio.path.stat().st_size:,} bytes, {len(audio.cuts)} cuts ({state})"
    )


if __name__ == "__main__":
    main()
