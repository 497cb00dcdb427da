"""Pretrain a built-in world model: a small Llama that knows every fact under every phrasing.

Deterministic for a given seed and thread count: the world, the tokenizer, the initial weights and
the batch order all derive from ``seed``. Resumable: the state at the end of every epoch (weights,
optimizer moments, the batch-order RNG) is written to ``<out>/checkpoint/``, and a later call with the
same configuration continues from it exactly, as if it had never stopped. ``scripts/train_world_model.py``
is the command-line entry.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from wiseedit.world.generator import DEFAULT_NUM_ENTITIES, DEFAULT_SEED, World, build_world
from wiseedit.world.recall import recall_by_phrasing
from wiseedit.world.tokenizer import save_tokenizer, train_tokenizer

CHECKPOINT_DIR = "checkpoint"


@dataclass(frozen=True)
class PretrainConfig:
    """The model's shape and its training. Defaults are the ``world`` model's."""

    seed: int = DEFAULT_SEED
    num_entities: int = DEFAULT_NUM_ENTITIES  # people in the world (fewer only for tests)
    vocab_size: int = 1024        # BPE vocabulary, special tokens included; small enough to split names
    hidden_size: int = 128
    intermediate_size: int = 768  # 6x hidden: a wide FFN input gives WISE's side memory room (see docs)
    num_layers: int = 6           # deep enough that WISE's ~80%-depth layer is neither first nor last
    num_heads: int = 4
    epochs: int = 16
    batch_size: int = 256
    lr: float = 3e-3
    warmup_steps: int = 200
    weight_decay: float = 0.01
    probe_every: int = 4          # epochs between recall probes on a few people (0: never)


PRESETS: dict[str, PretrainConfig] = {
    "world": PretrainConfig(),
    # FFN 4096 wide: 4 input dimensions per edit at T=1000 for a memory written into the FFN (WISE,
    # FT-L), where `world`'s 768 cannot hold 1,000 independent keys (docs/world.md).
    "world-xl": PretrainConfig(intermediate_size=4096),
}
"""The shipped world models' configurations, by alias."""


def make_model(cfg: PretrainConfig, tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=128,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(cfg.seed)
    return LlamaForCausalLM(config)


def _batches(ids: list[list[int]], batch_size: int, pad_id: int, rng: random.Random):
    """Shuffled batches of similar length (sorted within windows of 32 batches) to limit padding."""
    order = list(range(len(ids)))
    rng.shuffle(order)
    window = 32 * batch_size
    order = [i for w in range(0, len(order), window)
             for i in sorted(order[w:w + window], key=lambda i: len(ids[i]))]
    starts = list(range(0, len(order), batch_size))
    rng.shuffle(starts)
    for start in starts:
        rows = [ids[i] for i in order[start:start + batch_size]]
        width = max(map(len, rows))
        input_ids = torch.full((len(rows), width), pad_id)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            input_ids[r, : len(row)] = torch.tensor(row)
            mask[r, : len(row)] = 1
        labels = input_ids.masked_fill(mask == 0, -100)
        yield input_ids, mask, labels


def _save_checkpoint(folder: Path, model, opt, state: dict) -> None:
    """Weights, AdamW moments (safetensors) and counters + RNG state (JSON), replaced atomically."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tensors = {f"model.{n}": p.detach().contiguous() for n, p in model.named_parameters()}
    for n, p in model.named_parameters():
        moments = opt.state.get(p)
        if moments:
            tensors[f"adam.{n}.exp_avg"] = moments["exp_avg"]
            tensors[f"adam.{n}.exp_avg_sq"] = moments["exp_avg_sq"]
            tensors[f"adam.{n}.step"] = torch.as_tensor(moments["step"], dtype=torch.float32).reshape(1)
    save_file(tensors, str(tmp / "state.safetensors"))
    (tmp / "state.json").write_text(json.dumps(state))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def _load_checkpoint(folder: Path, model, opt) -> dict:
    tensors = load_file(str(folder / "state.safetensors"))
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(tensors[f"model.{n}"])
            if f"adam.{n}.step" in tensors:
                opt.state[p] = {"step": tensors[f"adam.{n}.step"].reshape(()),
                                "exp_avg": tensors[f"adam.{n}.exp_avg"],
                                "exp_avg_sq": tensors[f"adam.{n}.exp_avg_sq"]}
    return json.loads((folder / "state.json").read_text())


def pretrain(
    out_dir: Path,
    cfg: PretrainConfig = PretrainConfig(),
    log: Callable[[str], None] = print,
    tokenizer: PreTrainedTokenizerFast | None = None,
) -> dict:
    """Build the world, train the model (and the tokenizer unless one is given), save both to `out_dir`.

    Every log line is also appended to ``out_dir/train.log``. A checkpoint of the same configuration
    found in ``out_dir/checkpoint`` is resumed; a checkpoint of another configuration is refused
    (ValueError). Returns the recall report of the finished model.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = out_dir / CHECKPOINT_DIR

    def say(message: str) -> None:
        log(message)
        with open(out_dir / "train.log", "a") as f:
            f.write(message + "\n")

    world: World = build_world(cfg.seed, cfg.num_entities)
    texts = world.sentences()
    if tokenizer is None:
        tokenizer = train_tokenizer(texts, cfg.vocab_size)
    ids = [tokenizer(t)["input_ids"] + [tokenizer.eos_token_id] for t in texts]
    model = make_model(cfg, tokenizer)

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.95),
    )
    steps_per_epoch = math.ceil(len(ids) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch

    def lr_at(step: int) -> float:  # linear warmup, cosine decay to 10%
        if step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    rng = random.Random(cfg.seed)
    step, first_epoch, elapsed = 0, 0, 0.0
    if (ckpt / "state.json").exists():
        state = _load_checkpoint(ckpt, model, opt)
        # a key added to the configuration since the checkpoint was written takes its default
        if {**asdict(PretrainConfig()), **state["config"]} != asdict(cfg):
            raise ValueError(f"{ckpt} is a checkpoint of another configuration; remove it to start over")
        step, first_epoch, elapsed = state["step"], state["epoch"], state["seconds"]
        version, internal, gauss = state["rng"]
        rng.setstate((version, tuple(internal), gauss))
        say(f"resumed from {ckpt} after epoch {first_epoch} ({elapsed:.0f}s)")
    else:
        (out_dir / "train.log").write_text("")
        say(f"world: {len(world.entities)} entities, {len(texts)} sentences, "
            f"{sum(map(len, ids))} tokens/epoch; model: {sum(p.numel() for p in model.parameters())} params")

    model.train()
    t0 = time.time() - elapsed
    for epoch in range(first_epoch, cfg.epochs):
        running = 0.0
        for input_ids, mask, labels in _batches(ids, cfg.batch_size, tokenizer.pad_token_id, rng):
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            running += loss.item()
            step += 1
        say(f"epoch {epoch + 1}/{cfg.epochs} loss {running / steps_per_epoch:.4f} "
            f"({time.time() - t0:.0f}s)")
        if cfg.probe_every and (epoch + 1) % cfg.probe_every == 0:
            model.eval()
            probe = recall_by_phrasing(model, tokenizer, world, subjects=world.entities[:40])
            say(f"  recall on 40 people: mean {probe['mean']:.3f} worst phrasing {probe['min']:.3f}")
            model.train()
        _save_checkpoint(ckpt, model, opt, {"config": asdict(cfg), "epoch": epoch + 1, "step": step,
                                            "seconds": time.time() - t0, "rng": rng.getstate()})

    model.eval()
    report = recall_by_phrasing(model, tokenizer, world)
    report["train_seconds"] = round(time.time() - t0, 1)
    report["config"] = asdict(cfg)
    model.save_pretrained(str(out_dir))
    save_tokenizer(tokenizer, out_dir)
    shutil.rmtree(ckpt, ignore_errors=True)
    return report

