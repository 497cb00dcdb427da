"""The mean of the weights of RECIPE checkpoints of one run: what motivated ``--ema-decay``.

    python scripts/recipe_average.py CHECKPOINT [CHECKPOINT ...] [--trained] -o OUT

Writes OUT as a checkpoint that inference reads (``--option checkpoint=OUT``, ``recipe_prompts.py
OUT``): the mean of the checkpoints' weights, the newest one's metadata (with ``averaged_from`` added)
and encoder tokenizer; OUT holds no optimizer state, so training does not resume from it. With
``--trained``, each checkpoint's trained weights are taken instead of the weights it offers (they
differ in a run with ``--ema-decay``, whose training state keeps the trained ones): one such
checkpoint gives the last step's weights of that run (only the newest checkpoint of a run keeps its
training state: ``--trained`` reads that one, or copies made while they were newest). The checkpoints
must share their config and base model, as the checkpoints of one run do. docs/recipe.md, "Averaged
weights", measures such means against the checkpoints themselves.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from wiseedit.artifacts.atomic import atomic_directory
from wiseedit.errors import BadInputError
from wiseedit.recipe.checkpoint import (
    META_FILE,
    TOKENIZER_DIR,
    WEIGHTS_FILE,
    read_meta,
    resolve_checkpoint,
)
from wiseedit.recipe.training.averaging import trained_weights
from wiseedit.recipe.training.checkpoint import training_tensors


def checkpoint_weights(path: Path, trained: bool) -> dict:
    """The weights checkpoint `path` offers, or with `trained` those its ``--ema-decay`` run trained."""
    if not trained:
        return load_file(str(path / WEIGHTS_FILE))
    found = trained_weights(training_tensors(path)[0])
    if not found:
        raise BadInputError(f"{path} keeps no trained weights apart from its own: it was not trained with "
                            "--ema-decay (leave out --trained)")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", help="checkpoints (step-* folders) of one training run")
    parser.add_argument("--trained", action="store_true",
                        help="the trained weights of --ema-decay checkpoints, not their average")
    parser.add_argument("-o", "--out", required=True, type=Path)
    args = parser.parse_args()
    paths = [resolve_checkpoint(p) for p in args.checkpoints]
    metas = [read_meta(p) for p in paths]
    newest = max(range(len(paths)), key=lambda i: metas[i]["step"])
    for path, meta in zip(paths, metas):
        if (meta["config"], meta["base"]) != (metas[newest]["config"], metas[newest]["base"]):
            raise BadInputError(f"{path} has another config or base model than {paths[newest]}: not one run")
    weights = [checkpoint_weights(p, args.trained) for p in paths]
    mean = {}
    for name, value in weights[0].items():
        if value.is_floating_point():  # summed in float64, so the order of the checkpoints does not matter
            mean[name] = (sum(w[name].double() for w in weights) / len(weights)).to(value.dtype)
        else:
            mean[name] = weights[newest][name]
    meta = dict(metas[newest], averaged_from=[{"path": str(p), "step": m["step"], "trained": args.trained}
                                              for p, m in zip(paths, metas)])
    with atomic_directory(args.out, overwrite=False) as tmp:
        save_file(mean, str(tmp / WEIGHTS_FILE), metadata={"format": f"recipe-checkpoint-{meta['format']}"})
        shutil.copytree(paths[newest] / TOKENIZER_DIR, tmp / TOKENIZER_DIR)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    steps = ", ".join(str(m["step"]) for m in metas)
    what = "trained weights" if args.trained else "weights"
    print(f"{args.out}: the mean of {len(paths)} checkpoint(s)' {what} (steps {steps})")


if __name__ == "__main__":
    try:
        with torch.no_grad():
            main()
    except BadInputError as error:
        raise SystemExit(f"error: {error}") from None
