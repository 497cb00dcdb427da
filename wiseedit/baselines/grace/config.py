"""GRACE's settings: a dataclass that checks itself (see :mod:`wiseedit.baselines.grace.method`)."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from wiseedit.methods.config import MethodConfig
from wiseedit.methods.option_checks import choice_problem, number_problem, placement_problem, whole_number_problem


@dataclass
class GraceConfig(MethodConfig):
    """GRACE's settings. Defaults are scale-free so they work from tiny to 7B models; ``preset="paper"``
    gives the paper / EasyEdit values (eps 1.0 absolute, cold init, no early stop)."""

    label = "GRACE"
    presets = MappingProxyType({"paper": MappingProxyType(dict(eps=1.0, eps_unit="absolute", value_init="cold",
                                                               stop_loss=None, plateau=None))})

    module: str | None = None  # edited module path ("{i}" = `layer`); None: the architecture's default
    layer: int | None = None  # layer of the default module; None: the FFN value module at ~80% depth
    eps: float = 0.1  # initial radius of a new entry, in `eps_unit`
    eps_unit: Literal["key_norm", "absolute"] = "key_norm"  # key_norm: eps x ||key|| of that edit
    dist_fn: Literal["euclidean"] = "euclidean"  # the only one the paper's LLM results use
    replacement: Literal["last", "all"] = "last"  # positions whose output a routed row replaces
    value_init: Literal["warm", "cold"] = "warm"  # warm: the module's own output; cold: U[0, 1)
    n_iter: int = 100  # optimisation steps per edit (paper 100)
    lr: float = 1.0  # Adam learning rate on the value (paper 1.0)
    stop_loss: float | None = 0.01  # early stop: every target token is the argmax and the NLL is below
    plateau: float | None = 1e-3  # ... or the last step improved the NLL by less than this (nats)
    seed: int = 0  # seeds the cold init of entry i with seed + i

    def problem(self) -> str | None:
        problems = (
            self.layer is not None and whole_number_problem("layer", self.layer, 0),
            placement_problem(self.module, self.layer),
            number_problem("eps", self.eps, 0, above=True),
            choice_problem("eps_unit", self.eps_unit, ("key_norm", "absolute")),
            choice_problem("dist_fn", self.dist_fn, ("euclidean",)),
            choice_problem("replacement", self.replacement, ("last", "all")),
            choice_problem("value_init", self.value_init, ("warm", "cold")),
            whole_number_problem("n_iter", self.n_iter, 1),
            number_problem("lr", self.lr, 0, above=True),
            self.stop_loss is not None and number_problem("stop_loss", self.stop_loss, 0, infinite=True),
            self.plateau is not None and number_problem("plateau", self.plateau, 0, infinite=True),
            # entry i's cold init seeds torch with seed + i, which must fit in 64 bits
            whole_number_problem("seed", self.seed, -2**63, 2**63 - 1),
        )
        return next((p for p in problems if p), None)
