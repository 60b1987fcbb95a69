"""Shared fixtures and helpers: tiny random BERT-, Llama- and GPT-2-style models with their tokenizers, small data
files, tiny stage configs, and a callback that interrupts training as a kill would."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pipelines  # noqa: E402,F401  (sets offline defaults and cache folders)

WORDS = (
    "good great superb loved fine nice happy wonderful bad awful terrible hated boring poor sad dull "
    "the a movie film plot actors was is it this and but very not really story"
).split()
POSITIVE = ["good", "great", "superb", "loved", "fine", "nice", "happy", "wonderful"]
NEGATIVE = ["bad", "awful", "terrible", "hated", "boring", "poor", "sad", "dull"]


def _bert_tokenizer():
    from transformers import BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    return BertTokenizer(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True)


def _word_level_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(["<unk>", "<s>", "</s>", *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide random BERT encoder folder (with pooler) with a word-level WordPiece tokenizer."""
    import torch
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny_bert")
    tokenizer = _bert_tokenizer()
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide random Llama causal-LM folder whose tokenizer has no pad token (like SmolLM2)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny_llama")
    tokenizer = _word_level_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64,
        bos_token_id=1, eos_token_id=2,
    )
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def sentiment_rows(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """n (text, label) rows whose label is decided by one sentiment word; fillers around it."""
    import random

    rng = random.Random(seed)
    fillers = ["the", "movie", "film", "plot", "was", "is", "it", "this", "very", "really", "story", "actors"]
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        word = rng.choice(POSITIVE if label == "pos" else NEGATIVE)
        words = rng.sample(fillers, rng.randint(1, 6))
        words.insert(rng.randint(0, len(words)), word)
        rows.append((" ".join(words), label))
    return rows


def write_csv(path: Path, rows: list[tuple], header: tuple = ("text", "label"), sep: str = ",") -> Path:
    lines = [sep.join(header)] + [sep.join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def sentiment_files(tmp_path) -> tuple[Path, Path]:
    train = write_csv(tmp_path / "train.csv", sentiment_rows(64, seed=1))
    evaluation = write_csv(tmp_path / "eval.csv", sentiment_rows(16, seed=2))
    return train, evaluation


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide random GPT-2 folder (Conv1D layers: LoRA needs fan_in_fan_out)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path_factory.mktemp("tiny_gpt2")
    tokenizer = _word_level_tokenizer()
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=64,
                        bos_token_id=1, eos_token_id=2)
    GPT2LMHeadModel(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


LABELS = ["negative", "neutral", "positive"]


def make_classifier(base: Path, folder: Path, labels: list[str] | None = None) -> Path:
    """A randomly initialised 3-class classifier folder (as a stage would write it), seeded."""
    import torch

    from pipelines.models import ModelSource, load_classifier, load_tokenizer

    source = ModelSource(name=str(base), location=str(base), kind="local")
    tokenizer = load_tokenizer(source)
    torch.manual_seed(0)
    model = load_classifier(source, labels or LABELS, tokenizer)
    with torch.no_grad():  # a fresh head is near zero: spread the logits so labels are well defined
        for name, parameter in model.named_parameters():
            if name.split(".")[0] in ("classifier", "score"):
                parameter.mul_(20)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", params=["tiny_bert", "tiny_llama", "tiny_gpt2"])
def classifier(request, tmp_path_factory) -> Path:
    """A 3-class classifier folder of each architecture in turn (BERT, Llama and GPT-2 style)."""
    base = request.getfixturevalue(request.param)
    return make_classifier(base, tmp_path_factory.mktemp(f"{request.param}_classifier"))


@pytest.fixture(scope="session")
def tiny_classifier(tiny_bert, tmp_path_factory) -> Path:
    """A 3-class classifier folder (negative, neutral, positive) as the fine-tuning stage writes one."""
    return make_classifier(tiny_bert, tmp_path_factory.mktemp("tiny_classifier"))


def tiny_config(model: Path, train: Path, evaluation: Path | None, out: Path, method="lora", **train_kw):
    """A fine-tuning config that trains a tiny model for 12 steps, evaluating every 6, on one thread."""
    from finetune.config import FinetuneConfig, LoraSettings
    from pipelines.data import DataSettings
    from pipelines.models import ModelSettings
    from pipelines.training.settings import TrainSettings

    train_settings = dict(max_steps=12, batch_size=8, eval_batch_size=16, learning_rate=5e-3, warmup=0,
                          eval_strategy="steps", eval_steps=6, logging_steps=3, num_threads=1)
    train_settings.update(train_kw)
    return FinetuneConfig(
        output_dir=str(out),
        model=ModelSettings(name=str(model), max_length=32),
        data=DataSettings(train_file=str(train), eval_file=str(evaluation) if evaluation else None),
        lora=LoraSettings(method=method, r=4, alpha=8, dropout=0.0),
        train=TrainSettings(**train_settings),
    )


def tiny_pipeline(model: Path, train: Path, evaluation: Path, run_dir: Path, stages: list[str] | None = None):
    """A pipeline config of tiny stages: 8 fine-tuning steps, a 1-layer student, 3 examples explained."""
    from chain.config import STAGE_NAMES, PipelineConfig
    from distill.config import DistillSettings, StudentSettings
    from explain.config import ExplainSettings
    from export.config import ExportSettings
    from finetune.config import FinetuneSettings, LoraSettings
    from pipelines.data import DataSettings
    from pipelines.models import ModelSettings
    from pipelines.training.settings import TrainSettings

    return PipelineConfig(
        output_dir=str(run_dir),
        stages=list(stages or STAGE_NAMES),
        data=DataSettings(train_file=str(train), eval_file=str(evaluation)),
        finetune=FinetuneSettings(
            model=ModelSettings(name=str(model), max_length=32),
            lora=LoraSettings(r=4, alpha=8, dropout=0.0),
            train=TrainSettings(max_steps=8, batch_size=8, eval_batch_size=16, learning_rate=5e-3, warmup=0,
                                eval_strategy="steps", eval_steps=4, logging_steps=2, num_threads=1)),
        distill=DistillSettings(
            student=StudentSettings(layers=1),
            train=TrainSettings(max_steps=6, batch_size=8, learning_rate=1e-3, warmup=0, eval_strategy="steps",
                                eval_steps=3, logging_steps=2, num_threads=1)),
        explain=ExplainSettings(num_examples=3, max_evals=40, batch_size=64),
        export=ExportSettings(max_accuracy_drop=1.0, num_threads=1),  # random tiny models: int8 may flip labels
    )


def logits_of(model_dir: Path, texts: list[str]):
    """Logits of a saved classifier folder, loaded with plain transformers."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        return model(**tokenizer(texts, padding=True, return_tensors="pt")).logits.numpy()


class StopAt:
    """A TrainerCallback that interrupts training once it reaches a step (as a kill would)."""

    def __init__(self, step: int):
        self.step = step

    def __getattr__(self, name):  # every other callback event does nothing
        return lambda *args, **kwargs: None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            raise KeyboardInterrupt


class ResumeProbe:
    """A TrainerCallback recording where training began (global step, optimizer and scheduler state) and how many
    optimizer steps it then took: what tells a resume from a restart."""

    def __init__(self):
        self.began_at: int | None = None
        self.steps = 0
        self.optimizer_state: dict = {}
        self.scheduler_state: dict = {}

    def __getattr__(self, name):  # every other callback event does nothing
        return lambda *args, **kwargs: None

    def on_train_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
        self.began_at = state.global_step
        self.optimizer_state = {key: {name: value.clone() if hasattr(value, "clone") else value
                                      for name, value in values.items()}
                                for key, values in optimizer.state_dict()["state"].items()}
        self.scheduler_state = dict(lr_scheduler.state_dict())

    def on_step_end(self, args, state, control, **kwargs):
        self.steps += 1

    def assert_resumed_from(self, checkpoint: Path) -> None:
        """Began at the checkpoint's step with the checkpoint's optimizer moments and schedule."""
        import torch

        step = int(checkpoint.name.rsplit("-", 1)[-1])
        assert self.began_at == step, f"began at step {self.began_at}, not at the checkpoint's {step}"
        saved = torch.load(checkpoint / "optimizer.pt", weights_only=True)["state"]
        assert saved and set(saved) == set(self.optimizer_state)
        for key, values in saved.items():
            for name in ("exp_avg", "exp_avg_sq"):
                assert torch.equal(values[name], self.optimizer_state[key][name]), (key, name)
        schedule = torch.load(checkpoint / "scheduler.pt", weights_only=True)
        assert self.scheduler_state["last_epoch"] == schedule["last_epoch"] == step


def with_stage_callbacks(monkeypatch, stage: str, callbacks: list) -> None:
    """Make the pipeline runner pass `callbacks` to one training stage (as a user's hook would)."""
    import chain.runner

    def wrap(spec):
        def run(config, resume=False, overwrite=False):
            return spec.run(config, resume=resume, overwrite=overwrite, callbacks=callbacks)

        return chain.runner.StageSpec(spec.name, run, spec.config, spec.resumable)

    monkeypatch.setattr(chain.runner, "STAGES", tuple(wrap(s) if s.name == stage else s for s in chain.runner.STAGES))
