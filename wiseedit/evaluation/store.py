"""The output folder of ``wiseedit eval --output-path DIR``, and resuming an interrupted run from it.

Files:

- ``run.json``: the identity of the run (config, data and model identity) and its hash, written once
  by the main process before any block; a later run in the same folder must have the same identity
  (else BadInputError, unless ``force`` starts over);
- ``blocks.jsonl`` (one process) or ``blocks.rank<r>.jsonl`` (process r of an ``accelerate launch``):
  one line per finished (method, T, block), appended, flushed and fsynced as soon as it is done.
  A rerun skips every block found in any ``blocks*.jsonl``; a torn last line (a kill mid-write) is
  ignored and its block redone;
- ``results.json``, ``samples.jsonl``, ``plot.png``: the outputs, rewritten (atomically) at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from wiseedit.artifacts.atomic import atomic_write_text
from wiseedit.artifacts.location import check_writable
from wiseedit.artifacts.lock import remove_stale_temporaries
from wiseedit.errors import BadInputError
from wiseedit.evaluation.protocol import BlockResult

RUN_FILE = "run.json"
RESULTS_FILE = "results.json"
SAMPLES_FILE = "samples.jsonl"
PLOT_FILE = "plot.png"
BLOCKS_GLOB = "blocks*.jsonl"

#: A block's place in a run: (method, T, block index).
UnitKey = tuple[str, int, int]


def canonical_json(value) -> str:
    """Sorted keys, no whitespace, UTF-8 as is: the form that is hashed."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def sha256_of(value) -> str:
    """``sha256:<hex>`` of the canonical JSON of `value`."""
    return "sha256:" + hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


class RunStore:
    """The resumable state of one run in `folder`, as process `rank` of `ranks` sees it."""

    def __init__(self, folder: Path, identity: dict, rank: int = 0, ranks: int = 1):
        self.folder = Path(folder)
        self.identity = identity  # JSON-able: {"config": ..., "data": ..., "model": ...}
        self.hash = sha256_of(identity)
        self.blocks_file = self.folder / ("blocks.jsonl" if ranks == 1 else f"blocks.rank{rank}.jsonl")
        self._tail_checked = False

    def check(self, force: bool = False) -> None:
        """Refuse (BadInputError) when the folder holds a run with another identity, unless `force`.
        Only the keys of this store's identity are compared, so a store made with the config and
        data alone can check a folder before the model is loaded."""
        if self.folder.exists() and not self.folder.is_dir():
            raise BadInputError(f"output_path {self.folder} exists and is not a folder",
                                cli=f"--output-path {self.folder} exists and is not a folder")
        check_writable(self.folder, "output_path")
        if force:
            return
        saved = self._saved_identity()
        if saved is None:
            return
        differ = [_difference(key, saved.get(key), self.identity[key]) for key in self.identity
                  if saved.get(key) != self.identity[key]]
        if differ:
            other = f"{self.folder} holds the results of another evaluation (its {', '.join(differ)} differ)"
            raise BadInputError(f"{other}; pass force=True to start over there, or choose another output_path",
                                cli=f"{other}; pass --force to start over there, or choose another --output-path")

    def prepare(self, force: bool = False) -> None:
        """Main process, before any block, holding the folder's writer lock: delete the temporaries of
        a killed run; with `force`, this module's files from an earlier run; write ``run.json`` if it
        is not there."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for name in (RUN_FILE, RESULTS_FILE, SAMPLES_FILE, PLOT_FILE):  # left by a killed run; we hold the lock
            remove_stale_temporaries(self.folder / name)
        if force:
            for path in [*self.folder.glob(BLOCKS_GLOB), *(self.folder / name for name in (
                    RUN_FILE, RESULTS_FILE, SAMPLES_FILE, PLOT_FILE))]:
                path.unlink(missing_ok=True)
        if not (self.folder / RUN_FILE).exists():
            document = {"format": "wiseedit-eval-run/1", "config_hash": self.hash, "identity": self.identity}
            atomic_write_text(self.folder / RUN_FILE, json.dumps(document, indent=2, ensure_ascii=False) + "\n")

    def completed(self) -> dict[UnitKey, BlockResult]:
        """Every block finished by an earlier (or interrupted) run of this identity, first one wins."""
        done: dict[UnitKey, BlockResult] = {}
        for path in sorted(self.folder.glob(BLOCKS_GLOB)):
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    if entry.get("config_hash") != self.hash:
                        continue
                    key = (entry["method"], int(entry["T"]), int(entry["block"]))
                    result = BlockResult.from_json(entry["result"])
                except (ValueError, KeyError, TypeError):
                    continue  # a torn line from a killed run: that block is redone
                done.setdefault(key, result)
        return done

    def append(self, key: UnitKey, result: BlockResult) -> None:
        """Record one finished block durably (flush + fsync) in this process's blocks file."""
        method, T, block = key
        line = canonical_json({"config_hash": self.hash, "method": method, "T": T, "block": block,
                               "result": result.to_json(with_samples=True)})
        if not self._tail_checked:  # a torn last line must not swallow the first new one
            self._tail_checked = True
            if self.blocks_file.exists() and self.blocks_file.stat().st_size:
                with open(self.blocks_file, "rb") as handle:
                    handle.seek(-1, os.SEEK_END)
                    if handle.read(1) != b"\n":
                        line = "\n" + line
        with open(self.blocks_file, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def _saved_identity(self) -> dict | None:
        path = self.folder / RUN_FILE
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))["identity"]
        except (ValueError, KeyError, TypeError):
            raise BadInputError(f"{path} is not a wiseedit eval run file; pass force=True to start over in "
                                "that folder, or choose another output_path",
                                cli=f"{path} is not a wiseedit eval run file; pass --force to start over in that "
                                    "folder, or choose another --output-path") from None


def _difference(key: str, saved, mine) -> str:
    """``config (T, limit)``: a key and, for dicts, which of their fields differ."""
    if isinstance(saved, dict) and isinstance(mine, dict):
        fields = sorted(k for k in {*saved, *mine} if saved.get(k) != mine.get(k))
        return f"{key} ({', '.join(fields)})"
    return key
