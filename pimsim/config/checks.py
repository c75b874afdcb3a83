"""Checks that relate fields to each other or to the DRAM standard.

They run on the raw (already overridden) mapping, not only on a validated model, so a file with a
type error *and* an impossible timing reports both at once. Each check skips values that are missing
or of the wrong type: those are reported by the structural pass.
"""

from __future__ import annotations

import operator
from typing import Any

from pimsim.config.files import suggest
from pimsim.dram.expr import evaluate, names_in
from pimsim.dram.standards import STANDARDS
from pimsim.errors import Problem

_OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}

# Far beyond any real device; past these a simulation would allocate absurd amounts of memory.
LIMITS = {"channels": 4096, "ranks": 16, "bankgroups": 64, "banks_per_group": 64, "rows": 1 << 24,
          "columns": 1 << 20, "channel_width_bits": 4096, "burst_length": 256}
MAX_TIMING = 10_000_000
MAX_BANKS = 65_536


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def check(raw: Any) -> list[Problem]:
    if not isinstance(raw, dict):
        return []
    dram = raw.get("dram")
    if not isinstance(dram, dict):
        return []
    problems: list[Problem] = []
    org = dram.get("organization") if isinstance(dram.get("organization"), dict) else {}
    problems += _check_organization(org)
    name = dram.get("standard")
    std = STANDARDS.get(name) if isinstance(name, str) else None
    timing = dram.get("timing")
    if std is not None and isinstance(timing, dict):
        problems += _check_timing(std, timing)
        problems += _check_burst(dram, org, timing)
    if std is not None:
        problems += _check_standard_shape(std, dram, org)
    problems += _check_mapping(dram, org)
    pim = raw.get("pim")
    if isinstance(pim, dict):
        problems += _check_pim(pim, org, std)
    if isinstance(raw.get("asic"), dict) and not isinstance(pim, dict):
        problems.append(Problem("asic", "an ASIC drives PIM commands; it needs a pim section"))
    energy = raw.get("energy")
    if isinstance(energy, dict) and std is not None:
        problems += _check_energy(energy, std, raw)
    return problems


def _check_energy(energy: dict, std, raw: dict) -> list[Problem]:
    """Every command of the standard gets an energy, from currents or in pJ, and nothing unknown."""
    from pimsim.config.models import CURRENTS, from_currents

    dram = energy.get("dram")
    if not isinstance(dram, dict):
        return []
    out = []
    names = set(std.command_names)
    per = dram.get("per_command_pJ") if isinstance(dram.get("per_command_pJ"), dict) else {}
    for key in per:
        if key not in names:
            out.append(Problem(f"energy.dram.per_command_pJ.{key}",
                               f"not a command of {std.name}{suggest(str(key), names)}"))
    currents = dram.get("currents_mA")
    if isinstance(currents, dict):
        for key in currents:
            if key not in CURRENTS:
                out.append(Problem(f"energy.dram.currents_mA.{key}",
                                   f"not a current pimsim uses ({', '.join(CURRENTS)}){suggest(str(key), CURRENTS)}"))
        for key in CURRENTS:
            if key not in currents:
                out.append(Problem(f"energy.dram.currents_mA.{key}", "missing (the current-based method needs it)"))
        i = {k: _num(v) for k, v in currents.items()}
        # every operating current is drawn on top of active standby, which is at least precharge standby;
        # otherwise a derived energy would come out negative
        for above, below in (("IDD3N", "IDD2N"), ("IDD0", "IDD3N"), ("IDD4R", "IDD3N"), ("IDD4W", "IDD3N"),
                             ("IDD5B", "IDD3N")):
            if i.get(above) is not None and i.get(below) is not None and i[above] < i[below]:
                out.append(Problem(f"energy.dram.currents_mA.{above}",
                                   f"{i[above]:g} mA is below {below} = {i[below]:g} mA"))
        if dram.get("VDD_V") is None:
            out.append(Problem("energy.dram.VDD_V", "missing: currents need the voltage they are drawn at"))
        if dram.get("background_mW") is not None:
            out.append(Problem("energy.dram.background_mW", "give background power or currents, not both "
                                                            "(IDD2N and IDD3N are the background)"))
        derived = from_currents(std)
    else:
        derived = set()
        if dram.get("background_mW") is None:
            out.append(Problem("energy.dram.background_mW", "missing: without currents, give 'active' and "
                                                            "'precharged' standby power per channel"))
    background = dram.get("background_mW")
    if isinstance(background, dict) and set(background) != {"active", "precharged"}:
        out.append(Problem("energy.dram.background_mW", f"needs exactly 'active' and 'precharged', got "
                                                        f"{sorted(map(str, background))}"))
    missing = sorted(names - derived - set(per))
    if missing:
        why = "not given by the currents" if derived else "give each"
        out.append(Problem("energy.dram.per_command_pJ", f"no energy for {', '.join(missing)} ({why})"))
    pim = raw.get("pim") if isinstance(raw.get("pim"), dict) else {}
    extra = pim.get("formats") if isinstance(pim.get("formats"), dict) else {}
    by_format = dram.get("mac_pJ_by_format") if isinstance(dram.get("mac_pJ_by_format"), dict) else {}
    for fmt in extra:
        costs = by_format.get(fmt)
        missing = [c for c in ("MACAB", "MACSB") if not (isinstance(costs, dict) and c in costs)]
        if fmt != pim.get("weight_format") and missing:
            out.append(Problem(f"energy.dram.mac_pJ_by_format.{fmt}",
                               f"missing {' and '.join(missing)}: pim.formats has {fmt}, so its MAC energy is needed"))
    for fmt in by_format:
        if fmt not in extra:
            out.append(Problem(f"energy.dram.mac_pJ_by_format.{fmt}", f"pim.formats has no {fmt} to cost"))
    vpm = pim.get("vectors_per_mac", 1)
    if _int(vpm) and vpm > 1 and dram.get("mac_vector_pJ") is None:
        out.append(Problem("energy.dram.mac_vector_pJ", f"missing: pim.vectors_per_mac is {vpm}, so what each "
                                                         "vector after the first adds to a MAC's energy is needed"))
    if isinstance(raw.get("asic"), dict) and not isinstance(energy.get("asic"), dict):
        out.append(Problem("energy.asic", "the hardware has an ASIC: give its lane_op_pJ, sram_pJ_per_byte and "
                                          "leakage_mW"))
    return out


def _check_organization(org: dict) -> list[Problem]:
    out = []
    for key in ("channels", "ranks", "bankgroups", "banks_per_group", "rows", "columns", "burst_length"):
        v = _int(org.get(key))
        if v is None or v < 1:
            continue
        if v > LIMITS[key]:
            out.append(Problem(f"dram.organization.{key}", f"{v} is beyond any real device (limit {LIMITS[key]})"))
        elif not _is_pow2(v):
            out.append(Problem(f"dram.organization.{key}", f"{v} is not a power of two (addresses are bit fields)"))
    ranks = _int(org.get("ranks"))
    if ranks is not None and ranks > 1:
        out.append(Problem("dram.organization.ranks",
                           f"{ranks} ranks: multi-rank channels are not modelled yet (no rank-switch timing); use 1"))
    width = _int(org.get("channel_width_bits"))
    if width is not None and width >= 8 and width <= LIMITS["channel_width_bits"] and not _is_pow2(width):
        out.append(Problem("dram.organization.channel_width_bits",
                           f"{width} is not a power of two (a column access must be a power-of-two bytes)"))
    if width is not None and (width % 8 or width > LIMITS["channel_width_bits"]):
        out.append(Problem("dram.organization.channel_width_bits",
                           f"{width} is not a whole number of bytes up to 4096 bits"))
    sizes = [_int(org.get(k)) for k in ("channels", "ranks", "bankgroups", "banks_per_group")]
    if all(v is not None and v >= 1 for v in sizes) and sizes[0] * sizes[1] * sizes[2] * sizes[3] > MAX_BANKS:
        out.append(Problem("dram.organization", f"{sizes[0] * sizes[1] * sizes[2] * sizes[3]:,} banks in all is beyond "
                                                f"what pimsim simulates (limit {MAX_BANKS:,})"))
    cols, bl = _int(org.get("columns")), _int(org.get("burst_length"))
    if cols and bl and cols % bl:
        out.append(Problem("dram.organization.columns", f"{cols} columns is not a whole number of bursts of {bl}"))
    return out


def _check_timing(std, timing: dict) -> list[Problem]:
    out = []
    known = set(std.param_names)
    for key, v in timing.items():
        if not isinstance(key, str):
            out.append(Problem(f"dram.timing.{key}", "timing parameters are named (nRCD, nCL, ...), not numbers"))
        elif key not in known:
            hint = suggest(key, known)
            out.append(Problem(f"dram.timing.{key}", f"not a timing parameter of {std.name}{hint}"))
        elif _int(v) is not None and not 0 <= v <= MAX_TIMING:
            out.append(Problem(f"dram.timing.{key}", f"{v} cycles is outside 0..{MAX_TIMING}"))
    for name in std.param_names:
        if name not in timing:
            out.append(Problem(f"dram.timing.{name}", f"missing ({std.name} needs it)"))
    values = {k: v for k, v in timing.items() if k in known and _int(v) is not None}
    for left, op, right, why in std.sanity:
        if names_in(left) | names_in(right) <= set(values):
            a, b = evaluate(left, values), evaluate(right, values)
            if not _OPS[op](a, b):
                first = sorted(names_in(left))[0]
                out.append(Problem(f"dram.timing.{first}",
                                   f"{left} = {a} but must be {op} {right} = {b}: {why}"))
    return out


def _check_standard_shape(std, dram: dict, org: dict) -> list[Problem]:
    """Counts the standard fixes for its levels, and a refresh policy it declares."""
    from pimsim.dram.standard import LEVEL_COUNT_FIELDS

    out = []
    for level in std.levels:
        key = LEVEL_COUNT_FIELDS[level.tier]
        v = _int(org.get(key, 1))
        if level.fixed is not None and v is not None and v != level.fixed:
            out.append(Problem(f"dram.organization.{key}", f"{v}, but {std.name} has {level.fixed} {level.name} "
                                                           f"per {std.levels[int(level.tier) - 1].name}"))
    refresh = dram.get("refresh")
    policy = refresh.get("policy") if isinstance(refresh, dict) else None
    if isinstance(policy, str):
        known = [p.name for p in std.refresh_policies]
        if policy not in known:
            out.append(Problem("dram.refresh.policy", f"{policy!r} is not a refresh policy of {std.name} "
                                                      f"({', '.join(known)}){suggest(policy, known)}"))
    return out


def _check_burst(dram: dict, org: dict, timing: dict) -> list[Problem]:
    tck, rate = _num(dram.get("tCK_ps")), _num(dram.get("data_rate_Gbps_per_pin"))
    bl, nbl = _int(org.get("burst_length")), _int(timing.get("nBL"))
    if not (tck and rate and bl and nbl) or tck <= 0 or rate <= 0:
        return []
    beats_per_cycle = rate * tck / 1000.0
    expect = bl / beats_per_cycle
    if abs(expect - nbl) > 0.05 * max(expect, 1):
        return [Problem("dram.timing.nBL",
                        f"{nbl} cycles, but a burst of {bl} beats at {rate} Gb/s/pin with tCK {tck} ps takes "
                        f"{expect:.4g} cycles (check tCK_ps and data_rate_Gbps_per_pin units)")]
    return []


def _check_mapping(dram: dict, org: dict) -> list[Problem]:
    mapping = dram.get("address_mapping")
    if not isinstance(mapping, list) or not all(isinstance(f, str) for f in mapping):
        return []
    out = []
    for f in set(mapping):
        if mapping.count(f) > 1:
            out.append(Problem("dram.address_mapping", f"field {f!r} appears {mapping.count(f)} times"))
    counts = {"channel": org.get("channels"), "rank": org.get("ranks", 1)}
    for field in ("row", "bankgroup", "bank", "column", "offset"):
        if field not in mapping:
            out.append(Problem("dram.address_mapping", f"field {field!r} is missing"))
    for field, n in counts.items():
        if _int(n) is not None and n > 1 and field not in mapping:
            out.append(Problem("dram.address_mapping", f"{n} {field}s need a {field!r} field"))
    return out


def _check_pim(pim: dict, org: dict, std) -> list[Problem]:
    from pimsim.dram.standard import PimRole
    from pimsim.pim.formats import KV_FORMATS, LOW_BIT

    out = []
    if std is not None and std.role(PimRole.MAC_ALL) is None:
        out.append(Problem("pim", f"standard {std.name} has no PIM commands; remove the pim section"))
    bl, width = _int(org.get("burst_length")), _int(org.get("channel_width_bits"))
    access = bl * width // 8 if bl and width else None
    gb = _int(pim.get("global_buffer_bytes"))
    if gb is not None and access and gb < access:
        out.append(Problem("pim.global_buffer_bytes", f"{gb} B is smaller than one column access ({access} B)"))
    if gb is not None and access and gb >= access and gb % access:
        out.append(Problem("pim.global_buffer_bytes", f"{gb} B is not a whole number of {access} B column accesses"))
    fmt = pim.get("weight_format")
    native = {"lanes": pim.get("lanes_per_unit"), "activation_format": pim.get("activation_format"),
              "accumulator_format": pim.get("accumulator_format"), "mac_cycles": pim.get("mac_cycles", 0)}
    out += _check_datapath("pim", "lanes_per_unit", fmt, native, access, gb)
    formats = pim.get("formats")
    if isinstance(formats, dict):
        for name, spec in formats.items():
            if name == fmt:
                out.append(Problem(f"pim.formats.{name}", f"{name} is the native weight format: its datapath is "
                                                          "lanes_per_unit, accumulator_format, ... (drop this entry)"))
            elif isinstance(spec, dict) and isinstance(name, str):
                out += _check_datapath(f"pim.formats.{name}", "lanes", name, spec, access, gb)
    kv = pim.get("kv_format") or pim.get("activation_format") or fmt
    if isinstance(kv, str) and kv in LOW_BIT:
        out.append(Problem("pim.kv_format", f"the KV cache needs bf16, fp16 or int8 values; with {fmt} weights "
                                            "give kv_format"))
    elif isinstance(kv, str) and kv in KV_FORMATS and kv != fmt and not (isinstance(formats, dict) and kv in formats):
        keep = f" (or keep the KV cache in {fmt})" if fmt not in LOW_BIT else ""
        out.append(Problem("pim.kv_format", f"attention over a {kv} KV cache needs MAC units for {kv} values: "
                                            f"add pim.formats.{kv}{keep}"))
    vpm, held = _int(pim.get("vectors_per_mac", 1)), _int(pim.get("buffer_vectors", 1))
    if vpm and held and vpm > held:
        out.append(Problem("pim.vectors_per_mac", f"a MAC of {vpm} vectors reads them from the global buffer, which "
                                                  f"holds {held} (pim.buffer_vectors); raise buffer_vectors to {vpm}"))
    per_unit = _int(pim.get("banks_per_unit"))
    bgs, bpg = _int(org.get("bankgroups")), _int(org.get("banks_per_group"))
    if per_unit and bgs and bpg and (bgs * bpg) % per_unit:
        out.append(Problem("pim.banks_per_unit", f"{bgs * bpg} banks cannot be shared evenly by units of {per_unit}"))
    return out


def _check_datapath(where: str, lanes_key: str, fmt, spec: dict, access: int | None, gb: int | None
                    ) -> list[Problem]:
    """One weight format's MAC datapath against the column access and the global buffer."""
    from fractions import Fraction

    from pimsim.pim.formats import ACTIVATION_FORMATS, CODE_BITS, OPERAND_BITS

    if not isinstance(fmt, str) or fmt not in CODE_BITS or not access:
        return []
    out = []
    per_access = Fraction(access * 8) / CODE_BITS[fmt]
    lanes, cycles = _int(spec.get("lanes")), _int(spec.get("mac_cycles", 0))
    if per_access.denominator != 1:
        return [Problem(where, f"a {access} B column access does not hold a whole number of {fmt} weights")]
    elems = int(per_access)
    if lanes and lanes > elems:
        out.append(Problem(f"{where}.{lanes_key}", f"{lanes} lanes, but one column access holds only {elems} {fmt} "
                                                   f"weights"))
    elif lanes and lanes < elems and cycles == 0:
        out.append(Problem(f"{where}.mac_cycles", f"{lanes} lanes take {-(-elems // lanes)} passes over the {elems} "
                                                  f"{fmt} weights of a column access: give the cycles one pass takes"))
    act = spec.get("activation_format") or (fmt if fmt in ACTIVATION_FORMATS else None)
    if act in ("bf16", "fp16") and spec.get("accumulator_format") == "int32":
        out.append(Problem(f"{where}.accumulator_format", f"int32 accumulators cannot add {act} products; use fp32 "
                                                          "or fp16, or int8 activations"))
    if act is None and fmt not in ACTIVATION_FORMATS:
        out.append(Problem(f"{where}.activation_format", f"{fmt} weights need an activation format (int8, bf16 "
                                                         "or fp16) for the input vector"))
    if fmt == "int4-g128" and act == "int8":
        out.append(Problem(f"{where}.activation_format", "int4-g128 weights are dequantized by their FP16 group "
                                                         "scales in the unit: give bf16 or fp16 activations"))
    if fmt in ("int4-g128", "fp8-e4m3") and spec.get("accumulator_format") == "int32":
        out.append(Problem(f"{where}.accumulator_format", f"int32 accumulators cannot add {fmt} products (scaled "
                                                          "or floating-point): use fp32 or fp16"))
    if isinstance(act, str) and act in OPERAND_BITS:
        act_bytes = elems * OPERAND_BITS[act] // 8
        if act_bytes % access:
            out.append(Problem(f"{where}.activation_format",
                               f"one MAC's {elems} {act} activations ({act_bytes} B) are not a whole number of "
                               f"{access} B global-buffer writes"))
        elif gb and access <= gb < act_bytes:
            out.append(Problem("pim.global_buffer_bytes", f"{gb} B cannot hold one MAC's {elems} {act} activations "
                                                          f"({act_bytes} B) for {fmt} weights"))
    return out


