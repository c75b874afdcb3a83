"""Compile a (standard, hardware config) pair into the integer arrays the kernel runs on.

The hierarchy of every channel is flattened into one node numbering: all channels first, then all
ranks, all bank groups, all banks; the children of a node are contiguous, so "every bank under this
rank" is a range. Constraints are evaluated to cycle counts and grouped by the command they delay.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pimsim.config.models import HardwareConfig
from pimsim.dram.expr import evaluate
from pimsim.dram.standard import Constraint, Level, PimRole, RefreshPolicy, Standard, Transfer
from pimsim.dram.timing_state import N_ANC, N_HI, N_LEVEL, N_LO, NO_RULE, P_BASE, Spec

NLEVELS = 4


@dataclass(frozen=True)
class Compiled:
    """A compiled standard for one hardware config, with the Python-side names kept alongside."""

    hw: HardwareConfig
    standard: Standard
    spec: Spec
    timing: dict[str, int]
    constraints: tuple[tuple[Constraint, int], ...]  # each constraint with its latency in cycles
    refresh_policy: RefreshPolicy  # the standard's policy the config chose (dram.refresh.policy)
    refresh_interval: int  # cycles between two refresh commands of a rank under that policy

    def stuck_message(self, what: str) -> str:
        """Why `what` (a command, named by the caller) can never issue: it does not fit between refreshes."""
        t = self.timing
        return (f"{what} never fits between two refreshes: the refresh interval nREFI = {t['nREFI']} cycles leaves "
                f"too little time after each refresh (nRFC = {t['nRFC']}) for it to issue; raise nREFI or lower nRFC")

    @property
    def refresh_command(self) -> str:
        return self.refresh_policy.command

    @property
    def command_names(self) -> tuple[str, ...]:
        return self.standard.command_names

    @property
    def result_read_bytes(self) -> int:
        """Bytes one MAC-result read (RDMAC) moves between the device and its controller: ``access_bytes``
        per burst of the data transfer the standard gives the command. AiM (GDDR6.cpp: RDMAC16 takes
        nCLREG + nBL): one burst, 16 banks' 16-bit results in 32 B. HBM-PIM: one GRF_B register of every
        PIM unit, a burst per unit (nBLRES = units x nBL: 8 x 32 B). Timing, pin energy and the ASIC link
        all count a result read as this many bytes."""
        return self.transfer_bytes(self.standard.role(PimRole.RESULT_READ))

    def transfer_bytes(self, command: str) -> int:
        """Bytes one `command` moves over the data bus: access_bytes per burst of nBL cycles (0 for a
        command that moves no data). The one definition that timing summaries, pin energy and the ASIC
        link all count with."""
        cmd = self.standard.commands[self.command_names.index(command)]
        if cmd.transfer not in (Transfer.READ, Transfer.WRITE):
            return 0
        bursts = dict(self.standard.burst_params)
        cycles = self.timing[bursts[command]] if command in bursts else self.timing["nBL"]
        return self.hw.dram.organization.access_bytes * cycles // self.timing["nBL"]

    def transfer_bytes_by_command(self) -> np.ndarray:
        """:meth:`transfer_bytes` of every command, indexed like :attr:`command_names`."""
        return np.array([self.transfer_bytes(name) for name in self.command_names], np.int64)

    @property
    def level_base(self) -> np.ndarray:
        return self.spec.params[P_BASE:P_BASE + 4]

    def node_level(self, node) -> np.ndarray:
        return self.spec.node[node, N_LEVEL]

    def channel_of(self, node) -> np.ndarray:
        return self.spec.node[node, N_ANC]

    def bank_node(self, channel, rank, bankgroup, bank):
        org = self.hw.dram.organization
        idx = ((channel * org.ranks + rank) * org.bankgroups + bankgroup) * org.banks_per_group + bank
        return self.level_base[Level.BANK] + idx

    def rank_node(self, channel, rank=0):
        return self.level_base[Level.RANK] + channel * self.hw.dram.organization.ranks + rank

    def channel_node(self, channel):
        return self.level_base[Level.CHANNEL] + channel

    def bank_address(self, node: int) -> tuple[int, int, int, int]:
        """(channel, rank, bankgroup, bank) of a bank node."""
        org = self.hw.dram.organization
        idx = int(node - self.level_base[Level.BANK])
        bank, idx = idx % org.banks_per_group, idx // org.banks_per_group
        bg, idx = idx % org.bankgroups, idx // org.bankgroups
        return idx // org.ranks, idx % org.ranks, bg, bank

    def describe_node(self, node: int) -> str:
        lvl = int(self.node_level(node))
        org = self.hw.dram.organization
        idx = node - int(self.level_base[lvl])
        parts = []
        sizes = [org.channels, org.ranks, org.bankgroups, org.banks_per_group][: lvl + 1]
        for size in reversed(sizes):
            parts.append(idx % size)
            idx //= size
        parts.reverse()
        return " ".join(f"{self.standard.level_name(Level(i))} {parts[i]}" for i in range(lvl + 1))


def _hierarchy(counts: list[int]):
    """Node arrays for a tree with counts[L] children per node at level L-1 (counts[0] roots)."""
    per_level = [counts[0]]
    for c in counts[1:]:
        per_level.append(per_level[-1] * c)
    base = np.cumsum([0] + per_level[:-1]).astype(np.int64)
    nodes = int(sum(per_level))
    node_level = np.empty(nodes, np.int64)
    anc = np.full((nodes, NLEVELS), -1, np.int64)
    desc_lo = np.full((nodes, NLEVELS), -1, np.int64)
    desc_hi = np.full((nodes, NLEVELS), -1, np.int64)
    for lvl in range(NLEVELS):
        for idx in range(per_level[lvl]):
            n = base[lvl] + idx
            node_level[n] = lvl
            # ancestors: divide the index by the fan-out of each level above
            a = idx
            for up in range(lvl, -1, -1):
                anc[n, up] = base[up] + a
                if up > 0:
                    a //= counts[up]
            # descendants: multiply the index range by the fan-out of each level below
            lo, hi = idx, idx + 1
            for down in range(lvl, NLEVELS):
                if down > lvl:
                    lo, hi = lo * counts[down], hi * counts[down]
                desc_lo[n, down], desc_hi[n, down] = base[down] + lo, base[down] + hi
    return node_level, anc, desc_lo, desc_hi, base


def _repeat_gap(c: int, gap: int, grouped: dict, win_role: np.ndarray) -> int:
    """Cycles between two of command c issued back to back on the same node.

    The second one touches every node the first touched, so each c -> c rule binds from the first
    one's cycle, and every other command's bound was already met by the first. -1 where c takes part
    in a window rule (its history, not just the last issue, decides).
    """
    if win_role.size and win_role[:, c].any():
        return -1
    return max([gap] + [lat for lat in grouped.get((c, c), []) if lat > NO_RULE])


def derived_timing(hw: HardwareConfig) -> dict[str, int]:
    """Values of the standard's derived parameters. ``nMAC``: the cycles one MAC command keeps a PIM unit
    busy in the configured weight format, as many passes of its lanes as a column access has weights
    times the cycles of a pass (0 where the units keep pace with the column path)."""
    out = {}
    for p in hw.standard.derived_params:
        if p.name != "nMAC":
            raise RuntimeError(f"pimsim bug: no value for the derived timing parameter {p.name!r}")
        out["nMAC"] = 0
        if hw.pim is not None:
            from pimsim.pim.formats import elements_in

            elems = elements_in(hw.dram.organization.access_bytes, hw.pim.weight_format)
            out["nMAC"] = -(-elems // hw.pim.lanes_per_unit) * hw.pim.mac_cycles
    return out


def compile_standard(hw: HardwareConfig) -> Compiled:
    std = hw.standard
    org = hw.dram.organization
    timing = dict(hw.dram.timing) | derived_timing(hw)
    names = std.command_names
    ncmd = len(names)
    cid = {n: i for i, n in enumerate(names)}
    node_level, anc, desc_lo, desc_hi, base = _hierarchy(
        [org.channels, org.ranks, org.bankgroups, org.banks_per_group])

    evaluated = tuple((c, evaluate(c.latency, timing)) for c in std.constraints)
    # A channel-level rule from every command to every command is command-bus occupancy; since a
    # channel issues in order it is simply a minimum gap after the channel's previous command.
    gap = 0
    windows = []
    # (next, prev) -> latency per level, after folding levels below the next command's scope into it
    grouped: dict[tuple[int, int], list[int]] = {}
    for c, lat in evaluated:
        if c.window > 1:
            windows.append((c, lat))
            continue
        if c.level == Level.CHANNEL and set(c.preceding) == set(c.following) == set(names):
            gap = max(gap, lat)
            continue
        if lat <= 0:
            continue
        for nxt in c.following:
            scope = int(std.command(nxt).scope)
            lvl = min(int(c.level), scope)
            for prv in c.preceding:
                lats = grouped.setdefault((cid[nxt], cid[prv]), [NO_RULE] * NLEVELS)
                lats[lvl] = max(lats[lvl], lat)
    keys = sorted(grouped)
    rule_ptr = np.zeros(ncmd + 1, np.int64)
    for nxt, _ in keys:
        rule_ptr[nxt + 1] += 1
    rule_ptr = np.cumsum(rule_ptr).astype(np.int64)
    rules = np.array([[prv, *grouped[(nxt, prv)]] for nxt, prv in keys], np.int64).reshape(len(keys), 1 + NLEVELS)

    nwin = len(windows)
    win_level = np.array([int(c.level) for c, _ in windows], np.int64)
    win_size = np.array([c.window for c, _ in windows], np.int64)
    win_lat = np.array([lat for _, lat in windows], np.int64)
    win_is_prev = np.zeros((nwin, ncmd), np.bool_)
    win_is_next = np.zeros((nwin, ncmd), np.bool_)
    for w, (c, _) in enumerate(windows):
        for p in c.preceding:
            win_is_prev[w, cid[p]] = True
        for f in c.following:
            win_is_next[w, cid[f]] = True

    node = np.concatenate([node_level[:, None], anc, desc_lo, desc_hi], axis=1)
    assert node.shape[1] == N_HI + NLEVELS and N_LO == N_ANC + NLEVELS and N_HI == N_LO + NLEVELS
    win = np.stack([win_level, win_size, win_lat], axis=1) if windows else np.zeros((0, 3), np.int64)
    win_role = win_is_prev.astype(np.int64) + 2 * win_is_next.astype(np.int64)
    act_all = cid[std.activate_all] if std.activate_all else -1
    policy = std.refresh_policy(hw.dram.refresh.policy)
    interval = evaluate(policy.interval, timing)
    params = np.array([cid[std.activate], act_all, cid[policy.close], cid[policy.command],
                       int(hw.dram.refresh.enabled), interval, org.ranks, org.channels, gap, *base,
                       int(policy.per_bank), int(policy.staggered)], np.int64)
    spec = Spec(
        node=np.ascontiguousarray(node, dtype=np.int64),
        rules=np.ascontiguousarray(rules, dtype=np.int64),
        rule_ptr=rule_ptr,
        win=np.ascontiguousarray(win, dtype=np.int64),
        win_role=np.ascontiguousarray(win_role.reshape(len(windows), ncmd), dtype=np.int64),
        cmds=np.array([[int(c.scope), int(c.effect), int(c.transfer), max(1, evaluate(c.done, timing)),
                        _repeat_gap(cid[c.name], gap, grouped, win_role)]
                       for c in std.commands], np.int64),
        params=params,
    )
    return Compiled(hw=hw, standard=std, spec=spec, timing=timing, constraints=evaluated, refresh_policy=policy,
                    refresh_interval=interval)
