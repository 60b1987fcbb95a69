"""Tables on disk: read csv/tsv/jsonl/json/parquet files (or a datasets folder) and write them back atomically.

Cells are read as written: delimited files as strings (nothing re-typed or turned into NaN), JSON with its
types. Every problem is one sentence naming the file and, where there is one, the line.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.artifacts import atomic_file
from pipelines.errors import UserError

log = logging.getLogger(__name__)

FORMATS = ("csv", "tsv", "jsonl", "json", "parquet", "a datasets folder (save_to_disk)")
OUTPUT_FORMATS = (".csv", ".tsv", ".jsonl", ".parquet")


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise UserError(
            f"{path}: line {line} is not valid UTF-8 (byte 0x{raw[err.start]:02x}); save the file as UTF-8"
        ) from err


def _read_delimited(path: Path, sep: str):
    import pandas as pd

    text = _decode(path)
    if not text.strip():
        raise UserError(f"{path} is empty")
    quoting = csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL
    try:
        frame = pd.read_csv(
            io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, quoting=quoting, skip_blank_lines=True
        )
    except pd.errors.ParserError as err:
        message = str(err).strip().splitlines()[-1]
        unclosed = re.search(r"EOF inside string starting at row (\d+)", message)
        if unclosed:  # pandas counts rows from 0 with the header as row 0
            raise UserError(f"{path}: line {int(unclosed[1]) + 1} opens a quote (\") that is never closed; "
                            "close it or escape the quote by doubling it") from err
        raise UserError(f"{path}: {message}") from err
    except pd.errors.EmptyDataError as err:
        raise UserError(f"{path} is empty") from err
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(_decode(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}: line {number} is not valid JSON ({err.msg}, column {err.colno})") from err
        if not isinstance(row, dict):
            raise UserError(f"{path}: line {number} is not a JSON object")
        rows.append(row)
    return rows


def read_table(path: str | Path):
    """Read a csv/tsv/jsonl/json/parquet file or a datasets folder into a datasets.Dataset."""
    import datasets

    path = Path(path)
    if path.is_dir():
        try:
            loaded = datasets.load_from_disk(str(path))
        except (FileNotFoundError, ValueError) as err:
            raise UserError(f"{path} is a folder but not a datasets save_to_disk folder") from err
        if isinstance(loaded, datasets.DatasetDict):
            raise UserError(f"{path} holds several splits ({', '.join(loaded)}); pass the folder of one split")
        return loaded
    if path.suffix.lower() == ".parquet" and path.exists():
        return datasets.Dataset(_read_parquet(path))
    return datasets.Dataset.from_pandas(read_frame(path), preserve_index=False)


def _read_parquet(path: Path):
    import pyarrow
    import pyarrow.parquet as pq

    if path.stat().st_size == 0:
        raise UserError(f"{path} is empty")
    try:
        return pq.read_table(path)
    except (pyarrow.ArrowInvalid, OSError) as err:
        raise UserError(f"{path} is not a readable parquet file") from err


def read_frame(path: str | Path):
    """Read a data file (or datasets folder) into a pandas DataFrame, cell values as written in the file.

    Delimited files are read as strings (nothing is re-typed or turned into NaN); JSON keeps its types.
    """
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise UserError(f"data file {path} does not exist")
    if path.is_dir():
        return read_table(path).to_pandas()
    suffix = path.suffix.lower()
    if path.stat().st_size == 0:
        raise UserError(f"{path} is empty")
    if suffix in (".csv", ".tsv", ".txt"):
        frame = _read_delimited(path, "\t" if suffix == ".tsv" else ",")
    elif suffix == ".jsonl":
        frame = pd.DataFrame.from_records(_read_jsonl(path))
    elif suffix == ".json":
        try:
            records = json.loads(_decode(path))
        except json.JSONDecodeError as err:
            try:  # many ".json" files are JSON lines
                frame = pd.DataFrame.from_records(_read_jsonl(path))
            except UserError:
                raise UserError(f"{path}: not valid JSON at line {err.lineno}, column {err.colno}") from err
        else:
            if isinstance(records, dict) and len(records) == 1 and isinstance(next(iter(records.values())), list):
                records = next(iter(records.values()))
            if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
                raise UserError(f"{path}: expected a JSON list of objects (one per example)")
            frame = pd.DataFrame.from_records(records)
    elif suffix == ".parquet":
        return _read_parquet(path).to_pandas()
    else:
        raise UserError(f"{path}: unknown file type '{suffix}'; use one of {', '.join(FORMATS)}")
    if len(frame) == 0:
        raise UserError(f"{path} has a header but no rows")
    frame = frame.astype(object).where(frame.notna(), None)
    for column in frame.columns:
        _refuse_mixed_types(path, column, frame[column].tolist())
    return frame


def _refuse_mixed_types(path: Path, column: str, values: list[Any]) -> None:
    """A column holding both strings and numbers (e.g. 1 and "1" in JSON) is refused, naming both."""
    first_of_kind: dict[str, Any] = {}
    for value in values:
        if value is None:
            continue
        kind = "text" if isinstance(value, str) else "bool" if isinstance(value, bool) else type(value).__name__
        first_of_kind.setdefault("text" if kind == "text" else "number", value)
    if len(first_of_kind) > 1:
        raise UserError(
            f"{path}: column '{column}' mixes value types ({first_of_kind['number']!r} and "
            f"{first_of_kind['text']!r}); use all numbers or all strings"
        )


def require_column(path: str, columns: list[str], name: str, role: str) -> None:
    if name in columns:
        return
    listed = ", ".join(repr(c) for c in columns)
    hint = ""
    if len(columns) == 1 and any(sep in columns[0] for sep in (";", "\t", "|", ",")):
        sep = next(s for s in (";", "\t", "|", ",") if s in columns[0])
        hint = f"; the file looks {sep!r}-separated: use the extension that matches its delimiter (.csv or .tsv)"
    raise UserError(f"{path}: no {role} column '{name}'; the columns are {listed}{hint}")


def texts_of(frame, column: str, where: str) -> list[str]:
    """A text column as strings; missing values become empty texts (the model still gets a row)."""
    values = frame[column].tolist()
    missing = sum(v is None or (isinstance(v, float) and np.isnan(v)) for v in values)
    if missing:
        log.warning("%s: %d rows have no text in '%s'; they are predicted from an empty text", where, missing, column)
    return ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values]


def write_frame(frame, path: Path) -> None:
    """Write a table by the file's extension, atomically (temp file in the same folder, then rename)."""
    suffix = path.suffix.lower()
    with atomic_file(path) as tmp:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False)
        elif suffix == ".tsv":
            plain = not frame.map(lambda v: isinstance(v, str) and any(c in v for c in "\t\n\r")).to_numpy().any()
            frame.to_csv(tmp, sep="\t", index=False, quoting=csv.QUOTE_NONE if plain else csv.QUOTE_MINIMAL)
        elif suffix == ".jsonl":
            frame.to_json(tmp, orient="records", lines=True, force_ascii=False)
        else:
            frame.to_parquet(tmp, index=False)
