"""Task-adaptive pretraining (Gururangan et al., 2020, "Don't Stop Pretraining"): before fine-tuning, the
pretrained model goes on with its own pretraining objective on the training texts (labels unused): masked
words for BERT-style models, the next token for GPT-style ones. The encoder (or decoder) it leaves behind is
saved as a plain base-model folder beside the run's checkpoints, and the classifier starts from it.

all-MiniLM-L6-v2 ships without its masked-LM head (a sentence-embedding checkpoint): the head's transform
starts fresh, its decoder is tied to the word embeddings as in BERT. A BERT-style pooler, which the masked-LM
model lacks, is kept from the original checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from pipelines import artifacts
from pipelines.config import FinetuneConfig, to_dict
from pipelines.errors import UserError
from pipelines.evaluation import MODEL_INPUTS
from pipelines.models import ModelSource, check_weights

log = logging.getLogger(__name__)
ADAPT = "adapt"  # under the run's checkpoints/: removed with them once the classifier is published
DONE = "adapt.json"  # written last: the adapted model in this folder is complete


@dataclass
class LanguageModelCollator:
    """transformers' language-modelling collator on the model inputs alone (the rows also carry labels, lengths)."""

    collator: object

    def __call__(self, features: list[dict]) -> dict:
        return self.collator([{k: f[k] for k in MODEL_INPUTS if k in f} for f in features])


def is_masked_lm(model_type: str) -> bool:
    """BERT-style models adapt with masked words; the others (GPT-style) with the next token."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def adaptation_record(config: FinetuneConfig, source: ModelSource, data_fingerprint: str) -> dict:
    """What an adapted model depends on: a finished one is reused only while all of it is the same."""
    return {"model": source.location, "data": data_fingerprint, "adapt": to_dict(config.adapt),
            "max_length": config.model.max_length, "train": to_dict(config.train)}


def check_base_fits(base, language_model, name: str) -> None:
    """Refuse, before any training, a model whose language-model body does not load back into its base model
    (all weights but a BERT-style pooler, which the masked-LM model lacks and the base keeps)."""
    base_keys, adapted_keys = set(base.state_dict()), set(language_model.base_model.state_dict())
    missing = sorted(key for key in base_keys - adapted_keys if not key.startswith("pooler."))
    unexpected = sorted(adapted_keys - base_keys)
    if missing or unexpected:
        raise UserError(f"adapt: {name}'s language model does not map onto its base model (missing "
                        f"{', '.join(missing[:3]) or 'none'}; unexpected {', '.join(unexpected[:3]) or 'none'}); "
                        "set adapt.epochs 0")


def release_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def adapt_language_model(source: ModelSource, tokenizer, train_ds, config: FinetuneConfig, folder: Path,
                         data_fingerprint: str, resume: bool = False, callbacks: list | None = None) -> ModelSource:
    """Continue `source`'s pretraining on the tokenized training rows and save the base model to
    folder/model; return it as a model source. A finished adaptation with the same record is reused; an
    interrupted one continues from its last checkpoint when `resume`."""
    from transformers import (
        AutoConfig,
        AutoModel,
        AutoModelForCausalLM,
        AutoModelForMaskedLM,
        DataCollatorForLanguageModeling,
        set_seed,
    )

    from pipelines.finetune import last_checkpoint, training_arguments
    from pipelines.sampling import LengthGroupedTrainer

    model_dir = folder / "model"
    record = adaptation_record(config, source, data_fingerprint)
    if (model_dir / DONE).is_file() and json.loads((model_dir / DONE).read_text()) == record:
        log.info("reusing the adapted model in %s", model_dir)
        return ModelSource(name=str(model_dir), location=str(model_dir), kind="local")
    settings = config.adapt
    train = config.train
    plain = dataclasses.replace(train, epochs=settings.epochs, max_steps=-1, learning_rate=settings.learning_rate,
                                eval_strategy="no", report_to=[])
    args = training_arguments(plain, folder / artifacts.CHECKPOINTS)
    args.set_save(strategy="steps", steps=settings.save_steps, total_limit=1)

    set_seed(train.seed)
    trust = config.model.trust_remote_code
    safetensors_only = None if source.kind == "hub" else True
    masked = is_masked_lm(AutoConfig.from_pretrained(source.location, trust_remote_code=trust).model_type)
    model_class = AutoModelForMaskedLM if masked else AutoModelForCausalLM
    language_model, loading = model_class.from_pretrained(source.location, trust_remote_code=trust,
                                                          use_safetensors=safetensors_only, output_loading_info=True)
    if loading["missing_keys"]:
        log.info("%d weights of %s's language-model head are not in its checkpoint (a sentence-embedding model has "
                 "none): they start fresh", len(loading["missing_keys"]), source.name)
    base = AutoModel.from_pretrained(source.location, trust_remote_code=trust, use_safetensors=safetensors_only)
    check_base_fits(base, language_model, source.name)  # before any training; the same model takes the result
    if not masked:
        language_model.config.pad_token_id = tokenizer.pad_token_id
    # masks from torch's global generator: seeded by the Trainer and restored with a checkpoint's RNG state
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=masked, mlm_probability=settings.mask_probability)
    trainer = LengthGroupedTrainer(model=language_model, args=args, train_dataset=train_ds,
                                   data_collator=LanguageModelCollator(collator), callbacks=callbacks)
    checkpoint = last_checkpoint(folder / artifacts.CHECKPOINTS) if resume else None
    log.info("adapting %s to the training texts (%s, %g epochs)%s", source.name,
             "masked words" if masked else "next token", settings.epochs,
             f", resuming from {checkpoint}" if checkpoint else "")
    trainer.train(resume_from_checkpoint=checkpoint)

    if trainer.is_world_process_zero():
        base.load_state_dict(language_model.base_model.state_dict(), strict=False)  # a BERT pooler stays the original
        shutil.rmtree(model_dir, ignore_errors=True)
        base.save_pretrained(model_dir, safe_serialization=True)
        tokenizer.save_pretrained(model_dir)
        check_weights(model_dir)
        artifacts.write_json(model_dir / DONE, record)
        shutil.rmtree(folder / artifacts.CHECKPOINTS, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    del trainer, language_model, base  # the optimizer state goes with the trainer before the classifier trains
    release_memory()
    return ModelSource(name=str(model_dir), location=str(model_dir), kind="local")
