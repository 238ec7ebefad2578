"""What a batch job reads: the image paths (or URIs) a SOURCE names, in a fixed order."""

from __future__ import annotations

import csv
import glob
from pathlib import Path

from mobilenets.data.preprocess import IMAGE_EXTENSIONS
from mobilenets.util.errors import DataError
from mobilenets.util.extras import needs

LISTS = (".txt", ".csv", ".parquet")


def _from_list(path: Path) -> list[str]:
    """The paths a list file holds: one per line (``.txt``), or the ``path`` column (else the first one)
    of a ``.csv`` / ``.parquet`` file; a relative path is relative to the list's folder."""
    if path.suffix == ".txt":
        entries = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    elif path.suffix == ".csv":
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            raise DataError(f"{path} is empty; give one image path per row.")
        col = rows[0].index("path") if "path" in rows[0] else 0
        entries = [r[col] for r in rows[1:] if len(r) > col and r[col].strip()]
    else:
        with needs("Reading a Parquet list of images"):
            import pyarrow.parquet as pq
        schema = pq.read_schema(path)
        column = "path" if "path" in schema.names else schema.names[0]
        entries = [str(p) for p in pq.read_table(path, columns=[column]).column(0).to_pylist() if p]
    return [e if "://" in e or Path(e).is_absolute() else str(path.parent / e) for e in entries]


def list_sources(source: str) -> list[str]:
    """The images of ``source``: a folder (recursive, image suffixes only), a glob pattern (``**``
    recursive), or a ``.txt``/``.csv``/``.parquet`` list of paths or URIs. Sorted for folders and globs,
    in the list's order for lists, each path once; an empty result is an error."""
    path = Path(source)
    if path.is_dir():
        found = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    elif path.is_file() and path.suffix.lower() in LISTS:
        found = _from_list(path)
    elif path.is_file():
        raise DataError(f"SOURCE {source} is a single file; give a folder, a glob or a {'/'.join(LISTS)} list.")
    elif glob.has_magic(source):
        found = sorted(p for p in glob.glob(source, recursive=True) if Path(p).is_file())
    else:
        raise DataError(f"SOURCE {source} does not exist; give a folder, a glob or a {'/'.join(LISTS)} list.")
    if not found:
        raise DataError(f"SOURCE {source} names no images; give a folder or list with image files in it.")
    return list(dict.fromkeys(found))  # a path listed twice is predicted once
