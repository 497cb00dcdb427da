"""One writer at a time per output: a delta directory, or an eval output folder.

Two ``wiseedit edit --delta D`` started together both read D, both edit, and the second save would
replace the first's: its edits would be lost although both commands succeed. So every command that
writes D holds D's writer lock from *before it reads D* until its save is done; a second writer waits
(saying so once through `log`), then reads D as the first one left it and continues from there.

The lock is an OS file lock (``filelock``: ``flock`` on Unix, ``LockFileEx`` on Windows) on a hidden
empty file beside the target, ``.<name>.lock`` (``/models/llama.wiseedit`` ->
``/models/.llama.wiseedit.lock``): outside the directory, so the directory is still replaced by
renames and copied or shipped without it. The OS drops the lock when its process ends, however it
ends (``kill -9`` included), so a lock is never stale. The file stays after the lock is released
(deleting it would let a waiter and a newcomer hold two different files); it is empty and hidden.

Holding the lock also makes it safe to remove what a killed writer left behind: its hidden
temporary ``.<name>.tmp-<pid>-<hex>`` siblings (see :mod:`wiseedit.artifacts.atomic`), which no
later write would otherwise ever delete.
"""

from __future__ import annotations

import os
import re
import shutil
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Callable, Iterator

from filelock import FileLock, Timeout

POLL_SECONDS = 0.2  # how often a waiting writer retries


def lock_path(target: str | Path) -> Path:
    """The lock file of `target`: the hidden sibling ``.<name>.lock``."""
    target = Path(target).expanduser().resolve()  # one lock however the path is spelt (symlinks, ..)
    return target.with_name(f".{target.name}.lock")


def _pid_alive(pid: int) -> bool:
    """Whether process `pid` exists; True where that cannot be asked safely (on Windows ``os.kill``
    with signal 0 would send Ctrl-C), so nothing is removed there."""
    if pid == os.getpid() or os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's), or we cannot tell: keep its files
    return True


def remove_stale_temporaries(target: str | Path) -> list[Path]:
    """Delete the hidden temporaries ``.<name>.tmp-<pid>-<hex>*`` of `target` whose process is gone;
    returns what was removed. Call it only while holding `target`'s writer lock (no writer of
    `target` can be running then; the process check also spares a live writer that takes no lock)."""
    target = Path(target).expanduser().absolute()
    if not target.parent.is_dir():
        return []
    pattern = re.compile(re.escape(f".{target.name}.tmp-") + r"(\d+)-[0-9a-f]+")
    removed = []
    for path in target.parent.iterdir():
        match = pattern.match(path.name)
        if match is None or _pid_alive(int(match.group(1))):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


@contextmanager
def _one(target: Path, log: Callable[[str], None] | None) -> Iterator[None]:
    path = lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if log:
            log(f"waiting for another wiseedit writing {target} (lock {path})")
        lock.acquire(timeout=-1, poll_interval=POLL_SECONDS)
    try:
        remove_stale_temporaries(target)
        yield
    finally:
        lock.release()


@contextmanager
def writing(*targets: str | Path | None, log: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the writer lock of every target (None entries are skipped, the same path counts once),
    waiting as long as another process holds one; `log` gets one line when this call has to wait.
    Locks are taken in path order, so two commands locking the same pair cannot deadlock.

    Within the block, read the target afresh: a writer that waited must continue from what the
    previous one saved, not from what it read before.
    """
    unique = sorted({Path(t).expanduser().resolve() for t in targets if t is not None}, key=str)
    with ExitStack() as stack:
        for target in unique:
            stack.enter_context(_one(target, log))
        yield
