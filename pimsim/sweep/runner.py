"""Running a sweep: one ``pimsim run`` per point on an executor, one tidy row per point.

The executor is the only seam between a laptop and a cluster: a local process pool (``--jobs N``) or a
Dask distributed client's executor (``--cluster tcp://host:8786`` or ``DASK_SCHEDULER_ADDRESS``). Rows
are appended to ``points.jsonl`` and flushed as each point finishes, so a crash loses nothing done; a
re-run first compacts the file (one row per finished point; torn lines and failed rows dropped), then
runs what is missing. ``points.parquet`` is written
from all rows at the end.

A folder holds one sweep: ``sweep.json`` records its definition, and a different sweep into it is refused
unless forced (its old rows are then discarded). While a sweep runs, ``.lock`` is held (an advisory
``flock``) with the process's id in it, so a second sweep into the same folder stops at once instead of
running the same points twice. Local workers exit when the sweep's process dies (``kill -9`` included).
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
from pimsim.sweep.points import Sweep, point_spec, serving_point

# the figures a row keeps (RunResult.to_row), by run kind
METRICS, SPEC_DEC_METRICS = DECODE_ROW_METRICS, SPEC_DEC_ROW_METRICS


def run_point(hw: str, point: dict, run: dict) -> dict:
    """One point, as a flat row (runs in a worker process or on a Dask worker): its RunSpec simulated."""
    from pimsim.runs import simulate

    started = time.perf_counter()
    row = {"id": point["id"], "model": point["model"], **{f"set:{k}": v for k, v in point["overrides"].items()},
           **{f"run:{k}": v for k, v in run.items()}, "pimsim_version": __version__}
    try:
        serving = serving_point(point, run)
        if serving is not None:
            from pimsim.serving.service import serving_row

            row.update(serving_row(hw, point["model"], *serving))
        else:
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
        _write_text(path, "".join(json.dumps(r, default=str) + "\n" for r in keep))
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


def _exit_with_parent(parent: int) -> None:
    """Worker initializer: a thread that ends this worker once its parent is gone (re-parented), so a
    sweep killed with SIGKILL leaves no simulation running on."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=watch, daemon=True, name="pimsim-parent-watch").start()


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
        with ProcessPoolExecutor(max_workers=jobs, initializer=_exit_with_parent, initargs=(os.getpid(),)) as pool:
            yield pool


def definition(sweep: Sweep) -> dict:
    """What makes two sweeps the same sweep (resuming one is fine; mixing two in a folder is not)."""
    return json.loads(json.dumps({"hw": sweep.hw, "models": sweep.models, "run": sweep.run, "grid": sweep.grid,
                                  "zip": sweep.zipped, "random": {"axes": sweep.random_axes,
                                                                  "count": sweep.random_count,
                                                                  "seed": sweep.random_seed},
                                  "constraints": sweep.constraints}, default=str))


@contextmanager
def folder_lock(out: Path):
    """Hold ``out/.lock`` for the sweep's duration; another sweep holding it is named in the error."""
    import fcntl

    path = out / ".lock"
    try:
        handle = open(path, "a+")
    except OSError as exc:
        raise PimsimError(f"{out}: cannot write the sweep's lock file ({exc.strerror})") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise PimsimError(f"{out} is in use by another sweep ({holder}); wait for it to finish or give "
                              f"another --out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {os.uname().nodename}, started {time.strftime('%Y-%m-%d %H:%M:%S')}")
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the lock; the file stays (removing it would race a waiting sweep)


def run_sweep(sweep: Sweep, out_dir: str | Path, jobs: int = 1, cluster: str | None = None,
              progress: bool = True, force: bool = False) -> dict:
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PimsimError(f"--out {out}: cannot create the folder ({exc.strerror})") from None
    if not out.is_dir():
        raise PimsimError(f"--out {out}: not a folder")
    points = sweep.points()
    if not points:
        raise PimsimError("the sweep has no points (check the grid and the constraints)")
    with folder_lock(out):
        return _run_locked(sweep, out, points, jobs, cluster, progress, force)


def _run_locked(sweep: Sweep, out: Path, points: list[dict], jobs: int, cluster: str | None, progress: bool,
                force: bool) -> dict:
    jsonl = out / "points.jsonl"
    spec_file, spec = out / "sweep.json", definition(sweep)
    previous = _read_definition(spec_file)
    if previous is None and jsonl.is_file() and jsonl.stat().st_size and not force:
        # a folder from before sweep.json: the same sweep if any of its rows is one of this sweep's points
        if not {r.get("id") for r in read_rows(jsonl)} & {p["id"] for p in points}:
            raise PimsimError(f"{out} holds rows of another sweep (none of its points is one of this sweep's); "
                              f"give another --out, or --force to discard them")
        previous = spec
    if previous is not None and previous != spec:
        if not force:
            changed = sorted(k for k in spec if previous.get(k) != spec[k])
            raise PimsimError(f"{out} holds another sweep (its {', '.join(changed)} differ); give another --out, "
                              f"or --force to discard its rows and run this one there")
    if force and (previous != spec):
        jsonl.unlink(missing_ok=True)
        (out / "points.parquet").unlink(missing_ok=True)
    _write_text(spec_file, json.dumps(spec, indent=2) + "\n")
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
    try:
        with executor(jobs, cluster) as pool, jsonl.open("a") as log:
            futures = [pool.submit(run_point, sweep.hw, p, sweep.run) for p in todo]
            for future in as_completed(futures):
                row = future.result()
                failed += row["status"] != "ok"
                log.write(json.dumps(row, default=str) + "\n")
                log.flush()
                if bar is not None:
                    bar.update(1)
    except OSError as exc:  # a full or read-only disk: the rows written so far are kept for a resume
        if exc.filename is None and exc.errno is None:
            raise
        raise PimsimError(f"cannot write {jsonl}: {exc.strerror or exc}; finished points are kept, run the "
                          f"same sweep again to resume") from None
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


def _read_definition(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable: treated as another sweep's (refused without --force)


def _write_text(path: Path, text: str) -> None:
    try:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    except OSError as exc:
        raise PimsimError(f"cannot write {path}: {exc.strerror}") from None


def _write_parquet(rows: list[dict], path: Path) -> None:
    try:
        import pandas as pd
    except ImportError:
        raise PimsimError("writing points.parquet needs pandas and pyarrow: pip install '.[sweep]'") from None
    frame = pd.DataFrame(rows)
    for column in frame.columns:  # mixed-type columns (a value, or None for failed points) as text
        if frame[column].dtype == object:
            frame[column] = frame[column].map(lambda v: None if v is None else str(v))
    try:
        frame.to_parquet(path, index=False)
    except OSError as exc:
        raise PimsimError(f"cannot write {path}: {exc.strerror or exc}") from None
