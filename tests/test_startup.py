"""Commands that simulate no model import only what they need (start-up time is measured by
benchmarks/startup.py; this checks the behaviour that keeps it short)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import contextlib, io, json, sys
from pimsim.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    rc = main(json.loads(sys.argv[1]))
print(json.dumps({"rc": rc, "modules": sorted(sys.modules)}))
"""

HEAVY = {"torch", "transformers", "pandas", "matplotlib", "pyarrow", "dask", "distributed"}


def _imported(argv: list[str]) -> tuple[int, set[str]]:
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return out["rc"], set(out["modules"])


def _top(modules: set[str]) -> set[str]:
    """The top-level packages among imported module names."""
    return {m.split(".")[0] for m in modules}


@pytest.mark.parametrize("argv", [["validate", "gddr6-aim.yaml"], ["model", "list"], ["config", "list"],
                                  ["config", "show", "hbm-pim.yaml", "--format", "json"]])
def test_commands_without_a_kernel_import_neither_ml_libraries_nor_numba(argv):
    rc, modules = _imported(argv)
    assert rc == 0
    assert _top(modules) & (HEAVY | {"numba"}) == set()


def test_model_list_reads_cards_without_building_the_hardware_models():
    rc, modules = _imported(["model", "list"])
    assert rc == 0
    assert {"pimsim.config.models", "pimsim.config.checks", "pimsim.dram.standards"} & modules == set()


def test_a_kernel_command_imports_numba_but_no_ml_library():
    rc, modules = _imported(["kernel", "gemv", "--hw", "gddr6-aim.yaml", "--rows", "16", "--cols", "16"])
    assert rc == 0
    assert "numba" in modules and _top(modules) & HEAVY == set()


def test_a_plot_imports_matplotlib_but_neither_numba_nor_ml_libraries(tmp_path):
    from pimsim.run_types import SCHEMA_VERSION

    run = tmp_path / "run.json"  # a `pimsim run --json` record: the golden gpt2 run's figures
    record = json.loads((Path(__file__).parent / "golden" / "fast-gddr6-aim-gpt2.json").read_text())
    run.write_text(json.dumps({"schema_version": SCHEMA_VERSION, "kind": "decode", **record}))
    rc, modules = _imported(["plot", "breakdown", str(run), "--out", str(tmp_path / "fig.png")])
    assert rc == 0 and (tmp_path / "fig.png").stat().st_size > 0
    assert "matplotlib" in modules and _top(modules) & (HEAVY - {"matplotlib"} | {"numba", "pydantic", "yaml"}) == set()
    # drawn on a Figure with the Agg canvas: pyplot (its figure manager, backend selection) is not needed
    assert "matplotlib.pyplot" not in modules and "matplotlib.backends.backend_agg" in modules


# modules a timing-only kernel or run does not need: the functional bank model and its formats, the
# request controller (request traces, the no-PIM baseline), pyplot
NOT_FOR_TIMING = {"pimsim.pim.banks", "pimsim.pim.reduce", "pimsim.pim.rounding", "pimsim.dram.controller",
                  "matplotlib.pyplot"}


def test_a_timing_only_gemv_leaves_out_the_functional_path_and_the_controller():
    rc, modules = _imported(["kernel", "gemv", "--hw", "gddr6-aim.yaml", "--rows", "16", "--cols", "16"])
    assert rc == 0
    assert modules & NOT_FOR_TIMING == set() and "pimsim.mapper.attention" not in modules
    rc, modules = _imported(["kernel", "gemv", "--hw", "gddr6-aim.yaml", "--rows", "16", "--cols", "16",
                             "--functional", "--no-pim"])
    assert rc == 0 and {"pimsim.pim.banks", "pimsim.dram.controller"} <= modules  # imported when they are used


def test_a_run_with_a_cached_graph_imports_no_ml_library_nor_the_functional_path():
    argv = ["run", "--hw", "gddr6-aim.yaml", "--model", "gpt2", "--gen-tokens", "1", "--prompt-len", "8", "--quiet"]
    assert _imported(argv)[0] == 0  # traces gpt2 where no graph is cached yet
    rc, modules = _imported(argv)
    assert rc == 0
    assert _top(modules) & HEAVY == set() and modules & NOT_FOR_TIMING == set()


def test_a_verified_numba_cache_is_checked_without_pickletools(tmp_path):
    """`configure` runs before every kernel command: files it walked once are recognised by size and mtime,
    and pickletools (about 20 ms to import) is loaded only for a file not walked before."""
    import pickle

    folder = tmp_path / "dram_x"
    folder.mkdir()
    with open(folder / "kernel._run-1.py311.nbi", "wb") as f:
        pickle.dump("0.60", f)
        f.write(pickle.dumps((1.0, {})))
    (folder / "kernel._run-1.py311.1.nbc").write_bytes(pickle.dumps(b"code"))
    probe = ("import sys; from pathlib import Path; from pimsim._numba_cache import discard_damaged; "
             f"removed = discard_damaged(Path({str(tmp_path)!r})); print(len(removed), 'pickletools' in sys.modules)")
    runs = [subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
            for _ in range(2)]
    assert [r.stdout.split() for r in runs] == [["0", "True"], ["0", "False"]], [r.stderr[-500:] for r in runs]
    assert json.loads((tmp_path / "verified.json").read_text()) == {
        "dram_x/kernel._run-1.py311.nbi": [(folder / "kernel._run-1.py311.nbi").stat().st_size,
                                           (folder / "kernel._run-1.py311.nbi").stat().st_mtime_ns],
        "dram_x/kernel._run-1.py311.1.nbc": [(folder / "kernel._run-1.py311.1.nbc").stat().st_size,
                                             (folder / "kernel._run-1.py311.1.nbc").stat().st_mtime_ns]}
