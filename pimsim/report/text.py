"""Plain-text summaries for the terminal. Every figure printed is also in the JSON result."""

from __future__ import annotations


def _si_bytes(n: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def _time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3f} {unit}"
    return f"{seconds * 1e9:.1f} ns"


def _joules(j: float) -> str:
    for unit, scale in (("J", 1.0), ("mJ", 1e-3), ("uJ", 1e-6), ("nJ", 1e-9)):
        if j >= scale:
            return f"{j / scale:.3f} {unit}"
    return f"{j * 1e12:.3f} pJ"


def _energy_line(e: dict, extra: str = "") -> str:
    """Total energy and its three largest components, for the kernel reports."""
    top = sorted(e["breakdown_J"].items(), key=lambda kv: -kv[1])[:3]
    return (f"energy     {_joules(e['total_J'])}{extra}; most in "
            + ", ".join(f"{k} {100 * v / e['total_J']:.0f}%" for k, v in top))


def trace_summary(result: dict) -> str:
    hw = result["config"]
    org = hw["dram"]["organization"]
    lines = [
        f"trace      {result['input']['path']} ({result['input']['kind']}, {result['input']['entries']:,} entries)",
        f"hardware   {hw['name']} ({hw['dram']['standard']}, {org['channels']} channel(s) x "
        f"{org['bankgroups'] * org['banks_per_group']} banks, tCK {hw['dram']['tCK_ps']:g} ps, "
        f"refresh: {result['refresh']})",
        f"cycles     {result['cycles']:,}  ({_time(result['time_s'])})",
        "commands   " + "  ".join(f"{k} {v:,}" for k, v in sorted(result["commands"].items()))
        + (f"  (kernel-added: {result['kernel_inserted_commands']:,})" if result["kernel_inserted_commands"] else ""),
    ]
    rate = result["row_hit_rate"]
    hit_rate = f"  (hit rate {100 * rate:.2f}%)" if rate is not None else ""
    lines.append(f"rows       {result['row_hits']:,} hits, {result['row_misses']:,} misses, "
                 f"{result['row_conflicts']:,} conflicts{hit_rate}")
    peak = result["peak_bandwidth_GBps"]
    lines.append(f"data       {_si_bytes(result['bytes_read'])} read, {_si_bytes(result['bytes_written'])} written "
                 f"over the channel interface: {result['bandwidth_GBps']:.2f} GB/s "
                 f"({100 * result['bandwidth_GBps'] / peak:.1f}% of {peak:.1f} GB/s peak)")
    req = result.get("requests")
    if req:
        lat = req["latency_cycles"]
        lines.append(f"requests   {req['reads']:,} reads, {req['writes']:,} writes; latency mean {lat['mean']:.1f}, "
                     f"p50 {lat['p50']:.0f}, p99 {lat['p99']:.0f}, max {lat['max']:,} cycles")
    return "\n".join(lines)


def gemv_summary(result: dict) -> str:
    shape, place = result["shape"], result["placement"]
    lines = [
        f"gemv       {shape['rows']:,} x {shape['cols']:,} on {result['hardware']} ({result['strategy']}: "
        f"{place['segments']} segment(s) x {place['waves']} wave(s), {place['dram_rows']} DRAM rows per bank, "
        f"{100 * place['area_utilization']:.1f}% of the area holds real weights)",
        f"cycles     {result['cycles']:,}  ({_time(result['time_s'])})",
        "commands   " + "  ".join(f"{k} {v:,}" for k, v in sorted(result["commands"].items())),
        f"rows       hit rate {100 * result['row_hit_rate']:.2f}%",
        f"bandwidth  {_si_bytes(result['bytes_in_banks'])} read inside the banks at "
        f"{result['internal_bandwidth_GBps']:.1f} GB/s ({100 * result['utilization']:.1f}% of the "
        f"{result['peak_internal_bandwidth_GBps']:.1f} GB/s peak); "
        f"{_si_bytes(result['bytes_over_pins'])} over the pins",
        f"asic       {result['asic']['adds']:,} additions of partial sums",
    ]
    if "energy" in result:
        macs = result["shape"]["rows"] * result["shape"]["cols"]
        lines.append(_energy_line(result["energy"], f" ({_joules(result['energy']['total_J'] / macs)} per weight)"))
    if "functional" in result:
        f = result["functional"]
        lines.append(f"functional max |error| {f['max_abs_error']:.3g} against the {f['reference']} "
                     f"({f['max_error_relative_to_sum_of_magnitudes']:.3g} of the sum of |products|)")
    if "no_pim" in result:
        b = result["no_pim"]
        lines.append(f"no PIM     {b['cycles']:,} cycles ({_time(b['time_s'])}) reading the weights out at "
                     f"{b['bandwidth_GBps']:.1f} GB/s: PIM takes {1 / result['speedup_over_no_pim']:.3g}x the time "
                     f"(speed-up {result['speedup_over_no_pim']:.2f}x)")
    return "\n".join(lines)


def attention_summary(result: dict) -> str:
    lines = [f"attention  {result['heads']} heads x {result['head_dim']} on {result['hardware']}, context "
             f"{result['context']:,} of {result['max_context']:,} reserved ({result['kv_rows_per_bank']} DRAM rows "
             f"per bank for K and V)",
             f"cycles     {result['cycles']:,}  ({_time(result['time_s'])}, {result['schedule']})"]
    for name, ph in result["phases"].items():
        cmds = "  ".join(f"{k} {v:,}" for k, v in sorted(ph["commands"].items()))
        lines.append(f"  {name:<8} {ph['cycles']:>9,} cycles  {100 * ph['utilization']:5.1f}% of peak internal "
                     f"bandwidth   {cmds}")
    if "energy" in result:
        lines.append(_energy_line(result["energy"]))
    if "functional" in result:
        f = result["functional"]
        lines.append(f"functional max |error| scores {f['scores_max_abs_error']:.3g}, outputs "
                     f"{f['context_max_abs_error']:.3g} against the {f['reference']}")
    return "\n".join(lines)


def _system_line(system) -> str:
    """A run on several devices: the split and what the exchanges between devices cost."""
    link = system.interconnect
    return (f"system     {system.devices} devices (tp={system.tensor_parallel}, pp={system.pipeline_parallel}"
            f", host ASIC {system.host_asic.replace('_', ' ')}) over {link.preset or link.topology} "
            f"({link.bandwidth_GBps:g} GB/s, {link.latency_ns:g} ns); communication "
            f"{_time(system.communication_per_token_s)} per token = {100 * system.communication_share:.1f}% of the "
            f"time, {100 * system.communication_energy_share:.1f}% of the energy")


def run_summary(result, functional: dict | None = None) -> str:
    """The ``pimsim run`` report of a :class:`~pimsim.run_types.RunResult`: latency, throughput, where
    the time went, and how well it used the banks (``functional``: the co-simulation's comparison)."""
    hw = result.hardware
    org = hw.dram.organization
    r = result.details
    lat = r.latency
    enc = r.encoder
    lines = [
        f"model      {result.model} ({r.graph.weights / 1e6:,.0f} M weights, "
        + (f"{enc.layers} encoder + " if enc is not None else "")
        + f"{r.graph.layers} {'decoder ' if enc is not None else ''}layers)  on  {result.hw} "
        f"({hw.dram.standard}, "
        f"{org.channels} channels)",
        f"run        prompt {result.prompt_len} tokens in the KV cache, {result.tokens} generated; "
        f"{result.spec.schedule} schedule, {result.spec.fidelity} fidelity",
        f"latency    {_time(result.latency_per_token_s)} per token (first {_time(lat.latency_first_token_s)}, "
        f"last {_time(lat.latency_last_token_s)});  {result.tokens_per_s:,.1f} tokens/s",
        f"total      {_time(result.total_time_s)} simulated",
        "",
        f"{'part':<48}{'time':>12}{'share':>9}",
    ]
    if enc is not None:  # an encoder-decoder's encoder pass: once, before the first token, apart from the above
        lines[1] += f"; source {r.source_len} tokens"
        energy = f", {_joules(enc.energy.energy_J)}" if enc.energy is not None else ""
        top = sorted(enc.time.busy_s.items(), key=lambda kv: -kv[1])[:3]
        most = ", ".join(f"{enc.time.titles[k]} {100 * enc.time.share[k]:.0f}%" for k, _ in top)
        lines.insert(4, f"encoder    {_time(enc.time_s)}{energy} once over {enc.source_len} source tokens, "
                        f"before the first token (not in the latency above): {enc.counted.gemv_passes:,} "
                        f"GEMV passes; most in {most}")
    pre = r.prefill
    if pre is not None:
        energy = f", {_joules(pre.energy.energy_J)}" if pre.energy is not None else ""
        lines[1] = lines[1].replace("tokens in the KV cache", f"tokens prefilled on {pre.on}")
        how = (f"{pre.gemv_chunks:,} GEMV chunks of up to {hw.pim.buffer_vectors} vectors" if pre.on == "pim"
               else f"on {pre.on}: roofline {_time(pre.roofline.time_s)} ({pre.roofline.bound} bound), "
                    f"KV writes {_time(pre.kv_write_s)}")
        lines.insert(3, f"prefill    {_time(r.prefill_s)}{energy} over the {pre.prompt_tokens}-token prompt"
                        f"{'s' if pre.sequences > 1 else ''} ({how}); time to first token {_time(r.ttft_s)}")
    mem = r.memory
    if r.sequences > 1:
        lines[1] += f"; a batch of {r.sequences} sequences in lock step"
        lines[2] = (f"latency    {_time(result.latency_per_token_s)} per step, each sequence's time per token (first "
                    f"{_time(lat.latency_first_token_s)}, last {_time(lat.latency_last_token_s)});  "
                    f"{result.tokens_per_s:,.1f} tokens/s over all {r.sequences} sequences")
        lines.insert(3, f"memory     {mem.kv_rows_per_bank_per_sequence:,} rows per bank of KV cache per sequence; "
                        f"{mem.rows_per_bank_used:,} of {mem.rows_per_bank:,} rows used, "
                        f"{mem.sequences_that_fit:,} sequences would fit")
    d = r.decode_placement
    if d is not None:  # the hetero placement's figures beside the all-PIM ones above
        steps = len(d.per_step_s)
        energy = f", {_joules(d.energy_per_token_J)} per token" if d.energy_per_token_J is not None else ""
        lines.insert(3, f"hetero     FC on {d.placement.fc}, attention in PIM, link {d.placement.link}: "
                        f"{_time(d.latency_per_token_s)} per step, {d.tokens_per_s:,.1f} tokens/s{energy} "
                        f"(per step: host FC {_time(d.host_fc_s / steps)}, PIM {_time(d.pim_attention_s / steps)}"
                        f", link {_time(d.link_s / steps)}; schedule {d.schedule}: "
                        f"{', '.join(sorted(set(d.schedule_per_step)))}); the other lines are all-PIM")
    if result.weight_format and result.weight_format != r.kv_format:
        lines.insert(2, f"formats    block weights {result.weight_format} (inputs "
                        f"{hw.pim.activation_format}); KV cache, embeddings and LM head {r.kv_format}")
    for part, seconds in sorted(r.time.busy_s.items(), key=lambda kv: -kv[1]):
        share = 100 * r.time.share[part]
        lines.append(f"  {r.time.titles[part]:<46}{_time(seconds):>12}{share:>8.1f}%")
    lines.append("")
    dram = r.dram
    rate = dram.row_hit_rate
    lines.append(f"rows       hit rate {100 * rate:.2f}%  ({dram.row_hits:,} hits, {dram.row_misses:,} "
                 f"misses, {dram.row_conflicts:,} conflicts)" if rate is not None else "rows       none accessed")
    data = r.data
    ratio = data.internal_bytes / data.external_bytes if data.external_bytes else float("inf")
    lines.append(f"data       {_si_bytes(data.internal_bytes)} read by the MAC units inside the banks, "
                 f"{_si_bytes(data.external_bytes)} over the pins ({ratio:,.0f}x less)")
    lines.append(f"bound      {100 * r.bound.bound_efficiency:.1f}% of the internal-bandwidth bound "
                 f"({_time(r.bound.bound_time_s)} to read every weight and cached K/V once at peak MAC rate)")
    lines.append(f"memory     {mem.rows_per_bank_used:,} of {mem.rows_per_bank:,} rows per bank used "
                 f"({100 * mem.memory_used_fraction:.1f}%), KV cache reserved for "
                 f"{mem.kv_cache_tokens_reserved:,} tokens"
                 + (f", cross-attention K/V for {mem.cross_kv_tokens_reserved:,} source tokens"
                    if mem.cross_kv_tokens_reserved is not None else "")
                 + (f" ({mem.kv_window_layers} windowed layers: a ring of {mem.kv_window_tokens:,})"
                    if mem.kv_window_layers is not None else ""))
    moe = r.experts
    if moe is not None:
        lines.append(f"experts    top-{moe.top_k} of {moe.experts} in {moe.moe_layers} MoE layers, routing "
                     f"{moe.routing}; busiest expert {moe.imbalance_max:.2f}x the mean load (layers' mean "
                     f"{moe.imbalance_mean:.2f}x), {moe.unused_experts:,} layer experts unused over "
                     f"{moe.tokens:,} tokens")
    e = r.energy
    if e is not None:
        from pimsim.energy.model import COMPONENTS

        lines.append(f"energy     {_joules(e.energy_per_token_J)} per token "
                     f"({_joules(e.energy_per_token_per_param_J)} per token per weight), average "
                     f"{e.average_power_W:.2f} W")
        total = e.energy_total_J
        per_token = e.energy_per_token_J / total
        for part, joules in sorted(e.energy_breakdown_J.items(), key=lambda kv: -kv[1]):
            if joules > 0:
                title = COMPONENTS.get(part, "interconnect between devices" if part == "interconnect" else part)
                lines.append(f"  {title:<52}{_joules(joules * per_token):>12} /token"
                             f"{100 * joules / total:>8.1f}%")
    if r.system is not None:
        lines.insert(2, _system_line(r.system))
    f = functional
    if f:
        matches = sum(f["top1_matches"])
        weights = f" on {f['quantizer']} weights" if f.get("quantizer") else ""  # the reference's weights too
        lines.append(f"functional {f['weights']}, {f['prompt_tokens']} prompt tokens: top-1 agreement with PyTorch "
                     f"FP32{weights} {matches}/{len(f['top1_matches'])} ({100 * f['top1_agreement']:.1f}%), "
                     f"max |logit error| {f['max_abs_logit_error']:.4g} "
                     f"({100 * f['max_abs_logit_error_relative']:.2f}% of the largest logit), "
                     f"mean {f['mean_abs_logit_error']:.3g}")
        if "reference_text" in f:
            lines.append(f"           {f['prompt']!r} -> PyTorch {f['reference_text']!r}, PIM {f['pim_text']!r}")
    lines.append(f"traceable  config_hash {result.config_hash}, pimsim {r.pimsim_version}; "
                 f"--json has the resolved config, the model card and every count")
    return "\n".join(lines)


def specdec_summary(run) -> str:
    """The ``pimsim run --spec-dec`` report of a :class:`~pimsim.run_types.RunResult`: tokens per verify
    step, latency, speed-up and energy against plain decoding of the target on the same hardware."""
    r = run.details
    spec = r.spec_dec
    acc = spec.acceptance
    source = (f"alpha {acc.alpha} (seed {acc.seed})" if acc.alpha is not None else
              f"trace {acc.trace}" if acc.trace else r.acceptance.file or "measured")
    where = spec.placement + (f", draft on {spec.draft_channels} channels" if spec.draft_channels else "")
    ar = r.autoregressive
    lines = [
        f"spec-dec   target {run.model}, draft {r.draft}  on  {run.hw}; k = {spec.k}, "
        f"{spec.policy} policy, {where}",
        f"run        prompt {run.prompt_len} tokens, {run.tokens} generated in {r.rounds} rounds "
        f"({r.target_passes} target passes); acceptance {source}",
        f"accepted   {r.tokens_per_verify_step:.2f} tokens per target pass"
        + (f" (expected {r.expected_tokens_per_verify_step:.2f})"
           if r.expected_tokens_per_verify_step is not None else ""),
        f"latency    {_time(run.latency_per_token_s)} per token;  {run.tokens_per_s:,.1f} tokens/s  "
        f"(draft busy {_time(r.time_s.draft_s)}, verify {_time(r.time_s.verify_s)})",
        f"vs plain   {_time(ar.latency_per_token_s)} per token autoregressive: speed-up "
        f"{r.speedup_over_autoregressive:.3f}x",
    ]
    if r.energy is not None:
        ratio = r.energy.energy_ratio_over_autoregressive
        lines.append(f"energy     {_joules(r.energy.energy_per_token_J)} per token"
                     + (f" ({ratio:.3f}x plain decoding's {_joules(ar.energy_per_token_J)})" if ratio else ""))
    lines += [f"note       {n}" for n in r.notes]
    return "\n".join(lines)
