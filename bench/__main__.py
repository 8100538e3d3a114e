"""`python -m bench`: run the benchmark sections and write bench/results/*.json and RESULTS.md."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import concurrency, engines, http, jobs, live, lone, long_recording, overhead, upload
from bench.common import GIB, MIB, RESULTS, load_clips, say, write_json
from bench.machine import describe, load_average
from bench.report import SECTIONS, render


def main(argv: list[str] | None = None) -> None:
    """Parse options, run the chosen sections one after another, then render the report."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="60 s clip, 10-minute long recording, 5-minute live stream, fewer repetitions: a smoke run",
    )
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated sections (default: {','.join(SECTIONS)})"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="results folder (default: bench/results, or bench/results/quick with --quick)",
    )
    parser.add_argument(
        "--long-minutes",
        type=float,
        default=None,
        help="length of the long section's recording in minutes (default 180, or 10 with --quick)",
    )
    parser.add_argument(
        "--live-minutes",
        type=float,
        default=None,
        help="length of the live section's memory stream in minutes (default 60, or 5 with --quick)",
    )
    parser.add_argument(
        "--live-memory-only",
        action="store_true",
        help="live: measure only the long stream (memory, CPU), keeping the levels of the last live results",
    )
    parser.add_argument(
        "--live-keep-long",
        action="store_true",
        help="live: measure everything but the long stream, keeping the long stream of the last live results",
    )
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s): {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    output: Path = args.output or (RESULTS / "quick" if args.quick else RESULTS)

    clips = load_clips()
    short, long = clips["60s"], clips["5min"]
    main_clip = short if args.quick else long
    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "engines": lambda: engines.run(
            [short] if args.quick else [short, long], {"60s": 1 if args.quick else 3, "5min": 2}
        ),
        "overhead": lambda: overhead.run(main_clip, rounds=2 if args.quick else 8),
        "concurrency": lambda: concurrency.run(short, [1, 2, 4, 8], requests_per_level=4 if args.quick else 12),
        "upload": lambda: upload.run(short, total=256 * MIB if args.quick else GIB),
        "lone": lambda: lone.run(
            main_clip,
            calls=2 if args.quick else 5,
            reference_repeats=1 if args.quick else 2,
            requests={1: 2, 4: 4} if args.quick else {1: 4, 4: 8},
        ),
        "long": lambda: long_recording.run(args.long_minutes or (10.0 if args.quick else 180.0)),
        "live": lambda: (
            live.long_only(args.live_minutes or (5.0 if args.quick else 60.0), output / "live.json")
            if args.live_memory_only
            else live.run(
                minutes=args.live_minutes or (5.0 if args.quick else 60.0),
                rounds={1: 1, 2: 1, 4: 1} if args.quick else {1: 5, 2: 3, 4: 4},
                keep_long=output / "live.json" if args.live_keep_long else None,
            )
        ),
        "http": lambda: http.run(
            short if args.quick else long,
            short,
            rounds=2 if args.quick else 8,
            upload_total=256 * MIB if args.quick else GIB,
        ),
        "jobs": lambda: jobs.run(short, jobs.quick_plan() if args.quick else jobs.Plan()),
    }
    say(f"running {', '.join(name for name in SECTIONS if name in chosen)}; results in {output}")
    for name in SECTIONS:
        if name not in chosen:
            continue
        machine = describe()
        started = time.perf_counter()
        result = runners[name]()
        write_json(
            output / f"{name}.json",
            {
                "section": name,
                "quick": args.quick,
                "machine": machine,
                "load_average_at_end": load_average(),
                "elapsed_seconds": time.perf_counter() - started,
                "result": result,
            },
        )
        say(f"{name}: done in {(time.perf_counter() - started) / 60:.1f} min")
    report = output / "RESULTS.md"
    report.write_text(render(output))
    say(f"wrote {report}")


if __name__ == "__main__":
    main()
