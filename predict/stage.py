"""run_predict: label a file; every input row comes back, unchanged and in order, with label, score and the
probability of every label (named predicted_* when the input already has such columns)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from pipelines.data import gold_label_ids
from pipelines.environment import set_threads
from pipelines.errors import UserError
from pipelines.inference import load_backend, softmax, text_logits
from pipelines.models import is_causal_lm_folder
from pipelines.stage import StageResult
from pipelines.tables import OUTPUT_FORMATS, read_frame, require_column, texts_of, write_frame
from predict.config import PredictConfig

log = logging.getLogger(__name__)
STAGE = "predict"


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


def generate_for(config: PredictConfig, frame, output: Path) -> StageResult:
    """A causal language model's greedy continuation of every prompt, in order, in a `generated` column."""
    from pipelines.lm_eval import generate
    from pipelines.models import load_trained_causal_lm

    set_threads(config.num_threads)
    model, tokenizer = load_trained_causal_lm(config.model)
    prompts = texts_of(frame, config.text_column, str(config.input_file))
    name = "generated" if "generated" not in frame.columns else "predicted_generated"
    if name in frame.columns:
        raise UserError(f"the input already has the output column {name}; rename it first")
    began = time.perf_counter()
    out = frame.copy()
    out[name] = generate(model, tokenizer, prompts, config.max_new_tokens, config.batch_size)
    seconds = time.perf_counter() - began
    write_frame(out, output)
    return StageResult(STAGE, output, {"rows": len(out), "seconds": seconds, "backend": "pytorch-generate",
                                       "rows_per_second": len(out) / seconds if seconds else None}, seconds)


def run_predict(config: PredictConfig, *, resume: bool = False, overwrite: bool = False) -> StageResult:
    """Read, check, predict and write (atomically); every check runs before the model is loaded.

    `resume` is accepted for the stage contract; there is nothing to resume."""
    if not config.input_file or not config.output_file:
        raise UserError("give the file to label and where to write it: --input-file FILE --output-file FILE")
    input_file, output = Path(config.input_file), Path(config.output_file)
    check_output_file(output, input_file, overwrite)
    frame = read_frame(input_file)
    columns = [str(c) for c in frame.columns]
    require_column(str(input_file), columns, config.text_column, "text")
    if config.text_pair_column:
        require_column(str(input_file), columns, config.text_pair_column, "text pair")
    if config.label_column:
        require_column(str(input_file), columns, config.label_column, "label")

    if is_causal_lm_folder(config.model):
        return generate_for(config, frame, output)
    backend = load_backend(config.model, variant=config.variant, num_threads=config.num_threads,
                           max_length=config.max_length, precision=config.precision, stride=config.window_stride())
    if config.top_k > len(backend.label_names):
        raise UserError(f"--top-k {config.top_k} is more than the model's {len(backend.label_names)} labels")
    names = prediction_columns(columns, backend.label_names, config.top_k)
    gold = gold_label_ids(frame[config.label_column].tolist(), backend.label_names, str(input_file)) \
        if config.label_column else None
    texts = texts_of(frame, config.text_column, str(input_file))
    pairs = texts_of(frame, config.text_pair_column, str(input_file)) if config.text_pair_column else None

    began = time.perf_counter()
    logits, counts = text_logits(backend, texts, pairs, config.batch_size, progress=config.progress)
    seconds = time.perf_counter() - began
    if counts.windowed:
        log.info("%d of %d texts were longer than %d tokens and were read over overlapping windows (stride %d)",
                 counts.windowed, len(texts), config.max_length, config.window_stride())
    if counts.truncated:
        log.warning("%d of %d texts were longer than %d tokens and were truncated%s", counts.truncated, len(texts),
                    config.max_length, " (sentence pairs are not windowed)" if pairs is not None else "")

    probabilities = softmax(logits)
    ranked = np.argsort(-probabilities, axis=1, kind="stable")
    labels = np.asarray(backend.label_names, dtype=object)
    out = frame.copy()
    out[names["label"]] = labels[ranked[:, 0]]
    out[names["score"]] = probabilities[np.arange(len(out)), ranked[:, 0]]
    for i, name in enumerate(backend.label_names):
        out[names[f"prob:{name}"]] = probabilities[:, i]
    for k in range(2, config.top_k + 1):
        out[names[f"top{k}_label"]] = labels[ranked[:, k - 1]]
        out[names[f"top{k}_score"]] = probabilities[np.arange(len(out)), ranked[:, k - 1]]
    write_frame(out, output)
    accuracy = float((ranked[:, 0] == gold).mean()) if gold is not None else None
    metrics = {"rows": len(out), "seconds": seconds, "rows_per_second": len(out) / seconds if seconds else None,
               "windowed": counts.windowed, "truncated": counts.truncated, "backend": backend.kind,
               "accuracy": accuracy}
    return StageResult(STAGE, output, metrics, seconds)
