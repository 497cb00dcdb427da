"""Where a WISE edit's time goes: each part of wiseedit's default path, per step and per edit.

    python benchmarks/wise_profile.py                # parts, CPU seconds, 1 thread
    python benchmarks/wise_profile.py --ops 15       # and the 15 costliest operations of a step (torch.profiler)

Runs what ``benchmarks/edit_speed.py`` times for wiseedit (the world model, its five example edits,
70 steps each, early stop off, one fresh method per round) and reports the CPU time of each part:
per step the side memory's product ``dx``, the layers above the edited one (the top layer at the
target positions and the final norm), the routing score, the margin loss, the rest of the forward
and the update (head, cross-entropy, SGD), and the backward; per edit the recording forward, the
fast path's check against the model (first edit), the centre and the activation scale (first edit),
the keys and thresholds, the batch. CPU time of one thread is what a step costs whatever else the
machine runs; the round with the smallest total is reported.
"""

from __future__ import annotations

import argparse
import collections
import functools
import time
from contextlib import contextmanager

import torch

from edit_speed import load, wiseedit_edits  # the same model, edits and wiseedit call as the speed benchmark
from wiseedit.wise import method as wise_method
from wiseedit.wise import side_memory, trainer, upper_stack

if not hasattr(upper_stack.UpperStack, "scores"):  # code before the stack scored its rows itself
    PARTS_EXTRA = [(side_memory.SideMemoryLayer, "scores", "step: routing score")]
else:
    PARTS_EXTRA = []

#: (object, attribute, part): the functions whose CPU time is one part; a part may have several
PARTS = [
    (wise_method.WiseMethod, "_min_score", "keys + thresholds"), (wise_method.WiseMethod, "_keys", "keys + thresholds"),
    (wise_method.WiseMethod, "_measure_scale", "scale (1st edit)"),
    (wise_method.WiseMethod, "_measure_center", "centre, key threshold (1st edit)"),
    (wise_method.WiseMethod, "_measure_pool", "centre, key threshold (1st edit)"), (wise_method, "build_batch", "batch"),
    (upper_stack.UpperStack, "verified", "record + check"), (upper_stack, "record_upper", "record"),
    (upper_stack.UpperStack, "extra_out", "step: side product dx"),
    (trainer.ShardTrainer, "_input_products", "step: side product dx"),
    (upper_stack.UpperStack, "final_hidden", "step: layers above"),
    (upper_stack.UpperStack, "scores", "step: routing score"), (trainer, "margin_loss", "step: margin loss"),
    (trainer.ShardTrainer, "_optimise", "steps"), (wise_method.WiseMethod, "apply", "apply"),
    (torch.Tensor, "backward", "step: backward"),
] + PARTS_EXTRA
STEP_ROWS = ["step: side product dx", "step: layers above", "step: routing score", "step: margin loss",
             "step: head, loss, update", "step: backward"]
EDIT_ROWS = ["record", "check (1st edit)", "centre, key threshold (1st edit)", "scale (1st edit)", "keys + thresholds", "batch",
             "other per edit"]


@contextmanager
def timed_parts(totals: dict):
    """Within the block, the CPU time of each function of PARTS is added to ``totals[part]``."""
    saved = []
    for owner, name, part in PARTS:
        original = getattr(owner, name, None)
        if original is None:  # a part this version of the code does not have
            continue
        saved.append((owner, name, original))

        def wrapper(*args, _original=original, _part=part, **kwargs):
            start = time.process_time()
            try:
                return _original(*args, **kwargs)
            finally:
                totals[_part] += time.process_time() - start

        setattr(owner, name, functools.wraps(original)(wrapper))
    try:
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def parts_table(model, tok, edits, n_iter: int, rounds: int) -> dict:
    """Per part, seconds in the round with the smallest total; derived rows filled in."""
    wiseedit_edits(model, tok, edits, n_iter)  # warm-up
    best = None
    for _ in range(rounds):
        totals: dict = collections.defaultdict(float)
        with timed_parts(totals):
            wiseedit_edits(model, tok, edits, n_iter)
        if best is None or totals["apply"] < best["apply"]:
            best = dict(totals)
    best["check (1st edit)"] = best.pop("record + check") - best["record"]
    best["step: head, loss, update"] = best["steps"] - sum(best.get(k, 0.0) for k in STEP_ROWS[:-2] + STEP_ROWS[-1:])
    best["other per edit"] = best["apply"] - best["steps"] - sum(best.get(k, 0.0) for k in EDIT_ROWS[:-1])
    return best


def top_ops(model, tok, edits, n_iter: int, count: int) -> str:
    """torch.profiler's table of the `count` costliest operations over the last edit's steps."""
    profiles = []
    optimise = trainer.ShardTrainer._optimise

    def profiled(self, *args, **kwargs):
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
            result = optimise(self, *args, **kwargs)
        profiles.append(prof)
        return result

    trainer.ShardTrainer._optimise = profiled
    try:
        wiseedit_edits(model, tok, edits, n_iter)
    finally:
        trainer.ShardTrainer._optimise = optimise
    averages = profiles[-1].key_averages(group_by_input_shape=True)
    calls = sum(e.count for e in profiles[-1].key_averages() if e.key.startswith("aten::"))
    return (f"aten operations per step (nested ones included): {calls / n_iter:.0f}\n"
            + averages.table(sort_by="self_cpu_time_total", row_limit=count, max_name_column_width=40,
                             max_shapes_column_width=60))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n-iter", type=int, default=70)
    parser.add_argument("--ops", type=int, default=0, help="also the N costliest operations of a step")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tok, edits, name = load(argparse.Namespace(random=False, edits=5, layers=0, hidden=0))
    table = parts_table(model, tok, edits, args.n_iter, args.rounds)
    steps, n = args.n_iter * len(edits), len(edits)
    print(f"{name}; {n} edits x {args.n_iter} steps; {args.threads} thread(s); CPU time, best of {args.rounds}")
    print(f"apply {table['apply'] / n * 1000:.1f} ms/edit; one step {table['steps'] / steps * 1000:.3f} ms "
          f"({100 * table['steps'] / table['apply']:.0f}% of the edit)")
    for row in STEP_ROWS:
        print(f"  {row:<34}{table.get(row, 0) / steps * 1000:8.3f} ms/step {100 * table.get(row, 0) / table['apply']:5.1f}%")
    for row in EDIT_ROWS:
        print(f"  {row:<34}{table.get(row, 0) / n * 1000:8.2f} ms/edit {100 * table.get(row, 0) / table['apply']:5.1f}%")
    if args.ops:
        print(top_ops(model, tok, edits, args.n_iter, args.ops))


if __name__ == "__main__":
    main()
