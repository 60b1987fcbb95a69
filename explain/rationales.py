"""Human rationales: 0/1 word masks from data columns (masks, word spans or JSON) and ERASER benchmark files."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipelines.errors import UserError

if TYPE_CHECKING:
    from datasets import Dataset

FORMS = "a list of 0/1 per word or word spans [[start, end], ...]"


def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def rationale_mask(value: object, n_words: int, where: str) -> np.ndarray | None:
    """A 0/1 array with one entry per whitespace word from a mask, ERASER spans (end exclusive) or a JSON string
    of either; None when the value is empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise UserError(f"{where}: the rationale is not valid JSON ({err.msg}); expected {FORMS}") from None
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise UserError(f"{where}: the rationale must be {FORMS}, got {type(value).__name__}")
    if not value:
        return None
    mask = np.zeros(n_words, dtype=np.int8)
    if all(isinstance(v, (list, tuple)) for v in value):
        for span in value:
            if len(span) != 2 or not all(_is_int(x) for x in span):
                raise UserError(f"{where}: rationale span {list(span)} is not a pair of word offsets [start, end]")
            start, end = span
            if not 0 <= start < end <= n_words:
                raise UserError(f"{where}: rationale span [{start}, {end}] does not fit {n_words} words "
                                f"(need 0 <= start < end <= {n_words})")
            mask[start:end] = 1
        return mask
    bad = [v for v in value if not (isinstance(v, (bool, int, float, np.number)) and v in (0, 1))]
    if bad:
        raise UserError(f"{where}: rationale values must be 0 or 1 (or word spans), got {bad[0]!r}")
    if len(value) != n_words:
        raise UserError(f"{where}: has {len(value)} rationale values for {n_words} words")
    mask[:] = [int(v) for v in value]
    return mask


def rationales_of(texts: list[str], values: list, source: str, first_line: int = 2) -> list[np.ndarray | None]:
    """Masks for a rationale column; row i is reported as `source: line first_line + i`."""
    return [rationale_mask(v, len(re.findall(r"\S+", t)), f"{source}: line {first_line + i}")
            for i, (t, v) in enumerate(zip(texts, values, strict=True))]


def is_eraser(path: str | Path) -> bool:
    """Whether path is an ERASER annotations file: .jsonl with annotation_id and evidences, beside docs/."""
    path = Path(path)
    if path.suffix != ".jsonl" or not path.is_file() or not (path.parent / "docs").is_dir():
        return False
    try:
        with path.open(encoding="utf-8") as f:
            first = next((line for line in f if line.strip()), "")
        record = json.loads(first)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(record, dict) and {"annotation_id", "evidences"} <= record.keys()


def _document(docs: Path, docid: str, where: str) -> list[str]:
    """A document's tokens, flattened over its lines, as ERASER splits them (single spaces, empties dropped)."""
    try:
        lines = (docs / docid).read_text(encoding="utf-8").splitlines()
    except OSError:
        raise UserError(f"{where}: document {docid!r} is missing from {docs}") from None
    return [t for line in lines for t in line.strip().split(" ") if t]


def read_eraser(path: str | Path) -> Dataset:
    """An ERASER annotations file as a datasets.Dataset: annotation_id, text (the document's tokens joined by
    spaces), label (the classification), query, and rationale (0/1 per word of text). The document is docids[0],
    else the first evidence's docid, else the annotation_id; evidences on other documents are ignored."""
    from datasets import Dataset

    path = Path(path)
    docs, cache = path.parent / "docs", {}
    rows: dict[str, list] = {"annotation_id": [], "text": [], "label": [], "query": [], "rationale": []}
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path.name}: line {number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"{where}: not valid JSON ({err.msg})") from None
            missing = [k for k in ("annotation_id", "classification", "evidences") if k not in record]
            if missing:
                raise UserError(f"{where}: the annotation lacks {', '.join(missing)}")
            evidences = [e for group in record["evidences"] or [] for e in group]
            docid = ((record.get("docids") or [None])[0] or (evidences[0]["docid"] if evidences else None)
                     or record["annotation_id"])
            if docid not in cache:
                cache[docid] = _document(docs, docid, where)
            tokens = cache[docid]
            mask = [0] * len(tokens)
            for e in (e for e in evidences if e["docid"] == docid):
                start, end = e["start_token"], e["end_token"]
                found = " ".join(tokens[start:end]) if 0 <= start < end <= len(tokens) else None
                if found != " ".join(str(e["text"]).split()):
                    raise UserError(f"{where}: evidence tokens [{start}, {end}) of document {docid!r} read "
                                    f"{found!r}, not {e['text']!r}; the offsets do not match the document")
                mask[start:end] = [1] * (end - start)
            rows["annotation_id"].append(record["annotation_id"])
            rows["text"].append(" ".join(re.sub(r"\s", "_", t) for t in tokens))  # one word per ERASER token
            rows["label"].append(record["classification"])
            rows["query"].append(record.get("query") or "")
            rows["rationale"].append(mask)
    if not rows["text"]:
        raise UserError(f"{path}: no annotations")
    return Dataset.from_dict(rows)
