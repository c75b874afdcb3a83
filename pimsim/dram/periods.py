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

**The equivalence.** Let ``S_g`` be the State at the start of group g, restricted to what the group's
commands read or write (the T and Tsub of their nodes and those nodes' ancestors, the window histories
they count in or are delayed by, the banks under them, the channel's row and counts: nothing else takes
part in issuing them, and nothing else changes), and ``B_g`` the channel's previous issue there. A later
State ``S`` at the start of group g + m (which translates group g by ``m d`` rows), previous issue B,
*matches* ``S_g`` moved by ``q = B - B_g > 0`` when: every recorded cycle pair ``(x, x1)`` (T and Tsub,
each window's last ``size`` entries, a missing entry counting as never) has ``x1 = x + q``, or both are
dead (``x + Lmax <= B_g + P_GAP`` and ``x1 + Lmax <= B + P_GAP``); every row field (open, wanted and last
row of each bank, the channel's last row) equals the earlier one moved by ``m d``; the banks' fresh flags
are equal, and the kind of their activate where fresh (otherwise an activate writes it before anything
reads it); the last command and node are equal; no reopen is pending; the channel's end moved by q.
By the invariance above, command by command, group g + m then issues exactly as group g did, q later,
and the State at its end matches ``S_{g+1}`` moved by q (a dead entry stays dead: B only grows).

*Proving a chain* (``pair``): ``S_{g+1}`` matches ``S_g`` moved by ``P = B_{g+1} - B_g``, and group g added
no command (no refresh step, no reopen). Then the State at the start of any group g + m that matches
``S_g`` moved by some q is followed by groups issuing at q, q + P, q + 2P, ... after group g's cycles: by
induction, the start of group g + m + k matches ``S_{g+1}`` moved by ``q + (k - 1) P``, which matches
``S_g`` moved by ``q + k P``. So the kernel keeps ``S_g`` (copy A) and ``S_{g+1}`` (copy B) and, at each
later group start of the chain, also after a refresh, compares with copy A and skips. Each skip is cut
to K groups so that (b) holds: group k from there issues its last command at ``B_{g+1} + q + k P``, which
must stay below every due cycle of the channel's ranks (the group where a refresh falls due is issued
as before, and the next group start is compared again); a negative d is cut likewise so that no row
goes negative.

**The commit.** After K groups: a T/Tsub entry that group g wrote (copy B differs from copy A: every
cycle recorded before ``B_g`` is at most ``B_g`` and group g writes at ``B_g + P_GAP`` or later, so a change
is exactly a write; where ``P_GAP`` is 0 an entry equal to ``B_g`` in both is refused as ambiguous) holds
its copy-B value plus ``q + (K - 1) P``, every other entry is left as it is; a window's history gains
``K a`` entries (``a`` per group), the u-th of group k from there being group g's u-th plus ``q + k P``;
rows move by ``K d``; a bank the group opens takes group g's kind of activate; the channel's previous
issue and end are copy B's plus ``q + (K - 1) P``; command counts and row hits, misses and conflicts grow
by K times group g's. The State is then exactly what issuing the K groups command by command leaves
(``tests/test_kernel_periods.py`` holds it to that on every bundled standard, with refreshes falling
inside the sweeps, and checks through the kernel's skip counters (``kernel.E_GROUPS_SKIPPED``) that
groups were skipped, after a refresh too, in PIM and bank-by-bank sweeps and on threads; under HBM3-PIM's
per-bank refresh, one every 317 cycles, no pair is proved between refreshes, so nothing is skipped there).
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
    E_OPEN,
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


# the snapshot tuple (new_snapshot): what a group reads or writes, then two copies of it (A: the State
# at the start of a group g, B: at the start of group g + 1), then the latencies per command
SEL, WSEL, BSEL, NSEL, MARK, BMARK, BOPEN, A, B, LAT = 0, 1, 2, 3, 4, 5, 6, 7, 14, 21
A_PREV, B_PREV = A + 5, B + 5  # the channel rows of the copies (C_PREV: the channel's previous issue)


@njit(cache=True)
def new_snapshot(node, rules, win, T, win_hist, bank, chan, used):
    """Room for one channel's part of the State, twice (see :func:`take_snapshot`); none unless ``used``."""
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
    nw = nwin * nn + 1
    return (np.empty(nn, np.int64),  # the nodes whose T and Tsub the group reads or writes
            np.empty((nw, 2), np.int64),  # the (window, node) histories it reads or writes
            np.empty(nbank, np.int64),  # the banks whose state it reads or writes
            np.zeros(3, np.int64),  # how many of each
            np.zeros(nodes, np.int64),  # bit 0: node selected; bit 1 + w: window w's history at it
            np.zeros(bank.shape[0] if used else 0, np.int64),
            np.zeros(nbank, np.int64),  # per selected bank: the group opens it (writes its kind)
            np.empty((nn, ncmd), np.int64), np.empty((nn, ncmd), np.int64),  # A: T, Tsub
            np.empty((nw, wmax), np.int64), np.empty(nw, np.int64),  # histories, counts
            np.empty((nbank, 5), np.int64), np.empty(chan.shape[1], np.int64), np.empty(ncmd, np.int64),
            np.empty((nn, ncmd), np.int64), np.empty((nn, ncmd), np.int64),  # B: the same
            np.empty((nw, wmax), np.int64), np.empty(nw, np.int64),
            np.empty((nbank, 5), np.int64), np.empty(chan.shape[1], np.int64), np.empty(ncmd, np.int64),
            latency_from(rules, ncmd) if used else np.zeros(0, np.int64))


@njit(cache=True, allocates=False)
def _select(node, cmds, win, win_role, params, cmd, node_of, run_last, s0, length, snap):
    """Which parts of the State the commands of group [s0, s0 + length) read or write: the T and Tsub of
    their nodes and those nodes' ancestors, the window histories they count in or are delayed by, the
    banks under them. Nothing else of the State takes part in issuing them (the rest stays as it is)."""
    sel, wsel, bsel, counts, mark, bmark, bopen = snap[0], snap[1], snap[2], snap[3], snap[4], snap[5], snap[6]
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
        eff = cmds[c, K_EFFECT]
        if eff != E_NONE:
            for b in range(node[s, N_LO + 3] - bank_base, node[s, N_HI + 3] - bank_base):
                if not bmark[b]:
                    bmark[b] = nb + 1
                    bsel[nb] = b
                    bopen[nb] = 0
                    nb += 1
                if eff == E_OPEN:
                    bopen[bmark[b] - 1] = 1
        # a run repeats one command on one node: its first stands for it
        u = (min(run_last[u], s0 + length - 1) if run_last.shape[0] > 0 else u) + 1
    for k in range(ns):
        mark[sel[k]] = 0
    for k in range(nw):
        mark[wsel[k, 1]] = 0
    for k in range(nb):
        bmark[bsel[k]] = 0
    counts[0], counts[1], counts[2] = ns, nw, nb


@njit(cache=True, allocates=False)
def _store(win, T, Tsub, win_hist, win_count, bank, chan, counts, ch, snap, at):
    """Copy what the selection holds of the State into copy ``at`` (A or B)."""
    sel, wsel, bsel, n = snap[0], snap[1], snap[2], snap[3]
    if at == A:
        sT, sTsub, swin, swcnt, sbank, schan, scounts = snap[7], snap[8], snap[9], snap[10], snap[11], snap[12], \
            snap[13]
    else:
        sT, sTsub, swin, swcnt, sbank, schan, scounts = snap[14], snap[15], snap[16], snap[17], snap[18], snap[19], \
            snap[20]
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


@njit(cache=True, allocates=False)
def take_snapshot(node, cmds, win, win_role, params, T, Tsub, win_hist, win_count, bank, chan, counts, ch,
                  cmd, node_of, run_last, s0, length, snap, same):
    """Keep what group [s0, s0 + length) of channel ch reads or writes of the State, as it is now (copy A);
    ``same``: the group translates the one kept before (it reads and writes the same parts)."""
    if not same:
        _select(node, cmds, win, win_role, params, cmd, node_of, run_last, s0, length, snap)
    _store(win, T, Tsub, win_hist, win_count, bank, chan, counts, ch, snap, A)


@njit(cache=True, inline="always")
def _moved(x, x1, b0, b1, p, lat, gap0):
    """Whether a recorded cycle x at the group start (previous issue b0) and x1 at a later group's start
    (b1) are equivalent: moved by p, or both dead."""
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


@njit(cache=True, allocates=False)
def skip_periods(node, win, params, T, Tsub, win_hist, win_count, bank, chan, counts, ref_due, ch, refresh_on,
                 snap, span, p, q, dm, d, pair):
    """Copy A holds the State at the start of group g. The State now is at the start of group g + m of
    the same chain, which translates group g by rows ``dm`` (m times the chain's row shift d): if it is
    copy A moved by q cycles and dm rows (module docstring), commit up to ``span`` groups at once and
    return how many; else 0, the State untouched.

    ``pair``: m is 1 and this is the first comparison of the chain: if it holds, the State now becomes
    copy B and group g's period is q. Otherwise copy B holds the start of group g + 1, group g's
    period p (group g issued without a refresh or a reopen, and group g + 1 started as group g moved by
    p: the groups of the chain repeat with period p once one starts as group g does)."""
    sel, wsel, bsel, n, bopen = snap[SEL], snap[WSEL], snap[BSEL], snap[NSEL], snap[BOPEN]
    sT, sTsub, swin, swcnt, sbank, schan = snap[7], snap[8], snap[9], snap[10], snap[11], snap[12]
    lat_from = snap[LAT]
    gap0 = params[P_GAP]
    b0, b1 = schan[C_PREV], chan[ch, C_PREV]
    if q <= 0 or b1 - b0 != q:
        return 0
    # group g itself must have issued with nothing added (no refresh, no reopen): checked on the pair
    if pair and chan[ch, C_INSERTED] != schan[C_INSERTED]:
        return 0
    for f in (C_PENDING, C_LAST_CMD, C_LAST_NODE):
        if chan[ch, f] != schan[f]:
            return 0
    if chan[ch, C_PENDING] != 0 or chan[ch, C_END] != schan[C_END] + q:
        return 0
    if not _row_moved(schan[C_LAST_ROW], chan[ch, C_LAST_ROW], dm):
        return 0
    low_row = chan[ch, C_LAST_ROW]  # the lowest non-negative row taking part (for a negative d)
    for k in range(n[2]):
        b = bsel[k]
        # the kind of the last activate is read only while its row has not been accessed (fresh): an
        # activate writes it before it is read again, so otherwise it may differ
        fresh = bank[b, B_FRESH]
        if fresh != sbank[k, B_FRESH] or (fresh and bank[b, B_KIND] != sbank[k, B_KIND]):
            return 0
        for f in (B_OPEN, B_WANT, B_LAST):
            r1 = bank[b, f]
            if not _row_moved(sbank[k, f], r1, dm):
                return 0
            if r1 >= 0 and (low_row < 0 or r1 < low_row):
                low_row = r1
    for k in range(n[0]):
        y = sel[k]
        for c in range(T.shape[1]):
            if not _moved(sT[k, c], T[y, c], b0, b1, q, lat_from[c], gap0):
                return 0
            if not _moved(sTsub[k, c], Tsub[y, c], b0, b1, q, lat_from[c], gap0):
                return 0
    for k in range(n[1]):
        w, y = wsel[k, 0], wsel[k, 1]
        size, lat = win[w, 1], win[w, 2]
        cnt, cnt1 = swcnt[k], win_count[w, y]
        for u in range(size):
            m, m1 = cnt - size + u, cnt1 - size + u
            x = swin[k, m % size] if m >= 0 else NEG
            x1 = win_hist[w, y, m1 % size] if m1 >= 0 else NEG
            if not _moved(x, x1, b0, b1, q, lat, gap0):
                return 0
    if pair:
        _store(win, T, Tsub, win_hist, win_count, bank, chan, counts, ch, snap, B)
        p = q
    tT, tTsub, twin, twcnt, tbank, tchan, tcounts = snap[14], snap[15], snap[16], snap[17], snap[18], snap[19], \
        snap[20]
    # how many groups: the chain, the refresh due next (group k from now issues its last command at
    # group g's last issue, copy B's previous issue, plus q + k p), rows kept non-negative
    K = span
    if refresh_on:
        for rk in range(node[ch, N_LO + 1], node[ch, N_HI + 1]):
            due = ref_due[rk - params[P_BASE + 1]]
            room = due - 1 - tchan[C_PREV] - q
            if room < 0:
                return 0
            if room // p + 1 < K:
                K = room // p + 1
    if d < 0 and low_row >= 0 and low_row // -d < K:
        K = low_row // -d
    if K <= 0:
        return 0
    # commit: what group g wrote (B differs from A) as group g wrote it, moved to the K-th group's start
    last = q + (K - 1) * p
    for k in range(n[0]):
        y = sel[k]
        for c in range(T.shape[1]):
            if tT[k, c] != sT[k, c]:
                T[y, c] = tT[k, c] + last
            if tTsub[k, c] != sTsub[k, c]:
                Tsub[y, c] = tTsub[k, c] + last
    for k in range(n[1]):
        w, y = wsel[k, 0], wsel[k, 1]
        size = win[w, 1]
        a = twcnt[k] - swcnt[k]  # entries per group
        if a == 0:
            continue
        now = win_count[w, y]
        final = now + K * a
        for m in range(max(final - size, now), final):
            # the u-th entry of the k-th group from now is group g's u-th, moved by q + k p
            j, u = (m - now) // a, (m - now) % a
            win_hist[w, y, m % size] = twin[k, (swcnt[k] + u) % size] + q + j * p
        win_count[w, y] = final
    for k in range(n[2]):
        b = bsel[k]
        for f in (B_OPEN, B_WANT, B_LAST):
            if bank[b, f] >= 0:
                bank[b, f] += K * d
        if bopen[k]:
            bank[b, B_KIND] = tbank[k, B_KIND]
    if chan[ch, C_LAST_ROW] >= 0:
        chan[ch, C_LAST_ROW] += K * d
    chan[ch, C_PREV] = tchan[C_PREV] + last
    chan[ch, C_END] = tchan[C_END] + last
    for f in range(C_HITS, C_CONFLICTS + 1):
        chan[ch, f] += K * (tchan[f] - schan[f])
    for c in range(counts.shape[1]):
        counts[ch, c] += K * (tcounts[c] - snap[13][c])
    return K
