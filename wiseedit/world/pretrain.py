"""Pretrain the built-in world model: a small Llama that knows every fact under every phrasing.

Deterministic for a given seed and thread count: the world, the tokenizer, the initial weights and
the batch order all derive from ``seed``. ``scripts/train_world_model.py`` is the command-line entry.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from wiseedit.world.generator import DEFAULT_SEED, World, build_world
from wiseedit.world.recall import recall_by_phrasing
from wiseedit.world.tokenizer import save_tokenizer, train_tokenizer


@dataclass
class PretrainConfig:
    seed: int = DEFAULT_SEED
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


def pretrain(
    out_dir: Path,
    cfg: PretrainConfig = PretrainConfig(),
    log: Callable[[str], None] = print,
) -> dict:
    """Build the world, train tokenizer and model, save both to `out_dir`; return the recall report."""
    world: World = build_world(cfg.seed)
    texts = world.sentences()
    tokenizer = train_tokenizer(texts, cfg.vocab_size)
    ids = [tokenizer(t)["input_ids"] + [tokenizer.eos_token_id] for t in texts]
    model = make_model(cfg, tokenizer)
    log(f"world: {len(world.entities)} entities, {len(texts)} sentences, "
        f"{sum(map(len, ids))} tokens/epoch; model: {sum(p.numel() for p in model.parameters())} params")

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
    model.train()
    step, t0 = 0, time.time()
    for epoch in range(cfg.epochs):
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
        log(f"epoch {epoch + 1}/{cfg.epochs} loss {running / steps_per_epoch:.4f} "
            f"({time.time() - t0:.0f}s)")
        if cfg.probe_every and (epoch + 1) % cfg.probe_every == 0:
            model.eval()
            probe = recall_by_phrasing(model, tokenizer, world, subjects=world.entities[:40])
            log(f"  recall on 40 people: mean {probe['mean']:.3f} worst phrasing {probe['min']:.3f}")
            model.train()

    model.eval()
    report = recall_by_phrasing(model, tokenizer, world)
    report["train_seconds"] = round(time.time() - t0, 1)
    report["config"] = asdict(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    save_tokenizer(tokenizer, out_dir)
    return report
