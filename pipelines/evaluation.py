"""Row-order-safe batched inference: logits for every row of a tokenized dataset, in the dataset's order."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class PaddingCollator:
    """Pad model inputs at batch time (dynamic padding); keep `label`, drop other columns such as `length`."""

    tokenizer: object
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict]) -> dict:
        inputs = [{k: f[k] for k in MODEL_INPUTS if k in f} for f in features]
        batch = self.tokenizer.pad(inputs, padding=True, pad_to_multiple_of=self.pad_to_multiple_of,
                                   return_tensors="pt")
        if "label" in features[0]:
            import torch

            batch["labels"] = torch.tensor([f["label"] for f in features], dtype=torch.long)
        return batch


def predict_logits(model, dataset, tokenizer, batch_size: int = 128) -> np.ndarray:
    """Logits for every row of `dataset` (tokenized, unpadded), returned in row order.

    Rows are run in length-sorted batches with dynamic padding under torch.inference_mode, then put back
    in their original order, so row i of the result is row i of the dataset.
    """
    import torch

    columns = [c for c in MODEL_INPUTS if c in dataset.column_names]
    rows = dataset.select_columns(columns)
    lengths = list(dataset["length"]) if "length" in dataset.column_names else [len(x) for x in rows["input_ids"]]
    order = np.argsort(np.asarray(lengths), kind="stable")
    collate = PaddingCollator(tokenizer)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    outputs: list[np.ndarray] = [None] * len(order)  # type: ignore[list-item]
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size].tolist()
            batch = collate(rows.select(index).to_list())
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu().numpy()
            for row, value in zip(index, logits, strict=True):
                outputs[row] = value
    model.train(was_training)
    return np.stack(outputs) if outputs else np.zeros((0, model.config.num_labels), dtype=np.float32)
