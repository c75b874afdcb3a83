"""Several devices (pimsim.system): the split of the graph, the closed-form exchanges, the plan, errors."""

from __future__ import annotations

import pytest

from pimsim.cli import main
from pimsim.config.loader import load_hardware
from pimsim.dram.compile import compile_standard
from pimsim.errors import ConfigError, PimsimError
from pimsim.mapper.model import ModelMap
from pimsim.run_types import RunSpec
from pimsim.runs import simulate
from pimsim.system.fit import fits, smallest_plan
from pimsim.system.interconnect import Interconnect
from pimsim.system.plan import ParallelPlan, parallel_plan
from pimsim.system.shard import pipeline_stages, stage_layers, tensor_shard
from pimsim.workloads.cards import load_card
from pimsim.workloads.tracer import traced_graph

# an interconnect with round numbers, so the closed form is easy to write out by hand
LINK = {"system.interconnect.topology": "switch", "system.interconnect.bandwidth_GBps": 50,
        "system.interconnect.latency_ns": 100, "system.interconnect.switch_latency_ns": 20,
        "system.interconnect.energy_pJ_per_bit": 4}


def _spec(model="gpt2", overrides=(), **kw) -> RunSpec:
    return RunSpec(model=model, hw="gddr6-aim.yaml", prompt_len=8, gen_tokens=2, overrides={**LINK, **dict(overrides)},
                   **kw)


def test_ring_all_reduce_closed_form():
    link = Interconnect(load_hardware("gddr6-aim.yaml", [f"{k}={v}" for k, v in LINK.items()]).system.interconnect)
    # alpha = 100 + 20 ns = 120,000 ps; 1000 / 50 = 20 ps per byte
    assert link.all_reduce(1536, 4).time_ps == 2 * 3 * 120_000 + round(2 * 3 / 4 * 1536 * 20)
    assert link.all_reduce(1536, 4).bits == 8 * 2 * 3 * 1536
    assert link.send(1536).time_ps == 120_000 + 1536 * 20
    assert link.gather(8, 4).time_ps == 3 * 120_000 + 3 * 8 * 20
    assert link.host_reduce(1536, 4).time_ps == 2 * 120_000 + 2 * 4 * 1536 * 20
    assert link.all_reduce(1536, 1).time_ps == 0


def test_tensor_parallel_communication_is_exact_for_gpt2():
    """gpt2 at tp=2: an all-reduce of 768 BF16 values after the embedding and after each layer's two
    row-split projections (25), and one gather of the best logits; each device's time plus these."""
    r = simulate(_spec(devices=2, parallel="tp")).details
    system = r.system
    assert system.exchanges_per_token == {"all_reduce": 25, "gather": 1}
    alpha, per_byte = 120_000, 20
    all_reduce = 2 * 1 * alpha + round(2 * 1 / 2 * 768 * 2 * per_byte)
    gather = alpha + 8 * per_byte
    comm_ps = 25 * all_reduce + gather
    assert system.communication_per_token_s == comm_ps * 1e-12
    assert system.communication_bits_per_token == 25 * 8 * 2 * 768 * 2 + 8 * 2 * 8
    device = system.stages[0].device_time_per_token_s
    assert r.latency.latency_per_token_s == pytest.approx(device + comm_ps * 1e-12, rel=1e-12)
    assert system.communication_share == pytest.approx(comm_ps * 1e-12 / r.latency.latency_per_token_s, rel=1e-9)
    comm_J = system.communication_bits_per_token * 4e-12
    assert system.communication_energy_per_token_J == pytest.approx(comm_J, rel=1e-12)
    assert r.energy.energy_breakdown_J["interconnect"] == pytest.approx(2 * comm_J, rel=1e-12)


def test_pipeline_adds_stages_and_one_send_per_boundary():
    r = simulate(_spec(devices=2, parallel="pp")).details
    system = r.system
    assert [s.layers for s in system.stages] == [(0, 6), (6, 12)]
    alpha, per_byte = 120_000, 20
    comm_ps = (alpha + 768 * 2 * per_byte) + (alpha + 4 * per_byte)  # hidden state on, token id back
    assert system.communication_per_token_s == comm_ps * 1e-12
    devices = sum(s.device_time_per_token_s for s in system.stages)
    assert r.latency.latency_per_token_s == pytest.approx(devices + comm_ps * 1e-12, rel=1e-12)


def test_tp2_halves_each_devices_weights():
    graph = traced_graph(load_card("tinyllama-1.1b"))  # 32 query / 4 KV heads, even vocabulary and FFN
    shard = tensor_shard(graph, 2).graph
    assert shard.weight_elements() * 2 == graph.weight_elements()
    assert shard.gemv_elements() * 2 == graph.gemv_elements()
    hw = load_hardware("gddr6-aim.yaml")
    c = compile_standard(hw)
    assert ModelMap(hw, c, shard, 64).gemv_bytes() * 2 == ModelMap(hw, c, graph, 64).gemv_bytes()
    assert (shard.meta.heads, shard.meta.kv_heads) == (16, 2)
    assert shard.kv_elements(100) * 2 == graph.kv_elements(100)


def test_middle_pipeline_stages_are_simulated_once():
    graph = traced_graph(load_card("gpt2"))
    stages = pipeline_stages(tensor_shard(graph, 1), 4)
    assert [s.layers for s in stages] == [(0, 3), (3, 6), (6, 9), (9, 12)]
    assert stages[1].signature() == stages[2].signature() != stages[0].signature()
    assert sum(len(s.graph.ops) for s in stages) == len(graph.ops)
    assert stage_layers(10, 4) == [(0, 3), (3, 6), (6, 8), (8, 10)]


def test_split_that_does_not_divide_heads_is_an_error():
    graph = traced_graph(load_card("smollm2-135m"))  # 9 query / 3 KV heads
    with pytest.raises(PimsimError, match=r"3 KV heads do not split over 2 devices.*1, 3"):
        tensor_shard(graph, 2)
    with pytest.raises(PimsimError, match="13 pipeline stages need at least 13 layers"):
        stage_layers(12, 13)


def test_plan_from_flags_and_file():
    assert parallel_plan(4, "tp") == ParallelPlan(4, 1)
    assert parallel_plan(None, "tp=2,pp=3") == ParallelPlan(2, 3)
    assert parallel_plan(None, None, 32, "tp=8,pp=4") == ParallelPlan(8, 4)
    assert parallel_plan(8, None, 32, "tp") == ParallelPlan(8, 1)
    assert parallel_plan(None, None) == ParallelPlan(1, 1)
    assert parallel_plan(1, None, 32, "tp=8,pp=4") == ParallelPlan(1, 1)
    with pytest.raises(ConfigError) as err:
        parallel_plan(3, "tp=2,pp=2")
    assert "3 devices, but tp=2,pp=2 uses 4" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parallel_plan(2, None)
    assert "need a split" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parallel_plan(None, "tp=0,xp=2")
    assert "tp='0'" in str(err.value) and "'xp=2'" in str(err.value)


def test_devices_needed():
    hw = load_hardware("gddr6-aim.yaml", ["dram.organization.rows=256"])
    graph = traced_graph(load_card("gpt2"))
    plan = smallest_plan(hw, graph, 64)
    assert plan is not None and fits(hw, graph, plan, 64) and plan.devices > 1
    for devices in range(1, plan.devices):
        assert not any(fits(hw, graph, ParallelPlan(tp, devices // tp), 64)
                       for tp in (1, 2, 3, 4, 6, 12) if devices % tp == 0 and devices // tp <= 12)
    with pytest.raises(PimsimError, match=f"it needs {plan.devices} devices of gddr6-aim: --devices {plan.devices} "
                                          f"--parallel {plan.text()}"):
        simulate(RunSpec(model="gpt2", hw="gddr6-aim.yaml", prompt_len=60, gen_tokens=4,
                         overrides={"dram.organization.rows": 256}))
    with pytest.raises(PimsimError, match=f"tp=2,pp=1, one device's share: gpt2 does not fit.*it needs {plan.devices} "
                                          "devices"):
        simulate(RunSpec(model="gpt2", hw="gddr6-aim.yaml", prompt_len=60, gen_tokens=4, devices=2, parallel="tp",
                         overrides={**LINK, "dram.organization.rows": 256}))


@pytest.mark.parametrize("args, message", [
    (["--devices", "2"], "need a split"),
    (["--devices", "2", "--parallel", "tp"], "need an interconnect"),
    (["--devices", "3", "--parallel", "tp=2,pp=2"], "uses 4"),
    (["--parallel", "tp=5"], "do not split over 5 devices"),
    (["--devices", "2", "--parallel", "sp"], "expected tp, pp or tp=T,pp=P"),
    (["--devices", "2", "--parallel", "tp", "--batch", "2"], "run one sequence with its prompt already in the KV"),
    (["--devices", "2", "--parallel", "tp", "--prefill"], "drop --batch / --prefill"),
])
def test_cli_errors_exit_2(args, message, capsys):
    extra = [] if "interconnect" in message else [f"--set={k}={v}" for k, v in LINK.items()]
    assert main(["run", "--hw", "gddr6-aim.yaml", "--model", "gpt2", "--gen-tokens", "1", "--quiet",
                 *args, *extra]) == 2
    assert message in capsys.readouterr().err


def test_one_device_adds_no_keys():
    one = simulate(_spec())
    assert one.details.system is None and "system" not in one.to_json()
    assert "system" not in load_hardware("gddr6-aim.yaml").model_dump(mode="json")


def test_interconnect_preset_values_and_errors():
    hw = load_hardware("cent.yaml", ["system.interconnect.latency_ns=50"])
    link = hw.system.interconnect
    assert (link.preset, link.bandwidth_GBps, link.latency_ns, link.switch_latency_ns) == ("cxl2-x16", 63.0, 50.0, 70.0)
    with pytest.raises(ConfigError) as err:
        load_hardware("cent.yaml", ["system.interconnect.preset=nvlink"])
    assert "'nvlink' is not a bundled interconnect (bundled: cxl2-x16, pcie5-x16)" in str(err.value)


def test_shared_host_asic_reduces_at_the_host_and_runs_every_shards_vector_work():
    r = simulate(_spec(devices=2, parallel="tp", overrides={"system.host_asic": "shared"})).details
    system = r.system
    assert system.exchanges_per_token == {"host_reduce": 25, "gather": 1}
    alpha, per_byte = 120_000, 20
    comm_ps = 25 * (2 * alpha + 2 * 2 * 768 * 2 * per_byte) + (alpha + 8 * per_byte)
    assert system.communication_per_token_s == comm_ps * 1e-12
    stage = system.stages[0]
    assert stage.shared_asic_extra_per_token_s > 0
    assert r.latency.latency_per_token_s == pytest.approx(
        stage.device_time_per_token_s + stage.shared_asic_extra_per_token_s + comm_ps * 1e-12, rel=1e-12)
