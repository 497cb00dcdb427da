"""Train a built-in world model from scratch: world -> tokenizer -> pretraining -> recall report.

    python scripts/train_world_model.py --preset world-xl --out wiseedit/world/assets/model-xl

Deterministic for a seed on a given machine and thread count. Resumable: run the same command again
after a stop and it continues from the last finished epoch (``<out>/checkpoint``). ``world`` takes about
25 minutes on 2 cores and trains its own tokenizer; ``world-xl`` reuses the shipped ``world``
tokenizer, so both models read the same tokens. The weights are saved in bfloat16 when recall holds
there (>= 0.99 on every relation and phrasing, as in float32 to 3 decimals), else in float32.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from wiseedit.models.aliases import builtin_path
from wiseedit.world.generator import build_world
from wiseedit.world.pretrain import PRESETS, pretrain
from wiseedit.world.recall import recall_by_phrasing

RECALL_BAR = 0.99


def _ship_compactly(out: Path, report: dict, log) -> dict:
    """Re-save `out` in bfloat16 if recall holds there; the report says which dtype was kept."""
    model = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.bfloat16).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    bf16 = recall_by_phrasing(model, tokenizer, build_world(report["config"]["seed"], report["config"]["num_entities"]))
    log(f"recall in bfloat16: mean {bf16['mean']:.4f} worst phrasing {bf16['min']:.4f} "
        f"(float32: {report['mean']:.4f} / {report['min']:.4f})")
    if bf16["min"] >= RECALL_BAR:
        model.save_pretrained(str(out))
        return {**bf16, "dtype": "bfloat16", "float32": {k: report[k] for k in ("mean", "min")},
                **{k: report[k] for k in ("train_seconds", "config")}}
    return {**report, "dtype": "float32", "bfloat16": {k: bf16[k] for k in ("mean", "min")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="world", help="which model (default: world)")
    parser.add_argument("--out", type=Path, required=True, help="folder to write model + tokenizer to")
    parser.add_argument("--epochs", type=int, help="training epochs (default: the preset's)")
    parser.add_argument("--seed", type=int, help="the world's and the model's seed (default: the preset's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--float32", action="store_true", help="keep float32 weights even if bfloat16 recalls")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = PRESETS[args.preset]
    cfg = replace(cfg, **{k: v for k, v in (("epochs", args.epochs), ("seed", args.seed)) if v is not None})
    tokenizer = None if args.preset == "world" else AutoTokenizer.from_pretrained(str(builtin_path("world")))

    def log(message: str) -> None:
        print(message, flush=True)

    report = pretrain(args.out, cfg, log=log, tokenizer=tokenizer)
    if args.preset != "world" and not args.float32:
        report = _ship_compactly(args.out, report, log)
    (args.out / "recall.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("mean", "min", "train_seconds")}))


if __name__ == "__main__":
    main()
