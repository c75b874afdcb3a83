"""Serving: the continuous-batching scheduler against closed-form step costs (exact times and energies),
its KV-memory limit, Little's law on a long run, arrivals files, determinism, the engine's step costs
and the `pimsim serve` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import TINY_GPT2, write_card

from pimsim.cli import main
from pimsim.config import load_hardware
from pimsim.engine import decode, prefill
from pimsim.engine.dram_timing import FastTiming
from pimsim.errors import PimsimError
from pimsim.runs import run_model
from pimsim.serving.arrivals import Request, poisson_requests, read_arrivals
from pimsim.serving.costs import ClosedFormCosts
from pimsim.serving.engine import EngineCosts
from pimsim.serving.scheduler import serve
from pimsim.serving.service import serve_model
from pimsim.serving.summary import Slo, summarize
from pimsim.workloads.cards import load_card

AIM = "gddr6-aim.yaml"


class Recording(ClosedFormCosts):
    """Closed-form costs that remember the contexts of every decode step."""

    def __init__(self, **kw):
        super().__init__(**kw)
        object.__setattr__(self, "steps", [])

    def decode_step(self, contexts):
        self.steps.append(list(contexts))
        return super().decode_step(contexts)


def test_two_requests_exact_times_contexts_and_energy():
    # prefill 2 s, decode step 1 + 0.5 x batch s; energy 10 J per prefill, 1 + 1 x batch J per step
    costs = Recording(step_s=1.0, per_sequence_s=0.5, prefill_s=2.0, step_J=1.0, per_sequence_J=1.0, prefill_J=10.0)
    requests = [Request(0, 0.0, 4, 3), Request(1, 1.0, 4, 2)]
    run = serve(requests, costs, max_batch=2)
    a, b = run.records
    # t=0 R0 admitted, prefill to 2 (first token), step alone to 3.5; R1 (arrived at 1) admitted at 3.5,
    # prefill to 5.5, then one step of both to 7.5 ends them both
    assert (a.admitted_s, a.first_token_s, a.finish_s) == (0.0, 2.0, 7.5)
    assert (b.admitted_s, b.first_token_s, b.finish_s) == (3.5, 5.5, 7.5)
    assert (a.ttft_s, a.tpot_s, a.e2e_s) == (2.0, 2.75, 7.5)
    assert (b.queue_s, b.ttft_s, b.tpot_s, b.e2e_s) == (2.5, 4.5, 2.0, 6.5)
    # R0's cache after its steps holds 4 + 1 and 4 + 2 tokens; R1's 4 + 1
    assert costs.steps == [[5], [6, 5]]
    assert (a.energy_J, b.energy_J, run.energy_J) == (13.5, 11.5, 25.0)
    assert (run.prefills, run.decode_steps, run.decode_sequences, run.busy_s, run.end_s) == (2, 2, 3, 7.5, 7.5)
    s = summarize(run, Slo(ttft_s=3.0))
    assert s.output_tokens == 5 and s.energy_per_token_J == 5.0
    assert s.throughput_tokens_per_s == 5 / 7.5
    assert s.slo_attainment == 0.5 and s.goodput_requests_per_s == 1 / 7.5
    assert s.mean_in_system == (7.5 + 6.5) / 7.5  # the integral of requests in the system over the run


def test_one_token_requests_end_at_their_prefill_and_idle_gaps_are_waited_out():
    costs = ClosedFormCosts(step_s=1.0, prefill_s=0.25, per_prompt_token_s=0.125)
    run = serve([Request(0, 1.0, 2, 1), Request(1, 10.0, 6, 1)], costs, max_batch=4)
    assert [(r.first_token_s, r.finish_s) for r in run.records] == [(1.5, 1.5), (11.0, 11.0)]
    assert run.decode_steps == 0 and run.busy_s == 1.5


def _held_at_once(run, need) -> int:
    """The most KV memory held by admitted, unfinished requests at any admission (from the rows alone)."""
    most = 0
    for r in run.records:
        t = r.admitted_s
        held = sum(need(o.request.max_context) for o in run.records if o.admitted_s <= t < o.finish_s)
        most = max(most, held)
    return most


def test_kv_memory_is_never_exceeded_and_requests_wait_for_it():
    # each request's cache grows to 100 + 50 - 1 = 149 tokens; 400 tokens of KV memory hold two of them
    costs = ClosedFormCosts(step_s=1e-3, per_context_token_s=1e-6, prefill_s=5e-3, kv_capacity=400)
    requests = poisson_requests(200.0, 300, 100, 50, seed=3)
    run = serve(requests, costs, max_batch=8)
    held = _held_at_once(run, costs.kv_need)
    assert held <= 400 and run.kv_peak <= 400
    assert held == 298 and run.kv_peak == 298  # two at a time: the memory, not the batch, was the limit
    assert max(run.decode_sequences / run.decode_steps, 0) <= 2
    assert sum(r.queue_s > 0 for r in run.records) > 100  # requests waited for memory
    # with room for every one, the batch limit binds instead
    roomy = serve(requests, ClosedFormCosts(step_s=1e-3, per_context_token_s=1e-6, prefill_s=5e-3), max_batch=8)
    assert _held_at_once(roomy, lambda t: t) > 400


def test_request_that_can_never_fit_is_refused_with_every_one_named():
    costs = ClosedFormCosts(step_s=1.0, kv_capacity=100, max_context=120)
    with pytest.raises(PimsimError) as err:
        serve([Request(0, 0.0, 50, 10), Request(1, 1.0, 100, 5), Request(2, 2.0, 100, 30, line=4)], costs, 2)
    text = str(err.value)
    assert "2 request(s) can never be served" in text
    assert "request 1:" in text and "more than the 100 tokens the memory has for KV" in text
    assert "line 4:" in text and "more than the model's context of 120" in text


def test_littles_law_on_a_long_run():
    """L = lambda W: the time-average number of requests in the system (the scheduler's own integral over
    its arrivals and departures) against the offered rate times the mean end-to-end latency of the rows.
    Over [0, end] with the measured rate N / end the law is exact (1e-9); with the nominal Poisson rate it
    holds within the arrival process's sampling error: 3% on 20,000 requests."""
    rate = 100.0
    costs = ClosedFormCosts(step_s=2e-3, per_sequence_s=2e-4, per_context_token_s=1e-7, prefill_s=1e-3,
                            per_prompt_token_s=1e-5)
    run = serve(poisson_requests(rate, 20_000, 128, 16, seed=11), costs, max_batch=8)
    s = summarize(run)
    mean_e2e = s.e2e_s["mean"]
    assert s.mean_batch > 2 and s.queue_s["p99"] > 0  # a loaded, batching system with a queue at times
    assert s.duration_s < 1.01 * 20_000 / rate  # but a stable one: it keeps up with the arrivals
    assert s.mean_in_system == pytest.approx(len(run.records) / run.end_s * mean_e2e, rel=1e-9)
    assert s.mean_in_system == pytest.approx(rate * mean_e2e, rel=0.03)


def test_same_seed_same_run_other_seed_other_run():
    costs = ClosedFormCosts(step_s=1e-3, per_sequence_s=1e-4, prefill_s=2e-3, kv_capacity=2000)

    def rows(seed):
        return [r.to_row() for r in serve(poisson_requests(300.0, 500, 64, 8, seed), costs, 4).records]

    assert rows(5) == rows(5)
    assert rows(5) != rows(6)


def test_poisson_arrivals_have_the_rate():
    times = np.array([r.arrival_s for r in poisson_requests(50.0, 20_000, 1, 1, seed=0)])
    assert np.all(np.diff(times) >= 0)
    assert np.mean(np.diff(times)) == pytest.approx(1 / 50, rel=0.03)


def test_arrivals_file(tmp_path):
    path = tmp_path / "arrivals.csv"
    path.write_text("arrival_s,prompt_len,output_len\n0,16,4\n0.5,32,8\n0.5,8,1\n")
    got = read_arrivals(path)
    assert [(r.arrival_s, r.prompt_len, r.output_len, r.line) for r in got] == [
        (0.0, 16, 4, 2), (0.5, 32, 8, 3), (0.5, 8, 1, 4)]


def test_arrivals_file_bad_rows_one_message(tmp_path, capsys):
    path = tmp_path / "arrivals.csv"
    path.write_text("arrival_s,prompt_len,output_len\n0,16,4\n-1,16,4\n0.5,x,0\n0.2,8,2\n\n1,8,2.5\n")
    with pytest.raises(PimsimError) as err:
        read_arrivals(path)
    text = str(err.value)
    assert "5 bad row(s)" in text
    for line, what in ((3, "arrival_s '-1'"), (4, "prompt_len 'x'"), (4, "output_len '0'"),
                       (5, "earlier than the row before (0.5)"), (6, "arrival_s ''"), (7, "output_len '2.5'")):
        assert f"line {line}: " in text and what in text
    assert "line 2" not in text
    assert main(["serve", "--hw", "gddr6-aim.yaml", "--model", "gpt2", "--arrivals", str(path)]) == 2
    err_text = capsys.readouterr().err
    assert err_text.count("error:") == 1 and "line 7" in err_text and "Traceback" not in err_text


def test_arrivals_file_wrong_header(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("time,prompt_len\n0,4\n")
    with pytest.raises(PimsimError, match="missing arrival_s, output_len; unknown time"):
        read_arrivals(path)


@pytest.mark.parametrize("argv, said", [
    (["--rate", "5"], "give --rate and --requests"),
    (["--rate", "5", "--requests", "3", "--arrivals", "a.csv"], "--rate, --requests go with Poisson arrivals"),
    (["--rate", "5", "--requests", "3", "--prompt-len", "1000", "--output-len", "30"],
     "1000 prompt + 30 output tokens need a cache of 1029 tokens, more than the model's context of 1023"),
    (["--rate", "5", "--requests", "3", "--out", "rows.csv"], "give a .jsonl or .parquet file"),
])
def test_serve_cli_errors_exit_2(argv, said, capsys):
    assert main(["serve", "--hw", "gddr6-aim.yaml", "--model", "gpt2", *argv]) == 2
    assert said in capsys.readouterr().err


def test_serve_cli_bad_numbers_exit_2(capsys):
    for bad in (["--rate", "-1", "--requests", "3"], ["--rate", "nan", "--requests", "3"],
                ["--rate", "1", "--requests", "0"]):
        with pytest.raises(SystemExit) as exc:
            main(["serve", "--hw", "gddr6-aim.yaml", "--model", "gpt2", *bad])
        assert exc.value.code == 2


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(write_card(tmp_path_factory.mktemp("cards"), "tiny", "gpt2", TINY_GPT2))


def test_engine_costs_are_what_pimsim_run_times(tiny, tmp_path, capsys, monkeypatch):
    """A request alone: its time to first token is `pimsim run --prefill`'s ttft_s (prefill + the decode step
    at position P), its time per output token that run's next decode steps, its energy the run's (to 2e-3:
    the step costs time each piece from an idle memory, as their own test against the engine allows), where
    the run charges the step costs' expected refresh costs (a run follows the refresh clock)."""
    expected = lambda compiled, fidelity, record=False: FastTiming(compiled, follow_clock=False)  # noqa: E731
    with monkeypatch.context() as m:
        m.setattr(decode, "timing_for", expected)
        m.setattr(prefill, "timing_for", expected)
        r = run_model(AIM, tiny, 16, 3, prefill="pim")
    rows, summary = tmp_path / "rows.jsonl", tmp_path / "summary.json"
    assert main(["serve", "--hw", AIM, "--model", tiny, "--rate", "0.001", "--requests", "2", "--prompt-len", "16",
                 "--output-len", "3", "--out", str(rows), "--json", str(summary), "--slo-ttft", "1"]) == 0
    first = json.loads(rows.read_text().splitlines()[0])
    assert first["ttft_s"] == pytest.approx(r["ttft_s"], rel=2e-3)
    assert first["tpot_s"] == pytest.approx(sum(r["per_token_s"][1:]) / 2, rel=2e-3)
    # refresh energy: the run counts the whole refreshes due by its end (31 us here), the step costs charge
    # refresh at its average rate; the rest is the same count of the same commands
    assert first["energy_J"] == pytest.approx(r["energy_total_J"] + r["prefill"]["energy_J"], rel=1e-2)
    s = json.loads(summary.read_text())
    assert s["requests"] == 2 and s["output_tokens"] == 6 and s["slo_attainment"] == 1.0
    assert s["kv_unit"] == "DRAM rows per bank" and 0 < s["kv_peak"] < s["kv_capacity"]
    assert "p99" in s["ttft_s"] and "time to first token" in capsys.readouterr().out


def _same(a, b) -> bool:
    """Two step costs from separate simulations (each piece timed from where its own memory was: refresh
    bookkeeping differs in the last digits)."""
    return a.time_s == pytest.approx(b.time_s, rel=1e-6) and a.energy_J == pytest.approx(b.energy_J, rel=1e-4)


def test_prefill_costs_round_the_prompt_up_and_nothing_else(tiny):
    card, hw = load_card(tiny), load_hardware(AIM)
    rounded, exact = EngineCosts(hw, card, 2, 20), EngineCosts(hw, card, 2, 20, prompt_bucket=1)
    steps = exact.steps
    assert _same(rounded.prefill(9), steps.prefill(16) + steps.decode_step([9]))  # 9 -> 16; first step at 9
    assert _same(exact.prefill(9), steps.prefill(9) + steps.decode_step([9]))
    assert _same(rounded.prefill(16), exact.prefill(16)) and rounded.prefill(9).time_s > exact.prefill(9).time_s
    assert _same(rounded.decode_step([9, 13]), exact.decode_step([9, 13]))
    assert _same(rounded.prefill(20), steps.prefill(21) + steps.decode_step([20]))  # at most the cache laid out


def test_engine_batches_and_its_kv_memory_limit(tiny):
    """With memory for three caches beside the weights, a max batch of 8 runs three requests at a time; with
    room for more, eight. A batched step costs less per sequence than single ones (the weights are read once
    per row for the batch)."""
    card = load_card(tiny)
    requests = poisson_requests(100_000.0, 60, 8, 6, seed=1)  # a request every 10 us: a queue forms
    roomy = serve_model(load_hardware(AIM), card, requests, max_batch=8)
    assert roomy.costs.sequences_that_fit >= 8 and roomy.run.kv_peak == 8 * roomy.costs.kv_rows_per_request
    assert 2 < roomy.summary.mean_batch <= 8
    costs = roomy.costs
    one, eight = costs.decode_step([12]).time_s, costs.decode_step([12] * 8).time_s
    assert one < eight < 8 * one
    small = load_hardware(AIM, ["dram.organization.rows=32"])  # room for three caches beside the weights
    tight = serve_model(small, card, requests, max_batch=8)
    assert tight.costs.sequences_that_fit == tight.costs.batch_laid_out == 3
    assert tight.run.kv_peak == 3 * tight.costs.kv_rows_per_request == tight.run.kv_capacity
    assert tight.summary.mean_batch <= 3 and tight.summary.queue_s["p90"] > roomy.summary.queue_s["p90"]


def test_serve_plots(tmp_path):
    costs = ClosedFormCosts(step_s=1e-3, per_sequence_s=1e-4, prefill_s=2e-3)
    paths = []
    for rate in (50.0, 200.0):
        run = serve(poisson_requests(rate, 200, 64, 8, seed=0), costs, 4)
        s = {"model": "m", "hw": "h", "rate_per_s": rate, **summarize(run).to_json()}
        path = tmp_path / f"r{rate:g}.json"
        path.write_text(json.dumps(s))
        paths.append(str(path))
        from pimsim.serving.summary import write_rows
        write_rows(run, str(tmp_path / f"r{rate:g}.parquet"))
    assert main(["plot", "serve-load", *paths, "--out", str(tmp_path / "load.png")]) == 0
    assert main(["plot", "serve-cdf", str(tmp_path / "r50.parquet"), str(tmp_path / "r200.parquet"),
                 "--out", str(tmp_path / "cdf.png")]) == 0
    assert (tmp_path / "load.png").stat().st_size > 0 and (tmp_path / "cdf.png").stat().st_size > 0
    assert main(["plot", "serve-load", str(tmp_path / "r50.parquet"), "--out", str(tmp_path / "x.png")]) == 2


def test_sweep_point_with_serve_axes_is_a_serving_run():
    from pimsim.sweep.points import Sweep
    from pimsim.sweep.runner import run_point

    sweep = Sweep("gddr6-aim.yaml", ["gpt2"], run={"serve": {"requests": 40, "prompt_len": 16, "output_len": 4}},
                  grid={"serve.rate": [5.0, 200.0], "serve.slo_ttft_s": [0.003]})
    rows = [run_point(sweep.hw, p, sweep.run) for p in sweep.points()]
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert [r["rate_per_s"] for r in rows] == [5.0, 200.0] and rows[0]["requests"] == 40
    low, high = rows
    assert high["ttft_p99_s"] > low["ttft_p99_s"]  # more load, more queueing
    assert high["slo_attainment"] < low["slo_attainment"] <= 1
    bad = Sweep("gddr6-aim.yaml", ["gpt2"], grid={"serve.rate": [5.0], "serve.burst": [2]})
    row = run_point(bad.hw, bad.points()[0], bad.run)
    assert row["status"] == "error"
    assert "serve.burst: unknown" in row["error"] and "serve.requests: missing" in row["error"]
