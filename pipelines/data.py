"""Labelled text data: read files, validate columns and labels, split, and tokenize with Dataset.map."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.config import DataSettings
from pipelines.errors import UserError

log = logging.getLogger(__name__)

TEXT = "text"
TEXT_PAIR = "text_pair"
LABEL = "label"
FORMATS = ("csv", "tsv", "jsonl", "json", "parquet", "a datasets folder (save_to_disk)")
_INT = re.compile(r"^[+-]?\d+$")


@dataclass
class PreparedData:
    """Train and eval splits with standard columns (text, [text_pair], label ids) and their label names."""

    train: Any  # datasets.Dataset
    eval: Any
    label_names: list[str]
    has_pair: bool
    fingerprint: str
    notes: list[str] = field(default_factory=list)


def file_digest(path: Path) -> str:
    """sha256 of a file, or of every file in a folder, in name order."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for item in files:
        digest.update(item.name.encode())
        with open(item, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


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


def _require_column(path: str, columns: list[str], name: str, role: str) -> None:
    if name in columns:
        return
    listed = ", ".join(repr(c) for c in columns)
    hint = ""
    if len(columns) == 1 and any(sep in columns[0] for sep in (";", "\t", "|", ",")):
        sep = next(s for s in (";", "\t", "|", ",") if s in columns[0])
        hint = f"; the file looks {sep!r}-separated: use the extension that matches its delimiter (.csv or .tsv)"
    raise UserError(f"{path}: no {role} column '{name}'; the columns are {listed}{hint}")


def _empty_rows(values: list[Any]) -> list[int]:
    return [
        i for i, v in enumerate(values) if v is None or (isinstance(v, float) and math.isnan(v)) or not str(v).strip()
    ]


def _label_kind(path: str, values: list[Any], column: str) -> str:
    """'int' or 'str' for a label column; mixed integer and word labels are refused."""
    kinds = set()
    for v in values:
        if isinstance(v, bool):
            kinds.add("bool")
        elif isinstance(v, int) or (isinstance(v, float) and float(v).is_integer()):
            kinds.add("int")
        elif isinstance(v, str):
            kinds.add("intstr" if _INT.match(v.strip()) else "str")
        else:
            kinds.add(type(v).__name__)
    if kinds <= {"int"} or kinds == {"intstr"}:
        return "int"
    if kinds == {"str"}:
        return "str"
    examples = []
    seen_kinds = set()
    for v in values:
        k = type(v).__name__ + ("i" if isinstance(v, str) and _INT.match(v.strip()) else "")
        if k not in seen_kinds:
            seen_kinds.add(k)
            examples.append(repr(v))
    raise UserError(
        f"{path}: label column '{column}' mixes label types ({', '.join(examples)}); use all integers or all names"
    )


def _clean_split(ds, path: str, settings: DataSettings, notes: list[str]):
    """Check columns and texts, return (dataset with standard columns, raw label values)."""
    columns = list(ds.column_names)
    _require_column(path, columns, settings.text_column, "text")
    if settings.text_pair_column:
        _require_column(path, columns, settings.text_pair_column, "text pair")
    _require_column(path, columns, settings.label_column, "label")

    text_columns = [settings.text_column] + ([settings.text_pair_column] if settings.text_pair_column else [])
    empty = sorted({i for c in text_columns for i in _empty_rows(ds[c])})
    missing_labels = _empty_rows(ds[settings.label_column])
    if missing_labels:
        first = missing_labels[0] + 2
        raise UserError(
            f"{path}: {len(missing_labels)} rows have no label in column '{settings.label_column}' "
            f"(first at line {first}, counting the header as line 1)"
        )
    if empty:
        if settings.empty_texts == "error":
            raise UserError(
                f"{path}: {len(empty)} of {len(ds)} rows have an empty or missing text (first at line {empty[0] + 2}); "
                "drop them with --drop-empty-texts (data.empty_texts: drop)"
            )
        keep = sorted(set(range(len(ds))) - set(empty))
        if not keep:
            raise UserError(f"{path}: every row has an empty or missing text")
        message = f"{path}: dropped {len(empty)} rows with empty or missing texts"
        log.warning(message)
        notes.append(message)
        ds = ds.select(keep)
    renames = {settings.text_column: TEXT, settings.label_column: LABEL}
    if settings.text_pair_column:
        renames[settings.text_pair_column] = TEXT_PAIR
    ds = ds.select_columns(list(renames)).rename_columns(renames)
    return ds


def _label_names(path: str, values: list[Any], kind: str, settings: DataSettings) -> list[str]:
    if kind == "int":
        ids = sorted({int(v) for v in values})
        if settings.label_names:
            bad = [i for i in ids if not 0 <= i < len(settings.label_names)]
            if bad:
                raise UserError(
                    f"{path}: label {bad[0]} has no name in data.label_names "
                    f"(allowed ids 0..{len(settings.label_names) - 1})"
                )
            return list(settings.label_names)
        return [str(i) for i in ids]
    names = sorted({str(v) for v in values})
    if settings.label_names:
        unknown = [n for n in names if n not in settings.label_names]
        if unknown:
            raise UserError(
                f"{path}: label '{unknown[0]}' is not in data.label_names ({', '.join(settings.label_names)})"
            )
        return list(settings.label_names)
    return names


def _label_ids(path: str, values: list[Any], kind: str, names: list[str], settings: DataSettings) -> list[int]:
    """Map raw label values to ids in names; a value outside the label space names itself and the allowed ones."""
    index = {name: i for i, name in enumerate(names)}
    ids = []
    for value in values:
        if kind == "int" and settings.label_names:
            label_id = int(value) if 0 <= int(value) < len(names) else None
        else:
            label_id = index.get(str(int(value)) if kind == "int" else str(value))
        if label_id is None:
            raise UserError(f"{path}: label {value!r} is not one of the training labels: {', '.join(names)}")
        ids.append(label_id)
    return ids


def prepare_data(settings: DataSettings, seed: int) -> PreparedData:
    """Read, validate and split the data; raise UserError before any training on the first problem."""

    notes: list[str] = []
    train_path = Path(settings.train_file)
    train = _clean_split(read_table(train_path), str(train_path), settings, notes)
    train_values = list(train[LABEL])
    kind = _label_kind(str(train_path), train_values, "label")
    names = _label_names(str(train_path), train_values, kind, settings)
    if len({str(v) for v in train_values}) < 2:
        raise UserError(
            f"{train_path}: only one class ({train_values[0]!r}) in column '{settings.label_column}'; "
            "a classifier needs at least two"
        )
    train = _encode_labels(train, _label_ids(str(train_path), train_values, kind, names, settings), names)
    fingerprint_parts = [file_digest(train_path)]

    if settings.eval_file:
        eval_path = Path(settings.eval_file)
        evaluation = _clean_split(read_table(eval_path), str(eval_path), settings, notes)
        eval_values = list(evaluation[LABEL])
        eval_kind = _label_kind(str(eval_path), eval_values, "label")
        if eval_kind != kind:
            raise UserError(
                f"{eval_path}: labels are {'integers' if eval_kind == 'int' else 'names'} but the training labels "
                f"are {'integers' if kind == 'int' else 'names'}"
            )
        eval_ids = _label_ids(str(eval_path), eval_values, kind, names, settings)
        unseen = sorted(set(eval_ids) - set(train[LABEL]))
        if unseen:
            raise UserError(
                f"{eval_path}: label '{names[unseen[0]]}' never occurs in the training data "
                f"(training labels: {', '.join(names[i] for i in sorted(set(train[LABEL])))})"
            )
        evaluation = _encode_labels(evaluation, eval_ids, names)
        fingerprint_parts.append(file_digest(eval_path))
    else:
        counts = {}
        for label_id in train[LABEL]:
            counts[label_id] = counts.get(label_id, 0) + 1
        if min(counts.values()) < 2:
            rare = names[min(counts, key=counts.get)]
            raise UserError(
                f"{train_path}: class '{rare}' has a single example, too few for a stratified split; "
                "pass an eval file"
            )
        test_size = max(len(counts), round(len(train) * settings.validation_split))
        if len(train) - test_size < len(counts):
            raise UserError(
                f"{train_path}: {len(train)} rows are too few to hold out a stratified evaluation split; "
                "pass an eval file"
            )
        split = train.train_test_split(test_size=test_size, stratify_by_column=LABEL, seed=seed)
        train, evaluation = split["train"], split["test"]
        fingerprint_parts.append(f"split={settings.validation_split}")

    if settings.max_train_samples and settings.max_train_samples < len(train):
        train = train.shuffle(seed=seed).select(range(settings.max_train_samples))
    if settings.max_eval_samples and settings.max_eval_samples < len(evaluation):
        evaluation = evaluation.select(range(settings.max_eval_samples))
    fingerprint_parts += [
        f"seed={seed}",
        json.dumps(
            {k: getattr(settings, k) for k in ("text_column", "text_pair_column", "label_column", "label_names",
                                                 "empty_texts", "max_train_samples", "max_eval_samples")},
            sort_keys=True,
        ),
    ]
    fingerprint = hashlib.sha256("|".join(fingerprint_parts).encode()).hexdigest()[:16]
    return PreparedData(
        train=train,
        eval=evaluation,
        label_names=names,
        has_pair=bool(settings.text_pair_column),
        fingerprint=fingerprint,
        notes=notes,
    )


def _encode_labels(ds, ids: list[int], names: list[str]):
    import datasets

    ds = ds.remove_columns(LABEL).add_column(LABEL, ids)
    return ds.cast_column(LABEL, datasets.ClassLabel(names=names))


def tokenizer_fingerprint(tokenizer, max_length: int) -> str:
    """A stable hash of what tokenization depends on (vocabulary, special tokens, max length)."""
    state = json.dumps(
        {
            "name": getattr(tokenizer, "name_or_path", ""),
            "vocab": len(tokenizer),
            "class": type(tokenizer).__name__,
            "special": {k: str(v) for k, v in sorted(tokenizer.special_tokens_map.items())},
            "max_length": max_length,
            "backend": hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()
            if hasattr(tokenizer, "backend_tokenizer")
            else "",
        },
        sort_keys=True,
    )
    return hashlib.sha256(state.encode()).hexdigest()[:16]


def _tokenize_batch(batch: dict, tokenizer, max_length: int, has_pair: bool) -> dict:
    encoded = tokenizer(
        batch[TEXT],
        batch[TEXT_PAIR] if has_pair else None,
        truncation=True,
        max_length=max_length,
    )
    encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
    encodings = getattr(encoded, "encodings", None) or []
    encoded["truncated"] = [bool(e.overflowing) for e in encodings] or [False] * len(encoded["input_ids"])
    return encoded


def tokenize(ds, tokenizer, max_length: int, has_pair: bool, cache_dir: Path, split: str, data_fingerprint: str):
    """Tokenize with Dataset.map(batched=True), cached in cache_dir under a deterministic fingerprint.

    No padding here: batches are padded at collate time. Adds `length` (for length-grouped batches) and
    warns with the count of texts truncated to max_length.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = hashlib.sha256(
        f"{data_fingerprint}|{split}|{tokenizer_fingerprint(tokenizer, max_length)}|{has_pair}|{len(ds)}".encode()
    ).hexdigest()[:16]
    keep = [LABEL]
    tokenized = ds.map(
        _tokenize_batch,
        batched=True,
        batch_size=1000,
        fn_kwargs={"tokenizer": tokenizer, "max_length": max_length, "has_pair": has_pair},
        remove_columns=[c for c in ds.column_names if c not in keep],
        cache_file_name=str(cache_dir / f"tokenized-{split}-{fingerprint}.arrow"),
        new_fingerprint=fingerprint,
        load_from_cache_file=True,
        desc=f"tokenizing {split}",
    )
    truncated = sum(tokenized["truncated"])
    if truncated:
        log.warning("%s: %d of %d texts were longer than %d tokens and were truncated",
                    split, truncated, len(tokenized), max_length)
    return tokenized.remove_columns("truncated")
