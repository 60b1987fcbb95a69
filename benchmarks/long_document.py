"""One long document predicted and explained whole: windows, time, and the share of its words attributed.

    python benchmarks/long_document.py [--model runs/default/finetune --words 650]

The document is SST-2 dev sentences of one label joined in file order until it has --words words (a long
"review" made of real ones). It is labelled with predict.py's stage (windows by default) and explained with the
explain stage (its default method and settings), then both again with --long-texts truncate. A word counts as
attributed when its attribution (rounded to 6 decimals, as attributions.jsonl stores it) is not zero.
Prints a table and writes benchmarks/results/long_document.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import provenance  # noqa: E402
from explain.attribution import word_scores  # noqa: E402
from explain.config import ExplainConfig  # noqa: E402
from explain.stage import run_explain  # noqa: E402
from pipelines.tables import read_frame  # noqa: E402
from predict.config import PredictConfig  # noqa: E402
from predict.stage import run_predict  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def document(words: int, label: int) -> str:
    frame = read_frame(ROOT / "data" / "sst2" / "dev.tsv")
    sentences, count = [], 0
    for sentence, gold in zip(frame["sentence"], frame["label"], strict=True):
        if int(gold) == label and count < words:
            sentences.append(sentence.strip())
            count += len(sentence.split())
    return " ".join(sentences)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="runs/default/finetune")
    parser.add_argument("--words", type=int, default=650)
    parser.add_argument("--label", type=int, default=1)
    parser.add_argument("--work", default="benchmarks/work/long_document")
    args = parser.parse_args()

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    text = document(args.words, args.label)
    source = work / "document.jsonl"
    source.write_text(json.dumps({"text": text, "label": ["negative", "positive"][args.label]}) + "\n")
    rows = {}
    for mode in ("window", "truncate"):
        began = time.perf_counter()
        predicted = run_predict(PredictConfig(model=args.model, input_file=str(source), long_texts=mode,
                                              output_file=str(work / f"labelled_{mode}.jsonl"), progress=False),
                                overwrite=True)
        predict_seconds = time.perf_counter() - began
        out = read_frame(work / f"labelled_{mode}.jsonl").iloc[0]
        began = time.perf_counter()
        settings = ExplainConfig(model=args.model, input_file=str(source), num_examples=1, select="first",
                                 long_texts=mode, output_dir=str(work / f"explain_{mode}"))
        explained = run_explain(settings, overwrite=True)
        explain_seconds = time.perf_counter() - began
        record = json.loads((work / f"explain_{mode}" / "attributions.jsonl").read_text().splitlines()[0])
        words, scores = word_scores(record["text"], record["tokens"], np.asarray(record["scores"]))
        counts = explained.metrics["long_texts"][Path(args.model).name]
        rows[mode] = {"label": out["predicted_label"], "score": float(out["predicted_score"]),
                      "predict_seconds": predict_seconds,
                      "windowed": predicted.metrics["windowed"], "truncated": predicted.metrics["truncated"],
                      "windows": counts["windows"], "method": explained.metrics["methods"][0],
                      "explain_seconds": explain_seconds, "words_in_explanation": len(words),
                      "words_with_nonzero_attribution": int(np.count_nonzero(scores)),
                      "share_of_words_attributed": float(np.count_nonzero(scores) / len(text.split()))}
    report = {"provenance": provenance(), "model": args.model, "words": len(text.split()),
              "characters": len(text), "gold": ["negative", "positive"][args.label], "modes": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "long_document.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["modes"], indent=2))


if __name__ == "__main__":
    main()
