"""Samsung HBM-PIM's programming model (Aquabolt-XL / FIMDRAM), as data and a small interpreter.

Facts (REFERENCE.md section 3; ISCA'21 Aquabolt-XL paper; public PIMSimulator: README, src/PIMRank.cpp,
src/tests/PIMCmdGen.h, src/tests/PIMKernel.cpp; read for facts, no code taken):

- one PIM unit per two banks (an even and an odd bank), 8 units per pseudo-channel; a unit is a
  16-lane FP16 SIMD datapath with two general register files, GRF_A and GRF_B, of 8 x 256-bit
  registers each, a scalar register file, and a 32-entry command register file (CRF) holding the
  program; instructions ADD, MUL, MAC, MAD, MOV, FILL, NOP, JUMP, EXIT;
- in all-bank-PIM mode every column command to the channel runs the CRF instruction at the program
  counter in every unit; an instruction in auto-address mode (AAM) runs for 8 column commands in a
  row, taking its register index from the column address; JUMP repeats the instructions before it a
  pre-programmed number of times at no cost (a zero-cycle static branch); NOP n lasts n + 1 commands;
- GEMV (PIMCmdGen GemvPIMKernel): MAC GRF_B += EVEN_BANK x GRF_A (AAM), JUMP for the even-bank input
  tiles, the same for the odd bank, NOP 7 (the eight write-back commands), EXIT.

:func:`gemv_crf_program` builds that program for a number of input tiles; :func:`run_crf` says which
instruction each column command of a stream runs, so tests hold the mapper's command stream to the
program a real device would execute; :func:`check_modes` walks a command stream through the SB / AB /
AB-PIM modes and reports any command issued in a mode that does not allow it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pimsim.dram.standards.hbm2_pim import ALLOWED, MODE_SEQUENCES, ModeStep
from pimsim.errors import PimsimError

LANES = 16  # FP16 lanes of a unit (one 256-bit register)
GRF_A_REGISTERS = 8
GRF_B_REGISTERS = 8
CRF_ENTRIES = 32
INSTRUCTIONS_PER_CRF_WRITE = 8  # one 256-bit write carries eight 32-bit instructions
AAM_REPEAT = 8  # column commands an auto-address-mode instruction runs for


@dataclass(frozen=True)
class Instruction:
    op: str  # MAC, JUMP, NOP, EXIT (the GEMV program uses these)
    bank: str = ""  # EVEN_BANK / ODD_BANK: the bank operand of a MAC
    aam: bool = False
    count: int = 0  # JUMP: times to jump back; NOP: extra commands it lasts
    back: int = 0  # JUMP: instructions to jump back by

    def __str__(self) -> str:
        if self.op == "MAC":
            return f"MAC GRF_B, GRF_A, {self.bank}{' (AAM)' if self.aam else ''}"
        if self.op == "JUMP":
            return f"JUMP -{self.back} x{self.count}"
        if self.op == "NOP":
            return f"NOP {self.count}"
        return self.op


def gemv_crf_program(input_tiles: int, registers: int = GRF_B_REGISTERS,
                     tile_accesses: int = GRF_A_REGISTERS) -> tuple[Instruction, ...]:
    """The CRF program of one GEMV output tile: every unit multiplies ``registers`` output rows by
    ``input_tiles`` input tiles, even tiles from the even bank first, then odd tiles from the odd bank,
    and writes the ``registers`` accumulators back (NOP per write-back command)."""
    if input_tiles < 1:
        raise PimsimError(f"a GEMV needs at least one input tile, got {input_tiles}")
    prog: list[Instruction] = []
    for bank, tiles in (("EVEN_BANK", -(-input_tiles // 2)), ("ODD_BANK", input_tiles // 2)):
        if tiles == 0:
            continue
        prog.append(Instruction("MAC", bank, aam=True))
        # a tile takes registers x tile_accesses MACs; an AAM instruction runs 8 of them per pass
        repeats = -(-registers * tile_accesses * tiles // AAM_REPEAT)
        if repeats > 1:
            prog.append(Instruction("JUMP", count=repeats - 1, back=1))
    prog.append(Instruction("NOP", count=registers - 1))
    prog.append(Instruction("EXIT"))
    if len(prog) > CRF_ENTRIES:
        raise PimsimError(f"the GEMV program takes {len(prog)} instructions; the CRF holds {CRF_ENTRIES}")
    return tuple(prog)


def crf_writes(program) -> int:
    """WRCRF commands that load a program (eight instructions per 256-bit write)."""
    return -(-len(program) // INSTRUCTIONS_PER_CRF_WRITE)


def run_crf(program, commands: int) -> list[Instruction]:
    """The instruction each of ``commands`` consecutive column commands runs, from PC 0 (after PIMON).
    Past EXIT a column command runs nothing (None)."""
    out: list = []
    pc, jumps_left, jump_pc, repeat_left, repeat_pc = 0, -1, -1, -1, -1
    while len(out) < commands:
        ins = program[pc]
        if ins.op == "EXIT":
            out.extend([None] * (commands - len(out)))
            break
        if ins.op == "JUMP":
            if jump_pc != pc:
                jump_pc, jumps_left = pc, ins.count
            if jumps_left > 0:
                jumps_left -= 1
                pc -= ins.back
            else:
                jump_pc = -1
                pc += 1
            continue  # a jump costs no command
        runs = AAM_REPEAT if ins.aam else (ins.count + 1 if ins.op == "NOP" else 1)
        if repeat_pc != pc:
            repeat_pc, repeat_left = pc, runs
        out.append(ins)
        repeat_left -= 1
        if repeat_left == 0:
            repeat_pc = -1
            pc += 1
    return out


def check_modes(command_names, names_of_stream, rows_per_bank: int, start: str = "SB") -> list[str]:
    """Problems of a stream's commands against the device's modes (empty: every command is legal in
    the mode it is issued in, and the stream ends in SB). Mode changes are recognised by the
    sequences of :data:`MODE_SEQUENCES`: the ACT of the first step of a transition to its reserved row."""
    enter = {steps[0].row % rows_per_bank: key for key, steps in MODE_SEQUENCES.items() if steps[0].row is not None}
    mode, problems = start, []
    names = [command_names[c] for c in names_of_stream[0]]
    rows = names_of_stream[1]
    for i, (name, row) in enumerate(zip(names, rows)):
        if name == "ACT" and int(row) in enter and enter[int(row)][0] == mode:
            mode = enter[int(row)][1]
            continue
        if name == "PIMON" and mode == "AB":
            mode = "AB-PIM"
            continue
        if name == "PIMOFF" and mode == "AB-PIM":
            mode = "AB"
            continue
        if name not in ALLOWED[mode]:
            problems.append(f"command {i} ({name}) is not allowed in {mode} mode")
    if mode != start:
        problems.append(f"the stream ends in {mode} mode, not {start}")
    return problems


def mode_steps(src: str, dst: str) -> tuple[ModeStep, ...]:
    try:
        return MODE_SEQUENCES[(src, dst)]
    except KeyError:
        raise PimsimError(f"HBM-PIM has no direct {src} -> {dst} transition") from None


