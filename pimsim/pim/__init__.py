"""The functional PIM model: number formats and banks whose MAC units really compute."""
