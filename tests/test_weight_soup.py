"""benchmarks/weight_soup.py: the soup is the element-wise mean of its members, and is scored like a model."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
import torch
from conftest import ROOT
from safetensors.torch import load_file, save_file

spec = importlib.util.spec_from_file_location("weight_soup", ROOT / "benchmarks" / "weight_soup.py")
soup = importlib.util.module_from_spec(spec)
spec.loader.exec_module(soup)


def test_uniform_average_is_the_mean_and_refuses_other_architectures(tmp_path):
    first, second, other = tmp_path / "a.safetensors", tmp_path / "b.safetensors", tmp_path / "c.safetensors"
    save_file({"w": torch.tensor([1.0, 2.0]), "b": torch.tensor([0.0])}, str(first))
    save_file({"w": torch.tensor([3.0, 6.0]), "b": torch.tensor([1.0])}, str(second))
    save_file({"w": torch.tensor([3.0, 6.0])}, str(other))
    averaged = soup.uniform_average([first, second])
    assert torch.equal(averaged["w"], torch.tensor([2.0, 4.0])) and torch.equal(averaged["b"], torch.tensor([0.5]))
    with pytest.raises(SystemExit, match="do not share one architecture"):
        soup.uniform_average([first, other])


def test_soups_are_scored_beside_their_members(tiny_classifier, tmp_path, monkeypatch):
    shifted = tmp_path / "shifted.safetensors"  # a second "run": the classifier's weights moved
    weights = load_file(tiny_classifier / "model.safetensors")
    save_file({name: t + 0.05 * torch.randn_like(t) if t.is_floating_point() else t
               for name, t in weights.items()}, str(shifted))
    texts = ["good film", "bad film", "an ok film", "great", "awful", "fine"]
    eval_file = tmp_path / "dev.tsv"
    eval_file.write_text("sentence\tlabel\n" + "".join(
        f"{t}\t{label}\n" for t, label in zip(texts, ["positive", "negative", "neutral"] * 2, strict=True)))
    out = tmp_path / "soups.json"
    original = tiny_classifier / "model.safetensors"
    monkeypatch.setattr(sys, "argv", ["weight_soup.py", "--base", str(tiny_classifier), "--eval-file",
                                      str(eval_file), "--soup", str(original), str(original),
                                      "--soup", str(original), str(shifted), "--out", str(out)])
    soup.main()
    result = json.loads(out.read_text())
    assert set(result["members"]) == {str(original), str(shifted)}
    same, mixed = result["soups"]
    assert same["dev_accuracy"] == same["best_member"] == result["members"][str(original)]  # a soup of one model
    assert mixed["best_member"] == max(result["members"].values())
    assert 0 <= mixed["dev_accuracy"] <= 1
