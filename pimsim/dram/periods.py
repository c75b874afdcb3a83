"""Stretches of a command stream that repeat with a fixed period, issued in closed form by the kernel.

A weight GEMV sweeps rows: per row the same commands (ACTAB, the MACABs, MODCH, RDMAC, MODCH, PREA) on
the same nodes, only the row one or two further. Once the sweep is steady each row issues a fixed
number of cycles P after the one before, and the kernel can skip whole rows instead of checking their
opening commands one by one. This module finds such stretches in a stream (once per stream) and holds
the kernel's test and commit; :func:`pimsim.dram.kernel._issue` calls them.

**Groups.** A *group* is a stretch ``[s, s + L)`` of the stream; the group ``[s + L, s + 2L)`` *translates*
it by a row shift ``d`` when every command of it has the same command and node as the one L before it,
its row is the same where that one's is negative and that one's plus ``d`` (and non-negative) where it
is not, and all lie on one channel. :func:`period_groups` lists, for group starts s at the start of a
run of repeats, the length L, the row shift d, and ``more``: how many groups follow, each translating the
one before it by the same d.

**The kernel is shift- and relabel-invariant between refreshes.** Take the kernel one command at a time
(its closed-form runs give exactly that). For a channel, what it computes for the next command depends
on the channel's part of the State and on the start cycle ``tmin``, and it reads time only as follows:
every constraint is ``earliest = a recorded issue cycle + a latency`` (rules through ``T``/``Tsub``, the
window rules through their histories), maximised with the channel's floor (its previous issue plus
``P_GAP``) and ``tmin``; and refresh compares cycles with the absolute due cycles ``ref_due``. Rows are only
compared for equality and tested for sign. So if every recorded cycle is moved by P and every
non-negative row by d (a map that keeps signs and equalities, the rows of the group included), the
same commands issue P later with the same effects, as long as (a) ``tmin`` does not bind (the channel
issued a command at or after ``tmin - P_GAP`` before the group), (b) no refresh step runs (no command
added by the kernel, no pending reopen: every cycle compared with a due cycle stays below it), and (c)
a recorded cycle ``x`` that does not move by P cannot bind any more: with ``B`` the channel's previous
issue, every later command issues at ``B + P_GAP`` or after, so ``x`` is dead once ``x + Lmax <= B + P_GAP``,
``Lmax`` the longest latency any rule (or window) attaches to that command.

**The equivalence.** Let ``S_g`` be the channel's State at the start of group g and ``B_g`` its previous
issue there, ``P = B_{g+1} - B_g > 0``. ``S_{g+1} ~ S_g`` when: every recorded cycle pair ``(x, x1)`` (T and
Tsub of every node of the channel, every window's last ``size`` entries, a missing entry counting as
never) has ``x1 = x + P``, or both dead (``x + Lmax <= B_g + P_GAP`` and ``x1 + Lmax <= B_{g+1} + P_GAP``);
every row field (open, wanted and last row of each bank, the channel's last row) equals the earlier
one moved by d; bank flags, the last command and node, the kernel-added count are equal; no reopen is
pending; the channel's end moved by P. Then, by the invariance above applied command by command to
group g+1 (the translate of group g), the dead entries stay dead (``B`` only grows), the moved ones stay
moved, and ``S_{g+2} ~ S_{g+1}`` with the same P and d: by induction each of the next K groups issues its
commands exactly P after the group before it did, while (b) holds for them, which is checked in
closed form: group g+k's last command issues at ``B_{g+1} + kP``, so K is cut to the largest value with
``B_{g+1} + K P`` below every due cycle of the channel's ranks (the group where a refresh falls due, and
everything after it, is issued as before). A negative d is cut likewise so that no row goes negative.

**The commit.** After K skipped groups: a T/Tsub entry that group g wrote (its value changed from
``S_g``; every cycle recorded before ``B_g`` is at most ``B_g`` and group g writes at ``B_g + P_GAP`` or later,
so a change is exactly a write, and where ``P_GAP`` is 0 an entry equal to ``B_g`` in both is refused as
ambiguous) holds its ``S_{g+1}`` value plus ``K P``, every other entry is unchanged; a window's history
gains ``K a`` entries (``a`` per group), entry m (counted from the first) being entry ``m - j a`` plus
``j P`` for the smallest j that lands in group g; rows move by ``K d``; the channel's previous issue and
end move by ``K P``; command counts and row hits, misses and conflicts grow by K times group g's.
The State is then exactly what issuing the K groups command by command leaves (``tests/test_kernel_periods.py``
holds it to that on every bundled standard).
"""

from __future__ import annotations

import numpy as np

from pimsim._numba_cache import njit
from pimsim.dram.timing_state import (
    B_FRESH,
    B_KIND,
    B_LAST,
    B_OPEN,
    B_WANT,
    C_CONFLICTS,
    C_END,
    C_HITS,
    C_INSERTED,
    C_LAST_CMD,
    C_LAST_NODE,
    C_LAST_ROW,
    C_PENDING,
    C_PREV,
    E_NONE,
    K_EFFECT,
    N_ANC,
    N_HI,
    N_LEVEL,
    N_LO,
    NEG,
    P_BASE,
    P_GAP,
    Spec,
)

# columns of the groups array the kernel reads
G_POS, G_LEN, G_MORE, G_DROW = range(4)
NO_GROUPS = np.zeros((0, 4), np.int64)
# A group is kept where at least this many translates follow it: the kernel compares two group starts
# (some hundreds of recorded cycles) before it can skip, which costs about what issuing a group does
MIN_MORE = 3
# Per group start, the later run starts of the same command and node tried as the next group's start,
# and how many run starts ahead it looks for them (assumed: a row sweep's period holds a few dozen runs)
TRIES = 4
LOOK_AHEAD = 128


def period_groups(spec: Spec, cmd: np.ndarray, node: np.ndarray, row: np.ndarray) -> np.ndarray:
    """The kernel's ``groups`` for a stream in the order it is issued: int64[groups, 4] of (start, length,
    translates that follow, row shift), by start. Worth computing once for a stream issued many times."""
    n = len(cmd)
    if n < 2 * MIN_MORE:
        return NO_GROUPS
    cmd, node, row = (np.ascontiguousarray(a, np.int64) for a in (cmd, node, row))
    start = np.ones(n, bool)
    start[1:] = (cmd[1:] != cmd[:-1]) | (node[1:] != node[:-1]) | (row[1:] != row[:-1])
    return _find_groups(cmd, node, row, spec.node[node, N_ANC], np.flatnonzero(start).astype(np.int64))


@njit(cache=True)
def _translates(cmd, node, row, channel, a, length):
    """The row shift by which [a + length, a + 2 length) translates [a, a + length); (ok, shift)."""
    d, known = 0, False
    for i in range(a, a + length):
        j = i + length
        if cmd[j] != cmd[i] or node[j] != node[i] or channel[i] != channel[a]:
            return False, 0
        if row[i] < 0:
            if row[j] != row[i]:
                return False, 0
        else:
            if not known:
                d, known = row[j] - row[i], True
            if row[j] != row[i] + d or row[j] < 0:
                return False, 0
    return True, d


@njit(cache=True)
def _find_groups(cmd, node, row, channel, starts):
    n, ns = cmd.shape[0], starts.shape[0]
    length = np.zeros(ns, np.int64)
    shift = np.zeros(ns, np.int64)
    nxt = np.full(ns, -1, np.int64)
    for j in range(ns):
        a = starts[j]
        tries = 0
        for k in range(j + 1, min(ns, j + 1 + LOOK_AHEAD)):
            b = starts[k]
            if a + 2 * (b - a) > n or channel[b] != channel[a]:
                break
            if cmd[b] != cmd[a] or node[b] != node[a]:
                continue
            ok, d = _translates(cmd, node, row, channel, a, b - a)
            if ok:
                length[j], shift[j], nxt[j] = b - a, d, k
                break
            tries += 1
            if tries >= TRIES:
                break
    more = np.zeros(ns, np.int64)
    for j in range(ns - 1, -1, -1):
        if length[j] > 0:
            k = nxt[j]
            more[j] = 1 + (more[k] if length[k] == length[j] and shift[k] == shift[j] else 0)
    kept = 0
    for j in range(ns):
        if more[j] >= MIN_MORE:
            kept += 1
    out = np.empty((kept, 4), np.int64)
    kept = 0
    for j in range(ns):
        if more[j] >= MIN_MORE:
            out[kept, G_POS], out[kept, G_LEN], out[kept, G_MORE], out[kept, G_DROW] = \
                starts[j], length[j], more[j], shift[j]
            kept += 1
    return out


@njit(cache=True)
def latency_from(rules, ncmd):
    """Per command p, the longest latency any rule attaches to it as the preceding command (0 if none)."""
    lat = np.zeros(ncmd, np.int64)
    for k in range(rules.shape[0]):
        p = rules[k, 0]
        for lvl in range(1, rules.shape[1]):
            if rules[k, lvl] > lat[p]:
                lat[p] = rules[k, lvl]
    return lat


@njit(cache=True)
def new_snapshot(node, rules, win, T, win_hist, bank, chan, used):
    """Room for one channel's part of the State (see :func:`take_snapshot`); none unless ``used``."""
    nodes, ncmd = T.shape
    nwin, wmax = win.shape[0], win_hist.shape[2]
    nn, nbank = 0, 0
    if used:
        nn = 1
        for lvl in range(1, 4):
            nn += node[0, N_HI + lvl] - node[0, N_LO + lvl]
        nbank = node[0, N_HI + 3] - node[0, N_LO + 3]
    else:
        nodes = ncmd = 0
    sel = np.empty(nn, np.int64)  # the nodes whose T and Tsub the group reads or writes
    wsel = np.empty((nwin * nn + 1, 2), np.int64)  # the (window, node) histories it reads or writes
    bsel = np.empty(nbank, np.int64)  # the banks whose state it reads or writes
    counts = np.zeros(3, np.int64)  # how many of each
    mark = np.zeros(nodes, np.int64)  # bit 0: node selected; bit 1 + w: window w's history at it
    bmark = np.zeros(bank.shape[0] if used else 0, np.int64)
    return (sel, wsel, bsel, counts, mark, bmark,
            np.empty((nn, ncmd), np.int64), np.empty((nn, ncmd), np.int64),  # T, Tsub
            np.empty((nwin * nn + 1, wmax), np.int64), np.empty(nwin * nn + 1, np.int64),  # histories, counts
            np.empty((nbank, 5), np.int64), np.empty(chan.shape[1], np.int64), np.empty(ncmd, np.int64),
            latency_from(rules, ncmd) if used else np.zeros(0, np.int64), np.empty(wmax, np.int64))


@njit(cache=True)
def _select(node, cmds, win, win_role, params, cmd, node_of, run_last, s0, length, snap):
    """Which parts of the State the commands of group [s0, s0 + length) read or write: the T and Tsub of
    their nodes and those nodes' ancestors, the window histories they count in or are delayed by, the
    banks under them. Nothing else of the State takes part in issuing them (the rest stays as it is)."""
    sel, wsel, bsel, counts, mark, bmark = snap[0], snap[1], snap[2], snap[3], snap[4], snap[5]
    ns = nw = nb = 0
    bank_base = params[P_BASE + 3]
    u = s0
    while u < s0 + length:
        c, s = cmd[u], node_of[u]
        ls = node[s, N_LEVEL]
        for lvl in range(ls + 1):
            a = node[s, N_ANC + lvl]
            if not mark[a] & 1:
                mark[a] |= 1
                sel[ns] = a
                ns += 1
        for w in range(win.shape[0]):
            if win_role[w, c]:
                lvl = win[w, 0]
                lo, hi = (node[s, N_ANC + lvl], node[s, N_ANC + lvl] + 1) if ls >= lvl else \
                    (node[s, N_LO + lvl], node[s, N_HI + lvl])
                for y in range(lo, hi):
                    if not mark[y] & (2 << w):
                        mark[y] |= 2 << w
                        wsel[nw, 0], wsel[nw, 1] = w, y
                        nw += 1
        if cmds[c, K_EFFECT] != E_NONE:
            for b in range(node[s, N_LO + 3] - bank_base, node[s, N_HI + 3] - bank_base):
                if not bmark[b]:
                    bmark[b] = 1
                    bsel[nb] = b
                    nb += 1
        # a run repeats one command on one node: its first stands for it
        u = (min(run_last[u], s0 + length - 1) if run_last.shape[0] > 0 else u) + 1
    for k in range(ns):
        mark[sel[k]] = 0
    for k in range(nw):
        mark[wsel[k, 1]] = 0
    for k in range(nb):
        bmark[bsel[k]] = 0
    counts[0], counts[1], counts[2] = ns, nw, nb


@njit(cache=True)
def take_snapshot(node, cmds, win, win_role, params, T, Tsub, win_hist, win_count, bank, chan, counts, ch,
                  cmd, node_of, run_last, s0, length, snap):
    """Keep what group [s0, s0 + length) of channel ch reads or writes of the State, as it is now."""
    _select(node, cmds, win, win_role, params, cmd, node_of, run_last, s0, length, snap)
    sel, wsel, bsel, n = snap[0], snap[1], snap[2], snap[3]
    sT, sTsub, swin, swcnt, sbank, schan, scounts = snap[6], snap[7], snap[8], snap[9], snap[10], snap[11], snap[12]
    for k in range(n[0]):
        y = sel[k]
        for c in range(T.shape[1]):
            sT[k, c] = T[y, c]
            sTsub[k, c] = Tsub[y, c]
    for k in range(n[1]):
        w, y = wsel[k, 0], wsel[k, 1]
        for q in range(win[w, 1]):
            swin[k, q] = win_hist[w, y, q]
        swcnt[k] = win_count[w, y]
    for k in range(n[2]):
        for f in range(5):
            sbank[k, f] = bank[bsel[k], f]
    for f in range(chan.shape[1]):
        schan[f] = chan[ch, f]
    for c in range(counts.shape[1]):
        scounts[c] = counts[ch, c]


@njit(cache=True, inline="always")
def _moved(x, x1, b0, b1, p, lat, gap0):
    """Whether a recorded cycle x at the group start (previous issue b0) and x1 a period later (b1)
    are equivalent: moved by the period, or both dead."""
    if x > b0 or x1 > b1:  # a cycle after the channel's last issue: not a state this argument covers
        return False
    if x1 == x and gap0 == 0 and x == b0:  # a write at b0 in the group could leave it equal: ambiguous
        return False
    if x1 == x + p:
        return True
    return x + lat <= b0 + gap0 and x1 + lat <= b1 + gap0


@njit(cache=True, inline="always")
def _row_moved(r, r1, d):
    if r < 0:
        return r1 == r
    return r1 == r + d and r1 >= 0


@njit(cache=True)
def skip_periods(node, win, params, T, Tsub, win_hist, win_count, bank, chan, counts, ref_due, ch, refresh_on,
                 snap, more, d):
    """With the snapshot taken at the start of a group and the State now at the start of the next one
    (a translate of it by row shift d, followed by ``more - 1`` further translates): if the two are
    equivalent (module docstring), commit the next K groups at once and return K; else 0, State untouched."""
    sel, wsel, bsel, n = snap[0], snap[1], snap[2], snap[3]
    sT, sTsub, swin, swcnt, sbank, schan, scounts = snap[6], snap[7], snap[8], snap[9], snap[10], snap[11], snap[12]
    lat_from, scratch = snap[13], snap[14]
    gap0 = params[P_GAP]
    b0, b1 = schan[C_PREV], chan[ch, C_PREV]
    p = b1 - b0
    if p <= 0:
        return 0
    for f in (C_INSERTED, C_PENDING, C_LAST_CMD, C_LAST_NODE):
        if chan[ch, f] != schan[f]:
            return 0
    if chan[ch, C_PENDING] != 0 or chan[ch, C_END] != schan[C_END] + p:
        return 0
    if not _row_moved(schan[C_LAST_ROW], chan[ch, C_LAST_ROW], d):
        return 0
    low_row = chan[ch, C_LAST_ROW]  # the lowest non-negative row taking part (for a negative d)
    for k in range(n[2]):
        b = bsel[k]
        # the kind of the last activate is read only while its row has not been accessed (fresh): an
        # activate writes it before it is read again, so otherwise it is left as it is now
        fresh = bank[b, B_FRESH]
        if fresh != sbank[k, B_FRESH] or (fresh and bank[b, B_KIND] != sbank[k, B_KIND]):
            return 0
        for f in (B_OPEN, B_WANT, B_LAST):
            r1 = bank[b, f]
            if not _row_moved(sbank[k, f], r1, d):
                return 0
            if r1 >= 0 and (low_row < 0 or r1 < low_row):
                low_row = r1
    for k in range(n[0]):
        y = sel[k]
        for c in range(T.shape[1]):
            if not _moved(sT[k, c], T[y, c], b0, b1, p, lat_from[c], gap0):
                return 0
            if not _moved(sTsub[k, c], Tsub[y, c], b0, b1, p, lat_from[c], gap0):
                return 0
    for k in range(n[1]):
        w, y = wsel[k, 0], wsel[k, 1]
        size, lat = win[w, 1], win[w, 2]
        cnt, cnt1 = swcnt[k], win_count[w, y]
        for q in range(size):
            m, m1 = cnt - size + q, cnt1 - size + q
            x = swin[k, m % size] if m >= 0 else NEG
            x1 = win_hist[w, y, m1 % size] if m1 >= 0 else NEG
            if not _moved(x, x1, b0, b1, p, lat, gap0):
                return 0
    # how many of the following groups: the chain, the refresh due next, rows kept non-negative
    K = more
    if refresh_on:
        for rk in range(node[ch, N_LO + 1], node[ch, N_HI + 1]):
            due = ref_due[rk - params[P_BASE + 1]]
            if (due - 1 - b1) // p < K:
                K = (due - 1 - b1) // p
    if d < 0 and low_row >= 0 and low_row // -d < K:
        K = low_row // -d
    if K <= 0:
        return 0
    shift = K * p
    for k in range(n[0]):
        y = sel[k]
        for c in range(T.shape[1]):
            if T[y, c] != sT[k, c]:
                T[y, c] += shift
            if Tsub[y, c] != sTsub[k, c]:
                Tsub[y, c] += shift
    for k in range(n[1]):
        w, y = wsel[k, 0], wsel[k, 1]
        size = win[w, 1]
        cnt1 = win_count[w, y]
        a = cnt1 - swcnt[k]
        if a == 0:
            continue
        for q in range(size):
            scratch[q] = win_hist[w, y, q]
        final = cnt1 + K * a
        for m in range(max(final - size, cnt1), final):
            j = (m - cnt1) // a + 1  # the fewest groups back that land in group g
            win_hist[w, y, m % size] = scratch[(m - j * a) % size] + j * p
        win_count[w, y] = final
    for k in range(n[2]):
        b = bsel[k]
        for f in (B_OPEN, B_WANT, B_LAST):
            if bank[b, f] >= 0:
                bank[b, f] += K * d
    if chan[ch, C_LAST_ROW] >= 0:
        chan[ch, C_LAST_ROW] += K * d
    chan[ch, C_PREV] += shift
    chan[ch, C_END] += shift
    for f in range(C_HITS, C_CONFLICTS + 1):
        chan[ch, f] += K * (chan[ch, f] - schan[f])
    for c in range(counts.shape[1]):
        counts[ch, c] += K * (counts[ch, c] - scounts[c])
    return K
