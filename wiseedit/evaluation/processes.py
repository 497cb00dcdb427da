"""Spreading an evaluation over the processes of ``accelerate launch`` (or ``torchrun``).

Blocks are independent (each starts from the base model), so process r of n takes every n-th block of
those still to do, and the results are all-gathered at the end. Without a launcher this is one process
and accelerate is not even imported.

On CPU-only machines use the torchrun-based launcher: ``accelerate launch --multi_gpu --num_processes
2 ...`` (with ``--cpu``, accelerate's plain launcher starts one process unless MPI is installed);
every process then runs on the CPU with the gloo backend.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence, TypeVar

T = TypeVar("T")


def launched() -> bool:
    """Whether this process was started by a multi-process launcher (torchrun / accelerate launch)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


@dataclass(frozen=True)
class Processes:
    """This process's place among the launched ones: `index` of `count` (0 of 1 without a launcher)."""

    index: int = 0
    count: int = 1
    state: Any = None  # accelerate's PartialState when launched, else None

    @classmethod
    def detect(cls, cpu: bool) -> "Processes":
        """The launched processes (initialising accelerate's process group), or one process.
        `cpu`: run on the CPU (gloo) even where GPUs are visible."""
        if not launched():
            return cls()
        from accelerate import PartialState

        state = PartialState(cpu=cpu)
        return cls(state.process_index, state.num_processes, state)

    @property
    def is_main(self) -> bool:
        return self.index == 0

    @property
    def device(self) -> str | None:
        """The device accelerate assigned to this process (``cuda:<local rank>`` or ``cpu``), or None."""
        return None if self.state is None else str(self.state.device)

    def share(self, items: Sequence[T]) -> list[T]:
        """This process's part of `items`: those at positions i with i % count == index."""
        return list(items[self.index::self.count])

    def barrier(self) -> None:
        """Wait until every process gets here."""
        if self.state is not None:
            self.state.wait_for_everyone()

    def gather(self, items: list[T]) -> list[T]:
        """Every process's `items`, concatenated in process order, on every process."""
        if self.state is None or self.count == 1:
            return list(items)
        from accelerate.utils import gather_object

        return list(gather_object(items))
