"""RECIPE speed on CPU: editing throughput, retrieval latency against store size, inference overhead.

    .venv/bin/python benchmarks/recipe_speed.py                      # tiny llama, tiny encoder
    .venv/bin/python benchmarks/recipe_speed.py --encoder minilm     # the default encoder (22M)
    .venv/bin/python benchmarks/recipe_speed.py --model path/to/llm --encoder minilm --threads 2

Prints one table per measurement; every ratio is measured side by side in this run. The networks are
untrained (a step-0 checkpoint): speed does not depend on what they learned, except through how often
retrieval hits. The inference test therefore edits the very prompts it times (the default cosine gate
answers a query at least 0.9 times as close to an edit as the edit's own prompt, which these are), and
prints the fraction of rows that got a prompt.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from wiseedit.edits.record import EditRecord, LocalityProbe  # noqa: E402
from wiseedit.evaluation.batching import encode_pair, left_padded_prompts, right_padded  # noqa: E402
from wiseedit.recipe.config import RecipeConfig  # noqa: E402
from wiseedit.recipe.method import RecipeMethod  # noqa: E402
from wiseedit.recipe.store import KnowledgeStore  # noqa: E402
from wiseedit.recipe.training.loop import meta_train  # noqa: E402

COLOURS = ["red", "blue", "green", "white", "black", "yellow"]


def timed(fn, repeats: int) -> float:
    """Median wall time of `fn()` in seconds, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def synthetic_edits(n: int, offset: int = 0) -> list[EditRecord]:
    return [EditRecord(prompt=f"The colour of item {i} is", target=COLOURS[i % len(COLOURS)], id=f"e{i}",
                       rephrase=(f"Item {i} has the colour",),
                       locality=(LocalityProbe(f"The job of person {i} is", "nurse"),))
            for i in range(offset, offset + n)]


def build(args):
    """The LLM, its tokenizer and a step-0 RECIPE checkpoint folder for it."""
    if args.model:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        llm = AutoModelForCausalLM.from_pretrained(args.model).eval()
        tokenizer = AutoTokenizer.from_pretrained(args.model)
    else:
        from wiseedit.testing.tiny import tiny_model, tiny_tokenizer

        tokenizer = tiny_tokenizer()
        llm = tiny_model("llama", tokenizer, layers=2, hidden=32)
    if args.encoder == "minilm":
        config, encoder = RecipeConfig(d_r=args.d_r), RecipeConfig().encoder
    else:
        from transformers import BertConfig, BertModel

        torch.manual_seed(0)
        bert = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=4, intermediate_size=64, max_position_embeddings=128,
                                    pad_token_id=tokenizer.pad_token_id))
        config, encoder = RecipeConfig(encoder="tiny-bert", d_r=args.d_r), (bert, tokenizer)
    out = tempfile.mkdtemp(prefix="recipe-bench-")
    meta_train(llm, tokenizer, encoder, synthetic_edits(16), config, out, steps=0)
    return llm, tokenizer, out


def editing_throughput(llm, tokenizer, checkpoint: str, n: int) -> None:
    print(f"\n== editing throughput ({n} edits)")
    edits = synthetic_edits(n)
    for label, chunk in (("batched (one apply call)", n), ("one edit per apply call", 1)):
        method = RecipeMethod.create(llm, tokenizer, {"checkpoint": checkpoint})
        start = time.perf_counter()
        for i in range(0, n, chunk):
            method.apply(edits[i:i + chunk])
        seconds = time.perf_counter() - start
        method.detach()
        print(f"{label:28s} {n / seconds:10.1f} edits/s")


def retrieval_latency(d_r: int, sizes: list[int], repeats: int) -> None:
    print(f"\n== retrieval latency per query (random keys, d_r={d_r})")
    print(f"{'stored edits':>12s} {'exact, 1 query':>16s} {'exact, batch 16':>16s} {'cosine, 1 query':>16s}"
          f" {'hnsw, 1 query':>15s} {'hnsw build':>11s}")
    try:
        import faiss  # noqa: F401

        has_faiss = True
    except ImportError:
        has_faiss = False
    torch.manual_seed(0)
    for n in sizes:
        keys = torch.randn(n, d_r)
        store = KnowledgeStore(d_r, 1, 1)
        store.add([str(i) for i in range(n)], keys, torch.zeros(n, 1, 1))
        one, batch = torch.randn(1, d_r), torch.randn(16, d_r)
        single = timed(lambda: store.search(one), repeats)
        batched = timed(lambda: store.search(batch), repeats) / 16
        by_cosine = KnowledgeStore(d_r, 1, 1, metric="cosine")  # what the default gate searches
        by_cosine.add(store.ids, keys, torch.zeros(n, 1, 1))
        cosine = timed(lambda: by_cosine.search(one), repeats)
        hnsw_cell, build_cell = "n/a (faiss)", ""
        if has_faiss:
            graph = KnowledgeStore(d_r, 1, 1, index="hnsw")
            graph.add(store.ids, keys, torch.zeros(n, 1, 1))
            start = time.perf_counter()
            graph.search(one)  # builds the graph
            build_cell = f"{time.perf_counter() - start:9.1f} s"
            hnsw_cell = f"{timed(lambda: graph.search(one), repeats) * 1e3:12.3f} ms"
        print(f"{n:12d} {single * 1e3:13.3f} ms {batched * 1e3:13.3f} ms {cosine * 1e3:13.3f} ms {hnsw_cell:>15s}"
              f" {build_cell:>11s}")


def inference_overhead(llm, tokenizer, checkpoint: str, stored: int, repeats: int) -> None:
    print(f"\n== inference time, edited / base ({stored} edits stored, batch of 16 edited prompts)")
    edits = synthetic_edits(stored)
    pairs = [encode_pair(tokenizer, e.prompt, e.target) for e in edits[:16]]
    tf = right_padded(pairs, tokenizer.pad_token_id)
    gen = left_padded_prompts(pairs, tokenizer.pad_token_id)

    def forward():
        with torch.no_grad():
            llm(input_ids=tf.input_ids, attention_mask=tf.attention_mask)

    def generate():
        llm.generate(input_ids=gen.input_ids, attention_mask=gen.attention_mask, max_new_tokens=8,
                     do_sample=False, pad_token_id=tokenizer.pad_token_id)

    base = {"forward": timed(forward, repeats), "generate 8 tokens": timed(generate, repeats)}
    method = RecipeMethod.create(llm, tokenizer, {"checkpoint": checkpoint})
    method.apply(edits)
    _, hit = method._retrieve(tf.input_ids, tf.attention_mask.bool())
    cold_forward = timed(lambda: (method._query_cache.clear(), forward()), repeats)
    warm = {"forward": timed(forward, repeats), "generate 8 tokens": timed(generate, repeats)}
    method.detach()
    print(f"rows that got a prompt: {hit.float().mean().item():.2f}")
    print(f"{'':26s} {'base':>10s} {'edited':>10s} {'ratio':>7s}")
    for name in base:
        print(f"{name:26s} {base[name] * 1e3:7.2f} ms {warm[name] * 1e3:7.2f} ms {warm[name] / base[name]:6.2f}x")
    print(f"{'forward, uncached queries':26s} {base['forward'] * 1e3:7.2f} ms {cold_forward * 1e3:7.2f} ms "
          f"{cold_forward / base['forward']:6.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a causal LM folder (default: a tiny llama built from a config)")
    parser.add_argument("--encoder", choices=["tiny", "minilm"], default="tiny")
    parser.add_argument("--d-r", type=int, default=512, help="key width (the paper: 4096)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; 1 by default: on shared cores more threads can be far slower")
    parser.add_argument("--edits", type=int, default=1000, help="edits applied in the throughput test")
    parser.add_argument("--sizes", default="1000,10000,100000", help="store sizes for the latency test")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}, encoder: {args.encoder}, d_r: {args.d_r}, "
          f"model: {args.model or 'tiny llama (2 layers, width 32)'}")
    llm, tokenizer, checkpoint = build(args)
    editing_throughput(llm, tokenizer, checkpoint, args.edits)
    retrieval_latency(args.d_r, [int(s) for s in args.sizes.split(",")], args.repeats)
    inference_overhead(llm, tokenizer, checkpoint, min(args.edits, 1000), args.repeats)


if __name__ == "__main__":
    main()
