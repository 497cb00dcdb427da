"""Rebuild the built-in world model from scratch: world -> tokenizer -> pretraining -> recall report.

    python scripts/train_world_model.py --out wiseedit/world/assets/model

Deterministic for a seed on a given machine (2 CPU threads); takes about 25 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from wiseedit.world.pretrain import PretrainConfig, pretrain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write model + tokenizer to")
    parser.add_argument("--epochs", type=int, default=PretrainConfig.epochs)
    parser.add_argument("--seed", type=int, default=PretrainConfig.seed)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report = pretrain(args.out, PretrainConfig(seed=args.seed, epochs=args.epochs), log=lambda m: print(m, flush=True))
    (args.out / "recall.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("mean", "min", "train_seconds")}))


if __name__ == "__main__":
    main()
