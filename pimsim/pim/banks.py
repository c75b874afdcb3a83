"""The functional bank model: data really stored in the simulated banks, MAC units that really compute.

It executes the same command streams the timing kernel issues (timing plays no part here, only the
order of commands per channel):

- ``ACT``/``ACTAB`` open a row, ``PRE``/``PREA``/``REF`` close rows;
- ``WRGB`` writes one column access worth of activations (its payload) into the channel's global
  buffer, at slot ``column / burst_length`` modulo the buffer's size in column accesses;
- ``MACAB`` makes every PIM unit of the channel multiply one column access of its bank's open row by
  the activations of global-buffer chunk ``column / burst_length`` (modulo the buffer) and accumulate.
  A chunk is as many activations as a column access holds weights: one write slot where weights and
  activations are as wide (bf16, fp16, int8), several where they are narrower (128 ternary weights
  take 128 int8 activations, four 32 B writes). With several banks
  per unit, the command's bank selector (0 .. banks_per_unit-1) says which bank of each group feeds
  its unit. ``MACSB`` does the same in the one unit of the addressed bank;
- ``RDMAC`` reads every unit's accumulators of the channel and clears them;
- with several accumulator registers per unit (``pim.accumulator_registers``: HBM-PIM's GRF_B), each
  MAC, RDMAC and WRAB names its register (``register[i]``, the index the CRF's auto-address mode takes
  from the column address); ``PIMON`` (entering AB-PIM mode) zeroes every register of the channel,
  ``WRAB`` stores register ``register[i]`` of every unit into the open row of the unit's bank
  ``select[i]`` at the command's column (rounded to the operand format);
- ``WR`` writes its payload into the open row (``RD`` changes nothing).

How a unit accumulates comes from the config: ``accumulate: tree`` sums the lane products pairwise
(an adder tree, rounding each sum to the accumulator format) and adds the result to one accumulator;
``accumulate: lanes`` adds each lane's product to that lane's accumulator. Either way each addition is
rounded once to ``accumulator_format`` (a fused multiply-add: products of operands are exact).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pimsim._numba_cache import njit
from pimsim.config.models import HardwareConfig
from pimsim.dram.compile import Compiled
from pimsim.dram.standard import Effect, Level
from pimsim.errors import PimsimError
from pimsim.pim.formats import ACCUMULATORS, GROUP_SIZE, OPERAND_BITS, elements_in, to_operands
from pimsim.pim.rounding import round_acc

# what each command does to the functional state
R_NONE, R_OPEN, R_CLOSE, R_MAC, R_WRGB, R_RDMAC, R_WRITE, R_ZERO, R_WRACC = range(9)
_ROLES_BY_NAME = {"MACAB": R_MAC, "MACSB": R_MAC, "WRGB": R_WRGB, "RDMAC": R_RDMAC, "WR": R_WRITE,
                  "PIMON": R_ZERO, "WRAB": R_WRACC}
_ROLES_BY_EFFECT = {Effect.OPEN: R_OPEN, Effect.CLOSE: R_CLOSE, Effect.REFRESH: R_CLOSE}


@dataclass
class MacResult:
    """What one RDMAC returned: the accumulators of every unit of its channel."""

    index: int  # position of the RDMAC in the command stream
    channel: int
    values: np.ndarray  # float64[units, accumulators per unit]


class BankModel:
    """The contents of a PIM memory and the state of its MAC units, for one hardware config."""

    def __init__(self, hw: HardwareConfig):
        if hw.pim is None:
            raise PimsimError(f"{hw.name}: has no pim section, so its banks cannot compute")
        org, pim = hw.dram.organization, hw.pim
        self.hw = hw
        self.format = pim.weight_format
        if self.format in GROUP_SIZE:
            raise PimsimError(f"{hw.name}: the functional bank model does not execute {self.format} weights (their "
                              f"units' scale reads); pimsim.cosim.numerics.GroupQuantGemv computes what the units "
                              f"return")
        self.input_format = pim.input_format
        self.elems_per_access = elements_in(org.access_bytes, self.format)
        self.inputs_per_write = org.access_bytes * 8 // OPERAND_BITS[self.input_format]
        integer = pim.accumulator_format == "int32"
        if pim.lanes_per_unit != self.elems_per_access and not integer:
            # several passes of fewer lanes would round differently; integer sums are exact either way
            raise PimsimError(f"{hw.name}: the functional model needs one lane per operand of a column access "
                              f"({self.elems_per_access} {self.format} values), got {pim.lanes_per_unit} lanes")
        self.row_elems = elements_in(org.row_bytes, self.format)
        self.banks = org.ranks * org.banks
        self.banks_per_unit = pim.banks_per_unit
        self.units = self.banks // pim.banks_per_unit
        self.acc_width = pim.lanes_per_unit if pim.accumulate == "lanes" else 1
        self.acc_kind = ACCUMULATORS[pim.accumulator_format]
        self.gb_chunks = pim.global_buffer_bytes // (self.elems_per_access * OPERAND_BITS[self.input_format] // 8)
        channels = org.channels
        # rows that were ever written get a slot in `data`; the rest of the memory reads as zeros
        self.slot = np.full((channels, self.banks, org.rows), -1, np.int32)
        self.data = np.zeros((16, self.row_elems), np.float32)
        self.rows_used = 0
        self.global_buffer = np.zeros((channels, self.gb_chunks * self.elems_per_access), np.float32)
        self.registers = pim.accumulator_registers
        self.acc = np.zeros((channels, self.units, self.registers, self.acc_width), np.float64)
        self.open_row = np.full((channels, self.banks), -1, np.int64)

    # --- placing data directly (what a mapper's loader does before the stream runs) ----------------
    def store(self, channel: int, bank: int, row: int, values, offset: int = 0) -> None:
        """Put operands into a row of a bank, starting at element `offset` (rounded to the format)."""
        vals = to_operands(values, self.format).ravel()
        if offset < 0 or offset + vals.size > self.row_elems:
            raise PimsimError(f"{vals.size} values at offset {offset} do not fit a row of {self.row_elems}")
        slot = self._slot(channel, bank, row)
        self.data[slot, offset:offset + vals.size] = vals

    def store_rows(self, channel, bank, row, values, offset: int = 0) -> None:
        """`store` for many rows at once: row i of `values` goes to (channel[i], bank[i], row[i])."""
        vals = to_operands(values, self.format)
        if vals.ndim != 2 or offset < 0 or offset + vals.shape[1] > self.row_elems:
            raise PimsimError(f"rows of {vals.shape[-1]} values at offset {offset} do not fit a row of "
                              f"{self.row_elems}")
        slots = np.array([self._slot(int(c), int(b), int(r)) for c, b, r in zip(channel, bank, row)], np.int64)
        self.data[slots, offset:offset + vals.shape[1]] = vals

    def _slot(self, channel: int, bank: int, row: int) -> int:
        slot = int(self.slot[channel, bank, row])
        if slot < 0:
            slot = self.rows_used
            if slot == self.data.shape[0]:
                grown = np.zeros((2 * slot, self.row_elems), np.float32)
                grown[:slot] = self.data
                self.data = grown
            self.slot[channel, bank, row] = slot
            self.rows_used += 1
        return slot

    # --- running a command stream ---------------------------------------------------------------------
    def run(self, compiled: Compiled, cmd, node, row, column, payload_index=None, payloads=None,
            select=None, register=None) -> list[MacResult]:
        """Execute a command stream (the kernel's arrays); returns what every RDMAC read.

        ``payload_index[i]`` is the row of ``payloads`` that WRGB or WR command i writes (one column
        access of activations or of weights each); -1 for commands without data. Where weights and
        activations differ in width (ternary weights, int8 activations), a stream writes only one kind.
        ``select[i]`` is the bank within each unit that all-bank MAC (or WRAB) i uses (default 0);
        ``register[i]`` the accumulator register MAC, RDMAC or WRAB i names (default 0).
        """
        if compiled.hw.dram.organization != self.hw.dram.organization:
            raise PimsimError("the command stream was compiled for a different memory organisation")
        names = compiled.command_names
        roles = np.array([_ROLES_BY_NAME.get(n, _ROLES_BY_EFFECT.get(compiled.standard.command(n).effect, R_NONE))
                          for n in names], np.int64)
        n = len(cmd)
        if payload_index is None:
            payload_index = np.full(n, -1, np.int64)
        select = np.zeros(n, np.int64) if select is None else np.asarray(select, np.int64)
        if np.any((select < 0) | (select >= self.banks_per_unit)):
            raise PimsimError(f"bank selectors must be in 0..{self.banks_per_unit - 1}")
        register = np.zeros(n, np.int64) if register is None else np.asarray(register, np.int64)
        if register.shape != (n,) or np.any((register < 0) | (register >= self.registers)):
            raise PimsimError(f"accumulator registers must be in 0..{self.registers - 1}, one per command")
        has_wr, has_wrgb = np.any(roles[cmd] == R_WRITE), np.any(roles[cmd] == R_WRGB)
        width, fmt = self.inputs_per_write, self.input_format
        if has_wr:
            if has_wrgb and (width, fmt) != (self.elems_per_access, self.format):
                raise PimsimError(f"a stream writing both {self.format} weights and {fmt} activations needs two runs")
            width, fmt = self.elems_per_access, self.format
        if payloads is None:
            payloads = np.zeros((0, width), np.float32)
        payloads = to_operands(payloads, fmt).reshape(-1, width)
        needs = (roles[cmd] == R_WRGB) | (roles[cmd] == R_WRITE)
        if np.any(needs & (payload_index < 0)) or np.any(payload_index >= len(payloads)):
            raise PimsimError("every WRGB and WR command needs a payload row (payload_index)")
        # node -> (channel, bank index in channel or -1 for rank/channel scope)
        level = compiled.node_level(node)
        channel = compiled.channel_of(node) - compiled.level_base[Level.CHANNEL]
        bank = np.where(level == Level.BANK, (node - compiled.level_base[Level.BANK]) % self.banks, -1)
        writes = np.flatnonzero(roles[cmd] == R_WRITE)
        if np.any(np.asarray(row)[writes] < 0):
            raise PimsimError("a functional run needs the row of every WR command")
        for i in writes:  # the numba loop cannot grow `data`: rows that WR will write get slots now
            self._slot(int(channel[i]), int(bank[i]), int(row[i]))
        for i in np.flatnonzero(roles[cmd] == R_WRACC):  # and so do the rows write-backs store into
            if row[i] < 0:
                raise PimsimError("a functional run needs the row of every WRAB command")
            for u in range(self.units):
                self._slot(int(channel[i]), u * self.banks_per_unit + int(select[i]), int(row[i]))
        bl = self.hw.dram.organization.burst_length
        accesses = np.asarray(column, np.int64) // bl
        uses_column = np.isin(roles[cmd], (R_MAC, R_WRGB, R_WRITE, R_WRACC))
        bad = uses_column & ((accesses < 0) | (accesses >= self.row_elems // self.elems_per_access))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise PimsimError(f"command {i} ({names[cmd[i]]}): column {column[i]} is outside the row")
        out_index, out_values, err = _execute(
            roles[cmd], channel.astype(np.int64), bank.astype(np.int64), np.asarray(row, np.int64),
            accesses, np.asarray(payload_index, np.int64), payloads, select, register,
            self.slot, self.data, self.global_buffer, self.acc, self.open_row,
            self.banks_per_unit, self.elems_per_access, self.inputs_per_write, self.gb_chunks, self.acc_width,
            self.acc_kind)
        if err[0] >= 0:
            raise PimsimError(f"command {int(err[0])} ({names[cmd[int(err[0])]]}): bank {int(err[1])} of channel "
                              f"{int(channel[int(err[0])])} has no row {'open' if err[2] < 0 else int(err[2])} "
                              f"to compute on or write to")
        return [MacResult(int(i), int(channel[i]), v) for i, v in zip(out_index, out_values)]


@njit(cache=True)
def _execute(role, channel, bank, row, col, payload_index, payloads, select, register, slot, data, gb, acc,
             open_row, banks_per_unit, elems, per_write, gb_chunks, acc_width, acc_kind):
    n = role.shape[0]
    units, width = acc.shape[1], acc.shape[3]
    n_read = 0
    for i in range(n):
        if role[i] == R_RDMAC:
            n_read += 1
    out_index = np.empty(n_read, np.int64)
    out_values = np.empty((n_read, units, width), np.float64)
    err = np.full(3, -1, np.int64)  # command index, bank, wanted row: a MAC or WR with its row not open
    k_read = 0
    nbanks = open_row.shape[1]
    products = np.empty(elems, np.float64)
    for i in range(n):
        r, ch, b = role[i], channel[i], bank[i]
        if r == R_OPEN or r == R_CLOSE:
            lo, hi = (b, b + 1) if b >= 0 else (0, nbanks)
            for bb in range(lo, hi):
                open_row[ch, bb] = row[i] if r == R_OPEN else -1
        elif r == R_WRGB:
            start = (col[i] % (gb.shape[1] // per_write)) * per_write
            for e in range(per_write):
                gb[ch, start + e] = payloads[payload_index[i], e]
        elif r == R_WRITE:
            if open_row[ch, b] != row[i]:
                err[0], err[1], err[2] = i, b, row[i]
                return out_index[:k_read], out_values[:k_read], err
            s = slot[ch, b, row[i]]
            for e in range(elems):
                data[s, col[i] * elems + e] = payloads[payload_index[i], e]
        elif r == R_RDMAC:
            out_index[k_read] = i
            out_values[k_read] = acc[ch, :, register[i], :]
            acc[ch, :, register[i], :] = 0.0
            k_read += 1
        elif r == R_ZERO:
            acc[ch] = 0.0
        elif r == R_WRACC:
            for u in range(units):
                bb = u * banks_per_unit + select[i]
                if open_row[ch, bb] != row[i]:
                    err[0], err[1], err[2] = i, bb, row[i]
                    return out_index[:k_read], out_values[:k_read], err
                s = slot[ch, bb, row[i]]
                for e in range(min(width, elems)):
                    data[s, col[i] * elems + e] = np.float32(acc[ch, u, register[i], e])
        elif r == R_MAC:
            if b >= 0:  # one unit: the one owning the addressed bank
                first_unit, last_unit, sel = b // banks_per_unit, b // banks_per_unit + 1, b % banks_per_unit
            else:  # every unit, each with the selected bank of its group
                first_unit, last_unit, sel = 0, units, select[i]
            g0 = (col[i] % gb_chunks) * elems
            for u in range(first_unit, last_unit):
                bb = u * banks_per_unit + sel
                if open_row[ch, bb] < 0:
                    err[0], err[1] = i, bb
                    return out_index[:k_read], out_values[:k_read], err
                s = slot[ch, bb, open_row[ch, bb]]
                for e in range(elems):
                    w = data[s, col[i] * elems + e] if s >= 0 else np.float32(0.0)
                    products[e] = np.float64(w) * np.float64(gb[ch, g0 + e])  # exact: operands are narrow
                if acc_width == 1:
                    # adder tree: pairwise sums, each rounded to the accumulator format
                    m = elems
                    while m > 1:
                        half = m // 2
                        for e in range(half):
                            products[e] = round_acc(products[2 * e] + products[2 * e + 1], acc_kind)
                        if m % 2:
                            products[half] = products[m - 1]
                            half += 1
                        m = half
                    acc[ch, u, register[i], 0] = round_acc(acc[ch, u, register[i], 0] + products[0], acc_kind)
                else:
                    k = register[i]
                    for e in range(elems):
                        # with fewer lanes than weights a column takes passes: lane e % width
                        acc[ch, u, k, e % acc_width] = round_acc(acc[ch, u, k, e % acc_width] + products[e], acc_kind)
    return out_index, out_values, err
