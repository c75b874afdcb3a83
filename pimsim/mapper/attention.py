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
    functional = k_token is not None and values is not None
    jobs = []
    if "k" in parts:  # the token's K row, segment by segment
        cols = np.arange(0, layout.k.cols_padded, e)
        chunks = None
        if functional:
            k_row = np.zeros(layout.k.cols_padded, np.float32)
            k_row.reshape(layout.heads, layout.head_dim_padded)[:, :layout.head_dim] = k_token
            chunks = k_row.reshape(-1, e)
        channel, bank, dram_row, elem = layout.k.where(np.full(len(cols), token), cols)
        jobs.append(_row_jobs(channel, bank, dram_row, elem // e, chunks, by_first_use=True))
    if "v" in parts:
        jobs.append(_v_jobs(layout, token, values, functional))
    return _write_jobs(compiled, _RowJobs.concatenated(jobs, e), g)


@dataclass
class _RowJobs:
    """DRAM rows to open, access and close, one job each: its channel, bank and row, and its column
    accesses (all jobs' in one array, job after job, ``counts`` each) with what each writes (``chunks``:
    float32[accesses, elems per access]; None for zeros)."""

    channel: np.ndarray
    bank: np.ndarray
    row: np.ndarray
    counts: np.ndarray
    accesses: np.ndarray
    chunks: np.ndarray | None

    @staticmethod
    def concatenated(parts: list[_RowJobs], elems: int) -> _RowJobs:
        cat = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
        chunks = None
        if any(p.chunks is not None for p in parts):
            chunks = np.concatenate([p.chunks if p.chunks is not None else np.zeros((len(p.accesses), elems),
                                                                                    np.float32) for p in parts])
        return _RowJobs(cat("channel"), cat("bank"), cat("row"), cat("counts"), cat("accesses"), chunks)


def _row_jobs(channel, bank, dram_row, accesses, chunks, by_first_use: bool) -> _RowJobs:
    """One job per distinct (channel, bank, row) of the accesses, in order of first use (or sorted by
    channel, bank and row), each with its accesses in their order."""
    channel, bank, dram_row = (np.asarray(v, np.int64) for v in (channel, bank, dram_row))
    # one integer per (channel, bank, row) that sorts as the triples do (rows and banks are >= 0)
    banks, rows = int(bank.max(initial=0)) + 1, int(dram_row.max(initial=0)) + 1
    keys = (channel * banks + bank) * rows + dram_row
    unique, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    job = inverse.ravel()
    if by_first_use:
        order = np.argsort(first, kind="stable")
        rank = np.empty(len(order), np.int64)
        rank[order] = np.arange(len(order))
        job, unique = rank[job], unique[order]
    members = np.argsort(job, kind="stable")
    channel_bank, row = np.divmod(unique, rows)
    return _RowJobs(channel_bank // banks, channel_bank % banks, row, np.bincount(job, minlength=len(unique)),
                    np.asarray(accesses)[members], None if chunks is None else np.asarray(chunks)[members])


def _v_jobs(layout: KVLayout, token: int, values, functional: bool) -> _RowJobs:
    """V^T: one value per (head, dimension), in the row of that dimension; the rows in order of
    (channel, bank, row)."""
    e = layout.v.geometry.elems_per_access
    d = np.repeat(np.arange(layout.head_dim), layout.heads)
    h = np.tile(np.arange(layout.heads), layout.head_dim)
    col = h * layout.context_padded + token
    channel, bank, dram_row, elem = layout.v.where(d, col)
    chunks = None
    if functional:
        first = (token // e) * e  # first token of the column access the new value falls in
        known = values[first:min(first + e, len(values)), h, d]  # tokens x values
        chunks = np.zeros((len(d), e), np.float32)
        chunks[:, :known.shape[0]] = known.T
    return _row_jobs(channel, bank, dram_row, elem // e, chunks, by_first_use=False)


def read_row_program(compiled: Compiled, placement: GemvPlacement, entry: int) -> WriteProgram:
    """Commands reading one row of a placed table (an embedding lookup): each DRAM row it spans is
    opened in its bank, read one column access at a time, and closed."""
    g = placement.geometry
    e = g.elems_per_access
    cols = np.arange(0, placement.cols_padded, e)
    channel, bank, dram_row, elem = placement.where(np.full(len(cols), entry), cols)
    return _write_jobs(compiled, _row_jobs(channel, bank, dram_row, elem // e, None, by_first_use=True), g,
                       access="RD")


def _write_jobs(compiled: Compiled, jobs: _RowJobs, g: Geometry, access: str = "WR") -> WriteProgram:
    """Commands for row writes (or reads), in rounds of at most one row per bank: every bank of the round is
    activated, then written, then precharged, so the banks' row cycles overlap. Channel by channel; a
    bank's k-th job (in job order) goes to round k, and the jobs of a round keep their order."""
    org = compiled.hw.dram.organization
    ids = {n: i for i, n in enumerate(compiled.command_names)}
    n_jobs = len(jobs.counts)
    # the round of each job: how many jobs of its channel and bank come before it
    bank_key = jobs.channel * (int(jobs.bank.max(initial=0)) + 1) + jobs.bank
    by_bank = np.argsort(bank_key, kind="stable")
    sorted_keys = bank_key[by_bank]
    run_start = np.r_[0, np.flatnonzero(np.diff(sorted_keys)) + 1] if n_jobs else np.zeros(0, np.int64)
    starts = np.repeat(run_start, np.diff(np.r_[run_start, n_jobs]))
    rounds = np.empty(n_jobs, np.int64)
    rounds[by_bank] = np.arange(n_jobs) - starts
    nodes = np.asarray(compiled.bank_node(jobs.channel, 0, jobs.bank // org.banks_per_group,
                                          jobs.bank % org.banks_per_group), np.int64)
    # every command with its place: (channel, round, phase: ACT / access / PRE, job, access within the job)
    job_index = np.arange(n_jobs)
    of_access = np.repeat(job_index, jobs.counts)
    within = np.arange(len(of_access)) - np.repeat(np.cumsum(jobs.counts) - jobs.counts, jobs.counts)
    job_of = np.concatenate([job_index, of_access, job_index])
    phase = np.repeat([0, 1, 2], [n_jobs, len(of_access), n_jobs])
    step = np.concatenate([np.zeros(n_jobs, np.int64), within, np.zeros(n_jobs, np.int64)])
    order = np.lexsort((step, job_of, phase, rounds[job_of], jobs.channel[job_of]))
    job_of, phase = job_of[order], phase[order]
    access_of = np.concatenate([np.full(n_jobs, -1), np.arange(len(of_access)), np.full(n_jobs, -1)])[order]
    cmd = np.choose(phase, [ids["ACT"], ids[access], ids["PRE"]]).astype(np.int64)
    row = np.where(phase == 2, -1, jobs.row[job_of]).astype(np.int64)
    is_access = phase == 1
    column = np.full(len(order), -1, np.int64)
    column[is_access] = jobs.accesses[access_of[is_access]].astype(np.int64) * g.burst_length
    payload = np.full(len(order), -1, np.int64)
    writes = np.zeros((0, g.elems_per_access), np.float32)
    if access == "WR":
        payload[is_access] = np.arange(int(is_access.sum()))
        written = access_of[is_access]
        writes = (jobs.chunks[written].astype(np.float32) if jobs.chunks is not None
                  else np.zeros((len(written), g.elems_per_access), np.float32))
    return WriteProgram(cmd, nodes[job_of].astype(np.int64), row, column, payload,
                        writes.reshape(-1, g.elems_per_access))
