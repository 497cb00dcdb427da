"""WISE editing speed: wiseedit's default path against the reference algorithm, at equal steps.

    python benchmarks/edit_speed.py                           # the world model, its example edits
    python benchmarks/edit_speed.py --random --hidden 512 --layers 8 --edits 2 --repeats 1

On one model and the same edits, in one run, alternating (``--repeats`` rounds, median reported):

- *reference*: WISE as the paper's code runs it. The edited module is wrapped by an adapter holding
  a full side copy of its weight; every step is one forward of the whole model on the edit under each
  context template plus the irrelevant row (one batch), logits over the full vocabulary at every
  position, the edit loss as the per-row mean cross-entropy on the target tokens, the activation
  loss on ``act(side output) - act(main output)`` over the prompt tokens (margins alpha, beta,
  gamma), backward, the shard mask on the gradient, SGD with weight decay, the clamp to the main
  weight +- 1, and ``loss.item()``. No activation cache.
- *wiseedit*: :class:`~wiseedit.wise.method.WiseMethod` with its defaults, early stop off so both
  take exactly ``--n-iter`` steps per edit. Its batch also holds the rehearsed earlier edits (the
  auto preset's default), so it does at least the reference's work per step.

Prints the machine's load average (on a shared machine, other work running on the cores slows many
small operations split over threads, wiseedit's, more than a few large ones, the reference's), seconds
per edit for each and, last, ``ratio vs reference: X.XX`` (reference / wiseedit).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from wiseedit.edits.record import EditRecord
from wiseedit.models.modules import get_weight_module, set_module
from wiseedit.wise.batch import build_batch
from wiseedit.wise.irrelevant import irrelevant_row
from wiseedit.wise.memory import shard_mask, shard_mask_seed
from wiseedit.wise.method import WiseMethod

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "world_edits.jsonl"
SUBJECTS = ["Alice", "Bob", "The river", "My cat", "The train", "Danielle", "The company", "The school"]
TARGETS = ["Paris", "Rome", "blue", "red", "violin", "nurse", "London", "green"]


class ReferenceAdapter(nn.Module):
    """The paper's adapter in training mode: main and side outputs both computed, the side one used."""

    def __init__(self, base: nn.Linear):
        super().__init__()
        self.base = base
        self.new_weight = nn.Parameter(base.weight.detach().clone())  # (out, in), the side memory
        self.original_out: torch.Tensor | None = None
        self.new_out: torch.Tensor | None = None

    def forward(self, x):
        self.original_out = self.base(x)
        self.new_out = F.linear(x, self.new_weight, self.base.bias)
        return self.new_out


def _euc(main, side, act, mask):
    """The paper's routing distance: mean over the masked tokens of |act(side) - act(main)|."""
    dist = (act(side) - act(main)).norm(dim=-1)                     # (B, T)
    return (dist * mask).sum(1) / mask.sum(1)


def _pos_mean(v):
    return v[v > 0].mean() if (v > 0).any() else v.new_zeros(())


def reference_edits(model, tok, module_path, templates, edits, n_iter, alpha=5.0, beta=20.0, gamma=10.0,
                    lr=1.0, norm_constraint=1.0) -> float:
    """Seconds per edit of the reference algorithm on `edits`, one after another."""
    base = get_weight_module(model, module_path)
    adapter = ReferenceAdapter(base)
    set_module(model, module_path, adapter)
    act = nn.SiLU()
    for p in model.parameters():
        p.requires_grad_(False)
    adapter.new_weight.requires_grad_(True)
    mask = shard_mask(shard_mask_seed(42, 0), adapter.new_weight.shape, 0.2, adapter.new_weight.device)
    try:
        start = time.perf_counter()
        for n, edit in enumerate(edits):
            batch = build_batch(tok, [edit], templates, [irrelevant_row(edit.irrelevant, 42, n)])
            k = batch.input_ids.shape[0] - batch.num_edit_rows   # irrelevant rows, last
            labels = batch.labels[:-k, 1:]                          # (B-k, T-1)
            act_mask = batch.prompt_mask.float()
            opt = torch.optim.SGD([adapter.new_weight], lr=lr, weight_decay=1e-5)
            for _ in range(n_iter):
                logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                               use_cache=False).logits                       # (B, T, V): every position
                shifted = logits[:-k, :-1]
                loss = F.cross_entropy(shifted.reshape(-1, shifted.shape[-1]), labels.reshape(-1),
                                       reduction="none").view(labels.shape)
                label_mask = labels != -100
                ft_loss = ((loss * label_mask).sum(1) / label_mask.sum(1)).mean()
                inside = _euc(adapter.original_out[:-k], adapter.new_out[:-k], act, act_mask[:-k])
                outside = _euc(adapter.original_out[-k:], adapter.new_out[-k:], act, act_mask[-k:])
                act_loss = (_pos_mean(outside.view(-1, 1) - inside + gamma) + _pos_mean(outside - alpha)
                            + _pos_mean(beta - inside))
                total = ft_loss + act_loss
                opt.zero_grad()
                total.backward()
                adapter.new_weight.grad.mul_(mask)
                opt.step()
                total.item()
                with torch.no_grad():
                    w = base.weight
                    adapter.new_weight.copy_(adapter.new_weight.clamp(w - norm_constraint, w + norm_constraint))
        return (time.perf_counter() - start) / len(edits)
    finally:
        set_module(model, module_path, base)


def wiseedit_edits(model, tok, edits, n_iter) -> tuple[float, WiseMethod]:
    method = WiseMethod.create(model, tok, {"n_iter": n_iter, "early_stop_loss": 0.0})
    try:
        start = time.perf_counter()
        method.apply(edits)
        return (time.perf_counter() - start) / len(edits), method
    finally:
        method.detach()


def load(args):
    if args.random:
        from wiseedit.testing import tiny_model, tiny_tokenizer

        tok = tiny_tokenizer()
        model = tiny_model("llama", tok, seed=0, layers=args.layers, hidden=args.hidden)
        edits = [EditRecord(prompt=f"{s} is located in", target=t, id=str(i))
                 for i, (s, t) in enumerate(zip(SUBJECTS * 4, TARGETS * 4))]
        return model, tok, edits[: args.edits], f"random llama, {args.layers} layers, hidden {args.hidden}"
    from wiseedit.models import load_base

    loaded = load_base("world", device="cpu")
    records = [json.loads(line) for line in EXAMPLES.read_text().splitlines() if line.strip()]
    edits = [EditRecord(prompt=r["prompt"], target=r["target"], id=r["id"], irrelevant=r.get("irrelevant"))
             for r in records]
    return loaded.model, loaded.tokenizer, edits[: args.edits], "world model"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random", action="store_true", help="a random Llama instead of the world model")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--edits", type=int, default=5)
    parser.add_argument("--n-iter", type=int, default=70)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tok, edits, name = load(args)
    load_before = os.getloadavg()[0]  # other work on the machine decides what threads are worth
    reference, ours = [], []
    for _ in range(args.repeats):
        seconds, method = wiseedit_edits(model, tok, edits, args.n_iter)
        ours.append(seconds)
        reference.append(reference_edits(model, tok, method.module_path, method.templates, edits, args.n_iter))
    print(f"{name}; edited module {method.module_path}; {len(edits)} edits x {args.n_iter} steps "
          f"({len(method.templates)} templates); {args.threads} threads; median of {args.repeats}; "
          f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(f"{'path':<34}{'s/edit':>10}")
    print(f"{'reference (full forward, paper)':<34}{statistics.median(reference):>10.3f}")
    print(f"{'wiseedit default':<34}{statistics.median(ours):>10.3f}")
    print(f"ratio vs reference: {statistics.median(reference) / statistics.median(ours):.2f}")


if __name__ == "__main__":
    main()
