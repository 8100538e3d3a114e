"""One engine configuration on one clip, in its own process so its peak memory is its own."""

from __future__ import annotations

import json
import resource
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.common import MODEL_CACHE, proc_status_kib
from bench.wer import word_error_rate

WARMUP_SECONDS = 30.0


@dataclass(frozen=True)
class EngineConfig:
    """What to run: engine, decoding mode, beam, batch and threads."""

    key: str
    label: str
    engine: str  # "openai-whisper" or "faster-whisper"
    mode: str  # "sequential" or "batched" (faster-whisper only)
    beam_size: int
    batch_size: int
    threads: int
    compute_type: str  # "fp32" for openai-whisper; "int8" or "float32" for faster-whisper

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return dict(self.__dict__)


def build_engine(config: EngineConfig) -> Any:
    """The service's own engine class for this configuration."""
    if config.engine == "openai-whisper":
        from service.engines.openai_whisper import OpenAIWhisperEngine

        return OpenAIWhisperEngine(
            cache_dir=MODEL_CACHE, replicas=1, cpu_threads=config.threads, beam_size=config.beam_size
        )
    from service.engines.faster_whisper import FasterWhisperEngine

    return FasterWhisperEngine(
        cache_dir=MODEL_CACHE,
        compute_type=config.compute_type,
        cpu_threads=config.threads,
        num_workers=1,
        beam_size=config.beam_size,
        vad_filter=True,
    )


def transcribe(engine: Any, model: Any, audio: npt.NDArray[np.float32], request: Any, config: EngineConfig) -> str:
    """Sequential: the engine's whole-recording call. Batched: the local backend's windows, in this one thread.

    Batched scores speech per 64 s window, cuts it into clips of at most 30 s and transcribes batch_size clips
    per engine call, as the server does for recordings of local_batched_min_seconds and longer.
    """
    if config.mode != "batched":
        segments = engine.transcribe(model, audio, request).segments
    else:
        from service.audio.decode import WHISPER_SAMPLE_RATE
        from service.audio.speech import VAD_WINDOW_SECONDS, group_spans, speech_probabilities, speech_spans
        from service.backends.local import CLIP_SECONDS
        from service.engines.base import Clip

        window = int(VAD_WINDOW_SECONDS * WHISPER_SAMPLE_RATE)
        scored = [speech_probabilities(audio[start : start + window]) for start in range(0, len(audio), window)]
        spans = group_spans(speech_spans(np.concatenate(scored), len(audio) / WHISPER_SAMPLE_RATE), CLIP_SECONDS)
        clips = [Clip(span.start, span.end) for span in spans]
        segments = []
        for first in range(0, len(clips), config.batch_size):
            segments += engine.transcribe_clips(model, audio, clips[first : first + config.batch_size], request)
    return " ".join(s.text.strip() for s in segments if s.text.strip())


def run(config: EngineConfig, clip_path: str, reference: str, repeats: int) -> dict[str, Any]:
    """Load the model, warm it up on the first seconds of the clip, then time whole-clip transcriptions."""
    from service.audio.decode import WHISPER_SAMPLE_RATE, decode_to_whisper_input
    from service.domain import Task
    from service.engines.base import EngineRequest, ModelSpec
    from service.engines.bundled import BUNDLED_TINY_EN, tiny_en_ct2_dir

    started = time.perf_counter()
    if config.engine == "openai-whisper":
        import torch
        import whisper

        from service.engines.ct2_checkpoint import openai_whisper_checkpoint

        # Convert the bundled model once, outside the timed load (a server does it once per cache).
        openai_whisper_checkpoint(tiny_en_ct2_dir(), MODEL_CACHE, BUNDLED_TINY_EN)
        versions = {"torch": torch.__version__, "openai-whisper": whisper.__version__}
    else:
        import ctranslate2
        import faster_whisper

        versions = {"ctranslate2": ctranslate2.__version__, "faster-whisper": faster_whisper.__version__}
    import_seconds = time.perf_counter() - started

    engine = build_engine(config)
    spec = ModelSpec(name=BUNDLED_TINY_EN, source=BUNDLED_TINY_EN, multilingual=False, ct2_dir=tiny_en_ct2_dir)
    started = time.perf_counter()
    model = engine.load(spec)
    load_seconds = time.perf_counter() - started
    rss_after_load = proc_status_kib("self", "VmRSS") * 1024

    started = time.perf_counter()
    audio: npt.NDArray[np.float32] = decode_to_whisper_input(Path(clip_path))
    decode_seconds = time.perf_counter() - started
    duration = len(audio) / WHISPER_SAMPLE_RATE

    def request() -> EngineRequest:
        return EngineRequest(
            language="en",
            task=Task.TRANSCRIBE,
            prompt="",
            temperature=None,
            word_timestamps=False,
            cancelled=threading.Event(),
        )

    transcribe(engine, model, audio[: int(WARMUP_SECONDS * WHISPER_SAMPLE_RATE)], request(), config)
    times: list[float] = []
    texts: list[str] = []
    for _ in range(repeats):
        started = time.perf_counter()
        texts.append(transcribe(engine, model, audio, request(), config))
        times.append(time.perf_counter() - started)
    wers = [word_error_rate(reference, text) for text in texts]
    return {
        "config": config.to_json(),
        "audio_seconds": duration,
        "import_seconds": import_seconds,
        "load_seconds": load_seconds,
        "decode_seconds": decode_seconds,
        "transcribe_seconds": times,
        "wer": wers,
        "text": texts[0],
        "rss_after_load_bytes": rss_after_load,
        "peak_rss_bytes": proc_status_kib("self", "VmHWM") * 1024,
        "ru_maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "versions": versions,
    }


def main() -> None:
    """Read {"config", "clip", "reference", "repeats"} as JSON from argv[1]; print the result as JSON."""
    job = json.loads(sys.argv[1])
    result = run(EngineConfig(**job["config"]), job["clip"], job["reference"], int(job["repeats"]))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
