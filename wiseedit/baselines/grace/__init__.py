"""GRACE: ``config`` (GraceConfig, its settings), ``codebook`` (the key-value entries and their radii),
``method`` (GraceMethod: the codebook in front of one module)."""

from wiseedit.baselines.grace.codebook import GraceCodebook
from wiseedit.baselines.grace.config import GraceConfig
from wiseedit.baselines.grace.method import GraceMethod

__all__ = ["GraceCodebook", "GraceConfig", "GraceMethod"]
