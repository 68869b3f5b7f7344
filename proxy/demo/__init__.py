"""Demo data for the README's walk-through: `mlproxy demo`, `mlproxy serve --demo`."""

from .customers import COLUMNS, TABLE, generate, load

__all__ = ["COLUMNS", "TABLE", "generate", "load"]
