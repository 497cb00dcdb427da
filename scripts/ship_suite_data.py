"""Regenerate the packaged suite data (wiseedit/data/suites/*.json.gz) from the shared data folder.

Each original JSON file is checked against the sha256 recorded in wiseedit.evaluation.suites (and in
PROVENANCE.md), then gzip-compressed at level 9 with mtime=0 and no file name in the header, so the
same input gives the same bytes (with the same zlib), and written atomically. ``--check`` writes
nothing: it verifies that every packaged file decompresses to the original checksum and that
recompressing gives identical bytes.

    .venv/bin/python scripts/ship_suite_data.py                 # from ../shared/data
    .venv/bin/python scripts/ship_suite_data.py --source DIR    # another copy of the data
    .venv/bin/python scripts/ship_suite_data.py --check         # verify only
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wiseedit.data.shipped import SHIPPED_FILES, ShippedFile  # noqa: E402

TARGET = ROOT / "wiseedit" / "data" / "suites"


def compress(data: bytes) -> bytes:
    """Reproducible gzip: level 9, mtime 0, no file name."""
    return gzip.compress(data, compresslevel=9, mtime=0)


def ship(file: ShippedFile, source: Path) -> tuple[int, int]:
    """Copy one original into the package, compressed; returns (original, compressed) sizes."""
    data = (source / file.origin).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != file.sha256:
        raise SystemExit(f"{source / file.origin}: sha256 {digest}, expected {file.sha256}; not shipped")
    packed = compress(data)
    assert gzip.decompress(packed) == data
    tmp = TARGET / (file.name + ".tmp")
    tmp.write_bytes(packed)
    os.replace(tmp, TARGET / file.name)
    return len(data), len(packed)


def check(file: ShippedFile) -> tuple[int, int]:
    """Verify one packaged file; returns (original, compressed) sizes."""
    packed = (TARGET / file.name).read_bytes()
    data = gzip.decompress(packed)
    if hashlib.sha256(data).hexdigest() != file.sha256:
        raise SystemExit(f"{file.name}: decompressed sha256 differs from the original's {file.sha256}")
    if compress(data) != packed:
        print(f"{file.name}: content OK, but recompressing gives other bytes (a different zlib?)")
    return len(data), len(packed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "data",
                        help="the shared data folder holding the original files (default: ../shared/data)")
    parser.add_argument("--check", action="store_true", help="verify the packaged files, write nothing")
    args = parser.parse_args()
    TARGET.mkdir(parents=True, exist_ok=True)
    total_in = total_out = 0
    for file in SHIPPED_FILES:
        size_in, size_out = check(file) if args.check else ship(file, args.source)
        total_in, total_out = total_in + size_in, total_out + size_out
        print(f"{file.name:28} {size_in:>10,} -> {size_out:>9,} bytes  sha256 {file.sha256[:16]}... ok")
    print(f"{'total':28} {total_in:>10,} -> {total_out:>9,} bytes")


if __name__ == "__main__":
    main()
