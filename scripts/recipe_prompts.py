"""What a RECIPE checkpoint's prompt vectors do once their own edit is retrieved: the part of Rel / Gen
that is theirs, apart from retrieval and its gate (see scripts/recipe_retrieval.py for that part).

    python scripts/recipe_prompts.py CHECKPOINT [--model world] [--suite world] [-T 1000]
                                     [--train world-train-x4-invented] [--train-sample 500] [--threads 1]

Each of the first T edits of the suite gets its *own* prompt vectors prefixed (retrieval forced), and
the answer is scored teacher-forced as the evaluator does (token accuracy of the target). Printed:

- Rel on the edit prompts and Gen on every rephrasing, with the share of edit prompts whose weakest
  answer token wins by less than 0, 1 and log(10) nats (how far the prompts are from failing);
- Rel by relation (where edits name one) and by form (question "Q: ... A:" or statement);
- of the edit prompts not recalled, how many keep the unedited model's answer at the first token
  that goes wrong (the prompt too weak against what the model knows) and how many say a third thing;
- with --train, the same Rel on a sample of that meta-training data: the gap between the two is what
  the prompt network does not carry over to people it was not trained on.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict

import torch

from wiseedit.evaluation.batching import chunks
from wiseedit.evaluation.suites import open_suite
from wiseedit.models import load_base
from wiseedit.recipe.checkpoint import load_networks
from wiseedit.recipe.networks import statement
from wiseedit.recipe.prefix import prompted_logits
from wiseedit.recipe.training.data import pair_batch, relation_of
from wiseedit.recipe.training.sources import load_train_data

from recipe_retrieval import checkpoint_parser  # the script beside this one (scripts/ is on sys.path)

BATCH = 50
NARROW = (0.0, 1.0, math.log(10))  # nats: an answer token winning by less than this is close to failing


def rate(flags) -> str:
    flags = list(flags)
    return f"{sum(flags) / len(flags):.3f}" if flags else "-"


@torch.no_grad()
def scored(networks, model, tokenizer, edits, queries):
    """Per (edit, query) pair, with the edit's own prompt vectors prefixed to the query: the token
    accuracy of the target, its weakest token's log-odds margin over the runner-up (nats), and whether
    the first wrong token is the unedited model's prediction there (None when all are right)."""
    out = []
    for group in chunks(list(zip(edits, queries)), BATCH):
        _, prompts = networks.knowledge([statement(e.prompt, e.target) for e, _ in group])
        batch = pair_batch(tokenizer, [q for _, q in group], [e.target for e, _ in group], "cpu")
        logits = prompted_logits(model, batch.input_ids, batch.attention_mask, prompts).float()
        base = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        for row, (start, end) in enumerate(batch.answer_spans):
            gold = batch.input_ids[row, start:end]  # (A,)
            step = logits[row, start - 1:end - 1].log_softmax(-1)  # (A, V): predicting each answer token
            wanted = step.gather(1, gold[:, None]).squeeze(1)
            margin = (wanted - step.scatter(1, gold[:, None], -math.inf).amax(1)).min().item()
            right = step.argmax(-1) == gold
            wrong = (~right).nonzero()
            kept = None
            if len(wrong):
                t = int(wrong[0])
                kept = bool(step[t].argmax() == base[row, start - 1 + t].argmax())
            out.append((right.float().mean().item(), margin, kept))
    return out


def main() -> None:
    parser = checkpoint_parser(__doc__)
    parser.add_argument("--train", help="a meta-training data set to sample for the gap, e.g. world-train-x4-invented")
    parser.add_argument("--train-sample", type=int, default=500)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    base = load_base(args.model, device="cpu")
    networks, _, path = load_networks(args.checkpoint, base.model)
    networks.eval()
    edits = open_suite(args.suite).edits[: args.edits]
    rel = scored(networks, base.model, base.tokenizer, edits, [e.prompt for e in edits])
    rephrased = [(e, r) for e in edits for r in e.rephrase]
    gen = scored(networks, base.model, base.tokenizer, [e for e, _ in rephrased], [r for _, r in rephrased])

    print(f"{path}: own prompt vectors on {len(edits)} edits of {args.suite}")
    narrow = ", ".join(f"< {n:.2g}: {rate(m < n for _, m, _ in rel)}" for n in NARROW)
    print(f"Rel {sum(a for a, _, _ in rel) / len(rel):.4f} (weakest answer token's margin {narrow}); "
          f"Gen {sum(a for a, _, _ in gen) / len(gen):.4f}")
    groups = defaultdict(list)
    for edit, (accuracy, _, _) in zip(edits, rel):
        groups["relation " + relation_of(edit)].append(accuracy)
        groups["form " + ("question" if edit.prompt.startswith("Q:") else "statement")].append(accuracy)
    for name in sorted(groups):
        print(f"  {name}: {sum(groups[name]) / len(groups[name]):.3f} ({len(groups[name])})")
    failed = Counter("keeps the unedited answer" if kept else "says a third thing"
                     for _, _, kept in rel if kept is not None)
    print(f"not recalled: {sum(failed.values())}; " + ", ".join(f"{k} {v}" for k, v in failed.items()))
    if args.train:
        train = list(load_train_data(args.train).edits)
        sample = random.Random(0).sample(train, min(args.train_sample, len(train)))
        seen = scored(networks, base.model, base.tokenizer, sample, [e.prompt for e in sample])
        print(f"meta-training data {args.train}, {len(sample)} edits: Rel {sum(a for a, _, _ in seen) / len(seen):.4f}")


if __name__ == "__main__":
    main()
