"""Pretrained universal potentials used as oracles (CHGNet; weights ship in its wheel)."""
