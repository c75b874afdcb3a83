"""Figures from pimsim's results (matplotlib, a packaged style, PNG or PDF).

Each function takes results as pimsim writes them (``pimsim run --json``, ``pimsim compare --json``,
a sweep's ``points.parquet``, a ``--timeline`` trace) and returns a matplotlib Figure.
"""

from __future__ import annotations

import json
from pathlib import Path

from pimsim.errors import PimsimError

STYLE = Path(__file__).with_name("pimsim.mplstyle")
UNITS = {"latency_per_token_s": ("latency per token", "ms", 1e3), "tokens_per_s": ("throughput", "tokens/s", 1),
         "energy_per_token_J": ("energy per token", "mJ", 1e3), "total_time_s": ("total time", "ms", 1e3),
         "row_hit_rate": ("row-buffer hit rate", "%", 100), "bound_efficiency": ("of the bandwidth bound", "%", 100),
         "average_power_W": ("average power", "W", 1), "bytes_external": ("bytes over the pins", "MB", 1e-6),
         "bytes_internal": ("bytes read in the banks", "GB", 1e-9)}


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PimsimError("plots need matplotlib: pip install '.[plot]'") from None
    plt.style.use(str(STYLE))
    return plt


def _label(metric: str) -> tuple[str, float]:
    name, unit, scale = UNITS.get(metric, (metric, "", 1))
    return (f"{name} ({unit})" if unit else name), scale


def _key_label(key: str) -> str:
    return key.removeprefix("set:").removeprefix("run:")


def sweep_lines(frame, x: str, y: str, hue: str | None = None, logx: bool = False, logy: bool = False):
    plt = _plt()
    frame = frame[frame["status"] == "ok"] if "status" in frame else frame
    x, hue = _column(frame, x), _column(frame, hue) if hue else None
    ylabel, scale = _label(y)
    fig, ax = plt.subplots()
    groups = frame.groupby(hue) if hue else [(None, frame)]
    for value, part in groups:
        part = part.sort_values(x)
        ax.plot(part[x], part[y] * scale, marker="o", label=f"{_key_label(hue)} = {value}" if hue else None)
    ax.set_xlabel(_key_label(x))
    ax.set_ylabel(ylabel)
    if logx:
        ax.set_xscale("log", base=2)
    if logy:
        ax.set_yscale("log")
    if hue:
        ax.legend()
    ax.set_title(f"{ylabel.split(' (')[0]} against {_key_label(x)}")
    return fig


def sweep_heatmap(frame, x: str, y: str, value: str):
    plt = _plt()
    frame = frame[frame["status"] == "ok"] if "status" in frame else frame
    x, y = _column(frame, x), _column(frame, y)
    label, scale = _label(value)
    table = frame.pivot_table(index=y, columns=x, values=value, aggfunc="mean") * scale
    fig, ax = plt.subplots()
    ax.grid(False)
    image = ax.imshow(table.values, origin="lower", aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(table.columns)), [f"{v:g}" for v in table.columns])
    ax.set_yticks(range(len(table.index)), [f"{v:g}" for v in table.index])
    for i in range(table.shape[0]):
        for j in range(table.shape[1]):
            v = table.values[i, j]
            ax.text(j, i, f"{v:.3g}", ha="center", va="center", color="white" if v < table.values.mean() else "black",
                    fontsize=8)
    ax.set_xlabel(_key_label(x))
    ax.set_ylabel(_key_label(y))
    fig.colorbar(image, ax=ax, label=label)
    ax.set_title(label.split(" (")[0])
    return fig


def pareto(frame):
    plt = _plt()
    frame = frame[frame["status"] == "ok"] if "status" in frame else frame
    if "energy_per_token_J" not in frame or frame["energy_per_token_J"].isna().all():
        raise PimsimError("a Pareto plot needs energy per token: the hardware needs an energy section")
    pts = frame[["tokens_per_s", "energy_per_token_J"]].to_numpy()
    front = [i for i, (t, e) in enumerate(pts)
             if not any((t2 >= t and e2 <= e) and (t2 > t or e2 < e) for t2, e2 in pts)]
    fig, ax = plt.subplots()
    ax.scatter(pts[:, 0], pts[:, 1] * 1e3, color="0.6", label="sweep points")
    f = pts[sorted(front, key=lambda i: pts[i, 0])]
    ax.plot(f[:, 0], f[:, 1] * 1e3, marker="o", color="C3", label="Pareto front")
    ax.set_xlabel("throughput (tokens/s)")
    ax.set_ylabel("energy per token (mJ)")
    ax.legend()
    ax.set_title("throughput against energy")
    return fig


def breakdown(results: list[dict]):
    """Stacked bars of each run's time shares and, when present, energy shares."""
    plt = _plt()
    from pimsim.energy.model import COMPONENTS

    with_energy = all("energy_breakdown_J" in r for r in results)
    fig, axes = plt.subplots(1, 2 if with_energy else 1, figsize=(11 if with_energy else 6, 6.2), squeeze=False,
                             layout="constrained")
    names = [f"{r['model']}\n{r['hw']}" for r in results]
    panels = [("breakdown_s", {k: v for r in results for k, v in r.get("breakdown_titles", {}).items()},
               "share of time (%)", "where the time goes")]
    if with_energy:
        panels.append(("energy_breakdown_J", COMPONENTS, "share of energy (%)", "where the energy goes"))
    colors = plt.get_cmap("tab20").colors
    for ax, (key, titles, ylabel, title) in zip(axes[0], panels):
        parts = sorted({p for r in results for p, v in r[key].items() if v},
                       key=lambda p: -sum(r[key].get(p, 0) / sum(r[key].values()) for r in results))
        bottom = [0.0] * len(results)
        for i, part in enumerate(parts):
            shares = [100 * r[key].get(part, 0) / sum(r[key].values()) for r in results]
            ax.bar(names, shares, bottom=bottom, label=titles.get(part, part), color=colors[i % len(colors)],
                   width=0.6)
            bottom = [b + v for b, v in zip(bottom, shares)]
        ax.set_ylabel(ylabel)
        ax.set_ylim(0, 100)
        ax.grid(axis="x", visible=False)
        ax.set_title(title)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    return fig


def compare_bars(result: dict):
    plt = _plt()
    rows = result["rows"]
    names = [f"{Path(r['baseline']).stem if r['baseline'].endswith('.json') else r['baseline']}\n"
             f"({r.get('sources', {}).get('baseline', r['kind'])})" for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(max(10, 2.6 * len(rows)), 4.8), layout="constrained")
    for ax, key, title in ((axes[0], "speedup", "speed-up"), (axes[1], "energy_efficiency", "energy efficiency")):
        values = [r[key] or 0 for r in rows]
        bars = ax.bar(names, values, color=["C0" if r["kind"] == "measured" else "C1" for r in rows])
        for bar, v in zip(bars, values):
            ax.annotate(f"{v:.3g}x", (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom", fontsize=8)
        ax.set_yscale("log")
        ax.set_ylim(bottom=1)
        ax.tick_params(axis="x", labelsize=8)
        ax.set_ylabel(f"{title} (x, log scale)")
        ax.set_title(f"{result['model']} on {result['hw']}: {title}")
    return fig


def tokens(result: dict):
    plt = _plt()
    per = [t * 1e3 for t in result["per_token_s"]]
    positions = range(result["prompt_len"], result["prompt_len"] + len(per))
    fig, ax = plt.subplots()
    ax.plot(list(positions), per, marker="." if len(per) < 200 else None)
    ax.set_xlabel("position in the sequence (tokens in the KV cache)")
    ax.set_ylabel("latency of the token (ms)")
    ax.set_title(f"{result['model']} on {result['hw']}: latency per token")
    return fig


def timeline(trace: dict, token_end_us: float | None = None):
    """The first token (or up to token_end_us) of a ``--timeline`` trace: one row per track."""
    plt = _plt()
    events = [e for e in trace["traceEvents"] if e.get("ph") == "X"]
    names = {e["tid"]: e["args"]["name"] for e in trace["traceEvents"] if e.get("ph") == "M" and "tid" in e}
    if not events:
        raise PimsimError("the timeline has no events")
    end = token_end_us or _first_token_end(events)
    tids = sorted(names)
    fig, ax = plt.subplots(figsize=(11, 0.4 * len(tids) + 1.5))
    parts = sorted({e["cat"] for e in events})
    palette = plt.get_cmap("tab20").colors
    colors = {p: palette[i % len(palette)] for i, p in enumerate(parts)}
    for row, tid in enumerate(tids):
        spans = [(e["ts"], e["dur"], e["cat"]) for e in events if e["tid"] == tid and e["ts"] < end]
        for ts, dur, cat in spans:
            ax.broken_barh([(ts, dur)], (row - 0.4, 0.8), color=colors[cat])
    ax.set_yticks(range(len(tids)), [names[t] for t in tids])
    ax.set_xlim(0, end)
    ax.set_xlabel("time (us)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colors.values()]
    ax.legend(handles, list(colors), fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("first token: ASIC, links and channels")
    return fig


def _first_token_end(events) -> float:
    """Where the first token ends: the end of the first LM-head reduction on the ASIC (its last step)."""
    lm = [e["ts"] + e["dur"] for e in events if e["cat"] == "lm_head" and e["tid"] == 1]
    return min(lm) if lm else max(e["ts"] + e["dur"] for e in events)


def _column(frame, key: str) -> str:
    from pimsim.sweep.points import ALIASES

    key = ALIASES.get(key, key)
    for candidate in (key, f"set:{key}", f"run:{key}"):
        if candidate in frame:
            return candidate
    raise PimsimError(f"no column {key!r} in the sweep (columns: {', '.join(frame.columns)})")


def load_json(path: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise PimsimError(f"{path}: not a readable JSON result ({exc})") from None
