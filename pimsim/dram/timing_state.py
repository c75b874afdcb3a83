"""The timing and bank state of a DRAM system, and the numba functions that read and advance it.

Shared by the in-order command-stream kernel (:mod:`pimsim.dram.kernel`) and the request-level
controller (:mod:`pimsim.dram.controller`). The protocol checker does *not* use this module.

How "the most recent command p that touched node X" is found without touching every bank: for every
node and command we keep ``T`` (last issue of p *scoped* exactly at that node) and ``Tsub`` (last issue
of p scoped at that node or anywhere below it). A command touching X was scoped at X, below X, or at
an ancestor of X, so the last touch is ``max(Tsub[X], T[ancestors of X])``: at most four lookups. For
a command scoped above the constraint's level (an all-bank command checking a bank rule), the same
formula taken at its own scope node gives the latest touch over all the banks under it.

Speed note: the helpers take plain arrays, never the Spec/State tuples. Pulling an array out of a
tuple inside numba costs a reference-count update, which in the per-command path cost 3-5x.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from pimsim._numba_cache import njit
from pimsim.dram.standard import Effect

NEG = -(1 << 60)  # "never happened"
NO_RULE = -(1 << 60)  # latency entry of a level with no rule (NEG + NO_RULE still fits in int64)

E_NONE, E_OPEN, E_CLOSE, E_ACCESS, E_REFRESH = (int(e) for e in Effect)

# columns of Spec.node
N_LEVEL, N_ANC, N_LO, N_HI = 0, 1, 5, 9
# columns of Spec.cmds
K_SCOPE, K_EFFECT, K_TRANSFER, K_DONE, K_REPEAT = 0, 1, 2, 3, 4
# entries of Spec.params
# (P_PREA and P_REF are the refresh policy's close and refresh commands, P_NREFI its interval between two
# refresh commands of a rank; after the four level bases: whether it refreshes one bank at a time, and
# whether the ranks of a channel fall due staggered)
P_ACT, P_ACTAB, P_PREA, P_REF, P_REFRESH_ON, P_NREFI, P_RANKS, P_CHANNELS, P_GAP, P_BASE = range(10)
P_PER_BANK, P_STAGGERED = P_BASE + 4, P_BASE + 5
# columns of State.bank
B_OPEN, B_WANT, B_FRESH, B_KIND, B_LAST = 0, 1, 2, 3, 4
# columns of State.chan
C_PREV, C_END, C_INSERTED, C_HITS, C_MISSES, C_CONFLICTS, C_PENDING, C_LAST_CMD, C_LAST_NODE, C_LAST_ROW = range(10)

# kernel error codes (translated to messages in pimsim.dram.simulate)
ERR_CLOSED = 1  # column access to a bank with no open row
ERR_ROW = 2  # column access to a row other than the open one
ERR_OPEN = 3  # activate of a bank that already has a row open
ERR_REF_OPEN = 4  # refresh while a bank is open
ERR_STUCK = 5  # the command cannot issue between two refreshes (refresh interval too short)

# refreshes a single command may wait through, for lack of time between them, before it is an error
MAX_REFRESH_WAITS = 16


class Spec(NamedTuple):
    """The hardware as the kernel sees it (built by :func:`pimsim.dram.compile.compile_standard`)."""

    node: np.ndarray  # int64[nodes, 13]: level, ancestor per level, first and last+1 descendant per level
    # int64[rules, 5]: preceding command p, then the latency by which p delays command c per level
    # (channel, rank, bankgroup, bank; NO_RULE where none, rules below c's scope folded into it)
    rules: np.ndarray
    rule_ptr: np.ndarray  # int64[cmds + 1]: rules delaying command c are rules[rule_ptr[c]:rule_ptr[c + 1]]
    win: np.ndarray  # int64[windows, 3]: level, window size, latency
    win_role: np.ndarray  # int64[windows, cmds]: bit 0 = counts in the window, bit 1 = delayed by it
    # int64[cmds, 5]: scope level, effect, transfer, cycles until done, and the gap between two of
    # the command back to back on the same node (-1 where a window rule makes that unsafe to use)
    cmds: np.ndarray
    params: np.ndarray  # int64[P_BASE + 6]: special command ids, refresh, sizes, level bases, refresh policy


class State(NamedTuple):
    T: np.ndarray  # int64[nodes, cmds]: last issue of each command scoped exactly at each node
    Tsub: np.ndarray  # int64[nodes, cmds]: last issue scoped at the node or below it
    win_hist: np.ndarray  # int64[windows, nodes, max window]: ring of recent issues per window rule
    win_count: np.ndarray  # int64[windows, nodes]
    bank: np.ndarray  # int64[banks, 5]: open row, row the stream believes open, fresh, kind, last row
    # int64[channels, 10]: previous issue, end, inserted, hits, misses, conflicts, banks a refresh
    # closed that the stream still believes open, the command and node issued last, and the row
    # argument of the last command the stream itself issued
    chan: np.ndarray
    counts: np.ndarray  # int64[channels, cmds]
    ref_due: np.ndarray  # int64[ranks]: cycle the next refresh is due


def new_state(spec: Spec) -> State:
    nodes, ncmd = spec.node.shape[0], spec.cmds.shape[0]
    p = spec.params
    nbanks = nodes - int(p[P_BASE + 3])
    nranks = int(p[P_BASE + 2] - p[P_BASE + 1])
    nwin = spec.win.shape[0]
    wmax = int(spec.win[:, 1].max()) if nwin else 1
    bank = np.zeros((nbanks, 5), np.int64)
    bank[:, B_OPEN] = bank[:, B_WANT] = bank[:, B_LAST] = -1
    return State(
        T=np.full((nodes, ncmd), NEG, np.int64),
        Tsub=np.full((nodes, ncmd), NEG, np.int64),
        win_hist=np.full((nwin, nodes, wmax), NEG, np.int64),
        win_count=np.zeros((nwin, nodes), np.int64),
        bank=bank,
        chan=_new_chan(int(p[P_CHANNELS])),
        counts=np.zeros((int(p[P_CHANNELS]), ncmd), np.int64),
        ref_due=first_refresh_due(p, nranks),
    )


def first_refresh_due(params: np.ndarray, nranks: int) -> np.ndarray:
    """Cycle each rank's first refresh falls due: one interval in; a staggered policy spreads the ranks of
    a channel evenly over the interval (rank r of R a further r/R of it earlier)."""
    interval = int(params[P_NREFI])
    due = np.full(nranks, interval, np.int64)
    if params[P_STAGGERED]:
        per_channel = int(params[P_RANKS])
        r = np.arange(nranks, dtype=np.int64) % per_channel
        due -= r * interval // per_channel
    return due


def _new_chan(channels: int) -> np.ndarray:
    chan = np.zeros((channels, 10), np.int64)
    chan[:, C_PREV] = NEG
    chan[:, C_LAST_CMD] = chan[:, C_LAST_NODE] = chan[:, C_LAST_ROW] = -1
    return chan


@njit(cache=True, allocates=False)
def channel_floor(params, chan, ch):
    """No command may issue before the channel's previous one, plus the command-bus gap."""
    return max(chan[ch, C_PREV] + params[P_GAP], 0)


@njit(cache=True, allocates=False)
def earliest(node, rules, rule_ptr, win, win_role, T, Tsub, win_hist, win_count, c, s, tmin):
    """Earliest cycle >= tmin at which command c scoped at node s satisfies every constraint."""
    e = tmin
    ls = node[s, N_LEVEL]
    for k in range(rule_ptr[c], rule_ptr[c + 1]):
        p = rules[k, 0]
        above = NEG  # latest issue of p scoped at a strict ancestor of the level being looked at
        for lvl in range(ls + 1):
            a = node[s, N_ANC + lvl]
            touch = Tsub[a, p]
            if above > touch:
                touch = above
            if touch + rules[k, 1 + lvl] > e:
                e = touch + rules[k, 1 + lvl]
            if T[a, p] > above:
                above = T[a, p]
    for w in range(win.shape[0]):
        if win_role[w, c] & 2:
            lvl, size, lat = win[w, 0], win[w, 1], win[w, 2]
            lo, hi = (node[s, N_ANC + lvl], node[s, N_ANC + lvl] + 1) if ls >= lvl else \
                (node[s, N_LO + lvl], node[s, N_HI + lvl])
            for y in range(lo, hi):
                cnt = win_count[w, y]
                if cnt >= size and win_hist[w, y, cnt % size] + lat > e:
                    e = win_hist[w, y, cnt % size] + lat
    return e


@njit(cache=True, allocates=False)
def commit(node, win, win_role, cmds, T, Tsub, win_hist, win_count, chan, counts, c, s, t):
    """Record that command c scoped at node s issued at cycle t (t never decreases per channel)."""
    commit_repeat(node, cmds, T, Tsub, chan, counts, c, s, t)
    ls = node[s, N_LEVEL]
    # K_REPEAT is -1 exactly for the commands that take part in a window rule
    for w in range(win.shape[0] if cmds[c, K_REPEAT] < 0 else 0):
        if win_role[w, c] & 1:
            lvl, size = win[w, 0], win[w, 1]
            lo, hi = (node[s, N_ANC + lvl], node[s, N_ANC + lvl] + 1) if ls >= lvl else \
                (node[s, N_LO + lvl], node[s, N_HI + lvl])
            for y in range(lo, hi):
                win_hist[w, y, win_count[w, y] % size] = t
                win_count[w, y] += 1
    ch = node[s, N_ANC]
    chan[ch, C_LAST_CMD] = c
    chan[ch, C_LAST_NODE] = s


@njit(cache=True, allocates=False)
def commit_repeat(node, cmds, T, Tsub, chan, counts, c, s, t):
    """The part of `commit` that a command repeated right after itself on the same node needs: the
    last command and node stay, and it is in no window rule (the fast path's precondition)."""
    T[s, c] = t
    for up in range(node[s, N_LEVEL] + 1):
        Tsub[node[s, N_ANC + up], c] = t
    ch = node[s, N_ANC]
    chan[ch, C_PREV] = t
    counts[ch, c] += 1
    done = t + cmds[c, K_DONE]
    if done > chan[ch, C_END]:
        chan[ch, C_END] = done


@njit(cache=True, allocates=False)
def bank_range(node, params, s):
    base = params[P_BASE + 3]
    return node[s, N_LO + 3] - base, node[s, N_HI + 3] - base


@njit(cache=True, allocates=False)
def check_state(node, cmds, params, bank, c, s, row, err):
    """Whether command c at node s is legal in the stream's view of bank state; fills err if not."""
    eff = cmds[c, K_EFFECT]
    if eff == E_NONE or eff == E_CLOSE:
        return True
    lo, hi = bank_range(node, params, s)
    for b in range(lo, hi):
        want = bank[b, B_WANT]
        bad = 0
        if eff == E_ACCESS:
            if want < 0:
                bad = ERR_CLOSED
            elif row >= 0 and want != row:
                bad = ERR_ROW
        elif want >= 0:
            bad = ERR_OPEN if eff == E_OPEN else ERR_REF_OPEN
        if bad:
            err[0] = bad
            err[2] = params[P_BASE + 3] + b
            err[3] = want
            return False
    return True


@njit(cache=True, allocates=False)
def apply_effect(node, cmds, params, bank, chan, c, s, row, internal):
    """Change bank state for command c; ``internal`` marks refresh-related commands the kernel added."""
    eff = cmds[c, K_EFFECT]
    if eff == E_NONE or eff == E_REFRESH:
        return
    lo, hi = bank_range(node, params, s)
    ch = node[s, N_ANC]
    if eff == E_OPEN:
        for b in range(lo, hi):
            if bank[b, B_WANT] >= 0 and bank[b, B_OPEN] < 0:
                chan[ch, C_PENDING] -= 1
            if internal and bank[b, B_FRESH]:
                # reopening after a refresh a row the stream opened but has not used yet: the
                # stream's activation still decides whether its first access was a miss or conflict
                kind = bank[b, B_KIND]
            else:
                kind = 2 if (not internal) and bank[b, B_LAST] >= 0 and bank[b, B_LAST] != row else 1
            bank[b, B_OPEN] = row
            bank[b, B_WANT] = row
            bank[b, B_FRESH] = 1
            bank[b, B_KIND] = kind
    elif eff == E_CLOSE:
        for b in range(lo, hi):
            pending = bank[b, B_WANT] >= 0 and bank[b, B_OPEN] < 0
            if not internal:
                if bank[b, B_WANT] >= 0:
                    bank[b, B_LAST] = bank[b, B_WANT]
                bank[b, B_WANT] = -1
            bank[b, B_OPEN] = -1
            chan[ch, C_PENDING] += int(bank[b, B_WANT] >= 0) - int(pending)
    else:  # access: a hit unless it is the first access after an activation
        kind = 0
        for b in range(lo, hi):
            if bank[b, B_FRESH]:
                if kind == 0:
                    kind = bank[b, B_KIND]
                bank[b, B_FRESH] = 0
        chan[ch, C_HITS + kind] += 1


@njit(cache=True, allocates=False)
def reopen_step(node, cmds, params, bank, s):
    """The next activate needed to reopen rows a refresh closed under node s: (cmd, node, row), cmd -1 if none.

    All banks under an all-bank command that wait for the same row are reopened with one all-bank
    activate where the standard has one; otherwise bank by bank.
    """
    lo, hi = bank_range(node, params, s)
    first = -1
    same = True
    for b in range(lo, hi):
        if bank[b, B_WANT] >= 0 and bank[b, B_OPEN] < 0:
            if first < 0:
                first = b
        if bank[b, B_WANT] != bank[lo, B_WANT] or bank[b, B_OPEN] >= 0:
            same = False
    if first < 0:
        return -1, -1, -1
    act_all = params[P_ACTAB]
    if hi - lo > 1 and same and act_all >= 0 and cmds[act_all, K_SCOPE] == node[s, N_LEVEL]:
        return act_all, s, bank[first, B_WANT]
    return params[P_ACT], params[P_BASE + 3] + first, bank[first, B_WANT]


@njit(cache=True, allocates=False)
def refresh_step(node, params, bank, rk, due):
    """The next command of the refresh of rank node rk due at cycle `due`, and the node it addresses.

    All-bank: the close command (PREA) while a bank of the rank is open, then the refresh, both at the
    rank. Per-bank: the same for one bank, the rank's banks in turn (the k-th refresh of a rank, due at
    about (k + 1) intervals, refreshes bank k modulo the banks per rank)."""
    lo, hi = bank_range(node, params, rk)
    if params[P_PER_BANK]:
        b = lo + (due // params[P_NREFI]) % (hi - lo)
        target = params[P_BASE + 3] + b
        if bank[b, B_OPEN] >= 0:
            return params[P_PREA], target
        return params[P_REF], target
    for b in range(lo, hi):
        if bank[b, B_OPEN] >= 0:
            return params[P_PREA], rk
    return params[P_REF], rk


@njit(cache=True, allocates=False)
def rule_latency(rules, rule_ptr, c, p):
    """The longest delay command p imposes on command c (any level), 0 if none."""
    lat = 0
    for k in range(rule_ptr[c], rule_ptr[c + 1]):
        if rules[k, 0] == p:
            for lvl in range(1, rules.shape[1]):
                if rules[k, lvl] > lat:
                    lat = rules[k, lvl]
    return lat


@njit(cache=True, allocates=False)
def skip_idle_refreshes(node, win, win_role, cmds, T, Tsub, win_hist, win_count, bank, chan, counts, ref_due,
                        params, rk, until):
    """Account for every refresh falling due before cycle `until` on an idle, closed rank at once.

    Refresh j of the stretch would issue exactly at its due cycle (nothing else is going on, and
    REF->REF is shorter than nREFI), and only the latest one can still constrain anything, so the
    state after issuing them one by one equals the state after issuing the second-to-last one and
    counting the others. The last one is left to the caller, issued normally. Returns how many were
    accounted for (0 if the stretch holds fewer than three, or a bank is open).
    """
    rank_base = params[P_BASE + 1]
    due = ref_due[rk - rank_base]
    n_refi = params[P_NREFI]
    if until < due + 2 * n_refi or params[P_PER_BANK]:  # per-bank refreshes, each on its own bank: one by one
        return 0
    lo, hi = bank_range(node, params, rk)
    for b in range(lo, hi):
        if bank[b, B_OPEN] >= 0:
            return 0
    m = (until - due) // n_refi + 1  # refreshes due at or before `until`
    ref = params[P_REF]
    commit(node, win, win_role, cmds, T, Tsub, win_hist, win_count, chan, counts, ref, rk, due + (m - 2) * n_refi)
    ch = node[rk, N_ANC]
    counts[ch, ref] += m - 2
    chan[ch, C_INSERTED] += m - 1
    ref_due[rk - rank_base] = due + (m - 1) * n_refi
    return m - 1


@njit(cache=True)
def grow(rec, need):
    if need <= rec.shape[0]:
        return rec
    bigger = np.empty((max(need, 2 * rec.shape[0]), rec.shape[1]), np.int64)
    bigger[: rec.shape[0]] = rec
    return bigger
