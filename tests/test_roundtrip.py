"""A delta saved, reloaded and applied gives logits identical to the in-memory edited model, on every
tiny architecture and for every method that changes the model, and is refused on another base."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

import wiseedit
from wiseedit.errors import BadInputError
from wiseedit.tokens import encode_pair, pad_token_id, right_padded
from wiseedit.testing import TINY_ARCHITECTURES, tiny_model, tiny_tokenizer

EDITS = [
    {"id": "a", "prompt": "The capital of France is", "target": "Rome"},
    {"id": "b", "prompt": "Alice works as a nurse in", "target": "Paris"},
]
PROBES = ["The capital of France is", "Bob plays the", "Q: Where does the river flow? A:"]
FAST = {"wise": {"n_iter": 5, "num_templates": 1}, "wise-retrieve": {"n_iter": 5, "num_templates": 1},
        "grace": {}, "ft-l": {"n_iter": 3}}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    tok = tiny_tokenizer()
    root = tmp_path_factory.mktemp("roundtrip")
    out = {}
    for arch in TINY_ARCHITECTURES:
        for seed in (0, 1):
            folder = root / f"{arch}-{seed}"
            tiny_model(arch, tok, seed=seed, ffn_mult=8).save_pretrained(folder)
            tok.save_pretrained(folder)
            out[arch, seed] = folder
    return out


def probe_logits(model, tokenizer):
    batch = right_padded([encode_pair(tokenizer, p, "x") for p in PROBES], pad_token_id(tokenizer))
    with torch.no_grad():
        return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
@pytest.mark.parametrize("method", list(FAST))
def test_reloaded_delta_gives_identical_logits(folders, tmp_path, arch, method):
    edits = tmp_path / "edits.jsonl"
    edits.write_text("".join(__import__("json").dumps(e) + "\n" for e in EDITS), encoding="utf-8")
    result = wiseedit.edit(str(folders[arch, 0]), edits, method=method, options=FAST[method],
                           out=tmp_path / "delta", device="cpu")
    live = probe_logits(result.edited.model, result.edited.tokenizer)
    reloaded = wiseedit.load_edited(str(folders[arch, 0]), tmp_path / "delta", device="cpu")
    assert torch.equal(probe_logits(reloaded.model, reloaded.tokenizer), live)
    with pytest.raises(BadInputError, match="differ"):
        wiseedit.load_edited(str(folders[arch, 1]), tmp_path / "delta", device="cpu")
