"""The command-stream kernel: issue every command of a stream in order at its earliest legal cycle.

Per channel the stream is issued in order (a command never issues before the one ahead of it on the
same channel); channels are independent. Refresh is included: when the next command could not issue
before a refresh falls due, the kernel closes the rank (PREA), refreshes it (REF), and reopens, just
before the next column command that needs them, the rows the refresh closed. Idle time costs nothing:
the kernel jumps from one issue cycle to the next.
"""

from __future__ import annotations

import numpy as np

from pimsim._numba_cache import njit
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

NEG_DUE = -1  # placeholder refresh due time where refresh is off (never compared)

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
def _run(spec, state, cmd, node_of, row, col, tmin, record, auto_refresh):
    node, rules, rule_ptr, win, win_role, cmds, params = spec
    T, Tsub, win_hist, win_count, bank, chan, counts, ref_due = state
    n = cmd.shape[0]
    issue_at = np.full(n, -1, np.int64)
    rec = np.empty((n + 64 if record else 1, 6), np.int64)
    nrec = 0
    err = np.zeros(4, np.int64)  # code, stream index, bank node, open row
    refresh_on = params[P_REFRESH_ON] != 0 and auto_refresh
    rank_base = params[P_BASE + 1]
    i = -1
    while i + 1 < n:  # a while loop: the fast path below consumes whole runs of commands at once
        i += 1
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
            t = max(chan[ch, C_PREV] + gap, tmin[i])
            if not (refresh_on and t >= ref_due[rk - rank_base]):
                issue_at[i] = t
                if record:
                    rec, nrec = _append(rec, nrec, t, c, s, row[i], col[i], i)
                else:
                    # the rest of the run at once: only the last repeat's issue needs committing, the
                    # ones between are overwritten by it (counts and hits are added up)
                    due = ref_due[rk - rank_base] if refresh_on else NEG_DUE
                    more = 0
                    while (i + 1 < n and cmd[i + 1] == c and node_of[i + 1] == s and row[i + 1] == row[i]):
                        nxt = max(t + gap, tmin[i + 1])
                        if refresh_on and nxt >= due:
                            break
                        i += 1
                        t = nxt
                        issue_at[i] = t
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
            return issue_at, rec[:nrec], err
        waits = 0  # refreshes this command waited through because it did not fit before them
        while True:
            # Either the command itself issues (xc < 0 after this block) or the kernel first adds one
            # command: a step of a due refresh, or an activate reopening a row a refresh closed.
            xc, xs, xr, t = -1, -1, -1, 0
            due = ref_due[rk - rank_base]
            floor = channel_floor(params, chan, ch)
            lb = max(tmin[i], floor)
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
                    if refresh_on and max(t + rule_latency(rules, rule_ptr, c, xc), tmin[i]) >= due:
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
                        return issue_at, rec[:nrec], err
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
        issue_at[i] = t
        if record:
            rec, nrec = _append(rec, nrec, t, c, s, row[i], col[i], i)
    return issue_at, rec[:nrec], err


def run_commands(spec: Spec, cmd, node, row, col, tmin, record: bool = False, auto_refresh: bool = True,
                 state: State | None = None):
    """Issue a command stream; returns (state, issue cycle per command, record of all issued, error).

    ``state`` continues an earlier run (the engine issues a model's streams one after another into
    one DRAM state); by default the memory starts idle.

    ``auto_refresh=False`` leaves refresh to the stream itself (a stream that contains REF commands,
    such as a replayed ``--emit-commands`` file), even where the config enables refresh.

    ``err[0]`` is 0 on success, else an error code of :mod:`pimsim.dram.timing_state` with the stream
    index in ``err[1]``; the state then holds the commands issued before it.
    """
    state = new_state(spec) if state is None else state
    issue_at, rec, err = _run(spec, state, cmd, node, row, col, tmin, record, auto_refresh)
    return state, issue_at, rec, err
