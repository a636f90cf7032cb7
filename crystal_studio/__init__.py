"""Crystal Studio: data-driven inverse design of inorganic crystals."""

__version__ = "0.1.0"
