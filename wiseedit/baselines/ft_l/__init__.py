"""FT-L: ``config`` (FineTuneConfig, its settings), ``method`` (FineTuneMethod: one module's weight
fine-tuned on each edit)."""

from wiseedit.baselines.ft_l.config import FineTuneConfig
from wiseedit.baselines.ft_l.method import FineTuneMethod

__all__ = ["FineTuneConfig", "FineTuneMethod"]
