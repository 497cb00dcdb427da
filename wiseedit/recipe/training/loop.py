"""Meta-training RECIPE's networks against one frozen base LLM (recipe.md section 3).

Each step takes B edits and sums, with weight 1 each: the InfoNCE retrieval loss, the two sentinel
hinges (the other query without its own statement; the locality query) and the edit losses through the
frozen LLM with each edit's own prompt prefixed (hinge NLL on the answer tokens of the reliability and
paraphrase inputs, KL(no prompt || prompt) on the locality input).

Determinism: the networks are initialised from ``seed``; the batch order of epoch e and the draws of
step s (which query is "first", which paraphrase and probe, dropout) come from generators seeded with
(seed, e) and (seed, s), so resuming from a checkpoint continues exactly as an uninterrupted run would.
The caller's global RNG state is restored afterwards.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch

from wiseedit.edits.record import EditRecord
from wiseedit.errors import BadInputError
from wiseedit.methods.base import ProgressFn
from wiseedit.methods.training import frozen
from wiseedit.recipe.checkpoint import check_base, list_checkpoints, llm_hidden_size, load_networks, read_meta
from wiseedit.recipe.config import RecipeConfig, check_trainable
from wiseedit.recipe.encoder import SentenceEncoder, load_encoder
from wiseedit.recipe.networks import RecipeNetworks
from wiseedit.recipe.prefix import prompted_logits
from wiseedit.recipe.reference import pretrained_weights
from wiseedit.recipe.training.averaging import TRAINED_PREFIX, WeightAverage, trained_weights
from wiseedit.recipe.training.bank import NegativesBank
from wiseedit.recipe.training.batches import batch_sampler, mixed_seed
from wiseedit.recipe.training.checkpoint import base_description, load_training_state, save_checkpoint
from wiseedit.recipe.training.data import TrainItem, draw_batch, pair_batch, train_items
from wiseedit.recipe.training.losses import edit_nll, locality_kl, retrieval_losses

LOG_FILE = "train_log.jsonl"
#: Config fields that only say how often to save or how edits are batched later: a run may resume
#: with other values of these; every other field must match the checkpoint's.
BOOKKEEPING_FIELDS = ("checkpoint_every", "keep_checkpoints", "encode_batch_size")


@dataclass
class MetaTrainResult:
    """What :func:`meta_train` did: the networks (eval mode), the last checkpoint, the losses."""

    networks: RecipeNetworks
    checkpoint: Path
    resumed_from: int  # step of the checkpoint training resumed from (0: fresh start)
    history: list[dict] = field(default_factory=list)  # losses of the steps run in this call


def meta_train(llm, llm_tokenizer, encoder: str | Path | tuple | None, train_edits: Sequence[EditRecord],
                 config: RecipeConfig | None = None, out_dir: str | Path = "recipe-checkpoints",
                 steps: int = 1000, seed: int = 0, progress: ProgressFn | None = None,
                 resume: bool = True, on_step: Callable[[dict], None] | None = None,
                 data: dict | None = None) -> MetaTrainResult:
    """Meta-train RECIPE for `llm` on `train_edits` until `steps` steps are done in total.

    `encoder` is a name or folder for :func:`~wiseedit.recipe.encoder.load_encoder` (None:
    ``config.encoder``), or a ``(model, tokenizer)`` pair, e.g. a tiny encoder built from a config;
    ``config.encoder`` is then only the name recorded. Checkpoints go to `out_dir` every
    ``config.checkpoint_every`` steps and at the end; each step's losses are appended to
    ``<out_dir>/train_log.jsonl`` and returned in :attr:`MetaTrainResult.history`. `progress` is called
    with (steps done, steps in total). With `resume`, training continues from the newest checkpoint
    in `out_dir` (same config, seed and base required; `encoder` is then not loaded). `on_step` gets
    each step's log record (``step``, ``loss`` and each loss term). `data` (name, size, hash of the
    training data) is recorded in the checkpoints.
    """
    config = config or RecipeConfig()
    encoder = config.encoder if encoder is None else encoder
    items = train_items(train_edits)
    if len(items) < 2:
        raise BadInputError("RECIPE's meta-training needs at least 2 train edits (the batch's other "
                            "edits are the retrieval negatives)")
    out_dir = Path(out_dir)
    device = llm.get_input_embeddings().weight.device
    base = base_description(llm)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), _frozen(llm):
        torch.manual_seed(seed)
        networks, start = _initial_networks(llm, encoder, config, out_dir, seed, resume, device)
        optimizer = torch.optim.Adam(_parameter_groups(networks, config), lr=config.lr)
        bank = NegativesBank(items, config.bank_refresh) if config.bank_refresh else None
        extra = load_training_state(list_checkpoints(out_dir)[-1], optimizer) if start else {}
        if bank is not None:
            bank.load(extra)
        average = _weight_average(networks, config.ema_decay, extra, start, out_dir)
        pretrained = pretrained_weights(config.encoder)  # checkpoints store the encoder against it
        _truncate_log(out_dir / LOG_FILE, start)
        networks.train()
        history, last, memo = [], None, {}
        edit_margin = config.margin if config.edit_margin is None else config.edit_margin
        batches = batch_sampler(config.batches, items)
        for step in range(start, steps):
            if bank is not None:
                bank.refresh(networks, step, config.encode_batch_size)
            picked = batches(config.batch_size, seed, step)
            torch.manual_seed(mixed_seed(seed, step, 1))  # dropout of this step
            losses = _step_losses(networks, llm, llm_tokenizer, items, picked, config.margin, edit_margin,
                                  torch.Generator().manual_seed(mixed_seed(seed, step, 2)), device, memo, bank)
            total = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            if average is not None:
                average.update(networks, step + 1)
            record = {"step": step + 1, "loss": total.item(), **{k: v.item() for k, v in losses.items()}}
            history.append(record)
            _append_log(out_dir / LOG_FILE, record)
            if on_step:
                on_step(record)
            if progress:
                progress(step + 1, steps)
            if (step + 1) % config.checkpoint_every == 0 or step + 1 == steps:
                last = save_checkpoint(out_dir, networks, optimizer, step + 1, seed, base, record, data,
                                       extra=_training_extra(networks, bank, average),
                                       weights=average.state_dict() if average is not None else None,
                                       pretrained=pretrained)
        if last is None:  # nothing left to do: the newest checkpoint is the result
            last = list_checkpoints(out_dir)[-1] if start else save_checkpoint(
                out_dir, networks, optimizer, 0, seed, base, data=data,
                extra=_training_extra(networks, None, average),  # the bank has no keys before step 1
                pretrained=pretrained)
        if average is not None:  # the result is what the checkpoint offers for inference
            networks.load_state_dict(average.state_dict())
    return MetaTrainResult(networks.eval(), last, start, history)


def _initial_networks(llm, encoder, config: RecipeConfig, out_dir: Path, seed: int, resume: bool, device):
    """Fresh networks (step 0), or those of the newest checkpoint in `out_dir` when resuming."""
    found = list_checkpoints(out_dir) if resume else []
    if found:
        meta = read_meta(found[-1])
        check_base(meta, llm, found[-1])
        check_trainable(RecipeConfig.from_dict(meta["config"]), f"the checkpoint {found[-1]}")
        saved = RecipeConfig.from_dict(meta["config"]).to_dict()  # fields added since: as the code that wrote it
        if _training_fields(saved) != _training_fields(config.to_dict()) or meta["seed"] != seed:
            raise BadInputError(f"the checkpoint {found[-1]} was trained with another config or seed; "
                                "resume with the same ones, or use another out_dir")
        networks, _, _ = load_networks(found[-1], device=device)
        return networks, int(meta["step"])
    model, tokenizer = load_encoder(str(encoder)) if isinstance(encoder, (str, Path)) else encoder
    networks = RecipeNetworks(SentenceEncoder(model, tokenizer, config.max_text_tokens), config,
                              llm_hidden_size(llm))
    return networks.to(device), 0


def _weight_average(networks: RecipeNetworks, decay: float, extra: dict[str, torch.Tensor], start: int,
                    out_dir: Path) -> WeightAverage | None:
    """The moving average of the weights (None when ``decay`` is 0). A resumed run's checkpoint holds the
    average as its weights, now in `networks`, and the trained weights in its training state (`extra`),
    which `networks` then takes to train on."""
    if not decay:
        return None
    average = WeightAverage(networks, decay)
    if start:
        trained = trained_weights(extra)
        if not trained:
            raise BadInputError(f"the newest checkpoint in {out_dir} records ema_decay {decay} but its training "
                                "state holds no trained weights to resume from; pass --restart to start over")
        networks.load_state_dict(trained)
    return average


def _training_extra(networks: RecipeNetworks, bank: NegativesBank | None,
                    average: WeightAverage | None) -> dict[str, torch.Tensor]:
    """The training state beside Adam's: the negatives bank, and the trained weights where the
    checkpoint's own weights are their average."""
    extra = bank.state() if bank is not None else {}
    if average is not None:
        extra |= {TRAINED_PREFIX + k: v.detach().cpu().contiguous() for k, v in networks.state_dict().items()}
    return extra


def _parameter_groups(networks: RecipeNetworks, config: RecipeConfig) -> list[dict]:
    """Adam's parameter groups: everything at ``lr``, or, with ``encoder_lr``, the encoder's weights at
    that rate and the heads and sentinel at ``lr`` (a pretrained encoder keeps its similarity of
    sentences better at a lower rate than freshly initialised heads need)."""
    if config.encoder_lr is None:
        return [{"params": list(networks.parameters())}]
    encoder = {id(p) for p in networks.encoder.parameters()}
    return [{"params": [p for p in networks.parameters() if id(p) in encoder], "lr": config.encoder_lr},
            {"params": [p for p in networks.parameters() if id(p) not in encoder]}]


def _training_fields(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in BOOKKEEPING_FIELDS}


def _step_losses(networks: RecipeNetworks, llm, tokenizer, items: Sequence[TrainItem], picked: list[int],
                 margin: float, edit_margin: float, generator: torch.Generator, device, memo: dict,
                 bank: NegativesBank | None = None) -> dict[str, torch.Tensor]:
    B = len(picked)
    batch = draw_batch([items[i] for i in picked], generator)
    # one encoder pass for statements and the three queries: (4B, 4H)
    pooled = networks.encoder(batch.statements + batch.prompts + batch.rephrases + batch.loc_prompts)
    keys = networks.knowledge_head(pooled[:B])  # (B, d_r)
    q_rel, q_gen, q_loc = networks.query_head(pooled[B:]).split(B)  # 3 x (B, d_r)
    rel_first = (torch.rand(B, generator=generator) < 0.5).to(device)[:, None]  # which query is "first"
    extra = {}
    if bank is not None:
        rel = rel_first[:, 0].tolist()
        first = [p if r else g for p, g, r in zip(batch.prompts, batch.rephrases, rel)]
        second = [g if r else p for p, g, r in zip(batch.prompts, batch.rephrases, rel)]
        extra = {"bank": bank.keys, "excluded": tuple(bank.excluded(picked, texts, device)
                                                      for texts in (first, second, batch.loc_prompts))}
    losses = retrieval_losses(torch.where(rel_first, q_rel, q_gen), torch.where(rel_first, q_gen, q_rel),
                              q_loc, keys, networks.sentinel_key(), margin, **extra)

    prompts = networks.prompts(keys, pooled[:B])  # (B, l, d_llm)
    # reliability, paraphrase and locality inputs in one LLM pass, each row with its edit's prompt
    edit_inputs = pair_batch(tokenizer, batch.prompts + batch.rephrases + batch.loc_prompts,
                             batch.targets * 2 + batch.loc_answers, device, memo)
    logits = prompted_logits(llm, edit_inputs.input_ids, edit_inputs.attention_mask,
                             prompts.repeat(3, 1, 1))  # (3B, T, V)
    losses["edit"] = edit_nll(logits[: 2 * B], edit_inputs.input_ids[: 2 * B],
                              edit_inputs.answer_mask[: 2 * B], edit_margin)
    loc_ids, loc_mask = edit_inputs.input_ids[2 * B:], edit_inputs.attention_mask[2 * B:]
    with torch.no_grad():
        base_logits = llm(input_ids=loc_ids, attention_mask=loc_mask, use_cache=False).logits
    losses["locality"] = locality_kl(base_logits, logits[2 * B:], loc_mask.bool())
    return losses


@contextmanager
def _frozen(llm) -> Iterator[None]:
    """The LLM in eval mode without parameter gradients; its mode and flags are given back afterwards."""
    was_training = llm.training
    llm.eval()
    try:
        with frozen(llm):
            yield
    finally:
        llm.train(was_training)


def _append_log(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines past `step` (left by a run that stopped after its last checkpoint)."""
    if not path.is_file():
        return
    lines = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in lines))
