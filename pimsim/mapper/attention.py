"""The KV cache in the PIM banks, and the command streams of one attention step.

Layout (PIM-GPT): space for the whole context is reserved up front.

- **K, row-major**: one output row per token holding that token's keys of every head, concatenated
  (each head's part padded to whole column accesses). Scores q.K^T are a GEMV over this matrix whose
  columns fall into one group per head: every head's dot product gets its own RDMAC.
- **V, transposed**: one output row per head dimension d, holding V[t, h, d] for every head h and
  token t, heads concatenated along the row (each head's part padded to whole column accesses of
  tokens). p.V is a GEMV over this matrix with the probabilities of all heads in the global buffer,
  again one column group (and RDMAC) per head, reading only the tokens cached so far.

Appending a token writes its keys into its own K row (ACT, one WR per column access, PRE per DRAM
row it spans) and one value per (head, dimension) into the V rows: one masked WR each, since a
token's values of a head sit in a different column of every dimension's row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pimsim.dram.compile import Compiled
from pimsim.errors import PimsimError
from pimsim.mapper.placement import GemvPlacement, Geometry, RowAllocator, place_gemv


@dataclass(frozen=True)
class KVLayout:
    heads: int
    head_dim: int
    max_context: int
    head_dim_padded: int  # head_dim rounded up to whole column accesses
    context_padded: int  # max_context rounded up to whole column accesses
    k: GemvPlacement  # max_context x (heads * head_dim_padded)
    v: GemvPlacement  # head_dim_padded x (heads * context_padded)

    def k_groups(self) -> list[tuple[int, int]]:
        e = self.k.geometry.elems_per_access
        return [(h * self.head_dim_padded // e, self.head_dim_padded // e) for h in range(self.heads)]

    def v_groups(self, context: int) -> list[tuple[int, int]]:
        e = self.v.geometry.elems_per_access
        return [(h * self.context_padded // e, -(-context // e)) for h in range(self.heads)]


def kv_layout(geometry: Geometry, heads: int, head_dim: int, max_context: int,
              allocator: RowAllocator | None = None, layer: str = "") -> KVLayout:
    if min(heads, head_dim, max_context) < 1:
        raise PimsimError(f"attention needs heads, head_dim and context of at least 1, got {heads}, {head_dim}, "
                          f"{max_context}")
    e = geometry.elems_per_access
    d_pad = -(-head_dim // e) * e
    t_pad = -(-max_context // e) * e
    allocator = allocator or RowAllocator(geometry)
    k = place_gemv(geometry, max_context, heads * d_pad, allocator, f"{layer}K")
    v = place_gemv(geometry, d_pad, heads * t_pad, allocator, f"{layer}V")
    return KVLayout(heads, head_dim, max_context, d_pad, t_pad, k, v)


@dataclass
class WriteProgram:
    cmd: np.ndarray
    node: np.ndarray
    row: np.ndarray
    column: np.ndarray
    payload: np.ndarray  # row of `payloads` each WR writes (-1 for ACT/PRE)
    payloads: np.ndarray  # float32[writes, elems_per_access]

    def __len__(self) -> int:
        return len(self.cmd)


def append_program(compiled: Compiled, layout: KVLayout, token: int, k_token: np.ndarray | None = None,
                   values: np.ndarray | None = None, parts: str = "kv") -> WriteProgram:
    """Commands writing token `token`'s keys and values into the cache.

    ``k_token`` (heads x head_dim) are the new token's keys; ``values`` (tokens x heads x head_dim,
    at least token + 1 of them) the values of the cache *after* the append: a masked WR of one value
    carries its whole column access, so its payload holds the neighbouring tokens' values unchanged.
    Without them (timing only) the payloads are zeros. ``parts`` is "kv", or "k" or "v" alone."""
    if parts not in ("kv", "k", "v"):
        raise ValueError(f"parts must be 'kv', 'k' or 'v', not {parts!r}")
    if not 0 <= token < layout.max_context:
        raise PimsimError(f"token {token} is outside the reserved context of {layout.max_context}")
    g = layout.k.geometry
    e = g.elems_per_access
    jobs = []  # (channel, bank, DRAM row, accesses, chunks): one row to open, write and close
    functional = k_token is not None and values is not None
    if "k" in parts:  # the token's K row, segment by segment
        k_row = np.zeros(layout.k.cols_padded, np.float32)
        if functional:
            k_row.reshape(layout.heads, layout.head_dim_padded)[:, :layout.head_dim] = k_token
        cols = np.arange(0, layout.k.cols_padded, e)
        for key, sel in _by_row(*layout.k.where(np.full(len(cols), token), cols)):
            jobs.append((*key, layout.k.where(token, cols[sel])[3] // e, [k_row[c:c + e] for c in cols[sel]]))
    if "v" in parts:
        jobs += _v_jobs(layout, token, values, functional)
    return _write_jobs(compiled, jobs, g)


def _v_jobs(layout: KVLayout, token: int, values, functional: bool) -> list:
    """V^T: one value per (head, dimension), in the row of that dimension."""
    e = layout.v.geometry.elems_per_access
    zero = np.zeros(e, np.float32)
    jobs = []
    d = np.repeat(np.arange(layout.head_dim), layout.heads)
    h = np.tile(np.arange(layout.heads), layout.head_dim)
    col = h * layout.context_padded + token
    channel, bank, dram_row, elem = layout.v.where(d, col)
    first = (token // e) * e  # first token of the column access the new value falls in
    for key in sorted(set(zip(channel.tolist(), bank.tolist(), dram_row.tolist()))):
        sel = (channel == key[0]) & (bank == key[1]) & (dram_row == key[2])
        chunks = [zero] * int(sel.sum())
        if functional:
            chunks = []
            for dd, hh in zip(d[sel], h[sel]):
                chunk = np.zeros(e, np.float32)
                known = values[first:min(first + e, len(values)), hh, dd]
                chunk[:len(known)] = known
                chunks.append(chunk)
        jobs.append((*key, elem[sel] // e, chunks))
    return jobs


def read_row_program(compiled: Compiled, placement: GemvPlacement, entry: int) -> WriteProgram:
    """Commands reading one row of a placed table (an embedding lookup): each DRAM row it spans is
    opened in its bank, read one column access at a time, and closed."""
    g = placement.geometry
    e = g.elems_per_access
    cols = np.arange(0, placement.cols_padded, e)
    elem = placement.where(entry, cols)[3]
    jobs = [(*key, elem[sel] // e, [None] * int(sel.sum()))
            for key, sel in _by_row(*placement.where(np.full(len(cols), entry), cols))]
    return _write_jobs(compiled, jobs, g, access="RD")


def _by_row(channel, bank, dram_row, elem=None):
    """((channel, bank, row), mask) of each distinct row the elements fall in, in order of first use."""
    keys = np.stack([channel, bank, dram_row], axis=1)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    for k in np.argsort(first, kind="stable"):
        sel = inverse == k
        yield tuple(int(v) for v in keys[first[k]]), sel


def _write_jobs(compiled: Compiled, jobs: list, g: Geometry, access: str = "WR") -> WriteProgram:
    """Commands for row writes (or reads), in rounds of at most one row per bank: every bank of the round is
    activated, then written, then precharged, so the banks' row cycles overlap."""
    org = compiled.hw.dram.organization
    ids = {n: i for i, n in enumerate(compiled.command_names)}
    cmd, node, row, column, payload, payloads = [], [], [], [], [], []

    def emit(name, n, r, k=-1, p=-1):
        cmd.append(ids[name]), node.append(n), row.append(r), column.append(k), payload.append(p)

    pending: dict[int, list] = {}
    for job in jobs:
        pending.setdefault(job[0], []).append(job)
    for ch in sorted(pending):
        queue = pending[ch]
        while queue:
            this_round, rest, used = [], [], set()
            for job in queue:
                (rest if job[1] in used else this_round).append(job)
                used.add(job[1])
            queue = rest
            nodes = [int(compiled.bank_node(ch, 0, b // org.banks_per_group, b % org.banks_per_group))
                     for _, b, _, _, _ in this_round]
            for n, (_, _, r, _, _) in zip(nodes, this_round):
                emit("ACT", n, r)
            for n, (_, _, r, accesses, chunks) in zip(nodes, this_round):
                for k, chunk in zip(accesses, chunks):
                    if access == "WR":
                        emit("WR", n, r, int(k) * g.burst_length, len(payloads))
                        payloads.append(chunk)
                    else:
                        emit(access, n, r, int(k) * g.burst_length)
            for n in nodes:
                emit("PRE", n, -1)
    a = lambda v: np.asarray(v, np.int64)  # noqa: E731
    return WriteProgram(a(cmd), a(node), a(row), a(column), a(payload),
                        np.asarray(payloads, np.float32).reshape(-1, g.elems_per_access))
