"""Fixtures shared by the CLI and API tests: tiny models saved as ordinary Hugging Face folders."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: no test touches the network

import shutil

import pytest


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; on two shared cores, two threads can be 10x slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)

# One-token targets in the 1000-token tiny tokenizer: on a random 6-layer model GRACE steers the next token
# only (see test_baselines.py), so these are what a recall assertion can rely on.
EDITS_JSONL = (
    '{"id": "a", "prompt": "The capital of France is", "target": "Rome"}\n'
    '{"id": "b", "prompt": "Alice works as a nurse in", "target": "Paris"}\n'
    '{"prompt": "Bob plays the", "target": "violin"}\n'
)


@pytest.fixture(scope="session")
def saved_tiny_models(tmp_path_factory):
    """Two tiny Llamas (seeds 0 and 1: same architecture, different weights) with their tokenizer,
    saved once per session by ``save_pretrained``; tests get copies (see `model_dir`)."""
    from wiseedit.testing.tiny import tiny_model, tiny_tokenizer

    root = tmp_path_factory.mktemp("tiny-models")
    tokenizer = tiny_tokenizer(vocab_size=1000)
    folders = {}
    for seed in (0, 1):
        folder = root / f"llama-seed{seed}"
        tiny_model("llama", tokenizer, seed=seed).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders[seed] = folder
    return folders


@pytest.fixture
def model_dir(tmp_path, saved_tiny_models):
    """A tiny Llama folder in this test's tmp_path (its default delta goes to ``tmp_path/llama.wiseedit``)."""
    return shutil.copytree(saved_tiny_models[0], tmp_path / "llama")


@pytest.fixture
def other_model_dir(tmp_path, saved_tiny_models):
    """Another tiny Llama with different weights (seed 1), for base-mismatch tests."""
    return shutil.copytree(saved_tiny_models[1], tmp_path / "other-llama")


@pytest.fixture
def edits_file(tmp_path):
    """Three edits, the last without an id (it becomes ``edits:3``)."""
    path = tmp_path / "edits.jsonl"
    path.write_text(EDITS_JSONL, encoding="utf-8")
    return path
