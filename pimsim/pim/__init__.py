"""The functional PIM model: number formats and banks whose MAC units really compute."""

from pimsim._numba_cache import configure

configure()
