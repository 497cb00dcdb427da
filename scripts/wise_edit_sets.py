"""WISE with default settings on tiny random models and generated edit sets: per-edit optimisation
(steps, final loss), then Rel on the edits and Loc on unrelated prompts sharing their words, both
through plain forwards (no query mask), as any scoring pipeline runs them.

    python scripts/wise_edit_sets.py [--arch llama,gpt2] [--seeds 0,1] [--vocab cities,people]
                                     [--vocab-size 300] [--option k=v]

Tiny models: 6 layers, hidden 64, FFN 1024 (``ffn_mult=16``), random weights of seed 0, the test
tokenizer (1000 tokens; 300 spells most targets letter by letter, so tokens repeat inside them); edit sets from :func:`wiseedit.testing.edit_sets.edit_set` (10 edits, 50 unrelated).
"""

from __future__ import annotations

import argparse
import ast

import torch

from wiseedit.evaluation.metrics import agreement, argmax_predictions, token_accuracy
from wiseedit.testing import TINY_ARCHITECTURES, tiny_model, tiny_tokenizer
from wiseedit.testing.edit_sets import edit_set
from wiseedit.wise import trainer
from wiseedit.wise.method import WiseMethod


def run(arch: str, tok, seed: int, vocab: str, options: dict, verbose: bool) -> tuple[float, float]:
    edits, unrelated = edit_set(seed, vocab)
    model = tiny_model(arch, tok, ffn_mult=16)
    probes = [(u, "x") for u in unrelated]
    before = argmax_predictions(model, tok, probes)
    method = WiseMethod.create(model, tok, options)
    results = []
    train = trainer.ShardTrainer.train

    def recording(self, *args, **kwargs):  # the per-edit optimisation's steps and final loss
        result = train(self, *args, **kwargs)
        results.append(result)
        return result

    trainer.ShardTrainer.train = recording
    try:
        method.apply(edits)
    finally:
        trainer.ShardTrainer.train = train
    rel = token_accuracy(model, tok, [(e.prompt, e.target) for e in edits])
    loc = agreement(before, argmax_predictions(model, tok, probes))
    if verbose:
        for e, r, a in zip(edits, results, rel):
            print(f"  {e.prompt!r:28} -> {e.target!r:10} steps {r.steps:3d} loss {r.loss:.4f} rel {a:.2f}")
    return sum(rel) / len(rel), sum(loc) / len(loc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default=",".join(TINY_ARCHITECTURES))
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--vocab", default="cities,people,things")
    parser.add_argument("--vocab-size", type=int, default=1000, help="the test tokenizer's vocabulary size")
    parser.add_argument("--option", action="append", default=[], help="a WISE option, key=value")
    parser.add_argument("--verbose", action="store_true", help="per-edit steps, loss and Rel")
    args = parser.parse_args()
    torch.set_num_threads(1)
    options = {k: ast.literal_eval(v) for k, v in (o.split("=", 1) for o in args.option)}
    tok = tiny_tokenizer(vocab_size=args.vocab_size)
    print("| architecture | vocabulary | seed | Rel | Loc |\n| --- | --- | --- | --- | --- |")
    for arch in args.arch.split(","):
        for vocab in args.vocab.split(","):
            for seed in map(int, args.seeds.split(",")):
                rel, loc = run(arch, tok, seed, vocab, options, args.verbose)
                print(f"| {arch} | {vocab} | {seed} | {rel:.2f} | {loc:.2f} |", flush=True)


if __name__ == "__main__":
    main()
