"""Which mode changes a command stream needs, from the standard's data (GDDR6-AiM's MAC and
register-access modes; nothing on standards without modes).

Used by everything that writes command streams (the GEMV mapper, the synthetic traces), so that the
mode changes sit where the vendor's controller puts them and the protocol checker finds them.
"""

from __future__ import annotations

from pimsim.dram.standard import Standard


class ModeTracker:
    """The mode one channel is in while its stream is written (it starts in the standard's initial mode)."""

    def __init__(self, standard: Standard):
        self.standard = standard
        self.mode = standard.initial_mode

    def changes_before(self, command: str) -> int:
        """How many mode changes (0 or 1) must precede ``command``; the tracker assumes they are emitted."""
        need = self.standard.command(command).mode
        return self.enter(need) if need else 0

    def enter(self, mode: str) -> int:
        """Mode changes (0 or 1) to be in ``mode``; a no-op on standards without modes."""
        if not self.standard.modes or not mode or mode == self.mode:
            return 0
        self.mode = mode
        return 1

    def leave(self) -> int:
        """Mode changes (0 or 1) that bring the channel back to the initial mode at the end of a stream."""
        return self.enter(self.standard.initial_mode)
