"""LoRA on a classifier with peft: which modules get adapters, which train in full, and LoRA+ rates."""

from __future__ import annotations

from finetune.config import LoraSettings
from pipelines.errors import UserError
from pipelines.models import has_module, head_modules, lora_targets, pooler_modules


def add_lora(model, settings: LoraSettings, causal_lm: bool = False):
    """Wrap model with LoRA adapters; the classification head and `modules_to_save` (by default a BERT-style
    pooler, which a sentence-embedding checkpoint may never have trained) learn in full and are saved with them.
    A causal language model keeps its head frozen (only `modules_to_save`, if given, learn in full)."""
    from peft import LoraConfig, TaskType, get_peft_model

    heads = [] if causal_lm else head_modules(model)
    for wanted in settings.modules_to_save or []:
        if not has_module(model, wanted):
            raise UserError(f"lora.modules_to_save names '{wanted}', which this model does not have")
    extra = (pooler_modules(model) if not causal_lm else []) if settings.modules_to_save is None \
        else settings.modules_to_save
    lora_config = LoraConfig(
        task_type=TaskType.CAUSAL_LM if causal_lm else TaskType.SEQ_CLS,
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        use_dora=settings.use_dora,
        use_rslora=settings.use_rslora,
        target_modules=settings.target_modules or lora_targets(model),
        modules_to_save=heads + [name for name in extra if name not in heads],
        fan_in_fan_out=getattr(model.config, "model_type", "") == "gpt2",
    )
    try:
        return get_peft_model(model, lora_config)
    except ValueError as err:
        raise UserError(f"LoRA could not be applied: {str(err).splitlines()[0]}; check lora.target_modules") from err


def loraplus_optimizer(model, settings: LoraSettings, learning_rate: float, weight_decay: float):
    """peft's LoRA+ AdamW (B matrices and biases at learning_rate x ratio), or None for the Trainer's own."""
    if settings.method != "lora" or settings.loraplus_lr_ratio is None:
        return None
    import torch
    from peft.optimizers import create_loraplus_optimizer

    return create_loraplus_optimizer(model, torch.optim.AdamW, lr=learning_rate,
                                     loraplus_lr_ratio=settings.loraplus_lr_ratio,
                                     loraplus_weight_decay=weight_decay)
