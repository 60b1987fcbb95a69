"""Labelled text data: validate columns and labels, split, tokenize with Dataset.map, and record what was decided.

A stage that trains writes `data.json` (a `DataRecord`: the data settings, the seed, label names, max length
and a fingerprint of the files) beside its model; later stages rebuild the same splits from it with
`recorded_data(folder)` instead of asking the user for the files, columns or split again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pipelines import artifacts
from pipelines.config import require_positive
from pipelines.errors import UserError
from pipelines.tables import read_table, require_column

log = logging.getLogger(__name__)

TEXT = "text"
TEXT_PAIR = "text_pair"
LABEL = "label"
RECORD = "data.json"
_INT = re.compile(r"^[+-]?\d+$")


@dataclasses.dataclass
class DataSettings:
    train_file: str | None = dataclasses.field(
        default=None, metadata={"help": "Training file (csv, tsv, jsonl, json, parquet or a datasets folder)."})
    eval_file: str | None = dataclasses.field(
        default=None, metadata={"help": "Evaluation file; without it a stratified split of train is held out."}
    )
    text_column: str = dataclasses.field(default="text", metadata={"help": "Column with the text."})
    prompt_column: str = dataclasses.field(
        default="prompt", metadata={"help": "task causal-lm: column with the prompt (else Alpaca's instruction + "
                                            "input, or plain text in text_column)."})
    response_column: str = dataclasses.field(
        default="response", metadata={"help": "task causal-lm: column with the response (the tokens learnt)."})
    text_pair_column: str | None = dataclasses.field(
        default=None, metadata={"help": "Second text column for sentence-pair tasks."}
    )
    label_column: str = dataclasses.field(default="label", metadata={"help": "Column with the labels."})
    label_names: list[str] | None = dataclasses.field(
        default=None,
        metadata={"help": "Names for integer labels 0..n-1, in order (e.g. [negative, positive])."},
    )
    validation_split: float = dataclasses.field(
        default=0.1, metadata={"help": "Share of train held out for evaluation when there is no eval file."}
    )
    selection_split: float | None = dataclasses.field(
        default=None,
        metadata={"help": "Share of train held out (stratified, seeded) to choose the best checkpoint on, so the "
                          "eval data is scored once, at the end; unset: checkpoints are chosen on the eval data."},
    )
    empty_texts: Literal["error", "drop"] = dataclasses.field(
        default="error", metadata={"help": "Rows with empty or missing texts: refuse the file, or drop them."}
    )
    max_train_samples: int | None = dataclasses.field(
        default=None, metadata={"help": "Keep only the first N training rows (after shuffling with the seed)."}
    )
    max_eval_samples: int | None = dataclasses.field(
        default=None, metadata={"help": "Keep only the first N evaluation rows."}
    )

    def __post_init__(self) -> None:
        for key in ("validation_split", "selection_split"):
            value = getattr(self, key)
            if value is not None and not 0.0 < value < 1.0:
                raise UserError(f"data.{key} must be between 0 and 1, got {value}")
        for key in ("max_train_samples", "max_eval_samples"):
            if getattr(self, key) is not None:
                require_positive(f"data.{key}", getattr(self, key))


@dataclass
class PreparedData:
    """Train and eval splits with standard columns (text, [text_pair], label ids) and their label names."""

    train: Any  # datasets.Dataset
    eval: Any
    label_names: list[str]
    has_pair: bool
    fingerprint: str
    notes: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # data file -> sha256 of its contents
    selection: Any = None  # rows held out of train to choose the checkpoint on (data.selection_split), or None
    settings: DataSettings | None = None  # what they were prepared from, and with which seed
    seed: int = 0


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


def _clean_split(ds, path: str, settings: DataSettings, notes: list[str], keep: tuple[str, ...] = ()):
    """Check columns and texts, return the dataset with standard columns (and the `keep` columns it has)."""
    columns = list(ds.column_names)
    require_column(path, columns, settings.text_column, "text")
    if settings.text_pair_column:
        require_column(path, columns, settings.text_pair_column, "text pair")
    require_column(path, columns, settings.label_column, "label")

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
                "drop them with --data.empty-texts drop (data.empty_texts: drop in a config)"
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
    ds = ds.select_columns(list(renames) + [c for c in keep if c in columns and c not in renames])
    return ds.rename_columns(renames)


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


def prepare_data(settings: DataSettings, seed: int, keep_columns: tuple[str, ...] = ()) -> PreparedData:
    """Read, validate and split the data; raise UserError before any training on the first problem.

    `keep_columns`: other columns kept under their own names (e.g. human rationales for the explain stage);
    the eval file must have them."""

    notes: list[str] = []
    if not settings.train_file:
        raise UserError("no training file: set data.train_file (--data.train-file FILE)")
    train_path = Path(settings.train_file)
    train = _clean_split(read_table(train_path), str(train_path), settings, notes, keep_columns)
    train_values = list(train[LABEL])
    kind = _label_kind(str(train_path), train_values, "label")
    names = _label_names(str(train_path), train_values, kind, settings)
    if len({str(v) for v in train_values}) < 2:
        raise UserError(
            f"{train_path}: only one class ({train_values[0]!r}) in column '{settings.label_column}'; "
            "a classifier needs at least two"
        )
    train = _encode_labels(train, _label_ids(str(train_path), train_values, kind, names, settings), names)
    files = {str(train_path): artifacts.file_digest(train_path)}
    fingerprint_parts = [files[str(train_path)]]

    if settings.eval_file:
        eval_path = Path(settings.eval_file)
        table = read_table(eval_path)
        for column in keep_columns:
            require_column(str(eval_path), list(table.column_names), column, "rationale")
        evaluation = _clean_split(table, str(eval_path), settings, notes, keep_columns)
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
        files[str(eval_path)] = artifacts.file_digest(eval_path)
        fingerprint_parts.append(files[str(eval_path)])
    else:
        train, evaluation = hold_out(train, settings.validation_split, seed, train_path, names, "an evaluation split")
        fingerprint_parts.append(f"split={settings.validation_split}")
    selection = None
    if settings.selection_split:
        train, selection = hold_out(train, settings.selection_split, seed, train_path, names,
                                    "a split to choose the checkpoint on")
        fingerprint_parts.append(f"selection={settings.selection_split}")

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
        files=files,
        selection=selection,
        settings=settings,
        seed=seed,
    )


def hold_out(train, share: float, seed: int, path: Path, names: list[str], what: str):
    """(the rest of train, a stratified, seeded share of it); refused when a class or the file is too small."""
    counts: dict[int, int] = {}
    for label_id in train[LABEL]:
        counts[label_id] = counts.get(label_id, 0) + 1
    if min(counts.values()) < 2:
        rare = names[min(counts, key=counts.get)]
        raise UserError(f"{path}: class '{rare}' has a single example, too few to hold out {what}; pass an eval file")
    test_size = max(len(counts), round(len(train) * share))
    if len(train) - test_size < len(counts):
        raise UserError(f"{path}: {len(train)} rows are too few to hold out {what}; pass an eval file")
    split = train.train_test_split(test_size=test_size, stratify_by_column=LABEL, seed=seed)
    return split["train"], split["test"]


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


def gold_label_ids(values: list, label_names: list[str], where: str) -> np.ndarray:
    """Gold label values of a file (names, or integer ids) as ids of label_names; an unknown one is named."""
    index = {name: i for i, name in enumerate(label_names)}
    ids = []
    for value in values:
        text = str(value).strip()
        if text in index:
            ids.append(index[text])
        elif text.lstrip("+-").isdigit() and 0 <= int(text) < len(label_names) and not any(
                n.lstrip("+-").isdigit() for n in label_names):
            ids.append(int(text))
        else:
            raise UserError(f"{where}: label {value!r} is not one of the model's labels: {', '.join(label_names)} "
                            f"(or their ids 0..{len(label_names) - 1})")
    return np.asarray(ids, dtype=np.int64)


@dataclass
class DataRecord:
    """What a training stage decided about its data, written as data.json beside its model."""

    settings: dict
    seed: int
    label_names: list[str]
    max_length: int
    files: dict[str, str]  # data file -> sha256 when it was read
    fingerprint: str
    train_examples: int
    eval_examples: int
    notes: list[str] = field(default_factory=list)


def write_record(folder: Path, data: PreparedData, max_length: int) -> None:
    """data.json in folder: how `data` was prepared, so later stages can rebuild the same splits."""
    artifacts.write_json(folder / RECORD, dataclasses.asdict(DataRecord(
        settings=dataclasses.asdict(data.settings), seed=data.seed, label_names=data.label_names, max_length=max_length,
        files=data.files, fingerprint=data.fingerprint, train_examples=len(data.train), eval_examples=len(data.eval),
        notes=data.notes)))


def read_record(folder: str | Path) -> DataRecord | None:
    """The data record of a model folder this project wrote, or None (another tool's folder, an old run)."""
    path = Path(folder) / RECORD
    if not path.is_file():
        return None
    return DataRecord(**json.loads(path.read_text()))


def changed_settings(settings: DataSettings) -> dict[str, Any]:
    """The fields of settings that differ from the defaults (what a user set)."""
    defaults = dataclasses.asdict(DataSettings())
    return {key: value for key, value in dataclasses.asdict(settings).items() if value != defaults[key]}


def recorded_data(folder: str | Path, overrides: dict[str, Any] | None = None,
                  keep_columns: tuple[str, ...] = ()) -> PreparedData:
    """The train and eval splits a model in `folder` was trained on, rebuilt from its data.json (with `overrides`
    of some data settings, e.g. max_train_samples).

    Refused, naming the folder, when there is no record or a data file changed since (another sha256).
    """
    record = read_record(folder)
    if record is None:
        raise UserError(f"{folder} has no {RECORD} (it was not trained by this tool, or by an older version); "
                        "give the data files explicitly")
    settings = DataSettings(**{**record.settings, **(overrides or {})})
    data = prepare_data(settings, seed=record.seed, keep_columns=keep_columns)
    changed = [path for path, digest in data.files.items() if record.files.get(path, digest) != digest]
    if changed:
        raise UserError(f"{changed[0]} changed since the model in {folder} was trained on it; give the data files "
                        "explicitly")
    return data
