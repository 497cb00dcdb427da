"""Load a base model and its tokenizer from a resolved local folder, never from the network."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Literal, Mapping

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from wiseedit.errors import BadInputError
from wiseedit.models.fingerprint import base_fingerprint
from wiseedit.models.quiet import no_progress_bars
from wiseedit.models.resolve import ModelSource, resolve_model

DType = Literal["auto", "float32", "bfloat16", "float16"]

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Share of a GPU's free memory the weights may take when device="auto" puts the model on one GPU; the
# rest is for activations, the side memory and its gradients. Above it, accelerate spreads the model.
_ONE_GPU_SHARE = 0.85


@dataclass(frozen=True)
class LoadedModel:
    """A base model ready to edit: the model (eval mode), its tokenizer, where it came from, its hash."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    source: ModelSource
    # Computed at load time, not lazily: read after an edit, a lazy hash would be the edited model's.
    fingerprint: str


#: ``from_pretrained`` arguments that keep the model's modules plain PyTorch. From transformers 5.25,
#: ``use_kernels`` defaults to True: with the ``kernels`` package installed (a dependency of 5.25) some
#: layers' forward is swapped for a Hub kernel, fetched from the Hub, and without it loading fails
#: ("Kernels are not available"). Editing methods replace and hook modules of the plain graph and must
#: see the forward they patched; 5.14-5.24 default to False, so this changes nothing there.
PLAIN_MODULES: Mapping[str, object] = MappingProxyType({"use_kernels": False})


def load_base(name: str, *, device: str = "auto", dtype: DType = "auto",
              trust_remote_code: bool = False) -> LoadedModel:
    """Resolve `name` (folder, alias or cached hub id) and load model + tokenizer from the local folder.

    `device`: "auto" (CUDA if available, else CPU; a model too large for one GPU is spread by
    accelerate with ``device_map="auto"``), "cpu", "cuda" or "cuda:N".
    `dtype`: "auto" (the checkpoint's dtype on GPU, float32 on CPU), "float32", "bfloat16", "float16".
    Code shipped with a checkpoint runs only with `trust_remote_code=True`.
    """
    source = resolve_model(name)
    target = _target_device(device)
    torch_dtype = _torch_dtype(dtype, target)
    _check_config(source, trust_remote_code)
    device_map = _device_map(source.path, target, torch_dtype, automatic=device == "auto")
    try:
        # local_files_only + a local path: nothing is fetched, with or without HF_HUB_OFFLINE.
        with no_progress_bars():  # wiseedit reports its own stages; the bar would litter stderr
            model = AutoModelForCausalLM.from_pretrained(
                source.path, dtype=torch_dtype, device_map=device_map,
                trust_remote_code=trust_remote_code, local_files_only=True, **PLAIN_MODULES)
    except OSError as error:
        raise BadInputError(f"the weights of model '{name}' in {source.path} cannot be loaded: "
                            f"{_first_line(error)}") from error
    model.eval()
    tokenizer = load_tokenizer(source, trust_remote_code)
    return LoadedModel(model=model, tokenizer=tokenizer, source=source, fingerprint=base_fingerprint(model))


def _target_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        target = torch.device(device)
    except (RuntimeError, ValueError):
        raise BadInputError(f"device '{device}' is not a device: use auto, cpu, cuda or cuda:N") from None
    if target.type == "cuda":
        if not torch.cuda.is_available():
            raise BadInputError(f"device '{device}' was asked for but no CUDA GPU is visible: use --device cpu")
        if target.index is not None and target.index >= torch.cuda.device_count():
            raise BadInputError(f"device '{device}' does not exist: {torch.cuda.device_count()} GPU(s) visible")
    elif target.type != "cpu":
        raise BadInputError(f"device '{device}' is not supported: use auto, cpu, cuda or cuda:N")
    return target


def _torch_dtype(dtype: str, target: torch.device) -> torch.dtype | str:
    if dtype == "auto":
        # The checkpoint's own dtype on GPU ("auto" reads config.json); float32 on CPU, where half
        # precision matmuls are slow or missing and memory is rarely the limit for the models we edit.
        return "auto" if target.type == "cuda" else torch.float32
    if dtype not in _DTYPES:
        raise BadInputError(f"dtype '{dtype}' is not supported: use auto, float32, bfloat16 or float16")
    return _DTYPES[dtype]


def _check_config(source: ModelSource, trust_remote_code: bool) -> None:
    """Read config.json first so an unknown architecture gets one sentence, not a loader traceback."""
    try:
        AutoConfig.from_pretrained(source.path, trust_remote_code=trust_remote_code, local_files_only=True)
    except (ValueError, KeyError, OSError) as error:
        raw = _raw_config(source.path)
        if "auto_map" in raw and not trust_remote_code:
            raise BadInputError(f"model '{source.name}' needs the Python code shipped in {source.path}: pass "
                                "--trust-remote-code if you trust it") from error
        raise BadInputError(f"{source.path / 'config.json'} is not a config this transformers can read "
                            f"(model_type '{raw.get('model_type', '?')}'): {_first_line(error)}") from error


def _device_map(path: Path, target: torch.device, dtype: torch.dtype | str, automatic: bool) -> str:
    """One device, except device="auto" on CUDA with weights too large for one GPU: accelerate's "auto"."""
    if target.type != "cuda" or not automatic:
        return str(target)
    index = target.index if target.index is not None else torch.cuda.current_device()
    free, _ = torch.cuda.mem_get_info(index)
    if _weights_bytes(path, dtype) <= _ONE_GPU_SHARE * free:
        return f"cuda:{index}"
    return "auto"


def _weights_bytes(path: Path, dtype: torch.dtype | str) -> float:
    """The weights' size in memory at `dtype`, estimated from the checkpoint files' size on disk."""
    files = list(path.glob("*.safetensors")) or list(path.glob("*.bin"))
    on_disk = sum(f.stat().st_size for f in files)
    raw = _raw_config(path)
    stored = _DTYPES.get(str(raw.get("dtype") or raw.get("torch_dtype")))
    if isinstance(dtype, torch.dtype) and stored is not None:
        return on_disk * dtype.itemsize / stored.itemsize
    return float(on_disk)


def load_tokenizer(source: ModelSource, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """The tokenizer of a resolved model (fast: no weights are read), with a pad token (EOS) if it has none."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.path, trust_remote_code=trust_remote_code,
                                                  local_files_only=True)
    except (OSError, ValueError, TypeError) as error:
        raise BadInputError(f"model '{source.name}' has no tokenizer this transformers can load in "
                            f"{source.path}: save the tokenizer beside the weights ({_first_line(error)})") from error
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        # Batched edits and evaluation pad; Llama/GPT-2 tokenizers ship without a pad token. Padding is
        # masked out everywhere (attention and loss), so reusing EOS changes no result.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _raw_config(path: Path) -> dict:
    try:
        return json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
