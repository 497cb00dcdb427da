"""CPU threads for one WISE edit: torch's default against 1, 2, ... threads, side by side in one run.

    python benchmarks/threads.py [--threads 1,2] [--rounds 3] [--edits examples/world_edits.jsonl]

Loads the built-in world model once (float32, CPU) and times one WISE edit (the first of the edit
file, default settings) with each thread count, in interleaved rounds so that a change in the
machine's load hits every setting alike; each edit starts from a fresh method on the unedited model.
Prints the load average before and after (a shared machine's other work decides what threads are
worth), the median seconds per edit of each setting and its ratio to one thread.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from wiseedit.edits import read_edits
from wiseedit.models import load_base
from wiseedit.wise.method import WiseMethod


def one_edit(base, record, threads: int) -> float:
    torch.set_num_threads(threads)
    method = WiseMethod.create(base.model, base.tokenizer, {})
    try:
        start = time.perf_counter()
        method.apply([record])
        return time.perf_counter() - start
    finally:
        method.detach()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="thread counts to compare with torch's default")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--edits", default="examples/world_edits.jsonl")
    parser.add_argument("--model", default="world")
    args = parser.parse_args()

    default = torch.get_num_threads()  # torch's own choice (the physical cores it sees), before any change
    settings = [("torch default", default)] + [(f"{n} thread(s)", int(n)) for n in args.threads.split(",")]
    record = read_edits(args.edits)[0]
    base = load_base(args.model, device="cpu", dtype="float32")
    load_before = os.getloadavg()
    one_edit(base, record, 1)  # warm-up: first-call allocations and kernels are not timed
    times: dict[str, list[float]] = {label: [] for label, _ in settings}
    for _ in range(args.rounds):
        for label, threads in settings:
            times[label].append(one_edit(base, record, threads))
    load_after = os.getloadavg()

    print(f"model {args.model}, one WISE edit ({record.id}), {args.rounds} rounds; cpus {os.cpu_count()}, "
          f"torch default threads {default}")
    print(f"load average before {load_before[0]:.2f} / {load_before[1]:.2f} / {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} / {load_after[1]:.2f} / {load_after[2]:.2f}")
    one = statistics.median(times.get("1 thread(s)") or times["torch default"])
    print(f"{'setting':<16}{'threads':>8}{'median s/edit':>15}{'vs 1 thread':>13}   all rounds")
    for label, threads in settings:
        median = statistics.median(times[label])
        rounds = " ".join(f"{t:.2f}" for t in times[label])
        print(f"{label:<16}{threads:>8}{median:>15.2f}{median / one:>12.2f}x   {rounds}")


if __name__ == "__main__":
    main()
