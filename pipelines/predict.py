"""Batch prediction over a file: every input row back, unchanged and in order, with label, score and probabilities."""

from __future__ import annotations

import csv
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.artifacts import atomic_file
from pipelines.backends import Backend, batched_logits, load_backend, softmax
from pipelines.data import _require_column, read_frame
from pipelines.errors import UserError

log = logging.getLogger(__name__)
OUTPUT_FORMATS = (".csv", ".tsv", ".jsonl", ".parquet")
CHUNK_ROWS = 8192  # rows tokenized at a time: bounds memory on large files, keeps the progress bar moving


@dataclass
class PredictSettings:
    model: str
    input_file: str
    output_file: str
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str | None = None  # gold labels, if the file has them: accuracy is reported
    batch_size: int = 64
    top_k: int = 1
    max_length: int = 128
    num_threads: int | None = None
    variant: str = "auto"  # for ONNX folders: fp32, int8 or auto (int8 when present)
    precision: str = "auto"  # for PyTorch folders: fp32, bf16, or auto (bf16 autocast where the CPU has it)
    overwrite: bool = False
    progress: bool = True


@dataclass
class PredictResult:
    rows: int
    seconds: float  # prediction time: tokenization and model, not reading or writing the files
    truncated: int
    backend: str
    output_file: Path
    accuracy: float | None = None

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else float("inf")


def check_output_file(output: Path, input_file: Path, overwrite: bool) -> None:
    if "\x00" in str(output):
        raise UserError(f"output file {str(output)!r} contains a NUL character")
    if output.suffix.lower() not in OUTPUT_FORMATS:
        raise UserError(f"output file {output}: unknown type '{output.suffix}'; use {', '.join(OUTPUT_FORMATS)}")
    if output.exists() and output.is_dir():
        raise UserError(f"output path {output} is a folder; pass a file name")
    if output.resolve() == input_file.resolve():
        raise UserError(f"output file {output} is the input file; choose another name")
    if output.exists() and not overwrite:
        raise UserError(f"output file {output} already exists; pass --overwrite to replace it")
    parent = next((p for p in [output.parent, *output.parent.parents] if p.exists()), Path("."))
    if not os.access(parent, os.W_OK):
        raise UserError(f"cannot write {output}: {parent} is not writable")


def prediction_columns(input_columns: list[str], label_names: list[str], top_k: int) -> dict[str, str]:
    """Names of the added columns; prefixed with `predicted_` when the input already has one of them."""
    names = {"label": "label", "score": "score"}
    names.update({f"prob:{n}": f"prob_{n}" for n in label_names})
    for k in range(2, top_k + 1):
        names[f"top{k}_label"], names[f"top{k}_score"] = f"top{k}_label", f"top{k}_score"
    if set(names.values()) & set(input_columns):
        names = {key: f"predicted_{value}" for key, value in names.items()}
        clash = sorted(set(names.values()) & set(input_columns))
        if clash:
            raise UserError(f"the input already has the output column(s) {', '.join(clash)}; rename them first")
        log.info("the input has a 'label' or 'score' column: predictions are written as predicted_*")
    return names


def label_ids(values: list, label_names: list[str], where: str) -> np.ndarray:
    """Gold label values (names, or integer ids) as ids of label_names; an unknown one is named."""
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


def texts_of(frame, column: str, where: str) -> list[str]:
    """A text column as strings; missing values become empty texts (the model still gets a row)."""
    values = frame[column].tolist()
    missing = sum(v is None or (isinstance(v, float) and np.isnan(v)) for v in values)
    if missing:
        log.warning("%s: %d rows have no text in '%s'; they are predicted from an empty text", where, missing, column)
    return ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values]


def predict_texts(backend: Backend, texts: list[str], pairs: list[str] | None, batch_size: int,
                  progress: bool = False) -> tuple[np.ndarray, int]:
    """Logits for every text in order, and how many texts were truncated; chunked to bound memory."""
    from tqdm.auto import tqdm

    logits = np.zeros((len(texts), len(backend.label_names)), dtype=np.float32)
    truncated = 0
    with tqdm(total=len(texts), unit="rows", desc="predicting", disable=not progress, smoothing=0.1) as bar:
        for start in range(0, len(texts), CHUNK_ROWS):
            end = min(start + CHUNK_ROWS, len(texts))
            encoded = backend.encode(texts[start:end], pairs[start:end] if pairs is not None else None)
            truncated += encoded.truncated
            logits[start:end] = batched_logits(backend, encoded, batch_size, progress=bar)
    return logits, truncated


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


def run_predict(settings: PredictSettings) -> PredictResult:
    """Read, check, predict and write; every check runs before the model is loaded."""
    input_file, output = Path(settings.input_file), Path(settings.output_file)
    if settings.batch_size < 1 or settings.top_k < 1:
        raise UserError("--batch-size and --top-k must be at least 1")
    check_output_file(output, input_file, settings.overwrite)
    frame = read_frame(input_file)
    columns = [str(c) for c in frame.columns]
    _require_column(str(input_file), columns, settings.text_column, "text")
    if settings.text_pair_column:
        _require_column(str(input_file), columns, settings.text_pair_column, "text pair")
    if settings.label_column:
        _require_column(str(input_file), columns, settings.label_column, "label")

    backend = load_backend(settings.model, variant=settings.variant, num_threads=settings.num_threads,
                           max_length=settings.max_length, precision=settings.precision)
    if settings.top_k > len(backend.label_names):
        raise UserError(f"--top-k {settings.top_k} is more than the model's {len(backend.label_names)} labels")
    names = prediction_columns(columns, backend.label_names, settings.top_k)
    gold = label_ids(frame[settings.label_column].tolist(), backend.label_names, str(input_file)) \
        if settings.label_column else None
    texts = texts_of(frame, settings.text_column, str(input_file))
    pairs = texts_of(frame, settings.text_pair_column, str(input_file)) if settings.text_pair_column else None

    began = time.perf_counter()
    logits, truncated = predict_texts(backend, texts, pairs, settings.batch_size, progress=settings.progress)
    seconds = time.perf_counter() - began
    if truncated:
        log.warning("%d of %d texts were longer than %d tokens and were truncated", truncated, len(texts),
                    settings.max_length)

    probabilities = softmax(logits)
    ranked = np.argsort(-probabilities, axis=1, kind="stable")
    labels = np.asarray(backend.label_names, dtype=object)
    out = frame.copy()
    out[names["label"]] = labels[ranked[:, 0]]
    out[names["score"]] = probabilities[np.arange(len(out)), ranked[:, 0]]
    for i, name in enumerate(backend.label_names):
        out[names[f"prob:{name}"]] = probabilities[:, i]
    for k in range(2, settings.top_k + 1):
        out[names[f"top{k}_label"]] = labels[ranked[:, k - 1]]
        out[names[f"top{k}_score"]] = probabilities[np.arange(len(out)), ranked[:, k - 1]]
    write_frame(out, output)
    accuracy = float((ranked[:, 0] == gold).mean()) if gold is not None else None
    return PredictResult(len(out), seconds, truncated, backend.kind, output, accuracy)
