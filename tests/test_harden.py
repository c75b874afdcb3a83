"""Issue 19: nothing silently wrong, nothing that breaks later runs (each test failed before its fix)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from pimsim.cli import main
from pimsim.config import load_hardware
from pimsim.errors import ConfigError, PimsimError
from pimsim.resources import bundled_dir
from pimsim.sweep.points import Sweep, load_sweep_file
from pimsim.sweep.runner import read_rows, run_sweep

HW = bundled_dir("hwconfigs")
CARDS = bundled_dir("workloads")


# ---- sweep resumption keys every input that decides a point ------------------------------------------------
def _one_point(tmp_path, card):
    return Sweep(str(tmp_path / "top.yaml"), [str(card)], run={"prompt_len": 4, "gen_tokens": 1},
                 grid={"asic.lanes": [256]})


def test_resume_reruns_points_when_an_extended_file_or_the_card_changes(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text((HW / "gddr6-aim.yaml").read_text())
    (tmp_path / "top.yaml").write_text("extends: base.yaml\nname: top\n")
    card = tmp_path / "gpt2.yaml"
    card.write_text((CARDS / "gpt2.yaml").read_text())
    out = tmp_path / "out"
    first = run_sweep(_one_point(tmp_path, card), out, progress=False)
    assert (first["ran"], first["failed"]) == (1, 0)
    assert run_sweep(_one_point(tmp_path, card), out, progress=False)["ran"] == 0  # nothing changed: skipped
    # a file the top-level one extends changes: more channels, the point's number must follow
    base.write_text(base.read_text().replace("channels: 8 ", "channels: 4 "))
    second = run_sweep(_one_point(tmp_path, card), out, progress=False)
    assert second["ran"] == 1
    assert second["rows"][0]["latency_per_token_s"] > first["rows"][0]["latency_per_token_s"]
    # the card changes: half the layers
    card.write_text(card.read_text().replace("n_layer: 12", "n_layer: 6"))
    third = run_sweep(_one_point(tmp_path, card), out, progress=False)
    assert third["ran"] == 1
    assert third["rows"][0]["latency_per_token_s"] < second["rows"][0]["latency_per_token_s"]


def test_the_point_id_carries_the_tracer_and_pimsim_versions(monkeypatch):
    import pimsim
    import pimsim.workloads.tracer as tracer

    sweep = Sweep("gddr6-aim.yaml", ["gpt2"], grid={"asic.lanes": [64]})
    before = sweep.points()[0]["id"]
    monkeypatch.setattr(tracer, "TRACER_VERSION", tracer.TRACER_VERSION + 1)
    after_tracer = sweep.points()[0]["id"]
    monkeypatch.setattr(pimsim, "__version__", "99.0")
    assert len({before, after_tracer, sweep.points()[0]["id"]}) == 3


# ---- one folder, one sweep ---------------------------------------------------------------------------------
def test_a_different_sweep_into_a_used_folder_is_refused_unless_forced(tmp_path):
    run = {"prompt_len": 4, "gen_tokens": 1}
    run_sweep(Sweep("gddr6-aim.yaml", ["gpt2"], run=run, grid={"asic.lanes": [256]}), tmp_path, progress=False)
    other = Sweep("gddr6-aim.yaml", ["gpt2"], run=run, grid={"asic.lanes": [64]})
    with pytest.raises(PimsimError, match="holds another sweep .*grid.* --force"):
        run_sweep(other, tmp_path, progress=False)
    forced = run_sweep(other, tmp_path, progress=False, force=True)
    assert forced["ran"] == 1 and [r["set:asic.lanes"] for r in read_rows(tmp_path / "points.jsonl")] == [64]


def test_a_second_sweep_into_a_locked_folder_names_the_first(tmp_path):
    import fcntl

    with open(tmp_path / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("pid 4242 on elsewhere")
        held.flush()
        sweep = Sweep("gddr6-aim.yaml", ["gpt2"], run={"gen_tokens": 1}, grid={"asic.lanes": [64]})
        with pytest.raises(PimsimError, match="in use by another sweep \\(pid 4242 on elsewhere\\)"):
            run_sweep(sweep, tmp_path, progress=False)
    assert not (tmp_path / "points.jsonl").exists()


def test_sweep_workers_exit_when_the_sweep_is_killed(tmp_path):
    """kill -9 of the parent: its pool workers notice they were re-parented and exit."""
    script = (
        "import os, sys, time\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "from pimsim.sweep.runner import _exit_with_parent\n"
        "pool = ProcessPoolExecutor(2, initializer=_exit_with_parent, initargs=(os.getpid(),))\n"
        "list(pool.map(abs, range(4)))\n"
        "print(' '.join(str(p) for p in pool._processes), flush=True)\n"
        "time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    workers = [int(p) for p in parent.stdout.readline().split()]
    assert len(workers) == 2
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.2)
    assert not any(_alive(p) for p in workers)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


# ---- paths -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [["validate", "nowhere/gddr6-aim.yaml"],
                                  ["run", "--hw", "gddr6-aim.yaml", "--model", "typo/gpt2.yaml"]])
def test_a_path_with_a_folder_must_exist(args, capsys):
    assert main(args) == 2
    assert "no such file" in capsys.readouterr().err


def test_the_bundled_folder_name_still_finds_the_bundled_file(capsys):
    assert main(["validate", "hwconfigs/gddr6-aim.yaml"]) == 0


def test_directories_fifos_and_devices_are_named_as_such(tmp_path, capsys):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    for target, what in ((tmp_path, "is a directory"), (fifo, "is a FIFO"), ("/dev/zero", "is a device")):
        assert main(["validate", str(target)]) == 2
        assert what in capsys.readouterr().err


# ---- numbers with an exponent ------------------------------------------------------------------------------
def test_exponent_numbers_go_through_the_same_checks_as_plain_ones():
    for text in ("400", "400e0", "4e2", "4.0e2"):
        with pytest.raises(ConfigError, match="dram.timing.nBL"):
            load_hardware("gddr6-aim.yaml", [f"dram.tCK_ps={text}"])
    with pytest.raises(ConfigError, match="dram.tCK_ps: Input should be greater than or equal to"):
        load_hardware("gddr6-aim.yaml", ["dram.tCK_ps=1e-300"])
    assert load_hardware("gddr6-aim.yaml", ["dram.timing.nRC=1e2"]).dram.timing["nRC"] == 100
    with pytest.raises(ConfigError, match="expected a number, got text"):
        load_hardware("gddr6-aim.yaml", ["dram.tCK_ps='500'"])


def test_an_exponent_in_a_file_is_a_number(tmp_path):
    path = tmp_path / "hw.yaml"
    path.write_text("extends: gddr6-aim.yaml\ndram: {tCK_ps: 400e0}\n")
    with pytest.raises(ConfigError, match="dram.timing.nBL"):
        load_hardware(path)


def test_a_bare_timing_key_in_set_suggests_its_full_path():
    with pytest.raises(PimsimError, match="did you mean 'dram.timing.nRC'"):
        load_hardware("gddr6-aim.yaml", ["nRC=2e1"])


def test_problems_caused_by_set_name_the_set(capsys):
    assert main(["validate", "gddr6-aim.yaml", "--set", "dram.tCK_ps=400"]) == 2
    assert "with --set dram.tCK_ps=400" in capsys.readouterr().err


@pytest.mark.parametrize("hw", ["gddr6-aim.yaml", "hbm-pim.yaml", "ddr4-2400.yaml"])
def test_the_set_example_in_help_works_on_every_bundled_config(hw):
    from pimsim.cli import build_parser

    text = build_parser()._subparsers._group_actions[0].choices["validate"].format_help()
    example = text.split("e.g. --set ")[1].split()[0]
    load_hardware(hw, [example])


def test_config_show_output_validates_and_an_edited_derived_value_is_named(tmp_path, capsys):
    assert main(["config", "show", "hbm-pim.yaml"]) == 0
    shown = capsys.readouterr().out
    path = tmp_path / "shown.yaml"
    path.write_text(shown)
    assert main(["validate", str(path)]) == 0
    capsys.readouterr()
    path.write_text(shown.replace("row_bytes: 1024", "row_bytes: 7"))
    assert main(["validate", str(path)]) == 2
    assert "derived.row_bytes: 7, but the description gives 1024" in capsys.readouterr().err


# ---- constraints -------------------------------------------------------------------------------------------
def test_a_constraint_on_an_unswept_or_misspelled_key_is_an_error():
    sweep = Sweep("gddr6-aim.yaml", ["gpt2"], grid={"asic.lanes": [64, 256], "asic.freq_MHz": [100, 1000]},
                  constraints=["asic.lane >= 128"])
    with pytest.raises(PimsimError, match="asic.lane is not a swept key .*asic.lanes, asic.freq_MHz"):
        sweep.points()


@pytest.mark.parametrize("text, message", [("asic.lanes / (asic.freq_MHz - 100) > 1", "ZeroDivisionError"),
                                           ("asic.lanes > 'x'", "TypeError"),
                                           ("'x' * asic.lanes * 100000000 == 'y'", "numbers only")])
def test_a_constraint_that_fails_on_a_point_is_one_message(text, message):
    sweep = Sweep("gddr6-aim.yaml", ["gpt2"], grid={"asic.lanes": [64], "asic.freq_MHz": [100]},
                  constraints=[text])
    with pytest.raises(PimsimError, match=message):
        sweep.points()


def test_a_huge_constraint_is_refused_when_the_file_is_read(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("hw: gddr6-aim.yaml\nmodels: [gpt2]\ngrid: {asic.lanes: [64]}\n"
                    f"constraints: ['{'1 + ' * 5000}1 > 0']\n")
    with pytest.raises(ConfigError, match="longer than"):
        load_sweep_file(path)


# ---- bounded YAML --------------------------------------------------------------------------------------------
def test_a_yaml_alias_bomb_in_a_card_is_refused_at_once(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    bomb = "\n".join("    " + line for line in lines)
    card = tmp_path / "bomb.yaml"
    card.write_text((CARDS / "gpt2.yaml").read_text().replace("  config: {", f"  config:\n{bomb}\n  xconfig: {{"))
    started = time.monotonic()
    with pytest.raises(ConfigError, match="alias bomb"):
        from pimsim.workloads.cards import load_card

        load_card(card)
    assert time.monotonic() - started < 5


def test_deep_nesting_is_one_message(tmp_path, capsys):
    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * 500 + "]" * 500 + "\n")
    assert main(["validate", str(path)]) == 2
    assert "nested more than" in capsys.readouterr().err


def test_a_card_with_100000_layers_is_refused_before_tracing(tmp_path, capsys):
    card = tmp_path / "huge.yaml"
    card.write_text((CARDS / "gpt2.yaml").read_text().replace("n_layer: 12", "n_layer: 100000"))
    started = time.monotonic()
    assert main(["run", "--hw", "gddr6-aim.yaml", "--model", str(card), "--quiet"]) == 2
    assert "hf.config.n_layer: 100,000 layers" in capsys.readouterr().err
    assert time.monotonic() - started < 5


# ---- numba cache ---------------------------------------------------------------------------------------------
def test_a_truncated_numba_index_is_discarded_and_the_rest_kept(tmp_path):
    import pickle

    from pimsim._numba_cache import discard_damaged

    folder = tmp_path / "dram_x"
    folder.mkdir()
    for stem in ("kernel._run-1.py311", "kernel.grow-2.py311"):  # the layout numba writes: index + data files
        with open(folder / f"{stem}.nbi", "wb") as f:
            pickle.dump("0.60", f)
            f.write(pickle.dumps((1.0, {"sig": f"{stem}.1.nbc"})))
        (folder / f"{stem}.1.nbc").write_bytes(pickle.dumps(b"machine code" * 1000))
    whole = (folder / "kernel._run-1.py311.nbi").read_bytes()
    (folder / "kernel._run-1.py311.nbi").write_bytes(whole[:-7])  # a run killed while numba wrote it
    removed = discard_damaged(tmp_path)
    assert sorted(p.name for p in removed) == ["kernel._run-1.py311.1.nbc", "kernel._run-1.py311.nbi"]
    assert sorted(p.name for p in folder.iterdir()) == ["kernel.grow-2.py311.1.nbc", "kernel.grow-2.py311.nbi"]
    (folder / "kernel.grow-2.py311.1.nbc").write_bytes(pickle.dumps(b"x" * 5000)[:100])  # a data file cut short
    assert len(discard_damaged(tmp_path)) == 2 and not list(folder.iterdir())


@pytest.mark.slow
def test_a_run_after_a_truncated_numba_cache_file_recompiles_and_succeeds(tmp_path):
    """End to end: every later run failed with an UnpicklingError before."""
    import shutil

    from pimsim._numba_cache import configure

    source = configure()
    target = tmp_path / source.name
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.tmp", "verified.json"))
    indexes = sorted(target.rglob("kernel._run-*.nbi"))
    if not indexes:
        pytest.skip("no compiled kernel in the cache to damage")
    indexes[0].write_bytes(indexes[0].read_bytes()[:300])
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "pimsim", "kernel", "gemv", "--hw", "gddr6-aim.yaml", "--rows", "64",
                           "--cols", "64"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "discarded 2 damaged numba cache file(s)" in done.stderr


# ---- graph cache -------------------------------------------------------------------------------------------
def test_an_edited_graph_cache_file_is_traced_again(tmp_path, monkeypatch, caplog):
    import json

    from pimsim.workloads.cards import load_card
    from pimsim.workloads.tracer import cache_files, traced_graph

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    card = load_card("gpt2")
    fresh = traced_graph(card)
    (path,) = cache_files()
    record = json.loads(path.read_text())
    graph = json.loads(record["graph"])
    graph["ops"] = graph["ops"][: len(graph["ops"]) // 2]  # half the ops gone, "12 layers" still in the meta
    record["graph"] = json.dumps(graph)
    path.write_text(json.dumps(record))
    again = traced_graph(card)
    assert len(again.ops) == len(fresh.ops) and again.identity_json() == fresh.identity_json()
    assert "tracing again" in caplog.text
    assert traced_graph(card).identity_json() == fresh.identity_json()  # the file was replaced


def test_no_cache_and_cache_info_and_clear(tmp_path, monkeypatch, capsys):
    from pimsim.workloads.tracer import cache_files

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "kernels"))
    (tmp_path / "kernels" / "abc").mkdir(parents=True)
    args = ["run", "--hw", "gddr6-aim.yaml", "--model", "gpt2", "--gen-tokens", "1", "--prompt-len", "4", "--quiet"]
    assert main([*args, "--no-cache"]) == 0 and cache_files() == []
    assert "PIMSIM_NO_CACHE" not in os.environ  # for that command only
    assert main(args) == 0 and len(cache_files()) == 1
    capsys.readouterr()
    assert main(["cache", "info"]) == 0
    assert "1 file(s)" in capsys.readouterr().out
    assert main(["cache", "clear"]) == 0
    out = capsys.readouterr().out
    assert "removed 1 cached graph(s)" in out and "removed 1 compiled-kernel folder(s)" in out
    assert cache_files() == [] and not (tmp_path / "kernels" / "abc").exists()


def test_functional_wall_clock_is_under_host(monkeypatch, capsys):
    import json

    import pimsim.cosim.run as cosim

    def fake(hw, card, **kwargs):
        return {"weights": "random", "prompt_tokens": 1, "top1_matches": [True], "top1_agreement": 1.0,
                "max_abs_logit_error": 0.0, "max_abs_logit_error_relative": 0.0, "mean_abs_logit_error": 0.0,
                "wall_clock_s": time.perf_counter()}

    monkeypatch.setattr(cosim, "cosimulate", fake)
    args = ["run", "--hw", "gddr6-aim.yaml", "--model", "gpt2", "--gen-tokens", "1", "--prompt-len", "4",
            "--functional", "--json", "-"]
    results = []
    for _ in range(2):
        assert main(args) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["host"]["functional_wall_clock_s"] > 0
        results.append({k: v for k, v in out.items() if k != "host"})
    assert results[0] == results[1]


# ---- baseline energy counters --------------------------------------------------------------------------------
def test_rapl_wrap_around_is_added_back(tmp_path, monkeypatch):
    import pimsim.baseline.measure as measure

    (tmp_path / "max_energy_range_uj").write_text("262143328850\n")
    counter_file = tmp_path / "energy_uj"
    counter_file.write_text("262143000000\n")
    monkeypatch.setattr(measure, "RAPL", counter_file)
    counter = measure._EnergyCounter("cpu")
    counter.start()
    counter_file.write_text("671150\n")  # passed the top of the range and started again from 0
    assert counter.stop(10.0) == pytest.approx((262143328850 - 262143000000 + 671150) * 1e-6)


def test_gpu_energy_is_read_from_the_gpu_torch_runs_on(monkeypatch):
    import types

    import pimsim.baseline.measure as measure

    read = []
    fake_nvml = types.SimpleNamespace(
        nvmlInit=lambda: None,
        nvmlDeviceGetHandleByIndex=lambda i: f"index-{i}",
        nvmlDeviceGetHandleByUUID=lambda u: f"uuid-{u}",
        nvmlDeviceGetTotalEnergyConsumption=lambda h: read.append(h) or 5000 + 1500 * len(read))
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml)
    props = types.SimpleNamespace(uuid="1234-abcd")
    fake_torch = types.SimpleNamespace(cuda=types.SimpleNamespace(current_device=lambda: 1,
                                                                  get_device_properties=lambda i: props))
    counter = measure._EnergyCounter("cuda", fake_torch)
    counter.start()
    assert counter.stop(2.0) == pytest.approx(1.5) and set(read) == {"uuid-GPU-1234-abcd"}
    del props.uuid  # an older torch: NVML's index of torch's device, not always 0
    read.clear()
    measure._EnergyCounter("cuda", fake_torch).start()
    assert set(read) == {"index-1"}


def test_gpu_energy_over_a_window_the_counter_cannot_resolve_is_refused(monkeypatch):
    """A 64 ms window (64 tokens of GPT-2 at 1 ms, CUDA graphs on an H200) read 0 J from NVML and was
    recorded as 0.00 mJ/token: now refused with the reason, as is any window under NVML_MIN_WINDOW_S."""
    import types

    import pimsim.baseline.measure as measure

    energy_mJ = [5000]
    fake_nvml = types.SimpleNamespace(nvmlInit=lambda: None, nvmlDeviceGetHandleByIndex=lambda i: i,
                                      nvmlDeviceGetTotalEnergyConsumption=lambda h: energy_mJ[0])
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml)
    fake_torch = types.SimpleNamespace(cuda=types.SimpleNamespace(
        current_device=lambda: 0, get_device_properties=lambda i: types.SimpleNamespace()))
    counter = measure._EnergyCounter("cuda", fake_torch)
    counter.start()
    assert counter.stop(0.064) is None and "too short" in counter.why and "--gen-tokens" in counter.why
    counter.start()
    energy_mJ[0] += 700  # one sensor step inside a window just under the limit: still refused
    assert counter.stop(measure.NVML_MIN_WINDOW_S - 1e-3) is None
    counter.start()
    assert counter.stop(5.0) is None and "moved 0.000 J" in counter.why  # a long window the counter never moved
    counter.start()
    energy_mJ[0] += 90_000
    assert counter.stop(measure.NVML_MIN_WINDOW_S) == pytest.approx(90.0)


# ---- one message instead of a traceback ---------------------------------------------------------------------
def _gguf(path):
    gguf = pytest.importorskip("gguf")
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tensor("a", np.ones((64, 64), dtype=np.float32))
    writer.add_tensor("b", np.ones((64, 64), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


def test_garbage_empty_and_truncated_gguf_weights_are_one_message(tmp_path, capsys):
    whole = _gguf(tmp_path / "whole.gguf")
    cases = {"garbage.gguf": (b"garbage", "no GGUF magic bytes"), "empty.gguf": (b"", "empty"),
             "cut.gguf": (whole[:-5000], "cut short or damaged")}
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        started = time.monotonic()
        assert main(["run", "--hw", "gddr6-aim.yaml", "--model", "smollm2-135m", "--gen-tokens", "1", "--quiet",
                     "--functional", "--weights", str(tmp_path / name)]) == 2
        assert message in capsys.readouterr().err
        assert time.monotonic() - started < 30  # refused before the run


def test_output_to_a_full_disk_is_one_message(capsys):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    assert main(["kernel", "gemv", "--hw", "gddr6-aim.yaml", "--rows", "64", "--cols", "64",
                 "--json", "/dev/full"]) == 2
    assert "cannot write /dev/full" in capsys.readouterr().err


def test_a_sweep_into_a_read_only_folder_is_one_message(tmp_path, capsys):
    if os.geteuid() == 0:
        target = "/proc/pimsim-sweep"  # root writes anywhere else; /proc refuses even root
    else:
        (tmp_path / "ro").mkdir(mode=0o500)
        target = str(tmp_path / "ro" / "out")
    assert main(["sweep", "--hw", "gddr6-aim.yaml", "--model", "gpt2", "--grid", "asic.lanes=64", "--out", target,
                 "--quiet"]) == 2
    assert "cannot create the folder" in capsys.readouterr().err


def test_an_unknown_model_type_is_a_short_message_with_suggestions(tmp_path, capsys):
    card = tmp_path / "gpt9.yaml"
    card.write_text((CARDS / "gpt2.yaml").read_text().replace("model_type: gpt2", "model_type: gpt9"))
    assert main(["run", "--hw", "gddr6-aim.yaml", "--model", str(card), "--quiet", "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert "'gpt9' is not a model type" in err and "'gpt2'" in err and len(err) < 400


def test_a_card_far_too_large_is_refused_before_tracing(tmp_path, capsys, monkeypatch):
    import pimsim.workloads.tracer as tracer

    def no_tracing(*args, **kwargs):
        raise AssertionError("traced a card that cannot fit")

    monkeypatch.setattr(tracer, "trace_card", no_tracing)
    monkeypatch.setenv("PIMSIM_NO_CACHE", "1")
    card = tmp_path / "big.yaml"
    card.write_text((CARDS / "gpt2.yaml").read_text().replace("n_layer: 12, n_embd: 768", "n_layer: 200, n_embd: 8192"))
    assert main(["run", "--hw", "gddr6-aim.yaml", "--model", str(card), "--quiet"]) == 2
    assert "does not fit in gddr6-aim: its bf16 weights take at least 50.8 GiB" in capsys.readouterr().err


def test_the_weight_lower_bound_is_below_every_bundled_cards_real_count():
    from pimsim.resources import bundled_names
    from pimsim.workloads.cards import load_card, weight_lower_bound
    from pimsim.workloads.tracer import traced_graph

    for name in ("gpt2.yaml", "opt-1.3b.yaml", "tinyllama-1.1b.yaml", "bart-base.yaml", "smollm2-135m.yaml"):
        assert name in bundled_names("workloads")
        card = load_card(name)
        assert 0 < weight_lower_bound(card) <= traced_graph(card).weight_elements()


def test_a_folder_of_unrecorded_rows_of_another_sweep_is_refused(tmp_path):
    (tmp_path / "points.jsonl").write_text('{"id": "0123456789abcdef", "status": "ok", "model": "gpt2"}\n')
    sweep = Sweep("gddr6-aim.yaml", ["gpt2"], run={"gen_tokens": 1}, grid={"asic.lanes": [64]})
    with pytest.raises(PimsimError, match="holds rows of another sweep"):
        run_sweep(sweep, tmp_path, progress=False)


def test_an_unpickling_error_from_numbas_cache_names_the_folder_to_delete(monkeypatch, capsys):
    import pickle

    import pimsim.cli as cli

    namespace = {"pickle": pickle}
    code = compile("def load():\n    raise pickle.UnpicklingError('pickle data was truncated')\n",
                   "/site-packages/numba/core/caching.py", "exec")
    exec(code, namespace)  # a frame inside numba's caching module, as a damaged cache file gives

    monkeypatch.setattr(cli, "cmd_config_list", lambda args: namespace["load"]())
    monkeypatch.setenv("NUMBA_CACHE_DIR", "/tmp/pimsim-test-numba")
    assert cli.main(["config", "list"]) == 2
    err = capsys.readouterr().err
    assert "compiled-kernel cache file is damaged" in err and "/tmp/pimsim-test-numba" in err
