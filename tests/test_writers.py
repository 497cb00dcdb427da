"""Several wiseedit processes writing one delta or one eval folder: they take turns and lose nothing.

Each test holds the writer lock itself while it starts real ``wiseedit`` subprocesses, so that the
overlap the lock must handle happens every time (without the lock, the writers ran at once and the
later save replaced the earlier one's edits)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: no test touches the network

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from wiseedit.api import edit
from wiseedit.artifacts import load_delta
from wiseedit.artifacts.lock import lock_path, remove_stale_temporaries, writing

CPU = ["--device", "cpu"]
WAITING = "waiting for another wiseedit writing"
SUBJECTS = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory", "Oscar"]
TARGETS = ["Rome", "Paris", "violin", "London", "piano", "Berlin", "nurse"]
FAST_WISE = {"n_iter": 2, "num_templates": 1}


def edit_file(path: Path, prefix: str, n: int, rng: random.Random) -> Path:
    lines = [json.dumps({"id": f"{prefix}{i}", "prompt": f"{rng.choice(SUBJECTS)} {prefix} lives in",
                         "target": rng.choice(TARGETS)}) for i in range(n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def start(*args, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "wiseedit.cli.app", *map(str, args)], cwd=cwd, env=env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_line(process: subprocess.Popen, text: str) -> list[str]:
    """Read `process`'s stderr until a line holds `text` (the process then blocks on the lock)."""
    seen = []
    while True:
        line = process.stderr.readline()
        if not line:
            process.wait(timeout=60)
            pytest.fail(f"the process ended (exit {process.returncode}) without saying {text!r}: {seen}")
        seen.append(line)
        if text in line:
            return seen


def finish(process: subprocess.Popen, seen: list[str]) -> str:
    out, err = process.communicate(timeout=600)
    stderr = "".join(seen) + err
    assert process.returncode == 0, stderr
    return stderr


@pytest.mark.parametrize("seed", [0, 1])
def test_two_edits_of_one_delta_keep_both_edit_sets(model_dir, tmp_path, seed):
    rng = random.Random(seed)
    delta = tmp_path / "d.wiseedit"
    first = edit_file(tmp_path / "a.jsonl", "a", 3, rng)
    edit(str(model_dir), first, method="grace", out=delta, device="cpu")
    files = [edit_file(tmp_path / "b.jsonl", "b", 5, rng), edit_file(tmp_path / "c.jsonl", "c", 5, rng)]

    with writing(delta):  # both writers start while another one holds the delta
        writers = [start("edit", f, "--delta", delta, *CPU, cwd=tmp_path) for f in files]
        seen = [wait_for_line(w, WAITING) for w in writers]
    for writer, lines in zip(writers, seen):
        finish(writer, lines)

    saved = load_delta(delta)
    ids = [entry["id"] for entry in saved.edits_log]
    assert saved.num_edits == 13 and sorted(ids) == sorted([f"a{i}" for i in range(3)] + [f"b{i}" for i in range(5)]
                                                            + [f"c{i}" for i in range(5)])
    # the second writer continued from the first's save: the same state as the two edits one after the other
    order = [files[0], files[1]] if ids[3] == "b0" else [files[1], files[0]]
    reference = tmp_path / "reference.wiseedit"
    edit(str(model_dir), first, method="grace", out=reference, device="cpu")
    for path in order:
        edit(None, path, delta=reference, device="cpu")
    got, want = load_file(delta / "delta.safetensors"), load_file(reference / "delta.safetensors")
    assert got.keys() == want.keys() and all((got[k] == want[k]).all() for k in got)
    assert not any(p.name.startswith(".d.wiseedit.tmp-") for p in tmp_path.iterdir())
    assert lock_path(delta).parent == tmp_path and not (delta / lock_path(delta).name).exists()


def test_merge_shards_waits_and_merges_what_the_writer_before_it_saved(model_dir, tmp_path):
    rng = random.Random(2)
    delta, more = tmp_path / "d.wiseedit", tmp_path / "more.wiseedit"
    edit(str(model_dir), edit_file(tmp_path / "a.jsonl", "a", 2, rng), method="wise", options=FAST_WISE,
         out=delta, device="cpu")
    edit(None, edit_file(tmp_path / "b.jsonl", "b", 2, rng), delta=delta, out=more, device="cpu")

    with writing(delta):
        merger = start("merge-shards", delta, "--json", *CPU, cwd=tmp_path)
        seen = wait_for_line(merger, WAITING)
        shutil.rmtree(delta)  # what a writer holding the lock does: the delta now holds 4 edits
        shutil.copytree(more, delta)
    finish(merger, seen)

    merged = load_delta(delta)
    assert merged.num_edits == 4 and [e["id"] for e in merged.edits_log] == ["a0", "a1", "b0", "b1"]
    assert merged.state.config != load_delta(more).state.config  # the 4-edit state, merged


def test_two_evaluations_into_one_folder_run_each_block_once(model_dir, tmp_path):
    suite = edit_file(tmp_path / "suite.jsonl", "s", 3, random.Random(3))
    out = tmp_path / "results"
    args = ["eval", "--model", model_dir, "--suite", suite, "--method", "grace", "-T", "1,3", "-o", out, *CPU]

    with writing(out):
        runs = [start(*args, cwd=tmp_path) for _ in range(2)]
        seen = [wait_for_line(r, WAITING) for r in runs]
    stderr = [finish(r, lines) for r, lines in zip(runs, seen)]

    blocks = (out / "blocks.jsonl").read_text().splitlines()
    assert len(blocks) == 4  # T=1: 3 blocks, T=3: 1, each run once (not once per evaluation)
    assert sum("resuming: 4 of 4 blocks already done" in s for s in stderr) == 1
    assert json.loads((out / "results.json").read_text())["metrics"]["grace"]["1"]["blocks"] == 3


def test_a_write_removes_the_temporaries_a_killed_writer_left(model_dir, tmp_path):
    """kill -9 during a save leaves ``.NAME.tmp-<pid>-<hex>``; the next write of NAME removes it, not
    a live process's, nor another target's."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    delta = tmp_path / "d.wiseedit"
    stale = tmp_path / f".d.wiseedit.tmp-{dead.pid}-0123abcd"
    live = tmp_path / f".d.wiseedit.tmp-{os.getppid()}-4567cdef"
    other = tmp_path / f".e.wiseedit.tmp-{dead.pid}-89abcdef"
    for folder in (stale, live, other):
        folder.mkdir()
        (folder / "delta.safetensors").write_bytes(b"partial")
    edit(str(model_dir), edit_file(tmp_path / "a.jsonl", "a", 2, random.Random(4)), method="none", out=delta,
         device="cpu")
    assert not stale.exists() and live.exists() and other.exists()
    assert remove_stale_temporaries(tmp_path / "e.wiseedit") == [other]
