"""Helpers shared by the benchmarks: percentiles, tables, machine description."""

from __future__ import annotations

import json
import os
import platform
import statistics


def percentile(values: list[float], p: float) -> float:
    """Return the p-th percentile (nearest rank) of `values`."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def summary(values_ms: list[float]) -> dict[str, float]:
    """Return n, mean, p50, p95, p99 and max of a list of milliseconds."""
    return {
        "n": len(values_ms),
        "mean": statistics.fmean(values_ms),
        "p50": percentile(values_ms, 50),
        "p95": percentile(values_ms, 95),
        "p99": percentile(values_ms, 99),
        "max": max(values_ms),
    }


# The instruction sets that decide which kernels native code may use (issue 22: a build for
# one machine's AVX-512/AMX crashed on another's): every benchmark names them.
_ISA = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


def machine() -> str:
    """Describe this machine in one line: cores, CPU model, its vector instruction sets."""
    cpu, flags = platform.processor() or platform.machine(), set[str]()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    isa = " ".join(f for f in _ISA if f in flags) or "no AVX2"
    if "avx512f" not in flags:
        isa += ", no AVX-512"
    return f"{os.cpu_count()} cores, {cpu} ({isa}), Python {platform.python_version()}"


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Format a Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def report(result: dict[str, object], as_json: bool) -> None:
    """Print a benchmark's result as JSON, or as the machine and one line per figure."""
    if as_json:
        print(json.dumps(result, indent=2))
        return
    print(f"machine: {machine()}")
    width = max(len(k) for k in result) + 2
    for key, value in result.items():
        print(f"{key:<{width}} {value}")
