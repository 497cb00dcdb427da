"""FT-L's settings: a dataclass that checks itself (see :mod:`wiseedit.baselines.ft_l.method`)."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from wiseedit.methods.config import MethodConfig
from wiseedit.methods.option_checks import number_problem, placement_problem, whole_number_problem


@dataclass
class FineTuneConfig(MethodConfig):
    """FT-L's settings; the defaults are EasyEdit's FT preset for LLaMA-2-7B (the layer aside: we edit
    WISE's module, EasyEdit's FT preset layer 21)."""

    label = "FT-L"
    presets = MappingProxyType({"paper": MappingProxyType({})})  # the defaults are the paper's

    module: str | None = None  # edited module path ("{i}" = `layer`); None: the architecture's default
    layer: int | None = None  # layer of the default module; None: the FFN value module at ~80% depth
    lr: float = 5e-4  # Adam learning rate
    n_iter: int = 25  # optimisation steps per edit
    weight_decay: float = 0.0  # Adam weight decay (on the delta)
    norm_constraint: float | None = None  # L-inf bound on W - W0 per entry (EasyEdit "constr": 5e-4)
    stop_loss: float | None = 0.01  # stop an edit once its target NLL is below this (EasyEdit: 1e-2)

    def problem(self) -> str | None:
        problems = (
            self.layer is not None and whole_number_problem("layer", self.layer, 0),
            placement_problem(self.module, self.layer),
            number_problem("lr", self.lr, 0, above=True),
            whole_number_problem("n_iter", self.n_iter, 1),
            number_problem("weight_decay", self.weight_decay, 0),
            self.norm_constraint is not None and number_problem("norm_constraint", self.norm_constraint, 0,
                                                                above=True, infinite=True),
            self.stop_loss is not None and number_problem("stop_loss", self.stop_loss, 0, infinite=True),
        )
        return next((p for p in problems if p), None)
