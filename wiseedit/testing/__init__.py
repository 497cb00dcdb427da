"""Helpers for tests, benchmarks and demos: tiny models and tokenizers built in milliseconds, offline."""

from wiseedit.testing.tiny import TINY_ARCHITECTURES, tiny_model, tiny_tokenizer

__all__ = ["TINY_ARCHITECTURES", "tiny_model", "tiny_tokenizer"]
