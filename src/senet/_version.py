"""The version of senet: one place, which pyproject.toml reads too."""

__version__ = "0.1.0"
