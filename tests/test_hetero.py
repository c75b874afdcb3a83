"""The heterogeneous decode placement (pimsim.hetero): FC on a host roofline, attention in PIM, a link
between them; closed forms checked term by term."""

from __future__ import annotations

import json

import pytest

from pimsim.baseline.devices import load_device
from pimsim.cli import main
from pimsim.errors import ConfigError
from pimsim.hetero import HeteroDecode, load_link
from pimsim.run_types import RunSpec
from pimsim.step_costs import StepCosts

AIM = "gddr6-aim"


@pytest.fixture(scope="module")
def costs():
    return StepCosts(AIM, "gpt2", max_batch=64, max_context=513)


def test_host_fc_is_the_roofline_of_the_batch_gemms(costs):
    """Every GEMV of gpt2 (12 x (QKV, out-proj, FC1, FC2) + LM head) as an fp16 GEMM on the A100:
    max(bytes / 1555 GB/s, 2 v R C / 312 TFLOPS) + 5 us each, from the device file's figures."""
    hetero = HeteroDecode(costs, "a100")
    a100 = load_device("a100")
    assert (a100.memory_bandwidth_GBps, a100.peak_TFLOPS["fp16"], a100.launch_overhead_us) == (1555, 312, 5)
    gemvs = [op for op in costs.sim.graph.ops if op.kind == "gemv"]
    assert len(gemvs) == 12 * 4 + 1
    for v in (1, 8, 64, 4096):
        expect = sum(max((op.rows * op.cols + v * (op.rows + op.cols)) * 2 / 1555e9,
                         2 * v * op.rows * op.cols / 312e12) + 5e-6 for op in gemvs)
        assert hetero.host_fc_s(v) == pytest.approx(expect, rel=1e-12)
    # memory-bound at a small batch: the weights once; compute-bound at 4096 vectors
    weights = sum(op.rows * op.cols for op in gemvs)
    assert hetero.host_fc_s(1) > weights * 2 / 1555e9 + 49 * 5e-6
    assert hetero.host_fc_s(4096) >= 2 * 4096 * weights / 312e12 + 49 * 5e-6


def test_link_is_bytes_over_bandwidth_plus_latency_per_transfer(costs):
    """Per layer: Q, K, V (3 x 768 fp16 values per vector) to the PIM, 768 back, each a transfer whose
    latency is the preset's latency_ns plus its switch_latency_ns (both presets are switched)."""
    for name, latency_ps, bandwidth_GBps in (("pcie5-x16", 500_000, 63.0), ("cxl2-x16", 270_000, 63.0)):
        cfg = load_link(name)
        assert ((cfg.latency_ns + cfg.switch_latency_ns) * 1e3, cfg.bandwidth_GBps) == (latency_ps, bandwidth_GBps)
        hetero = HeteroDecode(costs, "a100", name)
        for v in (1, 16):
            there, back = v * 3 * 768 * 2, v * 768 * 2
            expect_ps = (round(latency_ps + there * 1e3 / bandwidth_GBps)
                         + round(latency_ps + back * 1e3 / bandwidth_GBps))
            seconds, bits = hetero.link_layer(v)
            assert seconds == expect_ps * 1e-12
            assert bits == 8 * (there + back)
        split = hetero.step([8] * 4)
        assert split.schedule == "serial"  # at this batch and context the halves' re-read weights cost more
        assert split.link_J == 12 * 8 * 4 * (3 * 768 + 768) * 2 * cfg.energy_pJ_per_bit * 1e-12


def test_serial_and_overlap_schedules(costs):
    hetero = HeteroDecode(costs, "a100", schedule="serial")
    for batch, context in ((4, 8), (16, 64), (64, 512)):
        contexts = [context] * batch
        serial = hetero.step(contexts)
        pim_s = sum(costs.per_sequence(c).time_s for c in contexts)
        assert serial.serial_s == pytest.approx(hetero.host_fc_s(batch) + 12 * hetero.link_layer(batch)[0] + pim_s,
                                                rel=1e-12)
        over = HeteroDecode(costs, "a100", schedule="overlap").step(contexts)
        half = batch // 2
        host_work = 2 * hetero.host_fc_s(half)
        side_work = pim_s + 2 * 12 * hetero.link_layer(half)[0]
        assert (over.host_s, over.pim_s) == pytest.approx((host_work, pim_s), rel=1e-12)
        assert max(host_work, side_work) <= over.overlap_s <= host_work + side_work + 1e-15
        assert over.overlap_s == serial.overlap_s
    # small batch, short context: the host's twice-read weights cost more than the overlap hides
    small = hetero.step([8] * 4)
    assert small.overlap_s > small.serial_s
    # attention-heavy (64 sequences of 512 tokens): the overlap hides most of the host's FC
    big = HeteroDecode(costs, "a100").step([512] * 64)
    assert big.schedule == "overlap" and big.overlap_s < big.serial_s
    assert big.serial_s - big.overlap_s > 0.5 * hetero.host_fc_s(64)
    assert HeteroDecode(costs, "a100").step([8] * 4).schedule == "serial"  # auto: the shorter


def test_hetero_beats_all_pim_at_large_batch_on_a_one_vector_datapath(costs):
    """gpt2 on GDDR6-AiM (pim.vectors_per_mac 1): a batch of B costs B weight passes in PIM, once on the
    host. Printed: batch, all-PIM step, hetero step (a100 over PCIe 5), speedup."""
    assert costs.hw.pim.vectors_per_mac == 1
    hetero = HeteroDecode(costs, "a100")
    rows = []
    for batch in (1, 16, 64):
        contexts = [64] * batch
        all_pim = costs.decode_step(contexts).time_s
        split = hetero.step(contexts).time_s
        rows.append((batch, all_pim, split))
        print(f"batch {batch:3d}: all-PIM {all_pim * 1e3:.3f} ms, hetero {split * 1e3:.3f} ms, "
              f"{all_pim / split:.2f}x")
    assert rows[0][2] > rows[0][1]  # one sequence: the host's launches and link cost more than PIM's GEMVs
    assert rows[1][1] > 3 * rows[1][2]
    assert rows[2][1] > 5 * rows[2][2]


def _exit_code(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def test_bad_names_exit_2(capsys, tmp_path):
    base = ["run", "--hw", AIM, "--model", "gpt2", "--batch", "2", "--gen-tokens", "1", "--prompt-len", "4"]
    assert _exit_code(base + ["--decode-fc-on", "nope"]) == 2
    assert "nope: no such file" in capsys.readouterr().err
    assert _exit_code(base + ["--decode-fc-on", "a100", "--link", "nolink"]) == 2
    assert "no bundled interconnects file" in capsys.readouterr().err
    assert _exit_code(base + ["--link", "cxl2-x16"]) == 2
    assert "given without decode_fc_on" in capsys.readouterr().err
    assert _exit_code(base + ["--decode-fc-on", "a100", "--decode-fc-schedule", "eager"]) == 2
    capsys.readouterr()
    with pytest.raises(ConfigError, match="decode_fc_schedule"):
        RunSpec(model="gpt2", hw=AIM, decode_fc_on="a100", decode_fc_schedule="eager")
    out = tmp_path / "r.json"
    assert _exit_code(base + ["--decode-fc-on", "a100", "--link", "cxl2-x16", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    placement = record["decode_placement"]
    assert placement["placement"] == {"fc": "a100", "attention": "pim", "link": "cxl2-x16"}
    assert placement["tokens_per_s"] == pytest.approx(2 / placement["per_step_s"][0])
    assert placement["total_J"] == pytest.approx(placement["host_fc_J"] + placement["pim_attention_J"]
                                                 + placement["link_J"])
