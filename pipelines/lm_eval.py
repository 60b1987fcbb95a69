"""Causal language models in use: batch padding with ignored labels, held-out perplexity, and greedy generation."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipelines.lm_data import IGNORE, format_prompt


@dataclass
class LmCollator:
    """Right-pad input ids, attention masks and labels (IGNORE) to the batch's longest row."""

    pad_token_id: int

    def __call__(self, features: list[dict]) -> dict:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE, dtype=torch.long)
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            ids[row, :n] = torch.tensor(f["input_ids"])
            mask[row, :n] = 1
            labels[row, :n] = torch.tensor(f["labels"])
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def token_losses(model, batch: dict):
    """Per-token next-token negative log-likelihoods [rows, width-1] and the mask of tokens that count."""
    import torch

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    targets = batch["labels"][:, 1:]
    counted = targets != IGNORE
    losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets.clamp(min=0), reduction="none")
    return losses * counted, counted


def perplexity(model, dataset, pad_token_id: int, batch_size: int = 8) -> dict:
    """exp of the mean negative log-likelihood over every counted (response) token of a tokenized dataset."""
    import torch

    collate = LmCollator(pad_token_id)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    order = np.argsort([len(ids) for ids in dataset["input_ids"]], kind="stable")
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = [dataset[int(i)] for i in order[start : start + batch_size]]
            losses, counted = token_losses(model, collate(rows))
            total += float(losses.sum())
            count += int(counted.sum())
    model.train(was_training)
    return {"perplexity": math.exp(total / max(count, 1)), "loss": total / max(count, 1), "tokens": count}


def generate(model, tokenizer, prompts: list[str], max_new_tokens: int = 64, batch_size: int = 8) -> list[str]:
    """Greedy continuations of each prompt (formatted as in training), in order, batched with left padding."""
    import torch

    was_training, side = model.training, tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left"
    outputs = []
    try:
        with torch.inference_mode():
            for start in range(0, len(prompts), batch_size):
                texts = [format_prompt(tokenizer, p) for p in prompts[start : start + batch_size]]
                batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
                produced = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                          pad_token_id=tokenizer.pad_token_id)
                outputs += tokenizer.batch_decode(produced[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return [o.strip() for o in outputs]
