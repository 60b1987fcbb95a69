"""Block influence: a layer that passes its input through unchanged has none, and is the one a student drops."""

from __future__ import annotations

import pytest
import torch

from distill.config import StudentSettings
from distill.influence import block_influence, most_influential
from distill.student import student_layer_map


def tiny_decoder(layers: int = 4):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=32, num_hidden_layers=layers,
                                        num_attention_heads=2, num_key_value_heads=2, intermediate_size=64,
                                        max_position_embeddings=64)).eval()


def batches() -> list[dict]:
    ids = torch.randint(3, 50, (2, 2, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[0, 1, 6:] = 0  # padding is not counted
    return [{"input_ids": ids[i], "attention_mask": mask[i]} for i in range(2)]


def test_a_layer_that_passes_its_input_through_has_no_influence_and_is_dropped():
    model = tiny_decoder()
    with torch.no_grad():  # the residual stream passes layer 1 unchanged
        model.model.layers[1].self_attn.o_proj.weight.zero_()
        model.model.layers[1].mlp.down_proj.weight.zero_()
    influence = block_influence(model, batches())
    assert len(influence) == 4
    assert abs(influence[1]) < 1e-5 and min(influence[i] for i in (0, 2, 3)) > 1e-3
    assert most_influential(influence, 3) == [0, 2, 3]
    settings = StudentSettings(layers=3)  # auto: a decoder's student keeps the most influential layers
    assert student_layer_map(settings, model, batches, decoder=True) == ([0, 2, 3], influence)
    assert student_layer_map(settings, model, batches, decoder=False)[0] == [0, 1, 3]  # groups for classifiers
    assert student_layer_map(StudentSettings(layers=3, choose_layers="influence"), model, batches,
                             decoder=False)[0] == [0, 2, 3]
    assert student_layer_map(StudentSettings(layer_map=[2, 3]), model, batches, decoder=True) == ([2, 3], None)


def test_most_influential_keeps_the_teachers_order_and_breaks_ties_to_the_earlier_layer():
    assert most_influential([0.5, 0.1, 0.9, 0.1], 2) == [0, 2]
    assert most_influential([0.5, 0.1, 0.9, 0.1], 3) == [0, 1, 2]
    assert most_influential([0.2, 0.2, 0.2], 2) == [0, 1]


def test_padding_does_not_count():
    model = tiny_decoder(2)
    padded = batches()
    trimmed = [{key: value[:1] for key, value in padded[0].items()}] + padded[1:]
    extra = dict(padded[0])
    extra["input_ids"] = padded[0]["input_ids"].clone()
    extra["input_ids"][1, 6:] = 4  # other ids under the mask: same influence
    assert block_influence(model, [extra, padded[1]]) == pytest.approx(block_influence(model, padded), abs=1e-6)
    assert block_influence(model, trimmed) != pytest.approx(block_influence(model, padded), abs=1e-6)
