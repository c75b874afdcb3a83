"""The command-stream kernel: issue every command of a stream in order at its earliest legal cycle.

Per channel the stream is issued in order (a command never issues before the one ahead of it on the
same channel); channels are independent. Refresh is included: when the next command could not issue
before a refresh falls due, the kernel closes the rank (PREA), refreshes it (REF), and reopens, just
before the next column command that needs them, the rows the refresh closed. Idle time costs nothing:
the kernel jumps from one issue cycle to the next.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numba
import numpy as np
from numba import prange

from pimsim._numba_cache import njit
from pimsim.dram.periods import (
    A_PREV,
    B_PREV,
    G_DROW,
    G_LEN,
    G_MORE,
    G_POS,
    new_snapshot,
    skip_periods,
    take_snapshot,
)
from pimsim.dram.timing_state import (
    C_HITS,
    C_INSERTED,
    C_LAST_CMD,
    C_LAST_NODE,
    C_LAST_ROW,
    C_PENDING,
    C_PREV,
    E_ACCESS,
    E_NONE,
    ERR_STUCK,
    K_EFFECT,
    K_REPEAT,
    MAX_REFRESH_WAITS,
    N_ANC,
    N_LEVEL,
    P_BASE,
    P_GAP,
    P_NREFI,
    P_RANKS,
    P_REF,
    P_REFRESH_ON,
    Spec,
    State,
    apply_effect,
    channel_floor,
    check_state,
    commit,
    commit_repeat,
    earliest,
    grow,
    new_state,
    refresh_step,
    reopen_step,
    rule_latency,
    skip_idle_refreshes,
)
from pimsim.dram.twins import catch_up, copy_run, equivalent, keep

# a chain is dropped after this many group starts in a row that were not group g moved (its copies are
# then taken afresh): assumed, a steady sweep comes back within a group or two of a refresh
MAX_CHAIN_FAILS = 3
NEG_DUE = -1  # placeholder refresh due time where refresh is off (never compared)
# the error row every run returns: code, stream index, bank node, open row (an error's), and two counters
# of period groups committed at once (what tests read to see the skip taken): in all, and those after
# the channel's first inserted command (a refresh, a reopen)
ERR_SLOTS = 6
E_GROUPS_SKIPPED, E_GROUPS_SKIPPED_AFTER_INSERT = 4, 5

# columns of the record of issued commands
REC_CYCLE, REC_CMD, REC_NODE, REC_ROW, REC_COL, REC_SRC = range(6)


@njit(cache=True)
def _append(rec, nrec, t, c, s, row, col, src):
    """Add one issued command to the record, growing it when full."""
    rec = grow(rec, nrec + 1)
    rec[nrec, REC_CYCLE], rec[nrec, REC_CMD], rec[nrec, REC_NODE] = t, c, s
    rec[nrec, REC_ROW], rec[nrec, REC_COL], rec[nrec, REC_SRC] = row, col, src
    return rec, nrec + 1


@njit(cache=True)
def _run(spec, state, cmd, node_of, row, col, tmin, record, auto_refresh, issue_cycles, run_last, groups):
    node, rules, rule_ptr, win, win_role, cmds, params = spec
    T, Tsub, win_hist, win_count, bank, chan, counts, ref_due = state
    n = cmd.shape[0]
    issue_at = np.full(n if issue_cycles else 1, -1, np.int64)
    rec = np.empty((n + 64 if record else 1, 6), np.int64)
    err = np.zeros(ERR_SLOTS, np.int64)
    refresh_on = params[P_REFRESH_ON] != 0 and auto_refresh
    tstride = 1 if tmin.shape[0] > 1 else 0
    istride = 1 if issue_cycles else 0
    rec, nrec = _issue(node, rules, rule_ptr, win, win_role, cmds, params,
                       T, Tsub, win_hist, win_count, bank, chan, counts, ref_due,
                       cmd, node_of, row, col, tmin, tstride, 0, n,
                       issue_at, istride, rec, err, record, refresh_on, run_last, groups)
    return issue_at, rec[:nrec], err


@njit(cache=True)
def _run_into(node, rules, rule_ptr, win, win_role, cmds, params, T, Tsub, win_hist, win_count, bank, chan, counts,
              ref_due, cmd, node_of, row, col, tmin, auto_refresh, run_last, groups, err):
    """`_run` for a caller that needs only the state: no record, no issue cycles, the error into `err`,
    nothing returned. The arrays one by one, not as the Spec and State tuples: numba's dispatcher types
    a tuple argument in Python, an array in C, and returning arrays boxes them (on a short stream these
    cost more than issuing it)."""
    refresh_on = params[P_REFRESH_ON] != 0 and auto_refresh
    tstride = 1 if tmin.shape[0] > 1 else 0
    _issue(node, rules, rule_ptr, win, win_role, cmds, params,
           T, Tsub, win_hist, win_count, bank, chan, counts, ref_due,
           cmd, node_of, row, col, tmin, tstride, 0, cmd.shape[0],
           np.empty(1, np.int64), 0, np.empty((1, 6), np.int64), err, False, refresh_on, run_last, groups)


@njit(cache=True, parallel=True)
def _run_channels(spec, state, cmd, node_of, row, col, tmin, bounds, auto_refresh, issue_cycles, run_last, groups):
    """`_run` with each span bounds[g]:bounds[g + 1] of the stream (the commands of one or more whole
    channels, which share no state with the other spans) issued on its own thread; nothing recorded.

    Per span exactly what the serial kernel does, so the result does not depend on the thread count.
    Returns the issue cycles and an error row per span."""
    node, rules, rule_ptr, win, win_role, cmds, params = spec
    T, Tsub, win_hist, win_count, bank, chan, counts, ref_due = state
    n = cmd.shape[0]
    spans = bounds.shape[0] - 1
    issue_at = np.full(n if issue_cycles else spans, -1, np.int64)
    tstride = 1 if tmin.shape[0] > 1 else 0
    errs = np.zeros((spans, ERR_SLOTS), np.int64)
    refresh_on = params[P_REFRESH_ON] != 0 and auto_refresh
    istride = 1 if issue_cycles else 0
    for g in prange(spans):
        # without issue cycles each span writes its own unread slot, so no two threads share one
        at = issue_at if issue_cycles else issue_at[g:g + 1]
        _issue(node, rules, rule_ptr, win, win_role, cmds, params,
               T, Tsub, win_hist, win_count, bank, chan, counts, ref_due,
               cmd, node_of, row, col, tmin, tstride, bounds[g], bounds[g + 1], at, istride,
               np.empty((1, 6), np.int64), errs[g], False, refresh_on, run_last, groups)
    return issue_at, errs


@njit(cache=True)
def _run_twins(node, rules, rule_ptr, win, win_role, cmds, params, T, Tsub, win_hist, win_count, bank, chan, counts,
               ref_due, cmd, node_of, row, col, start, bounds, span_ch, rep, uses, lat_from, auto_refresh, run_last,
               groups, err):
    """`_run_into` from one start cycle of a stream grouped by channel (span g: positions
    bounds[g]:bounds[g + 1], channel span_ch[g]) where span g issues what span rep[g] issues: a span whose
    channel starts equivalent to its representative's is not issued but copied from it afterwards
    (:mod:`pimsim.dram.twins`; ``uses[g]``: :func:`pimsim.dram.twins.bank_uses` of span g). Each span's
    channel first catches up with the refreshes due before it can start (what its first command would do
    first). Spans are issued in order and the first error stops the run. Returns how many spans were copied."""
    refresh_on = params[P_REFRESH_ON] != 0 and auto_refresh
    tmin = np.full(1, start, np.int64)
    spans = bounds.shape[0] - 1
    twin = np.zeros(spans, np.bool_)
    copied = 0
    if refresh_on:
        for g in range(spans):
            catch_up(node, rules, rule_ptr, win, win_role, cmds, params, T, Tsub, win_hist, win_count, bank, chan,
                     counts, ref_due, span_ch[g], tmin[0])
    for g in range(spans):
        if rep[g] != g:
            first = bounds[rep[g]]
            twin[g] = equivalent(node, cmds, params, win, lat_from, T, Tsub, win_hist, win_count, bank, chan, ref_due,
                                 span_ch[rep[g]], span_ch[g], tmin[0], uses[rep[g]], row, cmd[first],
                                 node_of[first], row[first])
            copied += twin[g]
    unread = np.empty(1, np.int64)
    no_record = np.empty((1, 6), np.int64)
    for g in range(spans):
        if twin[g]:
            continue
        kept = keep(node, T, Tsub, win_count, chan, counts, span_ch[g])  # (a few hundred numbers)
        _issue(node, rules, rule_ptr, win, win_role, cmds, params, T, Tsub, win_hist, win_count, bank, chan,
               counts, ref_due, cmd, node_of, row, col, tmin, 0, bounds[g], bounds[g + 1], unread, 0,
               no_record, err, False, refresh_on, run_last, groups)
        if err[0]:
            return 0
        for h in range(g + 1, spans):
            if twin[h] and rep[h] == g:
                copy_run(node, params, win, T, Tsub, win_hist, win_count, bank, chan, counts, ref_due,
                         span_ch[g], span_ch[h], kept, uses[g])
    return copied


@njit(cache=True, parallel=True)
def _run_states(spec, T, Tsub, win_hist, win_count, bank, chan, counts, ref_due, cmd, node_of, row, col, tmin,
                auto_refresh):
    """One stream issued into each of several states (the leading index of every state array), on
    numba's threads; nothing recorded, no issue cycles kept. Returns an error row per state."""
    node, rules, rule_ptr, win, win_role, cmds, params = spec
    runs = T.shape[0]
    n = cmd.shape[0]
    tstride = 1 if tmin.shape[0] > 1 else 0
    errs = np.zeros((runs, ERR_SLOTS), np.int64)
    unread = np.zeros(runs, np.int64)
    no_runs = np.empty(0, np.int64)
    refresh_on = params[P_REFRESH_ON] != 0 and auto_refresh
    for j in prange(runs):
        _issue(node, rules, rule_ptr, win, win_role, cmds, params,
               T[j], Tsub[j], win_hist[j], win_count[j], bank[j], chan[j], counts[j], ref_due[j],
               cmd, node_of, row, col, tmin, tstride, 0, n, unread[j:j + 1], 0,
               np.empty((1, 6), np.int64), errs[j], False, refresh_on, no_runs, None)
    return errs


@njit(cache=True)
def _issue(node, rules, rule_ptr, win, win_role, cmds, params, T, Tsub, win_hist, win_count, bank, chan, counts,
           ref_due, cmd, node_of, row, col, tmin, tstride, lo, n, issue_at, istride, rec, err, record,
           refresh_on, run_last, groups):
    """Issue commands lo..n-1 of the stream in order; returns the record and its length. Stops at the
    first command that breaks the bank protocol or cannot fit between refreshes (err filled).

    Command i may issue no earlier than tmin[i * tstride] and its issue cycle goes to
    issue_at[i * istride]: a stride of 0 reads one start time for all and keeps no issue cycles (the
    engine's streams all start at one time, and it needs only the state; reading and writing two
    arrays as long as the stream costs about as much as issuing its row sweeps).

    ``run_last`` (from :func:`repeat_runs`, or empty): for each command, the stream index of the last
    command of the run of the same command, node and row that holds it. With it and one start time, a
    run of repeats issues in closed form instead of command by command.

    ``groups`` (from :func:`pimsim.dram.periods.period_groups`, or None): stretches that repeat with a
    fixed period. With them and one start time, the channel's State is kept at the start of such a group
    and compared with the State at the start of the next; where the second is the first moved by one
    period, the groups after it are committed at once (:func:`pimsim.dram.periods.skip_periods`)."""
    nrec = 0
    rank_base = params[P_BASE + 1]
    # Period skipping: only with one start time (a per-command one breaks the shift) and nothing recorded.
    # ``groups`` is None where the caller has none: numba then compiles this function without any of it
    # (it prunes the branches on ``groups is not None``), and the per-command path keeps its speed.
    ngroups = 0
    ga = 0  # the next group start at or after i
    check_at = -1  # where a snapshot waits to be compared (the start of the next group), -1 if none
    snap_pos, snap_len, snap_more, snap_drow, snap_ch, snapped = 0, 0, 0, 0, 0, False
    # a chain whose group g (at snap_pos) proved periodic: period, next group start, end, failed tries
    chain_on, chain_period, chain_next, chain_end, chain_fails = False, 0, 0, 0, 0
    if groups is not None:
        ngroups = groups.shape[0] if tstride == 0 and not record else 0
        snap = new_snapshot(node, rules, win, T, win_hist, bank, chan, ngroups > 0)
        lo_g, hi_g = 0, ngroups  # the first group at or after lo
        while lo_g < hi_g:
            mid = (lo_g + hi_g) // 2
            if groups[mid, G_POS] < lo:
                lo_g = mid + 1
            else:
                hi_g = mid
        ga = lo_g
    i = lo - 1
    while i + 1 < n:  # a while loop: the fast path below consumes whole runs of commands at once
        i += 1
        if groups is not None and ngroups > 0:
            skipped = 0
            if chain_on:
                # a chain proved periodic: each of its group starts is compared with group g's (copy A)
                while chain_next < i:
                    chain_next += snap_len
                if node[node_of[i], N_ANC] != snap_ch or i >= chain_end or chain_fails >= MAX_CHAIN_FAILS:
                    chain_on = False
                elif i == chain_next:
                    m = (i - snap_pos) // snap_len
                    skipped = skip_periods(node, win, params, T, Tsub, win_hist, win_count, bank, chan, counts,
                                           ref_due, snap_ch, refresh_on, snap, snap_more - m + 1, chain_period,
                                           chan[snap_ch, C_PREV] - snap[A_PREV][C_PREV], m * snap_drow, snap_drow,
                                           False)
                    chain_fails = 0 if skipped else chain_fails + 1
                    chain_next += snap_len
            elif i == check_at:
                check_at = -1
                chain_period = chan[snap_ch, C_PREV] - snap[A_PREV][C_PREV]
                skipped = skip_periods(node, win, params, T, Tsub, win_hist, win_count, bank, chan, counts, ref_due,
                                       snap_ch, refresh_on, snap, snap_more, chain_period, chain_period, snap_drow,
                                       snap_drow, True)
                if skipped:
                    chain_on, chain_fails = True, 0
                    chain_next, chain_end = i + snap_len, snap_pos + (snap_more + 1) * snap_len
            if skipped:
                err[E_GROUPS_SKIPPED] += skipped
                if chan[snap_ch, C_INSERTED] > 0:
                    err[E_GROUPS_SKIPPED_AFTER_INSERT] += skipped
                if istride:  # the j-th group from here issues each command as group g did, moved q + j p
                    q = chan[snap_ch, C_PREV] - snap[B_PREV][C_PREV] - (skipped - 1) * chain_period
                    for u in range(skipped * snap_len):
                        issue_at[i + u] = issue_at[snap_pos + u % snap_len] + q + (u // snap_len) * chain_period
                i += skipped * snap_len
                chain_next = i
                if i >= n:
                    break
            while ga < ngroups and groups[ga, G_POS] < i:
                ga += 1
            # a snapshot at each group start while none waits (and no chain is followed); a shorter period
            # replaces a waiting one (a period spanning many rows rarely passes between two refreshes)
            if not chain_on and ga < ngroups and groups[ga, G_POS] == i and \
                    (check_at < 0 or groups[ga, G_LEN] < snap_len):
                ch0 = node[node_of[i], N_ANC]
                # the start time must not bind any more, and no refresh-closed row may wait to reopen
                if chan[ch0, C_PREV] + params[P_GAP] >= tmin[0] and chan[ch0, C_PENDING] == 0:
                    # the next group of the chain kept before reads and writes the same parts of the State
                    same = snapped and i == snap_pos + snap_len and groups[ga, G_LEN] == snap_len and ch0 == snap_ch
                    snap_pos, snap_len, snapped = i, groups[ga, G_LEN], True
                    take_snapshot(node, cmds, win, win_role, params, T, Tsub, win_hist, win_count, bank, chan,
                                  counts, ch0, cmd, node_of, run_last, i, snap_len, snap, same)
                    snap_more, snap_drow, snap_ch = groups[ga, G_MORE], groups[ga, G_DROW], ch0
                    check_at = i + snap_len
        c, s = cmd[i], node_of[i]
        ch = node[s, N_ANC]
        rk = node[s, N_ANC + 1] if node[s, N_LEVEL] >= 1 else rank_base + ch * params[P_RANKS]
        # Fast path: the same column command again on the same node and row, nothing issued in
        # between on this channel (PIM row sweeps are runs of MACAB; input vectors runs of WRGB), or
        # the same command that touches no bank state. Only its own rules can bind, from the previous
        # issue; bank state is unchanged, so it is legal (and, for a column access, a row hit).
        # Exactly what the slow path gives.
        gap = cmds[c, K_REPEAT]
        eff = cmds[c, K_EFFECT]
        access = eff == E_ACCESS
        if (gap >= 0 and chan[ch, C_LAST_CMD] == c and chan[ch, C_LAST_NODE] == s
                and (access or eff == E_NONE) and row[i] == chan[ch, C_LAST_ROW]):
            t = max(chan[ch, C_PREV] + gap, tmin[i * tstride])
            if not (refresh_on and t >= ref_due[rk - rank_base]):
                issue_at[i * istride] = t
                if record:
                    rec, nrec = _append(rec, nrec, t, c, s, row[i], col[i], i)
                else:
                    # the rest of the run at once: only the last repeat's issue needs committing, the
                    # ones between are overwritten by it (counts and hits are added up)
                    due = ref_due[rk - rank_base] if refresh_on else NEG_DUE
                    more = 0
                    if run_last.shape[0] > 0 and tstride == 0:
                        # closed form: with one start time each repeat after this one issues `gap`
                        # after the one before it (t >= tmin already), up to the end of the run or
                        # the last one before the refresh falls due (the loop below then stops at
                        # once and the next command takes the full path, as command by command)
                        more = min(run_last[i], n - 1) - i
                        if refresh_on and gap > 0 and (due - 1 - t) // gap < more:
                            more = (due - 1 - t) // gap
                        if istride:
                            for k in range(1, more + 1):
                                issue_at[i + k] = t + k * gap
                        i += more
                        t += more * gap
                        issue_at[i * istride] = t
                    while (i + 1 < n and cmd[i + 1] == c and node_of[i + 1] == s and row[i + 1] == row[i]):
                        nxt = max(t + gap, tmin[(i + 1) * tstride])
                        if refresh_on and nxt >= due:
                            break
                        i += 1
                        t = nxt
                        issue_at[i * istride] = t
                        more += 1
                    counts[ch, c] += more
                    if access:
                        chan[ch, C_HITS] += more
                commit_repeat(node, cmds, T, Tsub, chan, counts, c, s, t)
                if access:
                    chan[ch, C_HITS] += 1
                continue
        if not check_state(node, cmds, params, bank, c, s, row[i], err):
            err[1] = i
            return rec, nrec
        waits = 0  # refreshes this command waited through because it did not fit before them
        while True:
            # Either the command itself issues (xc < 0 after this block) or the kernel first adds one
            # command: a step of a due refresh, or an activate reopening a row a refresh closed.
            xc, xs, xr, t = -1, -1, -1, 0
            due = ref_due[rk - rank_base]
            floor = channel_floor(params, chan, ch)
            lb = max(tmin[i * tstride], floor)
            if refresh_on and lb >= due:
                # the command cannot issue before the refresh is due: refresh first; a long idle
                # stretch is accounted for at once unless every command is being recorded
                if not record and skip_idle_refreshes(node, win, win_role, cmds, T, Tsub, win_hist, win_count,
                                                      bank, chan, counts, ref_due, params, rk, lb) > 0:
                    continue
                xc = -2
            else:
                if chan[ch, C_PENDING] > 0 and cmds[c, K_EFFECT] == E_ACCESS:
                    xc, xs, xr = reopen_step(node, cmds, params, bank, s)
                if xc >= 0:
                    t = earliest(node, rules, rule_ptr, win, win_role, T, Tsub, win_hist, win_count,
                                 xc, xs, floor)
                    # reopening is wasted if the command itself would then miss the refresh
                    if refresh_on and max(t + rule_latency(rules, rule_ptr, c, xc), tmin[i * tstride]) >= due:
                        xc = -3
                else:
                    t = earliest(node, rules, rule_ptr, win, win_role, T, Tsub, win_hist, win_count,
                                 c, s, lb)
                    if refresh_on and t >= due:
                        xc = -3
            if xc <= -2:
                if xc == -3:
                    waits += 1
                    if waits > MAX_REFRESH_WAITS:
                        err[0], err[1], err[2], err[3] = ERR_STUCK, i, s, waits
                        return rec, nrec
                xc, xs = refresh_step(node, params, bank, rk, due)
                xr = -1
                t = earliest(node, rules, rule_ptr, win, win_role, T, Tsub, win_hist, win_count,
                             xc, xs, max(due, floor))
                if xc == params[P_REF]:
                    ref_due[rk - rank_base] += params[P_NREFI]
            if xc < 0:
                break
            commit(node, win, win_role, cmds, T, Tsub, win_hist, win_count, chan, counts, xc, xs, t)
            apply_effect(node, cmds, params, bank, chan, xc, xs, xr, True)
            chan[ch, C_INSERTED] += 1
            if record:
                rec, nrec = _append(rec, nrec, t, xc, xs, xr, -1, -1)
        commit(node, win, win_role, cmds, T, Tsub, win_hist, win_count, chan, counts, c, s, t)
        apply_effect(node, cmds, params, bank, chan, c, s, row[i], False)
        chan[ch, C_LAST_ROW] = row[i]
        issue_at[i * istride] = t
        if record:
            rec, nrec = _append(rec, nrec, t, c, s, row[i], col[i], i)
    return rec, nrec


NO_RUNS = np.empty(0, np.int64)  # run_last for a stream whose runs are found command by command


def repeat_runs(cmd: np.ndarray, node: np.ndarray, row: np.ndarray) -> np.ndarray:
    """For each command, the index of the last command of its run: the stretch of the stream that
    repeats one command on one node and row (the kernel's ``run_last``). Worth computing once for a
    stream issued many times (the engine's, one per layer and token)."""
    n = len(cmd)
    if n == 0:
        return NO_RUNS
    last = np.ones(n, bool)  # command i ends its run
    last[:-1] = (cmd[1:] != cmd[:-1]) | (node[1:] != node[:-1]) | (row[1:] != row[:-1])
    ends = np.flatnonzero(last)
    return np.repeat(ends, np.diff(ends, prepend=-1)).astype(np.int64)


def run_commands(spec: Spec, cmd, node, row, col, tmin, record: bool = False, auto_refresh: bool = True,
                 state: State | None = None, issue_cycles: bool = True, runs: np.ndarray | None = None,
                 periods: np.ndarray | None = None):
    """Issue a command stream; returns (state, issue cycle per command, record of all issued, error).

    ``tmin``: the earliest issue cycle of each command, or one for all of them. ``issue_cycles=False``
    keeps no issue cycle per command (None in their place): the state is all the engine needs.

    ``state`` continues an earlier run (the engine issues a model's streams one after another into
    one DRAM state); by default the memory starts idle.

    ``auto_refresh=False`` leaves refresh to the stream itself (a stream that contains REF commands,
    such as a replayed ``--emit-commands`` file), even where the config enables refresh.

    ``runs``: :func:`repeat_runs` of the stream where the caller keeps it (the same result, sooner).
    ``periods``: :func:`pimsim.dram.periods.period_groups` of the stream (the same result, sooner again,
    where rows repeat with a fixed period; used only with one start cycle for every command).

    ``err[0]`` is 0 on success, else an error code of :mod:`pimsim.dram.timing_state` with the stream
    index in ``err[1]``; the state then holds the commands issued before it. ``err[E_GROUPS_SKIPPED]``
    counts the period groups committed at once (see ERR_SLOTS).
    """
    state = new_state(spec) if state is None else state
    tmin = _start_times(tmin, len(cmd))
    issue_at, rec, err = _run(spec, state, cmd, node, row, col, tmin, record, auto_refresh, issue_cycles,
                              _run_ends(runs, len(cmd)), _groups(periods, len(cmd)))
    return state, issue_at if issue_cycles else None, rec, err


def issue_into(spec: Spec, state: State, cmd, node, row, col, start_cycle: int, runs: np.ndarray | None = None,
               periods: np.ndarray | None = None, checked: bool = False) -> np.ndarray:
    """:func:`run_commands` of a stream whose commands may all issue from ``start_cycle``, into ``state``,
    for a caller that needs only the state (nothing recorded, no issue cycles): returns the error row
    (``err[0]`` 0 on success). The engine's path: it issues hundreds of streams per token. ``checked``:
    ``runs`` and ``periods`` are :func:`repeat_runs` and :func:`pimsim.dram.periods.period_groups` of these
    very commands (a caller that derived them once and issues the stream again and again), so their fit
    is not checked again (the check costs about what issuing a short stream does)."""
    err = np.zeros(ERR_SLOTS, np.int64)
    _run_into(*spec, *state, cmd, node, row, col, np.full(1, start_cycle, np.int64), True,
              _run_ends(runs, len(cmd)), _groups(periods, len(cmd), checked), err)
    return err


def issue_twins(spec: Spec, state: State, cmd, node, row, col, start_cycle: int, bounds: np.ndarray,
                span_channel: np.ndarray, representative: np.ndarray, uses: np.ndarray, latency_from: np.ndarray,
                runs: np.ndarray | None = None, periods: np.ndarray | None = None, checked: bool = False
                ) -> tuple[np.ndarray, int]:
    """:func:`issue_into` of a stream grouped by channel, each channel's commands issued only where it does not
    start equivalent to its kind's representative (:mod:`pimsim.dram.twins`): span g (positions
    ``bounds[g]:bounds[g + 1]``, all on channel ``span_channel[g]``) issues what span ``representative[g]``
    issues, a span of its own kind naming itself; ``uses[g]``: :func:`pimsim.dram.twins.bank_uses` of span g
    (read for representatives only). The same State as :func:`issue_into`. ``latency_from``:
    :func:`pimsim.dram.periods.latency_from` of the spec's rules; ``checked``: as :func:`issue_into`'s.
    Returns the error row (its index, if any, a position in the stream as given) and how many channels
    were copied."""
    err = np.zeros(ERR_SLOTS, np.int64)
    copied = _run_twins(*spec, *state, cmd, node, row, col, start_cycle, bounds, span_channel, representative, uses,
                        latency_from, True, _run_ends(runs, len(cmd)), _groups(periods, len(cmd), checked), err)
    return err, int(copied)


@dataclass(frozen=True)
class ChannelSplit:
    """A stream cut into spans of whole channels, for :func:`run_commands_parallel`."""

    order: np.ndarray | None  # stream positions grouped by channel (stable); None where already grouped
    bounds: np.ndarray  # int64[spans + 1]: span g is positions bounds[g]:bounds[g + 1] (of order, if any)

    @property
    def spans(self) -> int:
        return len(self.bounds) - 1


def split_by_channel(channel: np.ndarray) -> ChannelSplit:
    """One span per channel that the stream uses (``channel``: the channel of each command)."""
    if len(channel) == 0:
        return ChannelSplit(None, np.zeros(1, np.int64))
    change = np.flatnonzero(channel[1:] != channel[:-1]) + 1
    if len(np.unique(channel)) == len(change) + 1:  # each channel's commands already lie together
        return ChannelSplit(None, np.concatenate(([0], change, [len(channel)])).astype(np.int64))
    order = np.argsort(channel, kind="stable")
    grouped = channel[order]
    change = np.flatnonzero(grouped[1:] != grouped[:-1]) + 1
    return ChannelSplit(order, np.concatenate(([0], change, [len(channel)])).astype(np.int64))


_first_pid: list[int] = []  # the process that first asked for threads


def threads() -> int:
    """The threads the parallel kernels may use: numba's (NUMBA_NUM_THREADS, numba.set_num_threads), but
    1 in a process forked from one that may have run them already (a sweep's or a user's process pool):
    GNU OpenMP, numba's usual threading layer on Linux, cannot start threads in such a child (numba
    stops the process), so there the serial kernel runs, with the same results."""
    if not _first_pid:
        _first_pid.append(os.getpid())
    elif _first_pid[0] != os.getpid():
        return 1
    return numba.get_num_threads()


def run_commands_parallel(spec: Spec, split: ChannelSplit, cmd, node, row, col, tmin, state: State,
                          auto_refresh: bool = True, issue_cycles: bool = True, runs: np.ndarray | None = None,
                          periods: np.ndarray | None = None):
    """:func:`run_commands` with the stream's channels issued on numba's threads (nothing recorded).

    Channels share no timing or bank state, and each is issued exactly as the serial kernel issues it,
    so the state and issue cycles equal the serial kernel's for any thread count. The error is the
    serial kernel's (the failing command earliest in the stream), but after an error the other
    channels have carried on to their own end: use it where an error ends the run.

    ``runs``, ``periods``: :func:`repeat_runs` and :func:`pimsim.dram.periods.period_groups` of the stream as
    the split orders it (``split.order`` applied).
    """
    tmin = _start_times(tmin, len(cmd))
    order = split.order
    if order is not None:
        cmd, node, row, col = cmd[order], node[order], row[order], col[order]
        tmin = tmin[order] if len(tmin) > 1 else tmin
    issue_at, errs = _run_channels(spec, state, cmd, node, row, col, tmin, split.bounds, auto_refresh, issue_cycles,
                                   _run_ends(runs, len(cmd)), _groups(periods, len(cmd)))
    err = np.zeros(ERR_SLOTS, np.int64)
    failed = np.flatnonzero(errs[:, 0])
    if order is not None and issue_cycles:
        unordered = np.empty_like(issue_at)
        unordered[order] = issue_at
        issue_at = unordered
    if order is not None:
        errs[failed, 1] = order[errs[failed, 1]]
    if len(failed):
        err[:E_GROUPS_SKIPPED] = errs[failed[np.argmin(errs[failed, 1])], :E_GROUPS_SKIPPED]
    err[E_GROUPS_SKIPPED:] = errs[:, E_GROUPS_SKIPPED:].sum(axis=0)
    return state, issue_at if issue_cycles else None, err


def run_commands_into(spec: Spec, states: list[State], cmd, node, row, col, tmin, auto_refresh: bool = True
                      ) -> list[tuple[State, np.ndarray]]:
    """The same stream issued into each of several states (independent runs, such as the same
    stream with refresh falling due at different points), the runs on numba's threads; returns each
    run's state and error, as :func:`run_commands` would (without issue cycles or record)."""
    tmin = _start_times(tmin, len(cmd))
    stacked = [np.stack(arrays) for arrays in zip(*states)]
    errs = _run_states(spec, *stacked, cmd, node, row, col, tmin, auto_refresh)
    return [(State(*(a[j] for a in stacked)), errs[j]) for j in range(len(states))]


def _run_ends(runs, n: int) -> np.ndarray:
    if runs is None:
        return NO_RUNS
    if len(runs) != n:  # the kernel reads them unchecked
        raise ValueError(f"runs holds {len(runs)} run ends for {n} commands (repeat_runs of the same stream)")
    return runs


def _groups(periods, n: int, checked: bool = False) -> np.ndarray | None:
    if periods is None or len(periods) == 0:
        return None  # the kernel compiled without period skipping
    # the kernel reads them unchecked: refuse groups that would run past the stream
    if not checked and (periods.shape[1] != 4 or int((periods[:, G_POS] + (periods[:, G_MORE] + 1)
                                                      * periods[:, G_LEN]).max()) > n):
        raise ValueError(f"periods do not fit a stream of {n} commands (period_groups of the same stream)")
    return periods


def _start_times(tmin, n: int) -> np.ndarray:
    tmin = np.asarray(tmin, np.int64).reshape(-1)
    if len(tmin) != n and len(tmin) != 1:
        raise ValueError(f"tmin holds {len(tmin)} start cycles for {n} commands (one per command, or one for all)")
    return tmin
