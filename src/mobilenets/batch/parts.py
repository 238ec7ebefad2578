"""A batch job's output folder: Parquet part files that appear whole or not at all, and what they hold.

Rows are written in parts of ``rows_per_file`` rows, each to a hidden temporary file that is renamed to
``part-<run>-<n>.parquet`` once complete (:func:`~mobilenets.util.files.atomic_write_bytes`), so a job
killed at any moment leaves only complete parts (and perhaps a temporary file, removed on the next
start). Starting the same job again reads the ``path`` column of the complete parts and runs only the
other images: none is lost or written twice.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

from mobilenets.util.errors import DataError
from mobilenets.util.extras import needs
from mobilenets.util.files import atomic_write_bytes


def done_paths(out: Path) -> set[str]:
    """The images already in complete parts of ``out``; left-over temporary files are removed."""
    with needs("Writing predictions to Parquet"):
        import pyarrow.parquet as pq

    for tmp in out.glob(".part-*.tmp"):
        tmp.unlink()
    done: set[str] = set()
    for part in sorted(out.glob("part-*.parquet")):
        try:
            done.update(pq.read_table(part, columns=["path"]).column(0).to_pylist())
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"{part} is not a part this job wrote ({exc}); move it out of {out}.") from None
    return done


class PartWriter:
    """Collects row tables and writes each ``rows_per_file`` rows as one part (the last one: what is
    left), atomically."""

    def __init__(self, out: Path, rows_per_file: int) -> None:
        self.out, self.rows_per_file = out, rows_per_file
        self.run = f"{time.time_ns():x}"  # parts of a later run sort after this one's
        self.pending: list[Any] = []
        self.rows = self.parts = self.written = self.errors = 0

    def add(self, table: Any) -> None:
        import pyarrow as pa

        self.pending.append(table)
        self.rows += table.num_rows
        self.errors += table.num_rows - table.column("error").null_count
        while self.rows >= self.rows_per_file:
            rows = pa.concat_tables(self.pending)
            self.pending, self.rows = [rows.slice(self.rows_per_file)], self.rows - self.rows_per_file
            self._write(rows.slice(0, self.rows_per_file))

    def flush(self) -> None:
        """Write what is pending as one part (nothing when nothing is)."""
        import pyarrow as pa

        rows = pa.concat_tables(self.pending) if self.pending else None
        self.pending, self.rows = [], 0
        if rows is not None and rows.num_rows:
            self._write(rows)

    def _write(self, table: Any) -> None:
        import pyarrow.parquet as pq

        data = io.BytesIO()
        pq.write_table(table, data)
        atomic_write_bytes(self.out / f"part-{self.run}-{self.parts:05d}.parquet", data.getvalue())
        self.written += table.num_rows
        self.parts += 1
