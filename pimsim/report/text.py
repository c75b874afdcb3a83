"""Plain-text summaries for the terminal. Every figure printed is also in the JSON result."""

from __future__ import annotations


def _si_bytes(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def _time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3f} {unit}"
    return f"{seconds * 1e9:.1f} ns"


def trace_summary(result: dict) -> str:
    hw = result["config"]
    org = hw["dram"]["organization"]
    lines = [
        f"trace      {result['input']['path']} ({result['input']['kind']}, {result['input']['entries']:,} entries)",
        f"hardware   {hw['name']} ({hw['dram']['standard']}, {org['channels']} channel(s) x "
        f"{org['bankgroups'] * org['banks_per_group']} banks, tCK {hw['dram']['tCK_ps']:g} ps, "
        f"refresh: {result['refresh']})",
        f"cycles     {result['cycles']:,}  ({_time(result['time_s'])})",
        "commands   " + "  ".join(f"{k} {v:,}" for k, v in sorted(result["commands"].items()))
        + (f"  (kernel-added: {result['kernel_inserted_commands']:,})" if result["kernel_inserted_commands"] else ""),
    ]
    rate = result["row_hit_rate"]
    hit_rate = f"  (hit rate {100 * rate:.2f}%)" if rate is not None else ""
    lines.append(f"rows       {result['row_hits']:,} hits, {result['row_misses']:,} misses, "
                 f"{result['row_conflicts']:,} conflicts{hit_rate}")
    peak = result["peak_bandwidth_GBps"]
    lines.append(f"data       {_si_bytes(result['bytes_read'])} read, {_si_bytes(result['bytes_written'])} written "
                 f"over the channel interface: {result['bandwidth_GBps']:.2f} GB/s "
                 f"({100 * result['bandwidth_GBps'] / peak:.1f}% of {peak:.1f} GB/s peak)")
    req = result.get("requests")
    if req:
        lat = req["latency_cycles"]
        lines.append(f"requests   {req['reads']:,} reads, {req['writes']:,} writes; latency mean {lat['mean']:.1f}, "
                     f"p50 {lat['p50']:.0f}, p99 {lat['p99']:.0f}, max {lat['max']:,} cycles")
    return "\n".join(lines)
