"""What the benchmarks ran on: CPU, cores, memory, load, and the versions of the engines."""

from __future__ import annotations

import datetime
import os
import platform
from importlib import metadata
from typing import Any

PACKAGES = ("torch", "ctranslate2", "faster-whisper", "openai-whisper", "av", "grpcio", "numpy")


def cpu_model() -> str:
    """The "model name" of the first CPU in /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    """The SIMD flags that matter to CTranslate2 and torch (avx2, avx512f, fma ...)."""
    wanted = {"avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"}
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return sorted(wanted & set(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return []


def memory_bytes() -> int:
    """MemTotal from /proc/meminfo."""
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(value, 2) for value in os.getloadavg()]


def describe() -> dict[str, Any]:
    """The machine and software a result was measured on."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "memory_bytes": memory_bytes(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
        "load_average_at_start": load_average(),
    }
