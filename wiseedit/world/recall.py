"""How well a model knows the world: teacher-forced object accuracy per relation and phrasing."""

from __future__ import annotations

import torch

from wiseedit.world.generator import World


@torch.no_grad()
def recall_by_phrasing(model, tokenizer, world: World, subjects: list[str] | None = None,
                       batch_size: int = 256) -> dict:
    """Teacher-forced accuracy of every fact's object tokens, for each (relation, phrasing).

    An item scores the fraction of its object tokens whose argmax equals the token; the figure for a
    phrasing is the mean over all people. Returns ``{"by_phrasing": {rel: [acc per phrasing]},
    "min": worst phrasing, "mean": overall}``.
    """
    items = []  # (relation, phrasing, prompt, object)
    for subject in subjects if subjects is not None else world.entities:
        for rel in world.relations:
            obj = world.facts[(subject, rel.name)]
            items.extend((rel.name, k, rel.render(subject, k), obj) for k in range(len(rel.phrasings)))

    device = next(model.parameters()).device
    scores: dict[tuple[str, int], list[float]] = {}
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        prompts = [tokenizer(p)["input_ids"] for _, _, p, _ in chunk]
        fulls = [tokenizer(f"{p} {o}")["input_ids"] for _, _, p, o in chunk]
        width = max(map(len, fulls))
        input_ids = torch.full((len(chunk), width), tokenizer.pad_token_id)
        mask = torch.zeros_like(input_ids)
        for r, full in enumerate(fulls):
            input_ids[r, : len(full)] = torch.tensor(full)
            mask[r, : len(full)] = 1
        pred = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits.argmax(-1).cpu()
        for r, (rel, k, _, _) in enumerate(chunk):
            lo, hi = len(prompts[r]), len(fulls[r])
            # the logit at position t predicts token t+1
            hit = (pred[r, lo - 1: hi - 1] == input_ids[r, lo:hi]).float().mean().item()
            scores.setdefault((rel, k), []).append(hit)

    by_phrasing: dict[str, list[float]] = {}
    for (rel, k), vals in sorted(scores.items()):
        by_phrasing.setdefault(rel, []).append(round(sum(vals) / len(vals), 4))
    flat = [v for accs in by_phrasing.values() for v in accs]
    return {"by_phrasing": by_phrasing, "min": min(flat), "mean": round(sum(flat) / len(flat), 4)}


def main(argv: list[str] | None = None) -> None:
    """``python -m wiseedit.world.recall [--model PATH]``: the recall table of the world model."""
    import argparse
    import json

    from wiseedit.models import load_base
    from wiseedit.world.generator import DEFAULT_SEED, build_world

    parser = argparse.ArgumentParser(description="Teacher-forced object accuracy per relation and phrasing.")
    parser.add_argument("--model", default="world", help="model folder or alias (default: the built-in world model)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="the world's seed")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    loaded = load_base(args.model, device="cpu")
    report = recall_by_phrasing(loaded.model, loaded.tokenizer, build_world(args.seed))
    if args.json:
        print(json.dumps(report, indent=2))
        return
    width = max(len(r) for r in report["by_phrasing"])
    phrasings = len(next(iter(report["by_phrasing"].values())))
    print(f"{'relation':<{width}}  " + "  ".join(f"p{k:<5}" for k in range(phrasings)))
    for rel, accs in report["by_phrasing"].items():
        print(f"{rel:<{width}}  " + "  ".join(f"{a:<6.3f}" for a in accs))
    print(f"mean {report['mean']:.4f}, worst phrasing {report['min']:.4f}")


if __name__ == "__main__":
    main()
