"""WISE editing speed: the activation cache against the reference's full forward, side by side.

    python benchmarks/edit_speed.py [--edits 5] [--layers 12] [--hidden 128] [--threads 2]

Builds one 12-layer Llama (random weights, fixed seed), edits it with WISE twice from the same start,
with the same edits and settings, once with ``cache_activations=True`` (the default: lower layers run
once per edit, logits only where the loss needs them) and once without (a full forward and all logits
at every step, as the reference does). Prints seconds per edit for each, the speed-up, and the largest
difference between the two side memories (they must agree to float tolerance: the cache is exact).
"""

from __future__ import annotations

import argparse
import time

import torch

from wiseedit.edits.record import EditRecord
from wiseedit.testing import tiny_model, tiny_tokenizer
from wiseedit.wise.method import WiseMethod

SUBJECTS = ["Alice", "Bob", "The river", "My cat", "The train", "Danielle", "The company", "The school"]
TARGETS = ["Paris", "Rome", "blue", "red", "violin", "nurse", "London", "green"]


def run(cached: bool, edits, args) -> tuple[float, torch.Tensor, str]:
    tok = tiny_tokenizer()
    model = tiny_model("llama", tok, seed=0, layers=args.layers, hidden=args.hidden)
    method = WiseMethod.create(model, tok, {"cache_activations": cached, "n_iter": args.n_iter,
                                            "early_stop_loss": 0.0})  # same step count both ways
    start = time.perf_counter()
    method.apply(edits)
    seconds = (time.perf_counter() - start) / len(edits)
    return seconds, method.current.delta.detach().clone(), method.module_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=5)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--n-iter", type=int, default=70)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    edits = [EditRecord(prompt=f"{s} is located in", target=t, id=str(i))
             for i, (s, t) in enumerate(zip(SUBJECTS * 4, TARGETS * 4))][: args.edits]
    full_s, full_delta, module = run(False, edits, args)
    cached_s, cached_delta, _ = run(True, edits, args)
    diff = (full_delta - cached_delta).abs().max().item()
    scale = full_delta.abs().max().item()
    print(f"model: llama, {args.layers} layers, hidden {args.hidden}; edited module {module}; "
          f"{args.edits} edits x {args.n_iter} steps; {args.threads} threads")
    print(f"{'path':<28}{'s/edit':>10}")
    print(f"{'full forward (reference)':<28}{full_s:>10.3f}")
    print(f"{'activation cache':<28}{cached_s:>10.3f}")
    print(f"speed-up: {full_s / cached_s:.2f}x")
    print(f"max |delta_full - delta_cached| = {diff:.3e} (max |delta| = {scale:.3e})")


if __name__ == "__main__":
    main()
