"""Heterogeneous decode placement (issue 17, item 4; AttAcc-style): gpt2 on gddr6-aim (today's one-vector
MAC datapath) all in PIM against its FC layers on an A100 over PCIe 5.0 x16 with attention left in PIM.

    python analysis/hetero.py

Costs from :class:`pimsim.step_costs.StepCosts` (the all-PIM step: weight GEMVs of B vectors plus each
sequence's attention and ASIC work) and :class:`pimsim.hetero.HeteroDecode` (host FC roofline, the
same per-sequence PIM pieces, the link per layer; serial and two-half overlap schedules, see
pimsim/hetero.py for the closed form). One decode step with every sequence at the context shown.
"""

from __future__ import annotations

from pimsim.hetero import HeteroDecode
from pimsim.step_costs import StepCosts

HW, MODEL, HOST, LINK = "gddr6-aim", "gpt2", "a100", "pcie5-x16"
BATCHES = [1, 4, 16, 64]
CONTEXTS = [64, 512]


def main() -> None:
    costs = StepCosts(HW, MODEL, max_batch=max(BATCHES), max_context=max(CONTEXTS) + 1)
    hetero = HeteroDecode(costs, HOST, LINK)
    print(f"{MODEL} on {HW}: one decode step, all-PIM vs FC on {HOST} over {LINK} (attention in PIM)")
    print(f"{'context':>7} {'B':>4} {'all-PIM':>10} {'host FC':>10} {'PIM attn':>10} {'link':>9} "
          f"{'serial':>10} {'overlap':>10} {'speed-up':>9}")
    for context in CONTEXTS:
        for batch in BATCHES:
            contexts = [context] * batch
            all_pim = costs.decode_step(contexts).time_s
            s = hetero.step(contexts)
            best = min(s.serial_s, s.overlap_s)
            print(f"{context:>7} {batch:>4} {all_pim * 1e3:>8.3f}ms {hetero.host_fc_s(batch) * 1e3:>8.3f}ms "
                  f"{s.pim_s * 1e3:>8.3f}ms {12 * hetero.link_layer(batch)[0] * 1e3:>7.3f}ms "
                  f"{s.serial_s * 1e3:>8.3f}ms {s.overlap_s * 1e3:>8.3f}ms {all_pim / best:>8.2f}x")


if __name__ == "__main__":
    main()
