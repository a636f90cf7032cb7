"""Pure domain layer: crystal I/O, chemistry checks, property names, errors (no torch, no Qt)."""
