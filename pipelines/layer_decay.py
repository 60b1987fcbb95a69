"""Layer-wise learning-rate decay: lower layers of a pretrained encoder or decoder learn more slowly.

The top of the network (classification head, pooler, final norm) learns at the peak rate, encoder or decoder
layer i of L at rate x decay^(L - i), the embeddings at rate x decay^(L + 1) (ELECTRA, DeBERTa-v3 and BEiT
fine-tune this way). Pretrained low layers carry general features a small dataset should not wash out; the
top ones are the most task-specific. `train.layer_lr_decay` < 1 switches it on; the optimizer is the one
the Trainer would build (class, betas, eps, fused), one parameter group per depth, with and without weight
decay, so the Trainer's schedule scales every group alike.
"""

from __future__ import annotations

import re

LAYER_INDEX = re.compile(r"\.(?:layer|layers|h|block|blocks)\.(\d+)\.")
EMBEDDING_PARTS = ("embeddings", "embed_tokens", "wte", "wpe")


def parameter_depth(name: str, layers: int) -> int:
    """0 for embeddings, i + 1 for layer i, layers + 1 for everything above (head, pooler, final norm)."""
    found = LAYER_INDEX.search(name)
    if found:
        return int(found.group(1)) + 1
    if any(part in name.split(".") for part in EMBEDDING_PARTS):
        return 0
    return layers + 1


def layer_decay_groups(model, learning_rate: float, decay: float, weight_decay: float) -> list[dict]:
    """Optimizer parameter groups of the trainable parameters: one per (depth, weight decay or not).

    Biases and norm weights (one-dimensional) take no weight decay, as in the Trainer's default groups.
    """
    layers = int(model.config.num_hidden_layers)  # transformers maps n_layer etc. onto this name
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        depth = parameter_depth(name, layers)
        decayed = param.ndim >= 2
        group = groups.setdefault((depth, decayed), {
            "params": [], "names": [],
            "lr": learning_rate * decay ** (layers + 1 - depth),
            "weight_decay": weight_decay if decayed else 0.0,
        })
        group["params"].append(param)
        group["names"].append(name)
    return [groups[key] for key in sorted(groups)]


def layer_decay_optimizer(model, args, decay: float):
    """The optimizer the Trainer would build from `args` (TrainingArguments), with layer-wise rates; None
    (the Trainer builds its own) when decay is 1."""
    if decay >= 1:
        return None
    from transformers import Trainer

    optimizer_class, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    kwargs = {key: value for key, value in kwargs.items() if key not in ("lr", "weight_decay")}
    groups = layer_decay_groups(model, args.learning_rate, decay, args.weight_decay)
    for group in groups:
        del group["names"]  # torch optimizers keep unknown keys in their state dict; names are for inspection
    return optimizer_class(groups, lr=args.learning_rate, **kwargs)
