"""The parity gate: the texts an export is checked on, the figures of each copy, and what failed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export.config import ExportConfig, ExportSettings
from pipelines import artifacts
from pipelines.data import LABEL, TEXT, TEXT_PAIR, gold_label_ids, read_record, recorded_data
from pipelines.errors import UserError
from pipelines.tables import read_frame, require_column, texts_of


@dataclass
class ParitySet:
    """Texts (and gold label ids, if known) the exported copies are checked on."""

    source: str
    texts: list[str]
    pairs: list[str] | None = None
    labels: np.ndarray | None = None
    fingerprint: str = ""


def parity_set_from_file(path: str | Path, text_column: str, text_pair_column: str | None,
                         label_column: str | None, label_names: list[str]) -> ParitySet:
    """The parity texts (and gold labels, when the column exists) of a data file."""
    frame = read_frame(path)
    columns = [str(c) for c in frame.columns]
    require_column(str(path), columns, text_column, "text")
    if text_pair_column:
        require_column(str(path), columns, text_pair_column, "text pair")
    labels = None
    if label_column and label_column in columns:
        labels = gold_label_ids(frame[label_column].tolist(), label_names, str(path))
    return ParitySet(str(path), texts_of(frame, text_column, str(path)),
                     texts_of(frame, text_pair_column, str(path)) if text_pair_column else None, labels,
                     artifacts.file_digest(Path(path)))


def recorded_parity_set(model_dir: Path, label_names: list[str]) -> ParitySet:
    """The eval split the model was trained with, from its data record."""
    if read_record(model_dir) is None:
        raise UserError(f"{model_dir} records no eval split (no data.json); pass --eval-file (and --text-column) "
                        "for the parity check")
    data = recorded_data(model_dir)
    if data.label_names != label_names:
        raise UserError(f"{model_dir}: its recorded labels ({', '.join(data.label_names)}) are not the model's "
                        f"({', '.join(label_names)})")
    evaluation = data.eval
    return ParitySet(f"the eval split of {model_dir} ({len(evaluation)} rows)", [str(t) for t in evaluation[TEXT]],
                     [str(t) for t in evaluation[TEXT_PAIR]] if data.has_pair else None,
                     np.asarray(list(evaluation[LABEL]), dtype=np.int64), data.fingerprint)


def parity_set(config: ExportConfig, label_names: list[str]) -> ParitySet:
    if config.eval_file:
        parity = parity_set_from_file(config.eval_file, config.text_column, config.text_pair_column,
                                      config.label_column, label_names)
    else:
        parity = recorded_parity_set(Path(config.model), label_names)
    if not parity.texts:
        raise UserError(f"the parity set {parity.source} has no texts")
    return parity


def scores(logits: np.ndarray, reference: np.ndarray, labels: np.ndarray | None) -> dict:
    """Largest logit difference and label agreement against the reference logits, and accuracy on the labels."""
    predicted = logits.argmax(axis=1)
    return {
        "max_abs_logit_diff": float(np.abs(logits - reference).max()) if len(logits) else 0.0,
        "label_agreement": float((predicted == reference.argmax(axis=1)).mean()),
        "dev_accuracy": float((predicted == labels).mean()) if labels is not None else None,
    }


def int8_passes(row: dict, settings: ExportSettings, has_labels: bool, reference_accuracy: float | None) -> bool:
    if has_labels and reference_accuracy is not None:
        return reference_accuracy - row["dev_accuracy"] <= settings.max_accuracy_drop + 1e-12
    return row["label_agreement"] >= settings.min_agreement


def gate_failures(metrics: dict, settings: ExportSettings) -> list[str]:
    """What failed the parity gate, as sentences with the figures (empty when it passed)."""
    failures = []
    fp32 = metrics["onnx_fp32"]
    if not fp32["max_abs_logit_diff"] <= settings.max_logit_diff:
        failures.append(f"fp32 ONNX logits differ from PyTorch by up to {fp32['max_abs_logit_diff']:.3g} "
                        f"(allowed {settings.max_logit_diff:g})")
    int8 = metrics.get("onnx_int8")
    if int8 is not None and not int8["passed"]:
        reference = metrics["pytorch"]["dev_accuracy"]
        if reference is not None:
            failures.append(f"int8 ONNX accuracy {int8['dev_accuracy']:.4f} vs PyTorch {reference:.4f} "
                            f"(allowed drop {settings.max_accuracy_drop:g})")
        else:
            failures.append(f"int8 ONNX agrees with PyTorch on {int8['label_agreement']:.4f} of the rows "
                            f"(required {settings.min_agreement:g})")
    return failures
