"""The DRAM standards pimsim knows, by the name a hardware config uses in ``dram.standard``."""

from pimsim.dram.standard import Standard
from pimsim.dram.standards.ddr4 import DDR4
from pimsim.dram.standards.gddr6_aim import GDDR6_AIM
from pimsim.dram.standards.hbm2_pim import HBM2_PIM
from pimsim.dram.standards.hbm3_pim import HBM3_PIM
from pimsim.dram.standards.lpddr5_pim import LPDDR5_PIM

STANDARDS: dict[str, Standard] = {s.name: s for s in (DDR4, GDDR6_AIM, HBM2_PIM, HBM3_PIM, LPDDR5_PIM)}

__all__ = ["STANDARDS", "DDR4", "GDDR6_AIM", "HBM2_PIM", "HBM3_PIM", "LPDDR5_PIM"]
