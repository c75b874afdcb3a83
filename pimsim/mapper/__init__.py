"""The mapper: where every matrix lives in the PIM memory, and the command streams that use it."""
