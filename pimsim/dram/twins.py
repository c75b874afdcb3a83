"""Twin channels: channels that issue the same commands from equivalent states, issued once.

A weight GEMV gives every channel the same commands on the same banks and rows (its matrix is split
evenly), and channels share no timing or bank state. So where two channels start a stream in
equivalent states, the kernel issues one of them (the *representative*) and gives the other (its
*twin*) exactly what issuing it would have left: the same issue cycles, so the same writes and the
same counts. ``pimsim.engine.dram_timing.CycleTiming`` finds, once per stream, which channels issue
alike (:func:`representatives`: the same commands on the same nodes under their channel, rows and
columns); :func:`pimsim.dram.kernel.issue_twins` first catches every channel up with the refreshes due
before the stream can start there (:func:`catch_up`: the steps its first command would take first),
tests each channel against its kind's representative with :func:`equivalent`, issues the
representatives and the channels that are not equivalent, and copies with :func:`copy_run`.

**Why it is exact.** Every channel has the same organisation and rules, and a channel's part of the
State is its nodes' rows of every array (its nodes at the four levels, in the same order under each
channel: a node is named by its index under its channel). Given one start cycle ``tmin`` for the
stream, what the kernel computes for a channel depends on that part of the State only, and reads it
as follows (:mod:`pimsim.dram.periods` makes the same argument for a shift in time):

- time: every constraint is a recorded cycle plus a latency, maximised with the channel's floor (its
  previous issue plus ``P_GAP``) and ``tmin`` (a refresh step: with its due cycle); refresh compares
  cycles with the rank's due cycle. Let ``H`` be the smaller of ``tmin`` and the channel's earliest due
  refresh. Nothing the stream issues, the kernel's refresh steps included, issues before ``H`` (a
  command waits for ``tmin``, a refresh step for its due cycle; a reopening activate only follows a
  refresh of this stream: no reopen may be pending at the start). So a recorded cycle ``x`` of
  command ``c`` with ``x + Lmax(c) <= H`` (``Lmax``: the longest latency any rule or window attaches to
  ``c``) can never bind: it is *dead*;
- rows: compared for equality, a bank's open and wanted rows by every check and activate; its last
  row only by the stream's first activate of the bank, where that comes before the stream closes it,
  and only for whether it differs (a conflict: the activate opens another row) (:func:`bank_uses`);
  the kind of its last activate only by an access while it is fresh, or by the reopen of a fresh
  bank's row (an activate of the stream's own rewrites it);
- the last command, node and row: only to see whether the stream's first command on the channel
  repeats them (the kernel's fast path); the channel's end: never (it is the larger of itself and each
  command's end, none of which comes before ``H``).

Two channels a and b are **equivalent** at the start of a stream when, node by node, every T and Tsub
entry is equal or both are dead (an entry at ``H`` exactly must be equal: see the copy), and each
window's last ``size`` entries, in order, are equal or both dead; the banks' open and wanted rows and
fresh flags are equal, their kinds equal where fresh or where the stream does not activate the bank
itself, their last rows equal or alike for the stream's first activate; the rank's due cycles are
equal; no reopen is pending; the first command repeats the last one on both or on neither; the
previous issue is equal or both floors are at or below ``H`` (they then bind nothing before the first
command overwrites them); the ends are equal or a's is at or below ``H``. Issued the same commands, a
and b then take the same decisions at the same cycles, command by command.

**The copy.** After the representative a has issued its commands, twin b is given what the same
commands write: a T or Tsub entry a changed is written (a write is the only change), with a's value;
an entry a left unchanged was not written, or written with its old value, which is then at ``H`` or
later, so live (or at ``H`` exactly: equal by the test) and equal in b already: b keeps its own. Each
window history gains a's new entries after b's own (b's count grows by a's). The banks' open and
wanted rows, fresh flags and kinds are a's; a last row is a's where the stream closes the bank (else
neither wrote it); due cycles, the previous issue, last command, node and row are a's (equal before,
or overwritten by the stream's commands); the end is the larger of b's own and a's; the counters
(commands, row hits, misses and conflicts, added commands) grow by a's growth. The State is then byte
for byte what issuing b's commands leaves (``tests/test_twins.py`` holds it to that on every bundled
standard, from histories that make channels alike and not).
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
    E_ACCESS,
    E_CLOSE,
    E_NONE,
    E_OPEN,
    K_EFFECT,
    K_REPEAT,
    N_ANC,
    N_HI,
    N_LEVEL,
    N_LO,
    NEG,
    P_BASE,
    P_GAP,
    P_NREFI,
    P_RANKS,
    P_REF,
    P_REFRESH_ON,
    apply_effect,
    channel_floor,
    commit,
    earliest,
    refresh_step,
    skip_idle_refreshes,
)

LEVELS = 4  # channel, rank, bank group, bank (pimsim.dram.compile.NLEVELS)
# columns of bank_uses: the stream position of its first activate of the bank where that comes before its first
# close (else NONE; a position, since the rows a stream is issued at may be moved), whether the stream itself
# activates the bank, whether it closes it
U_FIRST_OPEN, U_OPENS, U_CLOSES = range(3)
NONE = -1
# the channel fields a twin takes from its representative (of the rest, the end is the larger of a's and b's
# own, and the counters grow alike)
_TAKEN = (C_PREV, C_PENDING, C_LAST_CMD, C_LAST_ROW)
_COUNTERS = (C_INSERTED, C_HITS, C_HITS + 1, C_CONFLICTS)


def representatives(node: np.ndarray, cmd: np.ndarray, node_of: np.ndarray, row: np.ndarray, column: np.ndarray,
                    bounds: np.ndarray) -> np.ndarray:
    """For a stream grouped by channel (span g: positions bounds[g]:bounds[g + 1], one channel each), the
    first span issuing what span g issues: the same commands on the same nodes under their channel, rows
    and columns, in the same order (a span of its own kind names itself)."""
    chan = node[node_of, N_ANC]
    relative = node_of - node[chan, N_LO + node[node_of, N_LEVEL]]  # the node's index under its channel
    first: dict[bytes, int] = {}
    spans = bounds.tolist()
    return np.array([first.setdefault(b"".join(a[lo:hi].tobytes() for a in (cmd, relative, row, column)), g)
                     for g, (lo, hi) in enumerate(zip(spans, spans[1:]))], np.int64)


def bank_uses(node: np.ndarray, cmds: np.ndarray, cmd: np.ndarray, node_of: np.ndarray, lo: int, hi: int,
              ch: int) -> np.ndarray:
    """Per bank of channel ch, how the commands lo..hi-1 of a stream (commands cmd on nodes node_of; all on
    channel ch) use it: the columns U_FIRST_OPEN, U_OPENS, U_CLOSES (int64[banks per channel, 3])."""
    first_bank = node[ch, N_LO + 3]
    uses = np.zeros((node[ch, N_HI + 3] - first_bank, 3), np.int64)
    uses[:, U_FIRST_OPEN] = NONE
    seen = np.zeros(len(uses), bool)
    effect = cmds[cmd[lo:hi], K_EFFECT]
    for i in (np.flatnonzero((effect == E_OPEN) | (effect == E_CLOSE)) + lo).tolist():
        s = node_of[i]
        b0, b1 = node[s, N_LO + 3] - first_bank, node[s, N_HI + 3] - first_bank
        if effect[i - lo] == E_OPEN:
            fresh = ~seen[b0:b1]
            uses[b0:b1, U_FIRST_OPEN][fresh] = i
            uses[b0:b1, U_OPENS] = 1
        else:
            uses[b0:b1, U_CLOSES] = 1
        seen[b0:b1] = True
    return uses


@njit(cache=True)
def channel_nodes(node, ch):
    """The nodes of channel ch at every level, in the order every channel lists them."""
    n = 0
    for lvl in range(LEVELS):
        n += node[ch, N_HI + lvl] - node[ch, N_LO + lvl]
    out = np.empty(n, np.int64)
    k = 0
    for lvl in range(LEVELS):
        for y in range(node[ch, N_LO + lvl], node[ch, N_HI + lvl]):
            out[k] = y
            k += 1
    return out


@njit(cache=True, inline="always")
def _same(x, y, lat, h):
    """Recorded cycles x and y are the same, or both dead (neither can bind a command issued at h or later;
    one at h exactly counts as live: see the copy in the module docstring)."""
    if x == y:
        return True
    return x + lat <= h and y + lat <= h and x != h and y != h


@njit(cache=True, allocates=False)
def horizon(node, params, ref_due, ch, tmin):
    """No command of a stream starting at tmin, nor a refresh step, issues on channel ch before this."""
    h = tmin
    first = node[ch, N_LO + 1] - params[P_BASE + 1]
    for r in range(first, first + params[P_RANKS]):
        if ref_due[r] < h:
            h = ref_due[r]
    return h


@njit(cache=True, allocates=False)
def equivalent(node, cmds, params, win, lat_from, T, Tsub, win_hist, win_count, bank, chan, ref_due, a, b, tmin, uses,
               row, c0, s0, r0):
    """Whether channels a and b start a stream from tmin in equivalent states (module docstring). ``uses``: per
    bank of the channel, how the stream's commands use it (:func:`bank_uses`), and ``row`` the stream's rows;
    c0, s0, r0: the command, node (on channel a) and row the stream issues first on the channel."""
    rank_a = node[a, N_LO + 1] - params[P_BASE + 1]
    rank_b = node[b, N_LO + 1] - params[P_BASE + 1]
    for r in range(params[P_RANKS]):
        if ref_due[rank_a + r] != ref_due[rank_b + r]:
            return False
    h = horizon(node, params, ref_due, a, tmin)
    if chan[a, C_PENDING] != 0 or chan[b, C_PENDING] != 0:
        return False
    # the last command, node and row are read (before the first command overwrites them) only to see
    # whether the first command repeats the last one (the kernel's fast path)
    eff = cmds[c0, K_EFFECT]
    if cmds[c0, K_REPEAT] >= 0 and (eff == E_ACCESS or eff == E_NONE):
        lvl = node[s0, N_LEVEL]
        s0b = s0 - node[a, N_LO + lvl] + node[b, N_LO + lvl]
        repeats_a = chan[a, C_LAST_CMD] == c0 and chan[a, C_LAST_NODE] == s0 and chan[a, C_LAST_ROW] == r0
        repeats_b = chan[b, C_LAST_CMD] == c0 and chan[b, C_LAST_NODE] == s0b and chan[b, C_LAST_ROW] == r0
        if repeats_a != repeats_b:
            return False
    gap = params[P_GAP]
    pa, pb = chan[a, C_PREV], chan[b, C_PREV]
    if pa != pb and (pa + gap > h or pb + gap > h):
        return False
    # the channel's end only grows, by each command's end, none before h: b's is a's after, or its own if larger
    if chan[a, C_END] != chan[b, C_END] and chan[a, C_END] > h:
        return False
    base = params[P_BASE + 3]
    bank_a, bank_b = node[a, N_LO + 3] - base, node[b, N_LO + 3] - base
    for k in range(node[a, N_HI + 3] - node[a, N_LO + 3]):
        x, y = bank[bank_a + k], bank[bank_b + k]
        if x[B_OPEN] != y[B_OPEN] or x[B_WANT] != y[B_WANT] or x[B_FRESH] != y[B_FRESH]:
            return False
        # the kind of the last activate is read by an access while the bank is fresh, else rewritten by an
        # activate before it is read (by the stream's own: the reopen of a row a refresh closed writes it
        # only from a fresh bank's)
        if x[B_KIND] != y[B_KIND] and (x[B_FRESH] or not uses[k, U_OPENS]):
            return False
        # the last row is read by the stream's first activate of the bank, if it comes before its first
        # close, only for whether the activate opens another row than the one last open (a conflict)
        first = uses[k, U_FIRST_OPEN]
        if x[B_LAST] != y[B_LAST] and first != NONE:
            r = row[first]
            if (x[B_LAST] >= 0 and x[B_LAST] != r) != (y[B_LAST] >= 0 and y[B_LAST] != r):
                return False
    ncmd = T.shape[1]
    for lvl in range(LEVELS):
        ya, yb = node[a, N_LO + lvl], node[b, N_LO + lvl]
        for k in range(node[a, N_HI + lvl] - ya):
            for c in range(ncmd):
                if not _same(T[ya + k, c], T[yb + k, c], lat_from[c], h):
                    return False
                if not _same(Tsub[ya + k, c], Tsub[yb + k, c], lat_from[c], h):
                    return False
            for w in range(win.shape[0]):
                size, lat = win[w, 1], win[w, 2]
                ca, cb = win_count[w, ya + k], win_count[w, yb + k]
                for u in range(size):
                    ma, mb = ca - size + u, cb - size + u
                    xa = win_hist[w, ya + k, ma % size] if ma >= 0 else NEG
                    xb = win_hist[w, yb + k, mb % size] if mb >= 0 else NEG
                    if not _same(xa, xb, lat, h):
                        return False
    return True


@njit(cache=True, allocates=False)
def catch_up(node, rules, rule_ptr, win, win_role, cmds, params, T, Tsub, win_hist, win_count, bank, chan, counts,
             ref_due, ch, tmin):
    """Issue the refreshes of channel ch's rank that fall due before a stream starting at tmin can issue there:
    what the kernel does first at the channel's first command (the same steps, so the same State), done
    before the stream so that a channel that idled through a refresh and one that refreshed while busy
    compare alike. Channels of one rank only (a refresh for a rank is caught up at a command on it)."""
    if params[P_RANKS] != 1 or params[P_REFRESH_ON] == 0:
        return
    rk = node[ch, N_LO + 1]
    r = rk - params[P_BASE + 1]
    while True:
        due = ref_due[r]
        floor = channel_floor(params, chan, ch)
        lb = max(tmin, floor)
        if lb < due:
            return
        if skip_idle_refreshes(node, win, win_role, cmds, T, Tsub, win_hist, win_count, bank, chan, counts, ref_due,
                               params, rk, lb) > 0:
            continue
        xc, xs = refresh_step(node, params, bank, rk, due)
        t = earliest(node, rules, rule_ptr, win, win_role, T, Tsub, win_hist, win_count, xc, xs, max(due, floor))
        if xc == params[P_REF]:
            ref_due[r] += params[P_NREFI]
        commit(node, win, win_role, cmds, T, Tsub, win_hist, win_count, chan, counts, xc, xs, t)
        apply_effect(node, cmds, params, bank, chan, xc, xs, -1, True)
        chan[ch, C_INSERTED] += 1


@njit(cache=True)
def keep(node, T, Tsub, win_count, chan, counts, a):
    """What :func:`copy_run` needs of representative a's State before its commands issue."""
    nodes = channel_nodes(node, a)
    return T[nodes], Tsub[nodes], win_count[:, nodes], chan[a].copy(), counts[a].copy()


@njit(cache=True, allocates=False)
def copy_run(node, params, win, T, Tsub, win_hist, win_count, bank, chan, counts, ref_due, a, b, kept, uses):
    """Give twin b what issuing representative a's commands gave a (``kept``: :func:`keep` of a before)."""
    T0, Tsub0, count0, chan0, counts0 = kept
    ncmd = T.shape[1]
    k = 0
    for lvl in range(LEVELS):
        ya, yb = node[a, N_LO + lvl], node[b, N_LO + lvl]
        for j in range(node[a, N_HI + lvl] - ya):
            for c in range(ncmd):
                if T[ya + j, c] != T0[k, c]:
                    T[yb + j, c] = T[ya + j, c]
                if Tsub[ya + j, c] != Tsub0[k, c]:
                    Tsub[yb + j, c] = Tsub[ya + j, c]
            for w in range(win.shape[0]):
                size = win[w, 1]
                before, after = count0[w, k], win_count[w, ya + j]
                own = win_count[w, yb + j]
                for m in range(max(after - size, before), after):
                    win_hist[w, yb + j, (own + m - before) % size] = win_hist[w, ya + j, m % size]
                win_count[w, yb + j] = own + after - before
            k += 1
    base = params[P_BASE + 3]
    bank_a, bank_b = node[a, N_LO + 3] - base, node[b, N_LO + 3] - base
    for j in range(node[a, N_HI + 3] - node[a, N_LO + 3]):
        for f in (B_OPEN, B_WANT, B_FRESH, B_KIND):
            bank[bank_b + j, f] = bank[bank_a + j, f]
        if uses[j, U_CLOSES]:  # else neither wrote it (a refresh's close leaves it)
            bank[bank_b + j, B_LAST] = bank[bank_a + j, B_LAST]
    rank_a = node[a, N_LO + 1] - params[P_BASE + 1]
    rank_b = node[b, N_LO + 1] - params[P_BASE + 1]
    for r in range(params[P_RANKS]):
        ref_due[rank_b + r] = ref_due[rank_a + r]
    for f in _TAKEN:
        chan[b, f] = chan[a, f]
    chan[b, C_END] = max(chan[b, C_END], chan[a, C_END])
    la = chan[a, C_LAST_NODE]
    if la >= 0:
        lvl = node[la, N_LEVEL]
        chan[b, C_LAST_NODE] = la - node[a, N_LO + lvl] + node[b, N_LO + lvl]
    else:
        chan[b, C_LAST_NODE] = la
    for f in _COUNTERS:
        chan[b, f] += chan[a, f] - chan0[f]
    for c in range(counts.shape[1]):
        counts[b, c] += counts[a, c] - counts0[c]
