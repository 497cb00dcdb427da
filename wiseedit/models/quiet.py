"""Loading (and saving) a checkpoint without transformers' own progress bars.

transformers 5 draws a tqdm bar, ``Loading weights``, on stderr for every ``from_pretrained`` (and
``Writing model shards`` for every ``save_pretrained``): it
would land in every wiseedit command's stderr (``--json`` runs and errors included), and in CI logs
as a heap of carriage returns. wiseedit reports its own stages, so loads run inside
:func:`no_progress_bars`, which uses transformers' documented switch
(``transformers.utils.logging.disable_progress_bar``) and restores the previous setting after.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


@contextmanager
def no_progress_bars() -> Iterator[None]:
    """Within the block, transformers (and huggingface_hub) draw no progress bar."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
