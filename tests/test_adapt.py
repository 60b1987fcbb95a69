"""Task-adaptive pretraining: masked words (BERT-style) or next token (GPT-style) on the training texts, saved
as a base model the classifier starts from; reused when finished, resumed when interrupted."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from test_finetune import StopAt, logits_of, tiny_config

from pipelines.adapt import DONE, adapt_language_model
from pipelines.config import AdaptSettings
from pipelines.data import prepare_data, tokenize
from pipelines.errors import UserError
from pipelines.finetune import run_finetune
from pipelines.models import ModelSource, load_tokenizer


def adaptation_inputs(model_dir, sentiment_files, tmp_path, **adapt):
    train, evaluation = sentiment_files
    config = tiny_config(model_dir, train, evaluation, tmp_path / "out", batch_size=8)
    config.adapt = AdaptSettings(**{"epochs": 2, "learning_rate": 5e-3, **adapt})
    source = ModelSource(name=str(model_dir), location=str(model_dir), kind="local")
    tokenizer = load_tokenizer(source)
    data = prepare_data(config.data, seed=config.train.seed)
    train_ds = tokenize(data.train, tokenizer, 32, False, tmp_path / "cache", "train", data.fingerprint)
    return config, source, tokenizer, train_ds, data.fingerprint


def weights(folder) -> dict[str, torch.Tensor]:
    return {name.removeprefix("bert.").removeprefix("model.").removeprefix("transformer."): tensor
            for name, tensor in load_file(folder / "model.safetensors").items()}


@pytest.mark.parametrize("model_fixture", ["tiny_bert", "tiny_llama", "tiny_gpt2"])
def test_adaptation_trains_the_encoder_and_keeps_the_pooler(request, model_fixture, sentiment_files, tmp_path):
    base = request.getfixturevalue(model_fixture)
    config, source, tokenizer, train_ds, fingerprint = adaptation_inputs(base, sentiment_files, tmp_path)
    adapted = adapt_language_model(source, tokenizer, train_ds, config, tmp_path / "adapt", fingerprint)

    before, after = weights(base), weights(tmp_path / "adapt" / "model")
    shared = [name for name in after if name in before]
    assert len(shared) == len(after) - ("lm_head.weight" in after)  # every weight of the base model saved
    changed = [name for name in shared if not torch.equal(before[name], after[name])]
    assert len(changed) > len(shared) / 2  # the transformer blocks learned
    assert not any(name.startswith(("cls.", "lm_head")) for name in after)  # a plain base model, no LM head
    poolers = [name for name in after if name.startswith("pooler.")]
    assert bool(poolers) == (model_fixture == "tiny_bert")
    for name in poolers:
        assert torch.equal(before[name], after[name])  # the masked-LM model has no pooler: kept as it was
    assert not (tmp_path / "adapt" / "checkpoints").exists()
    assert json.loads((tmp_path / "adapt" / "model" / DONE).read_text())["adapt"]["epochs"] == 2

    from transformers import AutoModelForSequenceClassification

    model, loading = AutoModelForSequenceClassification.from_pretrained(adapted.location, num_labels=2,
                                                                        output_loading_info=True)
    assert all(key.startswith(("classifier", "score")) for key in loading["missing_keys"])
    embeddings = model.get_input_embeddings().weight
    assert any(torch.equal(embeddings, after[name]) for name in changed if after[name].shape == embeddings.shape)


def test_finished_adaptation_is_reused_and_an_interrupted_one_resumes(tiny_bert, sentiment_files, tmp_path,
                                                                      monkeypatch):
    config, source, tokenizer, train_ds, fingerprint = adaptation_inputs(tiny_bert, sentiment_files, tmp_path,
                                                                         save_steps=4)
    folder = tmp_path / "adapt"
    with pytest.raises(KeyboardInterrupt):
        adapt_language_model(source, tokenizer, train_ds, config, folder, fingerprint, callbacks=[StopAt(6)])
    assert (folder / "checkpoints" / "checkpoint-4").is_dir()
    assert not (folder / "model" / DONE).exists()

    steps = []

    class FirstStep(StopAt):
        def on_step_begin(self, args, state, control, **kwargs):
            steps.append(state.global_step)

    adapt_language_model(source, tokenizer, train_ds, config, folder, fingerprint, resume=True,
                         callbacks=[FirstStep(10**6)])
    assert steps[0] == 4 and len(steps) == 16 - 4  # 64 rows / 8 x 2 epochs = 16 steps, the first 4 not redone
    stamp = (folder / "model" / "model.safetensors").stat().st_mtime_ns

    import pipelines.sampling

    monkeypatch.setattr(pipelines.sampling.LengthGroupedTrainer, "train", lambda *a, **k: pytest.fail("retrained"))
    adapt_language_model(source, tokenizer, train_ds, config, folder, fingerprint)
    assert (folder / "model" / "model.safetensors").stat().st_mtime_ns == stamp
    config.adapt.learning_rate = 1e-3  # another record: trained again
    with pytest.raises(pytest.fail.Exception, match="retrained"):
        adapt_language_model(source, tokenizer, train_ds, config, folder, fingerprint)


def test_finetune_with_adaptation_publishes_a_plain_classifier(tiny_bert, sentiment_files, tmp_path):
    from transformers import pipeline

    train, evaluation = sentiment_files
    config = tiny_config(tiny_bert, train, evaluation, tmp_path / "out", max_steps=4, eval_steps=2)
    config.adapt = AdaptSettings(epochs=1, learning_rate=5e-3)
    plain = tiny_config(tiny_bert, train, evaluation, tmp_path / "plain", max_steps=4, eval_steps=2)
    run_finetune(config)
    run_finetune(plain)
    out = tmp_path / "out"
    assert not (out / "checkpoints").exists()
    card = (out / "README.md").read_text()
    assert "task-adaptive pretraining" in card
    assert not (out / "adapter").exists() and "No LoRA adapter is kept" in card  # its base is gone with checkpoints/
    assert (tmp_path / "plain" / "adapter").is_dir()
    timings = json.loads((out / "manifest.json").read_text())["timings_seconds"]
    assert timings["adapt"] > 0 and timings["train"] > 0
    texts = ["the film was superb", "boring and sad"]
    assert not (logits_of(out, texts) == logits_of(tmp_path / "plain", texts)).all()
    labels = {row["label"] for row in pipeline("text-classification", model=str(out))(texts)}
    assert labels and labels <= set(json.loads((out / "config.json").read_text())["id2label"].values())
    for bad, message in (({"epochs": -1}, "adapt.epochs must be >= 0"),
                         ({"mask_probability": 1.0}, r"adapt.mask_probability must lie in \(0, 1\)")):
        with pytest.raises(UserError, match=message):
            AdaptSettings(**bad)
