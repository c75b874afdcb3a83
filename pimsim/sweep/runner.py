"""Running a sweep: one ``pimsim run`` per point on an executor, one tidy row per point.

The executor is the only seam between a laptop and a cluster: a local process pool (``--jobs N``) or a
Dask distributed client's executor (``--cluster tcp://host:8786`` or ``DASK_SCHEDULER_ADDRESS``). Rows
are appended to ``points.jsonl`` and flushed as each point finishes, so a crash loses nothing done; a
re-run first compacts the file (one row per finished point; torn lines and failed rows dropped), then
runs what is missing. ``points.parquet`` is written
from all rows at the end.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path

from pimsim import __version__
from pimsim.errors import PimsimError
from pimsim.run_types import DECODE_ROW_METRICS, SPEC_DEC_ROW_METRICS
from pimsim.sweep.points import Sweep, point_spec

# the figures a row keeps (RunResult.to_row), by run kind
METRICS, SPEC_DEC_METRICS = DECODE_ROW_METRICS, SPEC_DEC_ROW_METRICS


def run_point(hw: str, point: dict, run: dict) -> dict:
    """One point, as a flat row (runs in a worker process or on a Dask worker): its RunSpec simulated."""
    from pimsim.runs import simulate

    started = time.perf_counter()
    row = {"id": point["id"], "model": point["model"], **{f"set:{k}": v for k, v in point["overrides"].items()},
           **{f"run:{k}": v for k, v in run.items()}, "pimsim_version": __version__}
    try:
        row.update(simulate(point_spec(hw, point, run)).to_row())
        row["status"], row["error"] = "ok", None
    except PimsimError as exc:  # a point whose config is invalid or whose model does not fit
        row["status"], row["error"] = "error", str(exc)
    row["wall_s"] = time.perf_counter() - started
    return row


def _compact(path: Path) -> list[dict]:
    """Before (re)starting: keep one finished row per point and drop torn lines (a run killed while
    writing) and failed rows (those points run again), so the file ends with every point once."""
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    latest: dict[str, dict] = {}
    for row in read_rows(path):
        latest[row["id"]] = row
    keep = [r for r in latest.values() if r.get("status") == "ok"]
    if len(keep) != len(lines):
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text("".join(json.dumps(r, default=str) + "\n" for r in keep))
        tmp.replace(path)
    return keep


def read_rows(path: Path) -> list[dict]:
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue  # a line cut short by a crash: that point runs again
    return rows


@contextmanager
def executor(jobs: int, cluster: str | None):
    """A local process pool, or a Dask cluster's executor."""
    address = cluster or os.environ.get("DASK_SCHEDULER_ADDRESS")
    if address:
        try:
            from distributed import Client
        except ImportError:
            raise PimsimError("--cluster needs dask distributed: pip install '.[sweep]'") from None
        try:
            client = Client(address, timeout=float(os.environ.get("PIMSIM_DASK_TIMEOUT_S", 10)))
        except (OSError, TimeoutError) as exc:
            raise PimsimError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
        try:
            yield client.get_executor()
        finally:
            client.close()
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            yield pool


def run_sweep(sweep: Sweep, out_dir: str | Path, jobs: int = 1, cluster: str | None = None,
              progress: bool = True) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jsonl = out / "points.jsonl"
    points = sweep.points()
    if not points:
        raise PimsimError("the sweep has no points (check the grid and the constraints)")
    done = {r["id"] for r in _compact(jsonl)}
    todo = [p for p in points if p["id"] not in done]
    if todo:
        from pimsim.dram.warmup import warm_up

        warm_up()  # compile (or load) the numba kernels once, before the workers read the cache
    failed = 0
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="point", desc="sweep")
    with executor(jobs, cluster) as pool, jsonl.open("a") as log:
        futures = [pool.submit(run_point, sweep.hw, p, sweep.run) for p in todo]
        for future in as_completed(futures):
            row = future.result()
            failed += row["status"] != "ok"
            log.write(json.dumps(row, default=str) + "\n")
            log.flush()
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    rows = read_rows(jsonl)
    latest = {}
    for row in rows:  # a point tried again keeps its newest row
        latest[row["id"]] = row
    table = [latest[p["id"]] for p in points if p["id"] in latest]
    parquet = out / "points.parquet"
    _write_parquet(table, parquet)
    return {"points": len(points), "ran": len(todo), "skipped": len(points) - len(todo), "failed": failed,
            "jsonl": str(jsonl), "parquet": str(parquet), "rows": table}


def _write_parquet(rows: list[dict], path: Path) -> None:
    try:
        import pandas as pd
    except ImportError:
        raise PimsimError("writing points.parquet needs pandas and pyarrow: pip install '.[sweep]'") from None
    frame = pd.DataFrame(rows)
    for column in frame.columns:  # mixed-type columns (a value, or None for failed points) as text
        if frame[column].dtype == object:
            frame[column] = frame[column].map(lambda v: None if v is None else str(v))
    frame.to_parquet(path, index=False)
