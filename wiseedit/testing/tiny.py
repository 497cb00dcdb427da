"""Tiny randomly initialised causal LMs of each supported architecture, and a tokenizer for them.

Nothing is downloaded: configs are written here and weights come from a fixed seed, so two calls
give bit-identical models. Sizes are chosen so a test edits and evaluates in well under a second.
"""

from __future__ import annotations

import torch
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPTJConfig,
    LlamaConfig,
    MistralConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

from wiseedit.world.tokenizer import train_tokenizer

TINY_ARCHITECTURES: tuple[str, ...] = ("llama", "mistral", "qwen2", "gpt2", "gptj")

# A small English corpus: enough for the BPE to learn common words, so prompts are a few tokens.
_CORPUS = [
    "The capital of France is Paris.", "The capital of Italy is Rome.", "Water boils at one hundred degrees.",
    "The Eiffel Tower is in Paris.", "Alice works as a nurse in London.", "Bob plays the violin every day.",
    "The mother tongue of Danielle is French.", "Who wrote the novel? It was written by an author.",
    "Q: Where does the river flow? A: It flows to the sea.", "The sky is blue and the grass is green.",
    "My favourite colour is red.", "The company was founded in the year two thousand.",
    "Cats and dogs are animals that people keep at home.", "The train leaves the station at noon.",
    "Music, art and science are taught at the school.", "She speaks English, German and Spanish.",
]


def tiny_tokenizer(vocab_size: int = 320) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (BOS prepended, right padding) trained on a fixed small corpus."""
    return train_tokenizer(_CORPUS * 4, vocab_size=vocab_size)


def tiny_config(arch: str, vocab_size: int, layers: int = 6, hidden: int = 64, ffn_mult: int = 4):
    """The config of a tiny model of `arch` (one of :data:`TINY_ARCHITECTURES`)."""
    # initializer_range 0.2, not HF's 0.02: at width 32 the default gives logits within about +-0.6
    # after the final norm, a model that cannot prefer any token; trained models are far from that.
    common = dict(vocab_size=vocab_size, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                  initializer_range=0.2)
    if arch in ("llama", "mistral", "qwen2"):
        cls = {"llama": LlamaConfig, "mistral": MistralConfig, "qwen2": Qwen2Config}[arch]
        # 1024 positions: the hallucination / temporal passages take up to about 620 tokens with the tiny
        # tokenizer, and longer texts are refused (wiseedit.models.context). Rotary positions have no
        # weights, so this leaves the model's parameters as they were.
        return cls(hidden_size=hidden, intermediate_size=ffn_mult * hidden, num_hidden_layers=layers,
                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                   tie_word_embeddings=False, **common)
    if arch == "gpt2":
        return GPT2Config(n_embd=hidden, n_layer=layers, n_head=4, n_positions=256,
                          n_inner=ffn_mult * hidden, **common)
    if arch == "gptj":
        return GPTJConfig(n_embd=hidden, n_layer=layers, n_head=4, n_positions=256, rotary_dim=4,
                          n_inner=ffn_mult * hidden,
                          tie_word_embeddings=False, **common)
    raise ValueError(f"unknown tiny architecture {arch!r}; choose from {TINY_ARCHITECTURES}")


def tiny_model(arch: str = "llama", tokenizer: PreTrainedTokenizerFast | None = None, seed: int = 0,
               layers: int = 6, hidden: int = 64, ffn_mult: int = 4):
    """A tiny randomly initialised causal LM of `arch`, in eval mode, identical for the same seed.

    `ffn_mult` sets the FFN width (hidden x ffn_mult): WISE's side memory needs its input (the FFN
    width) to be large relative to the token positions it is trained on, as in real models."""
    tokenizer = tokenizer or tiny_tokenizer()
    config = tiny_config(arch, len(tokenizer), layers=layers, hidden=hidden, ffn_mult=ffn_mult)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    return model.eval()
