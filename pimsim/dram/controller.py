"""A request-level memory controller for plain memory traces (reads and writes to addresses).

One queue per channel, open-row policy, FR-FCFS (or FCFS) scheduling, all-bank refresh. The controller
chooses commands; the timing state of :mod:`pimsim.dram.timing_state` says when each may issue, so
the controller's commands obey exactly the same constraint table as the command-stream kernel.

FR-FCFS in an event-jumping simulator: at each step every channel's candidates are the next command of
each queued request (column command if its row is open, ACT if the bank is closed, PRE on a conflict;
requests to the same bank, row and direction are grouped, as they share their next command).
The earliest cycle any candidate can issue is the next issue cycle; among the candidates ready then,
column commands (row hits) win, then the oldest request. Cycle by cycle FR-FCFS makes the same choice,
because nothing changes on a channel between two of its issues except arrivals, which end a jump.

A request's row outcome is read from the first command issued on its behalf: the column command (a
hit), ACT (a miss) or PRE (a conflict). Requests whose row another request opened count as hits.
"""

from __future__ import annotations

import numpy as np

from pimsim._numba_cache import njit
from pimsim.dram.timing_state import (
    B_OPEN,
    C_INSERTED,
    C_LAST_CMD,
    C_LAST_NODE,
    C_PREV,
    ERR_STUCK,
    K_DONE,
    K_REPEAT,
    MAX_REFRESH_WAITS,
    N_ANC,
    P_BASE,
    P_CHANNELS,
    P_NREFI,
    P_RANKS,
    P_REF,
    P_REFRESH_ON,
    apply_effect,
    channel_floor,
    commit,
    earliest,
    grow,
    new_state,
    refresh_step,
    skip_idle_refreshes,
)

BIG = 1 << 62


@njit(cache=True)
def _pick(node, rules, rule_ptr, win, win_role, T, Tsub, win_hist, win_count, bank, params, cmds, chan,
          ch, g_bank, g_row, g_write, g_head, n_groups, tmin, ids, fcfs, cache, stamp, step):
    """Best (cycle, group, command, node) among channel ch's queued requests; cycle BIG if none.

    Queued requests are kept in groups of the same (bank, row, read/write): every request of a group
    needs the same next command at the same cycle, and its oldest one wins any tie, so one look per
    group decides as a scan of every request in age order would. Takes arrays, not the Spec/State
    tuples: unpacking those on every call costs more than the scan.
    """
    rd, wr, act, pre = ids[0], ids[1], ids[2], ids[3]
    best_t, best_g, best_cmd, best_node, best_col, best_age = BIG, -1, -1, -1, False, BIG
    base = params[P_BASE + 3]
    first, last = 0, n_groups[ch]
    if fcfs and last > 0:  # only the oldest request of the channel may go
        for g in range(1, last):
            if g_head[ch, g] < g_head[ch, first]:
                first = g
        last = first + 1
    for g in range(first, last):
        b = g_bank[ch, g]
        age = g_head[ch, g]
        open_row = bank[b - base, B_OPEN]
        if open_row == g_row[ch, g]:
            c, k, col = (wr, 1, True) if g_write[ch, g] else (rd, 0, True)
        elif open_row < 0:
            c, k, col = act, 2, False
        else:
            c, k, col = pre, 3, False
        if stamp[b - base, k] == step:
            t = cache[b - base, k]
        else:
            if cmds[c, K_REPEAT] >= 0 and chan[ch, C_LAST_CMD] == c and chan[ch, C_LAST_NODE] == b:
                # the channel's last command was this one on this node: only its own rules can bind
                # (the kernel's fast path; see pimsim.dram.kernel)
                t = max(tmin, chan[ch, C_PREV] + cmds[c, K_REPEAT])
            else:
                t = earliest(node, rules, rule_ptr, win, win_role, T, Tsub, win_hist, win_count, c, b, tmin)
            cache[b - base, k] = t
            stamp[b - base, k] = step
        if t < best_t or (t == best_t and ((col and not best_col) or (col == best_col and age < best_age))):
            best_t, best_g, best_cmd, best_node, best_col, best_age = t, g, c, b, col, age
    return best_t, best_g, best_cmd, best_node


@njit(cache=True)
def _serve(spec, state, arrival, is_write, bank_of, row, column, max_outstanding, depth, fcfs, ids, record):
    node, rules, rule_ptr, win, win_role, cmds, params = spec
    T, Tsub, win_hist, win_count, bank, chan, counts, ref_due = state
    rd, wr, act = ids[0], ids[1], ids[2]
    n = arrival.shape[0]
    nch = params[P_CHANNELS]
    base = params[P_BASE + 3]
    rank_base = params[P_BASE + 1]
    refresh_on = params[P_REFRESH_ON] != 0
    nbanks = node.shape[0] - base
    issued_col = np.full(n, -1, np.int64)
    done = np.full(n, -1, np.int64)
    cls = np.full(n, -1, np.int64)  # 0 hit, 1 miss, 2 conflict
    # the queue of each channel, as groups of requests to the same (bank, row, read/write), each a
    # linked list in age order
    qlen = np.zeros(nch, np.int64)
    n_groups = np.zeros(nch, np.int64)
    g_bank = np.zeros((nch, depth), np.int64)
    g_row = np.zeros((nch, depth), np.int64)
    g_write = np.zeros((nch, depth), np.bool_)
    g_head = np.zeros((nch, depth), np.int64)
    g_tail = np.zeros((nch, depth), np.int64)
    next_in_group = np.full(n, -1, np.int64)
    cand_t = np.full(nch, BIG, np.int64)
    cand = np.zeros((nch, 3), np.int64)  # group (-1 for a refresh step), command, node
    valid = np.zeros(nch, np.bool_)
    cache = np.zeros((nbanks, 4), np.int64)
    stamp = np.full((nbanks, 4), -1, np.int64)
    heap = np.empty(n + 1, np.int64)  # data-done cycles of issued requests not yet retired
    hn = 0
    rec = np.empty((2 * n + 64 if record else 1, 6), np.int64)
    nrec = 0
    waits = np.zeros(nch, np.int64)  # refresh steps since the channel last issued a request's command
    err = np.zeros(4, np.int64)  # error code, request index
    now = 0
    nxt = 0  # next request to admit, in trace order
    finished = 0
    step = 0
    while finished < n:
        while hn > 0 and heap[0] <= now:
            hn = _heap_pop(heap, hn)
            finished += 1
        while nxt < n and arrival[nxt] <= now and nxt - finished < max_outstanding:
            r = nxt
            b = bank_of[r]
            ch = node[b, N_ANC]
            if qlen[ch] >= depth:
                break
            g = 0
            while g < n_groups[ch] and not (g_bank[ch, g] == b and g_row[ch, g] == row[r]
                                             and g_write[ch, g] == is_write[r]):
                g += 1
            if g == n_groups[ch]:
                g_bank[ch, g], g_row[ch, g], g_write[ch, g], g_head[ch, g] = b, row[r], is_write[r], r
                n_groups[ch] += 1
            else:
                next_in_group[g_tail[ch, g]] = r
            g_tail[ch, g] = r
            qlen[ch] += 1
            valid[ch] = False
            nxt += 1
        # every channel's candidate; all are >= now except catch-up refreshes of idle channels
        best_ch, best_t = -1, BIG
        for ch in range(nch):
            while not valid[ch]:
                step += 1
                t, g, c, nd = _pick(node, rules, rule_ptr, win, win_role, T, Tsub, win_hist, win_count, bank,
                                    params, cmds, chan, ch, g_bank, g_row, g_write, g_head, n_groups,
                                    max(now, channel_floor(params, chan, ch)), ids, fcfs, cache, stamp, step)
                rk = rank_base + ch * params[P_RANKS]
                if refresh_on and t < BIG and t >= ref_due[rk - rank_base]:
                    if not record and skip_idle_refreshes(node, win, win_role, cmds, T, Tsub, win_hist, win_count,
                                                          bank, chan, counts, ref_due, params, rk, t) > 0:
                        continue  # a long idle stretch of refreshes accounted for at once: pick again
                    # a refresh that falls due while the channel has work is contention; one that
                    # keeps coming back before any request gets a command in means no progress
                    if t < ref_due[rk - rank_base] + params[P_NREFI]:
                        waits[ch] += 1
                        if waits[ch] > 2 * MAX_REFRESH_WAITS:
                            err[0], err[1] = ERR_STUCK, g_head[ch, g]
                            return issued_col, done, cls, rec[:nrec], err
                    c, nd = refresh_step(node, params, bank, rk, ref_due[rk - rank_base])
                    g = -1
                    # at its due cycle even if that is before `now`: an idle channel catches up on
                    # the refreshes it would have done while it had nothing else to do
                    t = earliest(node, rules, rule_ptr, win, win_role, T, Tsub, win_hist, win_count, c, nd,
                                 max(ref_due[rk - rank_base], channel_floor(params, chan, ch)))
                cand_t[ch] = t
                cand[ch, 0], cand[ch, 1], cand[ch, 2] = g, c, nd
                valid[ch] = True
            if cand_t[ch] < best_t:
                best_t, best_ch = cand_t[ch], ch
        # the next event that could change the choice: an arrival that may enter, or a retirement
        # where the outstanding limit holds the next request back (or nothing else is left to do);
        # other retirements change no choice and are counted when time passes them
        t_event = BIG
        if nxt < n and arrival[nxt] > now and nxt - finished < max_outstanding:
            t_event = arrival[nxt]
        if hn > 0 and (best_ch < 0 or (nxt < n and nxt - finished >= max_outstanding)):
            t_event = min(t_event, heap[0])
        if t_event < best_t:
            now = t_event
            continue
        if best_ch < 0:
            break  # unreachable while requests remain: some event or candidate always exists
        ch, t = best_ch, best_t
        g, c, nd = cand[ch, 0], cand[ch, 1], cand[ch, 2]
        commit(node, win, win_role, cmds, T, Tsub, win_hist, win_count, chan, counts, c, nd, t)
        now = max(now, t)  # a catch-up refresh may lie in the past; time never runs backwards
        valid[ch] = False
        r = g_head[ch, g] if g >= 0 else -1
        if record:
            is_col = c == rd or c == wr
            rec = grow(rec, nrec + 1)
            rec[nrec, 0], rec[nrec, 1], rec[nrec, 2] = t, c, nd
            rec[nrec, 3] = row[r] if r >= 0 and c == act else -1
            rec[nrec, 4] = column[r] if r >= 0 and is_col else -1
            rec[nrec, 5] = r
            nrec += 1
        if g < 0:  # a refresh step
            apply_effect(node, cmds, params, bank, chan, c, nd, -1, True)
            chan[ch, C_INSERTED] += 1
            if c == params[P_REF]:  # the rank's refresh clock (nd is the bank of a per-bank refresh)
                ref_due[node[nd, N_ANC + 1] - rank_base] += params[P_NREFI]
            continue
        waits[ch] = 0
        apply_effect(node, cmds, params, bank, chan, c, nd, row[r], False)
        if cls[r] < 0:
            cls[r] = 0 if (c == rd or c == wr) else (1 if c == act else 2)
        if c == rd or c == wr:
            issued_col[r] = t
            done[r] = t + cmds[c, K_DONE]
            hn = _heap_push(heap, hn, done[r])
            qlen[ch] -= 1
            g_head[ch, g] = next_in_group[r]
            if g_head[ch, g] < 0:  # the group is empty: move the last group into its place
                last = n_groups[ch] - 1
                g_bank[ch, g], g_row[ch, g], g_write[ch, g] = g_bank[ch, last], g_row[ch, last], g_write[ch, last]
                g_head[ch, g], g_tail[ch, g] = g_head[ch, last], g_tail[ch, last]
                n_groups[ch] = last
    return issued_col, done, cls, rec[:nrec], err


@njit(cache=True)
def _heap_push(heap, hn, v):
    i = hn
    heap[i] = v
    while i > 0:
        p = (i - 1) // 2
        if heap[p] <= heap[i]:
            break
        heap[p], heap[i] = heap[i], heap[p]
        i = p
    return hn + 1


@njit(cache=True)
def _heap_pop(heap, hn):
    hn -= 1
    heap[0] = heap[hn]
    i = 0
    while True:
        left, right, m = 2 * i + 1, 2 * i + 2, i
        if left < hn and heap[left] < heap[m]:
            m = left
        if right < hn and heap[right] < heap[m]:
            m = right
        if m == i:
            return hn
        heap[m], heap[i] = heap[i], heap[m]
        i = m


def serve_requests(spec, ids, arrival, is_write, bank, row, column, max_outstanding, depth, fcfs, record=False):
    """Serve a request trace.

    Returns (state, column-command cycle, data-done cycle, row outcome 0/1/2 per request, record of
    every issued command in the kernel's record layout, source = request index or -1 for refresh,
    error: err[0] = ERR_STUCK with the request index in err[1] if refreshes left no room to serve it).
    """
    st = new_state(spec)
    issued, done, cls, rec, err = _serve(spec, st, arrival, is_write, bank, row, column, max_outstanding, depth,
                                         fcfs, ids, record)
    return st, issued, done, cls, rec, err
