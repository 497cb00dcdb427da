"""Atomic writes: a file or a whole directory appears complete, or not at all.

Files go to a temporary sibling and are renamed over the target (``os.replace`` is atomic on POSIX and
Windows). A directory cannot be replaced by one rename, so :func:`atomic_directory` swaps in two:

1. the new content is written to a hidden temporary sibling ``.<name>.tmp-<pid>-<random>``;
2. the old directory (if any) is renamed to ``<name>.backup``;
3. the temporary directory is renamed to ``<name>``;
4. the backup is deleted.

An exception (or Ctrl-C) during 1 deletes the temporary directory and leaves ``<name>`` untouched.
Crash window: a hard kill *between* renames 2 and 3 leaves no ``<name>`` but a complete
``<name>.backup`` (the previous state). That state is never repaired behind the user's back: loading
and writing both refuse with one sentence giving the ``mv`` command that restores it (loading stays
read-only, and nothing can race a writer that is still running). A hard kill during step 4 leaves a
stale backup beside a good ``<name>``; the next write removes it. A hard kill during step 1 can leave a
hidden ``.<name>.tmp-<pid>-*`` folder, which is never read; the next write of ``<name>`` that holds its
writer lock (:mod:`wiseedit.artifacts.lock`: deltas, eval folders, exports) removes it.
"""

from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from wiseedit.errors import BadInputError


def backup_path(final: Path) -> Path:
    """Where :func:`atomic_directory` parks the previous ``final`` during the swap."""
    return final.with_name(final.name + ".backup")


def interrupted_write_message(final: Path) -> str:
    """The sentence telling the user how to restore a directory left in the crash window."""
    backup = backup_path(final)
    return (
        f"{final} is missing but {backup} exists (an earlier write was interrupted); "
        f"restore the previous state with: mv '{backup}' '{final}'"
    )


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    """Make renames in `path` durable; a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _new_file_mode() -> int:
    """The mode ``open()`` gives a new file: 0o666 less the umask (read by setting it back at once)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _temp_sibling(final: Path, suffix: str = "") -> Path:
    return final.with_name(f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` (UTF-8, newlines as given) to `path` so that readers see the old or the new content,
    never a partial file."""
    path = Path(path)
    tmp = _temp_sibling(path)
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _check_target(final: Path, overwrite: bool) -> None:
    if not final.exists() and backup_path(final).exists():
        raise BadInputError(interrupted_write_message(final))
    if final.exists() and not overwrite:
        raise BadInputError(f"{final} already exists")
    if final.exists() and not final.is_dir():
        raise BadInputError(f"{final} exists and is not a directory")


def _swap_in(tmp: Path, final: Path) -> None:
    backup = backup_path(final)
    if final.exists():
        if backup.exists():  # stale, from a write killed while deleting it
            shutil.rmtree(backup)
        os.rename(final, backup)
        try:
            os.rename(tmp, final)
        except BaseException:
            os.rename(backup, final)
            raise
        shutil.rmtree(backup, ignore_errors=True)
    else:
        os.rename(tmp, final)
    _fsync_dir(final.parent)


@contextmanager
def atomic_directory(final: Path, *, overwrite: bool) -> Iterator[Path]:
    """Yield an empty temporary directory next to `final` (same filesystem); when the block ends
    without an exception its content replaces `final` as a whole (see the module docstring for the
    swap and its crash window). On an exception `final` is untouched and the temporary is deleted.

    Raises BadInputError("<final> already exists") when `final` exists and not `overwrite` (callers add
    their own advice, e.g. about ``--force``), or when an earlier write was interrupted.
    """
    final = Path(final)
    _check_target(final, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(final)
    tmp.mkdir()
    try:
        yield tmp
        mode = _new_file_mode()
        for item in tmp.rglob("*"):
            if item.is_file():
                os.chmod(item, mode)  # safetensors writes 0600; readers of the folder need what umask grants
                _fsync_file(item)
        _check_target(final, overwrite)  # it may have appeared while we were writing
        _swap_in(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
