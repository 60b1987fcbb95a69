"""Batched inference, the one path every per-row model output takes: evaluation predictions, teacher logits,
the explainer's predictor, `predict.py`, the export parity gate and latency figures.

A backend (a PyTorch model, or an ONNX session of an exported folder) takes padded numpy batches and returns
logits. Rows are tokenized without padding, run in length-sorted batches padded to their longest member, and
put back in their original order: row i of every result is row i of the input. PyTorch models run under
`torch.inference_mode`, optionally under bfloat16 autocast (about twice the speed on CPUs with native bf16).
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines.errors import UserError, first_line

log = logging.getLogger(__name__)

ONNX_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
CHUNK_ROWS = 8192  # texts tokenized at a time: bounds memory on large files, keeps a progress bar moving
PRECISIONS = ("fp32", "bf16", "auto")


@dataclass
class Encoded:
    """Token ids of many texts, unpadded, plus how many were truncated to the maximum length.

    With windows, a long text is several sequences: `owners[j]` is the text of sequence j, and `windowed`
    counts the texts read over more than one window."""

    features: dict[str, list[list[int]]]
    truncated: int = 0
    owners: np.ndarray | None = None
    windowed: int = 0

    def __len__(self) -> int:
        return len(self.features["input_ids"])

    def lengths(self) -> np.ndarray:
        return np.fromiter((len(ids) for ids in self.features["input_ids"]), dtype=np.int64, count=len(self))

    @classmethod
    def from_dataset(cls, dataset) -> Encoded:
        """The model-input columns of a tokenized `datasets.Dataset` (as `pipelines.data.tokenize` makes)."""
        columns = [c for c in MODEL_INPUTS if c in dataset.column_names]
        return cls(dataset.select_columns(columns).to_dict())


@dataclass
class Backend:
    """What every backend shares: its tokenizer, label names and input names."""

    path: Path
    tokenizer: object
    label_names: list[str]
    input_names: list[str]
    max_length: int = 128
    kind: str = field(default="pytorch")
    stride: int | None = None  # texts longer than max_length: read over windows overlapping this many tokens

    def encode(self, texts: list[str], pairs: list[str] | None = None) -> Encoded:
        """Tokenize without padding. Texts longer than max_length are read over word-aligned windows when
        `stride` is set (single texts; pairs are truncated), else truncated; both are counted."""
        encoded = self.tokenizer(texts, pairs, truncation=True, max_length=self.max_length)
        features = {name: encoded[name] for name in self.input_names if name in encoded}
        encodings = getattr(encoded, "encodings", None)
        if encodings:
            long = [bool(e.overflowing) for e in encodings]
        else:  # slow tokenizers say nothing about overflow
            long = [len(ids) > self.max_length for ids in self.tokenizer(texts, pairs)["input_ids"]]
        if self.stride is None or pairs is not None or not any(long):
            return Encoded(features, sum(long))
        return self._windows(texts, features, long)

    def _windows(self, texts: list[str], features: dict[str, list[list[int]]], long: list[bool]) -> Encoded:
        from pipelines.windows import word_windows

        windowed = {name: [] for name in features}
        owners, truncated, count = [], 0, 0
        for i, text in enumerate(texts):
            if not long[i]:
                for name in features:
                    windowed[name].append(features[name][i])
                owners.append(i)
                continue
            pieces = [text[s:e] for s, e in word_windows(self.tokenizer, text, self.max_length, self.stride)]
            part = self.encode_windows(pieces)
            truncated += bool(part.truncated)
            count += len(pieces) > 1
            for name in features:
                windowed[name].extend(part.features[name])
            owners.extend([i] * len(pieces))
        return Encoded(windowed, truncated, np.asarray(owners, dtype=np.int64), count)

    def encode_windows(self, pieces: list[str]) -> Encoded:
        """Tokenize window texts (each should fit; one that does not, a single over-long word, is truncated)."""
        encoded = self.tokenizer(pieces, truncation=True, max_length=self.max_length)
        encodings = getattr(encoded, "encodings", None) or []
        return Encoded({name: encoded[name] for name in self.input_names if name in encoded},
                       sum(bool(e.overflowing) for e in encodings))

    def pad(self, encoded: Encoded, rows: np.ndarray | list[int]) -> dict[str, np.ndarray]:
        """Right-pad the given rows to their longest member: int64 arrays named as the model's inputs."""
        rows = list(rows)
        width = max(len(encoded.features["input_ids"][i]) for i in rows)
        pad_id = self.tokenizer.pad_token_id or 0
        batch = {}
        for name in self.input_names:
            fill = pad_id if name == "input_ids" else 0
            array = np.full((len(rows), width), fill, dtype=np.int64)
            if name == "attention_mask" and name not in encoded.features:
                for r, i in enumerate(rows):
                    array[r, : len(encoded.features["input_ids"][i])] = 1
            elif name in encoded.features:
                values = encoded.features[name]
                for r, i in enumerate(rows):
                    array[r, : len(values[i])] = values[i]
            batch[name] = array
        return batch

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError


@dataclass
class TorchBackend(Backend):
    model: object = None
    bf16: bool = False  # bfloat16 autocast: about twice the speed on CPUs with native bf16, same labels

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        device = next(self.model.parameters()).device
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16):
            inputs = {k: torch.from_numpy(v).to(device) for k, v in batch.items()}
            return self.model(**inputs).logits.float().cpu().numpy()


@dataclass
class OnnxBackend(Backend):
    session: object = None

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(["logits"], batch)[0].astype(np.float32)


def folder_kind(path: Path) -> str:
    """'onnx', 'adapter' or 'pytorch' by what the folder holds; pickle-only folders need --allow-pickle."""
    from pipelines.models import check_weights, is_adapter_folder

    if not path.exists():
        raise UserError(f"model folder {path} does not exist")
    if not path.is_dir():
        raise UserError(f"model path {path} is a file; pass the folder that holds it")
    if any((path / name).is_file() for name in ONNX_FILES.values()):
        return "onnx"
    check_weights(path)
    return "adapter" if is_adapter_folder(path) else "pytorch"


def use_bf16(precision: str) -> bool:
    """Whether `precision` (fp32, bf16, or auto: bf16 where the CPU runs it natively) means bf16 autocast."""
    from pipelines.environment import native_bf16

    if precision not in PRECISIONS:
        raise UserError(f"precision must be fp32, bf16 or auto, got '{precision}'")
    return precision == "bf16" or (precision == "auto" and native_bf16())


def load_backend(path: str | Path, variant: str = "auto", num_threads: int | None = None,
                 max_length: int = 128, precision: str = "fp32", stride: int | None = None) -> Backend:
    """Load a model folder this project wrote (PyTorch, or ONNX with `variant` fp32, int8 or auto).

    `precision` (PyTorch only): fp32, bf16 (autocast), or auto (bf16 where the CPU has native bf16).
    `stride`: texts longer than max_length are read over windows overlapping this many tokens (None: truncated).
    """
    bf16 = use_bf16(precision)
    from transformers import AutoConfig

    from pipelines.environment import set_threads
    from pipelines.models import ModelSource, load_tokenizer, load_trained_classifier

    path = Path(path)
    kind = folder_kind(path)
    threads = num_threads or os.cpu_count() or 1
    if kind in ("adapter", "pytorch"):
        set_threads(threads)
        model, tokenizer, _ = load_trained_classifier(str(path))
        return torch_backend(model, tokenizer, max_length, path=path, bf16=bf16, stride=stride)
    tokenizer = load_tokenizer(ModelSource(name=str(path), location=str(path), kind="local"))
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: no readable config.json ({first_line(err)})") from err
    labels = [config.id2label[i] for i in range(config.num_labels)]
    backend = onnx_backend(onnx_variant_file(path, variant), tokenizer, labels, max_length, threads)
    backend.stride = stride
    return backend


def torch_backend(model, tokenizer, max_length: int = 128, path: Path = Path("."), bf16: bool = False,
                  stride: int | None = None) -> TorchBackend:
    """A backend over a classifier already in memory (put in eval mode), e.g. a student just trained."""
    model.eval()
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return TorchBackend(path, tokenizer, labels, forward_inputs(model, tokenizer), max_length,
                        "pytorch-bf16" if bf16 else "pytorch", stride, model=model, bf16=bf16)


def onnx_backend(file: Path, tokenizer, label_names: list[str], max_length: int = 128,
                 num_threads: int | None = None) -> OnnxBackend:
    """A backend over one ONNX file (`model.onnx` or `model.int8.onnx`) with the model's tokenizer and labels."""
    session = onnx_session(file, num_threads or os.cpu_count() or 1)
    kind = next((f"onnx-{v}" for v, name in ONNX_FILES.items() if name == file.name), f"onnx-{file.stem}")
    return OnnxBackend(file.parent, tokenizer, label_names, [i.name for i in session.get_inputs()], max_length,
                       kind, session=session)


def onnx_variant_file(path: Path, variant: str) -> Path:
    if variant == "auto":
        variant = "int8" if (path / ONNX_FILES["int8"]).is_file() else "fp32"
    if variant not in ONNX_FILES:
        raise UserError(f"ONNX variant must be auto, fp32 or int8, got '{variant}'")
    file = path / ONNX_FILES[variant]
    if not file.is_file():
        raise UserError(f"{path} has no {variant} ONNX model ({ONNX_FILES[variant]})")
    return file


def onnx_session(file: Path, num_threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own untyped errors for a bad file
        raise UserError(f"could not load the ONNX model {file}: {first_line(err)}") from err


def forward_inputs(model, tokenizer) -> list[str]:
    """The tokenizer outputs this model's forward accepts (token_type_ids only where the model has them)."""
    import inspect

    accepted = inspect.signature(model.forward).parameters
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if "token_type_ids" in tokenizer.model_input_names
                                               else [])
    return [n for n in names if n in accepted]


def length_sorted_batches(encoded: Encoded, batch_size: int) -> Iterator[np.ndarray]:
    """Row indices in batches of similar length (shortest first), so padding stays small."""
    order = np.argsort(encoded.lengths(), kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def batched_logits(backend: Backend, encoded: Encoded, batch_size: int, progress=None) -> np.ndarray:
    """Logits for every encoded row, in row order, computed in length-sorted, dynamically padded batches."""
    out = np.zeros((len(encoded), len(backend.label_names)), dtype=np.float32)
    for rows in length_sorted_batches(encoded, batch_size):
        out[rows] = backend.logits(backend.pad(encoded, rows))
        if progress is not None:
            progress.update(len(rows))
    return out


def row_logits(encoded: Encoded, logits: np.ndarray) -> np.ndarray:
    """One row of logits per text: a windowed text's are the log of its windows' mean probabilities."""
    if encoded.owners is None:
        return logits
    from pipelines.windows import mean_probabilities

    rows = int(encoded.owners.max()) + 1 if len(encoded.owners) else 0
    merged = np.log(mean_probabilities(softmax(logits), encoded.owners, rows)).astype(np.float32)
    single = np.bincount(encoded.owners, minlength=rows) == 1  # texts that fit keep their own logits
    merged[single] = logits[np.searchsorted(encoded.owners, np.flatnonzero(single))]
    return merged


@dataclass
class Counts:
    """How many texts did not fit the model's window: read over several windows, or truncated."""

    windowed: int = 0
    truncated: int = 0


def text_logits(backend: Backend, texts: list[str], pairs: list[str] | None = None, batch_size: int = 64,
                progress: bool | str = False) -> tuple[np.ndarray, Counts]:
    """Logits for every text in order, and how many texts were windowed or truncated; tokenized in chunks to
    bound memory. `progress`: a rows-per-second bar (True, or its description)."""
    from tqdm.auto import tqdm

    logits = np.zeros((len(texts), len(backend.label_names)), dtype=np.float32)
    counts = Counts()
    description = progress if isinstance(progress, str) else "predicting"
    with tqdm(total=len(texts), unit="rows", desc=description, disable=not progress, smoothing=0.1) as bar:
        for start in range(0, len(texts), CHUNK_ROWS):
            end = min(start + CHUNK_ROWS, len(texts))
            encoded = backend.encode(texts[start:end], pairs[start:end] if pairs is not None else None)
            counts.truncated += encoded.truncated
            counts.windowed += encoded.windowed
            if len(encoded) > end - start:  # windows: the bar counts sequences
                bar.total += len(encoded) - (end - start)
            logits[start:end] = row_logits(encoded, batched_logits(backend, encoded, batch_size, progress=bar))
    return logits, counts


def dataset_logits(model, tokenizer, dataset, batch_size: int = 128, progress: bool | str = False) -> np.ndarray:
    """Logits of a classifier in memory for every row of a tokenized dataset, in row order."""
    from tqdm.auto import tqdm

    was_training = model.training
    backend = torch_backend(model, tokenizer)
    description = progress if isinstance(progress, str) else "predicting"
    with tqdm(total=len(dataset), unit="rows", desc=description, disable=not progress) as bar:
        logits = batched_logits(backend, Encoded.from_dataset(dataset), batch_size, progress=bar)
    model.train(was_training)
    return logits


def window_long_rows(model, tokenizer, texts: list[str], pairs: list[str] | None, logits: np.ndarray,
                     max_length: int, batch_size: int = 128) -> tuple[np.ndarray, Counts]:
    """Evaluation logits (computed on truncated rows) with the texts that did not fit re-read over windows
    (stride: a quarter of max_length; sentence pairs stay truncated), and how many there were."""
    from pipelines.windows import Windowing

    backend = torch_backend(model, tokenizer, max_length, stride=Windowing(max_length).stride)
    encoded = backend.encode(texts, pairs)
    if encoded.owners is None:
        return logits, Counts(0, encoded.truncated)
    long = np.flatnonzero(np.bincount(encoded.owners, minlength=len(texts)) > 1)
    logits = logits.copy()
    logits[long] = text_logits(backend, [texts[i] for i in long], None, batch_size)[0]
    return logits, Counts(encoded.windowed, encoded.truncated)


def latency_ms(backend: Backend, texts: list[str], batch_size: int, batches: int = 20, warmup: int = 3) -> float:
    """Median milliseconds to classify one batch of `batch_size` texts, tokenization included.

    Batches are taken in turn from `texts` (cycled), so each has realistic, varied lengths.
    """
    timings = []
    for i in range(warmup + batches):
        start = (i * batch_size) % max(len(texts), 1)
        chunk = (texts[start:] + texts)[:batch_size]
        began = time.perf_counter()
        encoded = backend.encode(chunk)
        backend.logits(backend.pad(encoded, range(len(encoded))))
        if i >= warmup:
            timings.append((time.perf_counter() - began) * 1000)
    return statistics.median(timings)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)
