"""The event-driven engine: instructions on the ASIC, links and PIM channels, timed token by token."""
