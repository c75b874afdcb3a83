"""Figures from pimsim's results (matplotlib, a packaged style, PNG or PDF).

Each function takes results as pimsim writes them (``pimsim run --json``, ``pimsim compare --json``,
a sweep's ``points.parquet``, a ``--timeline`` trace) and returns a matplotlib Figure.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pimsim.errors import PimsimError

STYLE = Path(__file__).with_name("pimsim.mplstyle")
UNITS = {"latency_per_token_s": ("latency per token", "ms", 1e3), "tokens_per_s": ("throughput", "tokens/s", 1),
         "latency_first_token_s": ("latency of the first token", "ms", 1e3),
         "latency_last_token_s": ("latency of the last token", "ms", 1e3),
         "energy_per_token_J": ("energy per token", "mJ", 1e3), "total_time_s": ("total time", "ms", 1e3),
         "energy_per_token_per_param_J": ("energy per token per weight", "pJ", 1e12),
         "row_hit_rate": ("row-buffer hit rate", "%", 100), "bound_efficiency": ("of the bandwidth bound", "%", 100),
         "average_power_W": ("average power", "W", 1), "bytes_external": ("bytes over the pins", "MB", 1e-6),
         "bytes_internal": ("bytes read in the banks", "GB", 1e-9),
         "tokens_per_verify_step": ("tokens per verify step", "tokens", 1),
         "expected_tokens_per_verify_step": ("expected tokens per verify step", "tokens", 1),
         "speedup_over_autoregressive": ("speed-up over autoregressive", "x", 1),
         "energy_ratio_over_autoregressive": ("energy over autoregressive", "x", 1),
         "wall_s": ("host time of the point", "s", 1)}
# units read from a name's suffix, for metrics and swept keys the table does not list
SUFFIX_UNITS = {"_s": ("s", 1), "_J": ("J", 1), "_W": ("W", 1), "_ns": ("ns", 1), "_ps": ("ps", 1), "_MHz": ("MHz", 1),
                "_GHz": ("GHz", 1), "_pJ": ("pJ", 1), "_mW": ("mW", 1), "_mA": ("mA", 1), "_V": ("V", 1),
                "_bytes": ("bytes", 1), "_Gbps_per_pin": ("Gb/s per pin", 1), "_GBps": ("GB/s", 1)}
COUNT_KEYS = ("channels", "ranks", "banks", "rows", "columns", "lanes", "cycles", "len", "tokens", "k", "bits",
              "layers", "heads", "entries", "depth", "width")
# --size: widths of a two-column paper's column and page (IEEE: 3.5 in and 7.16 in)
SIZES = {"column": 3.5, "page": 7.16}
_size: str | None = None


def set_size(size: str | None) -> None:
    """``--size column|page``: every later figure is that wide (fonts stay at their point size)."""
    global _size
    if size is not None and size not in SIZES:
        raise PimsimError(f"--size {size}: column or page")
    _size = size


def _figsize(width: float, height: float) -> tuple[float, float]:
    if _size is None:
        return width, height
    target = SIZES[_size]
    return target, max(1.6, height * target / width) if _size == "page" else max(1.8, height * target / width * 1.3)


def _style() -> None:
    """pimsim's style (and --size column's smaller fonts) on matplotlib's settings, for the figures drawn next."""
    try:
        import matplotlib
        import matplotlib.style
    except ImportError:
        raise PimsimError("plots need matplotlib: pip install '.[plot]'") from None
    matplotlib.style.use(str(STYLE))
    if _size == "column":
        matplotlib.rcParams.update({"font.size": 7, "axes.titlesize": 7.5, "axes.labelsize": 7,
                                    "legend.fontsize": 6, "xtick.labelsize": 6.5, "ytick.labelsize": 6.5})


def _subplots(nrows: int = 1, ncols: int = 1, **figure_options):
    """A styled Figure and its axes, as ``pyplot.subplots`` gives them, without pyplot: no figure manager,
    no backend to select (a figure is saved by the canvas its file type needs, Agg for PNG), and about
    0.1 s less to import."""
    _style()
    from matplotlib.figure import Figure

    subplot_options = {k: figure_options.pop(k) for k in ("squeeze", "sharex", "sharey") if k in figure_options}
    fig = Figure(**figure_options)
    return fig, fig.subplots(nrows, ncols, **subplot_options)


def _palette(name: str = "tab20") -> tuple:
    import matplotlib

    return matplotlib.colormaps[name].colors


def _plt():
    """pyplot with pimsim's style, for scripts that draw their own figures (analysis/); pimsim's own
    figures are drawn without pyplot (:func:`_subplots`)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PimsimError("plots need matplotlib: pip install '.[plot]'") from None
    _style()
    return plt


def _label(metric: str) -> tuple[str, float]:
    if metric in UNITS:
        name, unit, scale = UNITS[metric]
        return f"{name} ({unit})", scale
    for suffix, (unit, scale) in SUFFIX_UNITS.items():
        if metric.endswith(suffix):
            return f"{metric.removesuffix(suffix).replace('_', ' ')} ({unit})", scale
    return f"{metric} (ratio)" if metric.endswith(("_rate", "_ratio")) else metric, 1


def _key_label(key: str) -> str:
    bare = key.removeprefix("set:").removeprefix("run:")
    for suffix, (unit, _) in SUFFIX_UNITS.items():
        if bare.endswith(suffix):
            return f"{bare} ({unit})"
    leaf = bare.rsplit(".", 1)[-1]
    if leaf in COUNT_KEYS or leaf.endswith(tuple(f"_{k}" for k in COUNT_KEYS)):
        return f"{bare} (count)"
    return bare


# ---- sweeps: filters, what varies, facets --------------------------------------------------------------
def where(frame, filters: list[str]):
    """``--where KEY=V`` (repeatable): keep the rows whose KEY is V (V read as YAML, compared as text when
    the column holds text)."""
    from pimsim.config.files import parse_yaml

    for text in filters or []:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise PimsimError(f"--where {text!r}: expected KEY=VALUE, e.g. --where dram.channels=8")
        column = _column(frame, key.strip())
        wanted = parse_yaml(value) if value.strip() else ""
        values = frame[column]
        kept = frame[values.astype(str) == str(wanted)] if values.dtype == object else frame[values == wanted]
        if kept.empty:
            shown = ", ".join(str(v) for v in sorted(values.dropna().unique(), key=str)[:20])
            raise PimsimError(f"--where {text}: no row has {key.strip()} = {wanted!r} (values: {shown})")
        frame = kept
    return frame


def _axes_columns(frame) -> list[str]:
    return [c for c in frame.columns if c.startswith(("set:", "run:"))]


def _varying(frame, plotted: list[str]) -> list[str]:
    """Swept keys (and run settings) that take more than one value among the rows and are not drawn."""
    return [c for c in _axes_columns(frame) if c not in plotted and frame[c].astype(str).nunique() > 1]


def _refuse_hidden_axes(frame, plotted: list[str], what: str) -> None:
    hidden = _varying(frame, plotted)
    if hidden:
        parts = [f"{_key_label(c).split(' (')[0]} ({', '.join(sorted(map(str, frame[c].dropna().unique()))[:6])})"
                 for c in hidden]
        raise PimsimError(f"plot {what}: {'; '.join(parts)} also vary and the figure would mix them; pick one "
                          "value each with --where KEY=V"
                          + (", or draw one with --hue KEY" if what == "sweep" else ""))


def _fixed_note(frame, plotted: list[str]) -> str:
    """What every point of a figure shares, for its caption line (the settings it does not draw)."""
    fixed = [f"{_key_label(c).split(' (')[0]}={frame[c].iloc[0]}" for c in _axes_columns(frame)
             if c not in plotted and frame[c].astype(str).nunique() == 1]
    return ", ".join(fixed)


def _ok_rows(frame, needed: list[str]):
    if "status" in frame:
        frame = frame[frame["status"] == "ok"]
    for column in needed:
        if column not in frame:
            metrics = [c for c in frame.columns if not c.startswith(("set:", "run:", "time_total_s:",
                                                                      "energy_total_J:"))
                       and c not in ("id", "status", "error", "model", "pimsim_version")]
            raise PimsimError(f"no metric {column!r} in the sweep (metrics: {', '.join(metrics)})")
    if frame.empty:
        raise PimsimError("no finished points to plot (every point failed, or --where kept none)")
    return frame


def _numeric(frame, column: str, what: str) -> None:
    import pandas as pd

    if not pd.api.types.is_numeric_dtype(frame[column]):
        raise PimsimError(f"{what} {_key_label(column)}: not a number (values: "
                          f"{', '.join(map(str, frame[column].unique()[:5]))})")


def _models(frame) -> list:
    return sorted(frame["model"].unique()) if "model" in frame else [None]


def _facets(count: int, width: float = 6.4, height: float = 4.4):
    cols = min(count, 3)
    rows = -(-count // cols)
    fig, axes = _subplots(rows, cols, figsize=_figsize(width * (1 + 0.6 * (cols - 1)), height * rows),
                             squeeze=False, layout="constrained")
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:count])


def sweep_lines(frame, x: str, y: str, hue: str | None = None, logx: bool = False, logy: bool = False,
                filters: list[str] | None = None):
    """One line per --hue value (one panel per model) of metric y against swept key x; every other swept
    key must be fixed (by the sweep or --where), else lines would zig-zag through it."""
    frame = where(frame, filters)
    x, hue = _column(frame, x), _column(frame, hue) if hue else None
    frame = _ok_rows(frame, [y])
    _numeric(frame, y, "--y")
    _refuse_hidden_axes(frame, [x, hue], "sweep")
    ylabel, scale = _label(y)
    models = [None] if "model" in (x, hue) else _models(frame)  # --hue model: one panel, a line per model
    fig, axes = _facets(len(models))
    for ax, model in zip(axes, models):
        part_frame = frame if model is None else frame[frame["model"] == model]
        groups = part_frame.groupby(hue) if hue else [(None, part_frame)]
        for value, part in groups:
            part = part.sort_values(x)
            ax.plot(part[x], part[y] * scale, marker="o", label=f"{_key_label(hue).split(' (')[0]} = {value}"
                    if hue else None)
        ax.set_xlabel(_key_label(x))
        ax.set_ylabel(ylabel)
        if logx:
            ax.set_xscale("log", base=2)
        if logy:
            ax.set_yscale("log")
        if hue:
            ax.legend()
        ax.set_title(f"{model + ': ' if model else ''}{ylabel.split(' (')[0]} against {_key_label(x).split(' (')[0]}")
    _caption(fig, _fixed_note(frame, [x, hue]))
    return fig


def _caption(fig, note: str) -> None:
    if note:
        fig.supxlabel(f"all points: {note}", fontsize="small", color="0.35")


def sweep_heatmap(frame, x: str, y: str, value: str, filters: list[str] | None = None):
    """Metric `value` over two swept keys, one panel per model; refuses when another key varies (it
    would have to be averaged) or a cell has more than one point."""
    frame = where(frame, filters)
    x, y = _column(frame, x), _column(frame, y)
    frame = _ok_rows(frame, [value])
    _numeric(frame, value, "--value")
    _refuse_hidden_axes(frame, [x, y], "heatmap")
    label, scale = _label(value)
    models = _models(frame)
    fig, axes = _facets(len(models))
    for ax, model in zip(axes, models):
        part = frame if model is None else frame[frame["model"] == model]
        if part.groupby([x, y]).size().max() > 1:
            raise PimsimError(f"plot heatmap: more than one point per cell of {_key_label(x)} x {_key_label(y)}")
        table = part.pivot_table(index=y, columns=x, values=value, aggfunc="first") * scale
        ax.grid(False)
        image = ax.imshow(table.values, origin="lower", aspect="auto", cmap="viridis")
        ax.set_xticks(range(len(table.columns)), [_tick(v) for v in table.columns])
        ax.set_yticks(range(len(table.index)), [_tick(v) for v in table.index])
        middle = float(np.nanmean(table.values)) if np.isfinite(table.values).any() else 0.0
        for i in range(table.shape[0]):
            for j in range(table.shape[1]):
                v = table.values[i, j]
                ax.text(j, i, "-" if v != v else f"{v:.3g}", ha="center", va="center",
                        color="white" if v < middle else "black", fontsize="small")
        ax.set_xlabel(_key_label(x))
        ax.set_ylabel(_key_label(y))
        fig.colorbar(image, ax=ax, label=label)
        ax.set_title(f"{model + ': ' if model else ''}{label.split(' (')[0]}")
    _caption(fig, _fixed_note(frame, [x, y]))
    return fig


def _tick(v) -> str:
    return f"{v:g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def pareto(frame, filters: list[str] | None = None, annotate: bool = True):
    """Throughput against energy per token: one front per model (one panel each), its points labelled
    with the settings that put them there."""
    frame = where(frame, filters)
    if "energy_per_token_J" not in frame or frame["energy_per_token_J"].isna().all():
        raise PimsimError("a Pareto plot needs energy per token: the hardware needs an energy section")
    frame = _ok_rows(frame, ["tokens_per_s", "energy_per_token_J"])
    frame = frame.dropna(subset=["tokens_per_s", "energy_per_token_J"])
    varying = _varying(frame, [])
    models = _models(frame)
    fig, axes = _facets(len(models))
    for ax, model in zip(axes, models):
        part = frame if model is None else frame[frame["model"] == model]
        pts = part[["tokens_per_s", "energy_per_token_J"]].to_numpy(dtype=float)
        front = [i for i, (t, e) in enumerate(pts)
                 if not any((t2 >= t and e2 <= e) and (t2 > t or e2 < e) for t2, e2 in pts)]
        ax.scatter(pts[:, 0], pts[:, 1] * 1e3, color="0.6", label="sweep points")
        order = sorted(front, key=lambda i: pts[i, 0])
        ax.plot(pts[order, 0], pts[order, 1] * 1e3, marker="o", color="C3", label="Pareto front")
        if annotate and varying:
            for i in order:
                row = part.iloc[i]
                text = "\n".join(f"{_key_label(c).split(' (')[0].rsplit('.', 1)[-1]}={row[c]}" for c in varying)
                ax.annotate(text, (pts[i, 0], pts[i, 1] * 1e3), textcoords="offset points", xytext=(4, 4),
                            fontsize="x-small", color="C3")
        ax.set_xlabel("throughput (tokens/s)")
        ax.set_ylabel("energy per token (mJ)")
        ax.legend()
        ax.set_title(f"{model + ': ' if model else ''}throughput against energy")
    _caption(fig, _fixed_note(frame, []))
    return fig


def run_results(records: list, paths: list[str] | None, what: str) -> list:
    """``pimsim run --json`` records read back as :class:`~pimsim.run_types.RunResult` (a spec-dec record,
    or anything else, refused with one message)."""
    from pimsim.run_types import RunResult

    out = []
    for i, r in enumerate(records):
        name = paths[i] if paths else f"input {i + 1}"
        if isinstance(r, dict) and (r.get("kind") == "spec_dec" or "target" in r and "draft" in r):
            raise PimsimError(f"{name}: a speculative-decoding result; plot {what} draws plain `pimsim run --json` "
                              f"results (a spec-dec run has no per-part breakdown or per-token latencies)")
        if not isinstance(r, dict) or "breakdown_s" not in r or "per_token_s" not in r:
            raise PimsimError(f"{name}: not a `pimsim run --json` result (plot {what} needs one)")
        out.append(RunResult.from_json(r, name))
    return out


def _run_names(results: list) -> list[str]:
    """Bar labels that tell runs apart: model and hardware, then whatever else differs between them."""
    names = [f"{r.model}\n{r.hw}" for r in results]
    for key in ("schedule", "fidelity", "weight_format", "prompt_len", "gen_tokens", "config_hash"):
        if len(set(names)) == len(names):
            break
        values = [str(getattr(r.details, key)) for r in results]
        if len(set(values)) > 1:
            names = [f"{n}\n{key.replace('_', ' ')} {v}" for n, v in zip(names, values)]
    if len(set(names)) < len(names):  # identical runs: still two bars, numbered
        names = [f"{n}\n#{i + 1}" for i, n in enumerate(names)]
    return names


def breakdown(results: list, names: list[str] | None = None):
    """Stacked bars of each run's time shares and, when present, energy shares (`results`: decode
    :class:`~pimsim.run_types.RunResult` values, e.g. from :func:`run_results`; `names`: the bars' labels,
    by default model and hardware and whatever else tells the runs apart)."""
    from pimsim.energy.model import COMPONENTS

    with_energy = all(r.details.energy is not None for r in results)
    fig, axes = _subplots(1, 2 if with_energy else 1, figsize=_figsize(11 if with_energy else 6, 6.2),
                             squeeze=False, layout="constrained")
    names = names or _run_names(results)
    positions = list(range(len(results)))
    panels = [([r.breakdown_s for r in results],
               {k: v for r in results for k, v in (r.details.time.titles or {}).items()},
               "share of time (%)", "where the time goes")]
    if with_energy:
        panels.append(([r.energy_breakdown_J for r in results], COMPONENTS, "share of energy (%)",
                       "where the energy goes"))
    colors = _palette()
    for ax, (values, titles, ylabel, title) in zip(axes[0], panels):
        parts = sorted({p for v in values for p, x in v.items() if x},
                       key=lambda p: -sum(v.get(p, 0) / sum(v.values()) for v in values))
        bottom = [0.0] * len(results)
        for i, part in enumerate(parts):
            shares = [100 * v.get(part, 0) / sum(v.values()) for v in values]
            ax.bar(positions, shares, bottom=bottom, label=titles.get(part, part), color=colors[i % len(colors)],
                   width=0.6)
            bottom = [b + v for b, v in zip(bottom, shares)]
        ax.set_xticks(positions, names)
        ax.set_ylabel(ylabel)
        ax.set_ylim(0, 100)
        ax.grid(axis="x", visible=False)
        ax.set_title(title)
        ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    return fig


def compare_bars(result: dict):
    """Speed-up and energy efficiency against each baseline, on a log axis that shows values below 1x
    too, with the 1x line drawn."""
    if not isinstance(result, dict) or not isinstance(result.get("rows"), list) or not result["rows"]:
        raise PimsimError("not a `pimsim compare --json` result (plot compare needs one)")
    rows = result["rows"]
    names = [f"{Path(r['baseline']).stem if r['baseline'].endswith('.json') else r['baseline']}\n"
             f"({r.get('sources', {}).get('baseline', r['kind'])})" for r in rows]
    fig, axes = _subplots(1, 2, figsize=_figsize(max(10, 2.6 * len(rows)), 4.8), layout="constrained")
    for ax, key, title in ((axes[0], "speedup", "speed-up"), (axes[1], "energy_efficiency", "energy efficiency")):
        values = [r.get(key) for r in rows]
        shown = [v if v else float("nan") for v in values]
        positions = list(range(len(rows)))
        bars = ax.bar(positions, shown, color=["C0" if r["kind"] == "measured" else "C1" for r in rows])
        for bar, v in zip(bars, values):
            y = v if v else 1.0
            ax.annotate(f"{v:.3g}x" if v else "not measured", (bar.get_x() + bar.get_width() / 2, y), ha="center",
                        va="bottom" if not v or v >= 1 else "top", fontsize="small")
        ax.axhline(1.0, color="0.25", linestyle="--", linewidth=0.9, label="1x: as fast / as efficient")
        ax.set_yscale("log")
        finite = [v for v in values if v]
        low, high = min(finite + [1.0]), max(finite + [1.0])
        ax.set_ylim(low / 2, high * 2)  # below 1x stays visible: a slower PIM system is a result too
        ax.set_xticks(positions, names)
        ax.tick_params(axis="x", labelsize="small")
        ax.set_ylabel(f"{title} (x, log scale)")
        ax.set_title(f"{result['model']} on {result['hw']}: {title}")
        ax.legend(fontsize="x-small", loc="upper left")
    return fig


def tokens(result):
    """Each generated token's latency against its position (`result`: a decode RunResult)."""
    per = [t * 1e3 for t in result.details.per_token_s]
    positions = range(result.prompt_len, result.prompt_len + len(per))
    fig, ax = _subplots(figsize=_figsize(6.4, 4.4))
    ax.plot(list(positions), per, marker="." if len(per) < 200 else None)
    ax.set_xlabel("position in the sequence (tokens in the KV cache)")
    ax.set_ylabel("latency of the token (ms)")
    ax.set_title(f"{result.model} on {result.hw}: latency per token")
    return fig


def timeline(trace: dict, token_end_us: float | None = None):
    """The first token (or up to token_end_us) of a ``--timeline`` trace: one row per track. The title
    says what is shown: the first token when its end is found, else the whole run."""
    if not isinstance(trace, dict) or not isinstance(trace.get("traceEvents"), list):
        raise PimsimError("not a --timeline trace (no traceEvents)")
    events = [e for e in trace["traceEvents"] if e.get("ph") == "X"]
    names = {e["tid"]: e["args"]["name"] for e in trace["traceEvents"] if e.get("ph") == "M" and "tid" in e}
    if not events:
        raise PimsimError("the timeline has no events")
    run_end = max(e["ts"] + e["dur"] for e in events)
    first = _first_token_end(events)
    end = token_end_us or first or run_end
    shown = ("up to {:.1f} us".format(end) if token_end_us else "first token" if first and first < run_end
             else "whole run")
    tids = sorted(names)
    fig, ax = _subplots(figsize=_figsize(11, 0.4 * len(tids) + 1.5))
    parts = sorted({e["cat"] for e in events})
    palette = _palette()
    colors = {p: palette[i % len(palette)] for i, p in enumerate(parts)}
    for row, tid in enumerate(tids):
        spans = [(e["ts"], e["dur"], e["cat"]) for e in events if e["tid"] == tid and e["ts"] < end]
        for ts, dur, cat in spans:
            ax.broken_barh([(ts, dur)], (row - 0.4, 0.8), color=colors[cat])
    ax.set_yticks(range(len(tids)), [names[t] for t in tids])
    ax.set_xlim(0, end)
    ax.set_xlabel("time (us)")
    ax.set_ylabel("track (ASIC unit, link, channel)")
    from matplotlib.patches import Rectangle

    handles = [Rectangle((0, 0), 1, 1, color=c) for c in colors.values()]
    ax.legend(handles, list(colors), fontsize="x-small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(f"{shown} ({end:,.1f} of {run_end:,.1f} us): ASIC, links and channels")
    return fig


def _first_token_end(events) -> float | None:
    """Where the first token ends: the end of its slice on the tokens track, else (a trace without one)
    the end of the first LM-head reduction on the ASIC (its last step); None when neither is there."""
    tokens = [e["ts"] + e["dur"] for e in events if e.get("cat") == "token" and e.get("args", {}).get("token") == 0]
    if tokens:
        return tokens[0]
    lm = [e["ts"] + e["dur"] for e in events if e["cat"] == "lm_head" and e["tid"] == 1]
    return min(lm) if lm else None


def _column(frame, key: str) -> str:
    from pimsim.sweep.points import ALIASES

    key = ALIASES.get(key, key)
    for candidate in (key, f"set:{key}", f"run:{key}"):
        if candidate in frame:
            return candidate
    keys = [c.split(":", 1)[1] for c in frame.columns if c.startswith(("set:", "run:"))]
    raise PimsimError(f"no column {key!r} among the sweep's keys (swept: {', '.join(keys) or 'none'}; model is "
                      f"drawn as one panel each)")


def load_timeline(path: str) -> dict:
    """A ``--timeline`` trace, gzip-compressed or not."""
    from pimsim.report.timeline import read_timeline

    try:
        return read_timeline(path)
    except (OSError, ValueError, EOFError) as exc:
        raise PimsimError(f"{path}: not a readable --timeline trace ({exc})") from None


def load_json(path: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise PimsimError(f"{path}: not a readable JSON result ({exc})") from None


# ---- serving (`pimsim serve`) ----------------------------------------------------------------------
SERVE_LATENCIES = (("ttft_s", "time to first token"), ("tpot_s", "time per output token"), ("e2e_s", "end to end"))


def serve_load(summaries: list[dict], paths: list[str] | None = None):
    """Latency against offered load: one ``pimsim serve --json`` summary per rate (Poisson arrivals) and
    per system (model, hardware, max batch: one line each); p50 solid, p99 dashed, one panel per latency."""
    groups: dict[str, list[dict]] = {}
    for i, s in enumerate(summaries):
        name = paths[i] if paths else f"input {i + 1}"
        if not isinstance(s, dict) or "ttft_s" not in s or "e2e_s" not in s:
            raise PimsimError(f"{name}: not a `pimsim serve --json` summary")
        if s.get("rate_per_s") is None:
            raise PimsimError(f"{name}: served from an arrivals file; plot serve-load needs Poisson runs (--rate)")
        label = f"{s['model']} on {s['hw']}, max batch {s['max_batch']}"
        groups.setdefault(label, []).append(s)
    fig, axes = _subplots(1, len(SERVE_LATENCIES), figsize=_figsize(12, 4.6), layout="constrained")
    for ax, (key, title) in zip(axes, SERVE_LATENCIES):
        drawn = []
        for n, (label, runs) in enumerate(sorted(groups.items())):
            runs = sorted(runs, key=lambda s: s["rate_per_s"])
            rates = [s["rate_per_s"] for s in runs]
            colour = f"C{n % 10}"
            for q, style in (("p50", "-"), ("p99", "--")):
                values = [s[key][q] * 1e3 if s[key][q] is not None else np.nan for s in runs]
                drawn += values
                ax.plot(rates, values, style, marker="o", color=colour, label=f"{label} ({q})")
        ax.set_xlabel("arrival rate (requests/s)")
        ax.set_ylabel(f"{title} (ms)")
        finite = [v for v in drawn if np.isfinite(v) and v > 0]
        if finite and max(finite) > 10 * min(finite):  # queueing: latencies over decades
            ax.set_yscale("log")
        elif finite:  # from zero, so that rounding-level differences do not look like a trend
            ax.set_ylim(0, max(finite) * 1.15)
        ax.set_title(title)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize="small")
    return fig


def serve_cdf(frames: list, paths: list[str]):
    """The distribution of each request's latencies in ``pimsim serve --out`` rows: one CDF line per file,
    one panel per latency."""
    fig, axes = _subplots(1, len(SERVE_LATENCIES), figsize=_figsize(12, 3.8), layout="constrained")
    for frame, path in zip(frames, paths):
        missing = [k for k, _ in SERVE_LATENCIES if k not in frame.columns]
        if missing:
            raise PimsimError(f"{path}: not `pimsim serve --out` rows (no {', '.join(missing)})")
        for ax, (key, _) in zip(axes, SERVE_LATENCIES):
            values = np.sort(frame[key].dropna().to_numpy(float)) * 1e3
            ax.plot(values, np.arange(1, len(values) + 1) / max(len(values), 1),
                    label=Path(path).stem if Path(path).suffix else path)
    for ax, (_, title) in zip(axes, SERVE_LATENCIES):
        ax.set_xlim(left=0)  # so that rounding-level differences (a constant TPOT) do not look like a spread
        ax.set_xlabel(f"{title} (ms)")
        ax.set_ylabel("share of requests")
        ax.set_title(title)
    if frames:
        axes[0].legend(fontsize="small")
    return fig
