"""WISE on the tiny random model of every architecture: what default settings reach, and what the test
bed allows at all.

    python scripts/wise_tiny_models.py [--arch llama,gpt2] [--threads 1]

For each architecture (6 layers, hidden 64, FFN 2048, random weights of seed 0), the 10 edits of
:mod:`wiseedit.testing.tiny_edits` are applied one after another and the table gives, as Rel on the
edits / Loc on 50 unrelated prompts:

- ``defaults``: WISE with default settings (WISE-Retrieve is the same below ``save_freq``);
- ``2 shards merged``: WISE with ``save_freq=5, merge_freq=10`` (two shards TIES-merged at edit 10);
- ``one memory per edit``: WISE-Retrieve with ``save_freq=1, merge_freq=1``, every edit its own memory
  routed top-1: the router's ceiling on this model;
- ``key cos``: cosine of the centred edited-module inputs at the last prompt token of the 5 pairs of
  edits that share a relation ("Alice lives in" / "Erin lives in"): near 1, no router on that input
  can tell the two edits apart.
"""

from __future__ import annotations

import argparse

import torch

from wiseedit.evaluation.metrics import agreement, argmax_predictions, token_accuracy
from wiseedit.testing import TINY_ARCHITECTURES, tiny_model, tiny_tokenizer
from wiseedit.testing.tiny_edits import ten_edits, unrelated_prompts
from wiseedit.wise.method import WiseMethod, WiseRetrieveMethod

SETTINGS = {
    "defaults": (WiseMethod, {}),
    "2 shards merged": (WiseMethod, {"save_freq": 5, "merge_freq": 10}),
    "one memory per edit": (WiseRetrieveMethod, {"save_freq": 1, "merge_freq": 1}),
}


def rel_loc(arch: str, tok, cls, options: dict) -> str:
    edits, unrelated = ten_edits(), [(u, "x") for u in unrelated_prompts(50)]
    model = tiny_model(arch, tok, ffn_mult=32)
    before = argmax_predictions(model, tok, unrelated)
    method = cls.create(model, tok, options)
    method.apply(edits)
    rel = token_accuracy(model, tok, [(e.prompt, e.target) for e in edits], method=method)
    loc = agreement(before, argmax_predictions(model, tok, unrelated, method=method))
    return f"{sum(rel) / len(rel):.2f} / {sum(loc) / len(loc):.2f}"


def key_cosines(arch: str, tok) -> str:
    """Cosines of the centred last-token inputs of edits i and i + 5 (same relation, other person)."""
    method = WiseMethod.create(tiny_model(arch, tok, ffn_mult=32), tok)
    center = method._measure_center()
    keys = []
    for h, mask in method._prompt_inputs([e.prompt for e in ten_edits()]):  # (B, T, in), (B, T)
        last = mask.long().cumsum(1).argmax(1)                              # (B,) last routed token
        keys.append(h[torch.arange(h.shape[0]), last] - center)
    keys = torch.nn.functional.normalize(torch.cat(keys), dim=-1)           # (10, in)
    return ", ".join(f"{(keys[i] @ keys[i + 5]).item():.2f}" for i in range(5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default=",".join(TINY_ARCHITECTURES))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tok = tiny_tokenizer(vocab_size=1000)
    print("| architecture | " + " | ".join(SETTINGS) + " | key cos, same relation |")
    print("| --- " * (len(SETTINGS) + 2) + "|")
    for arch in args.arch.split(","):
        cells = [rel_loc(arch, tok, cls, options) for cls, options in SETTINGS.values()]
        print(f"| {arch} | " + " | ".join(cells) + f" | {key_cosines(arch, tok)} |", flush=True)


if __name__ == "__main__":
    main()
