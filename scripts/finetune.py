"""Fine-tune a pretrained BERT- or GPT-style model into a text classifier (LoRA by default).

    python scripts/finetune.py --config configs/sst2_minilm.yaml [--train.epochs 1 --output-dir runs/x ...]
    python scripts/finetune.py --model.name smollm2 --data.train-file my.csv --data.eval-file dev.csv \\
        --output-dir runs/mine
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from finetune.config import FinetuneConfig  # noqa: E402
from pipelines.cli import TrainingRunFlags, parse, run_cli  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    flags, config = parse(FinetuneConfig, argv, __doc__, TrainingRunFlags)
    from finetune.stage import run_finetune

    result = run_finetune(config, resume=flags.resume, overwrite=flags.overwrite)
    if result.metrics:
        evaluated = result.metrics["eval"]
        print(f"accuracy {evaluated['accuracy']:.4f}  macro-F1 {evaluated['macro_f1']:.4f}  ({result.seconds:.0f} s)")
        print(f"model written to {result.output}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
