"""Dev accuracy of uniform weight averages ("model soups") of fine-tuned models from one pretrained model.

    python benchmarks/weight_soup.py --soup runs/sst2_minilm_sam_ls runs/sst2_minilm_sam003 \
        --soup runs/sst2_minilm_sam_ls runs/sst2_minilm_ls --out benchmarks/results/teacher_soups.json

Each --soup lists model folders (or single .safetensors files of checkpoints, e.g. one run's
checkpoints/checkpoint-N/model.safetensors) whose weights are averaged with equal weight and loaded into the
first member's architecture (the first folder, or --base for files); every member alone is evaluated too, so
the table shows the soup beside its members. Used for issue 3's teacher: soups of the SAM and
label-smoothing teachers and of one run's late checkpoints (notes in bench_teacher.py).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.backends import TorchBackend, load_backend  # noqa: E402
from pipelines.data import read_frame  # noqa: E402
from pipelines.predict import label_ids, predict_texts, texts_of  # noqa: E402


@functools.cache
def weights_of(member: Path) -> dict[str, torch.Tensor]:
    """A member's weights, read once however many soups it is in."""
    return load_file(member if member.suffix == ".safetensors" else member / "model.safetensors")


def uniform_average(members: list[Path]) -> dict[str, torch.Tensor]:
    states = [weights_of(member) for member in members]
    if any(state.keys() != states[0].keys() for state in states):
        raise SystemExit(f"error: {', '.join(map(str, members))} do not share one architecture (tensor names differ)")
    return {name: sum(state[name].float() for state in states) / len(states) for name in states[0]}


def accuracy(backend: TorchBackend, weights: dict[str, torch.Tensor], texts: list[str], gold: np.ndarray) -> float:
    """Dev accuracy of the backend's model with `weights` loaded into it."""
    backend.model.load_state_dict(weights)
    logits, _ = predict_texts(backend, texts, None, batch_size=64)
    return float((logits.argmax(-1) == gold).mean())


@functools.cache
def backend_of(base: Path) -> TorchBackend:
    """The model (architecture, tokenizer, labels) the soups of `base` are loaded into, loaded once."""
    return load_backend(base)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--soup", nargs="+", action="append", type=Path, required=True, help="members of one soup")
    parser.add_argument("--base", type=Path, help="model folder giving architecture and tokenizer for file members")
    parser.add_argument("--eval-file", type=Path, default=ROOT / "data/sst2/dev.tsv")
    parser.add_argument("--text-column", default="sentence")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--out", type=Path, help="results json")
    args = parser.parse_args()
    frame = read_frame(args.eval_file)
    texts = texts_of(frame, args.text_column, str(args.eval_file))
    alone: dict[str, float] = {}
    soups = []
    for members in args.soup:
        base = args.base or members[0]
        if base.suffix == ".safetensors":
            raise SystemExit("error: checkpoint files need --base MODEL_DIR (architecture and tokenizer)")
        backend = backend_of(base)
        gold = label_ids(list(frame[args.label_column]), backend.label_names, str(args.eval_file))
        for member in members:
            if str(member) not in alone:
                alone[str(member)] = accuracy(backend, weights_of(member), texts, gold)
        soups.append({"members": [str(m) for m in members],
                      "dev_accuracy": accuracy(backend, uniform_average(members), texts, gold),
                      "best_member": max(alone[str(m)] for m in members)})
        print(f"{soups[-1]['dev_accuracy']:.4f} (best member {soups[-1]['best_member']:.4f})  "
              f"{' + '.join(map(str, members))}")
    if args.out:
        args.out.write_text(json.dumps({"eval_file": str(args.eval_file), "members": alone, "soups": soups},
                                       indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
