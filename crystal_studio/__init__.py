"""Crystal Studio: data-driven inverse design of inorganic crystals."""

# The only place the version is written: pyproject.toml reads it (setuptools `attr`), the frozen app
# carries this module, and `crystal-studio --version` prints it without importing anything heavy.
__version__ = "0.1.0"
