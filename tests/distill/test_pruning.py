"""Width pruning: the teacher's most active channels, heads and neurons become a narrow student's weights."""

from __future__ import annotations

import pytest
import torch

from distill.architecture import narrow_config
from distill.objective import attach_projections, layer_pairs
from distill.pruning import Importance, measure_importance, prune_into, pruned_student, supports_width_pruning
from pipelines.errors import UserError


@pytest.fixture()
def teacher(tiny_bert):
    """tiny_bert as a classifier: 2 layers, hidden 32, 2 heads of 16, feed-forward 64."""
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2).eval()


def batches(seed: int = 0, pad: int = 0) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 20, (4, 9), generator=generator)  # tiny_bert's vocabulary has 20+ words
    mask = torch.ones_like(ids)
    if pad:
        ids = torch.cat([ids, torch.zeros(4, pad, dtype=ids.dtype)], dim=1)
        mask = torch.cat([mask, torch.zeros(4, pad, dtype=mask.dtype)], dim=1)
    return [{"input_ids": ids, "attention_mask": mask}]


def test_pruning_to_the_full_width_gives_back_the_teacher(teacher):
    student, channels = pruned_student(teacher, 32, 2, 64, [0, 1], batches())
    assert channels.tolist() == list(range(32))
    inputs = batches(seed=1)[0]
    with torch.no_grad():
        assert torch.allclose(student.eval()(**inputs).logits, teacher(**inputs).logits, atol=1e-5)


def test_pruned_weights_are_the_teachers_most_active_slices(teacher):
    channels = torch.zeros(32)
    channels[[3, 1, 30, 7] + list(range(10, 22))] = 1.0
    neurons = torch.arange(64.0).flip(0)  # the first 24 neurons score highest
    importance = Importance(channels, heads={1: torch.tensor([0.1, 0.9])}, neurons={1: neurons})
    student = type(teacher)(narrow_config(teacher, 16, 1, 1, 24))
    kept = prune_into(teacher, student, [1], importance)
    assert kept.tolist() == sorted([1, 3, 7, 30] + list(range(10, 22)))
    t, s = teacher.state_dict(), student.state_dict()

    def pair(name: str) -> tuple[torch.Tensor, torch.Tensor]:  # (student block 0, teacher block 1)
        return s[f"bert.encoder.layer.0.{name}"], t[f"bert.encoder.layer.1.{name}"]

    head = torch.arange(16, 32)  # head 1 of the teacher's layer 1
    mine, theirs = pair("attention.self.query.weight")
    assert torch.equal(mine, theirs[head][:, kept])
    mine, theirs = pair("attention.self.value.bias")
    assert torch.equal(mine, theirs[head])
    mine, theirs = pair("attention.output.dense.weight")
    assert torch.equal(mine, theirs[kept][:, head])
    mine, theirs = pair("intermediate.dense.weight")
    assert torch.equal(mine, theirs[:24][:, kept])
    mine, theirs = pair("output.dense.weight")
    assert torch.equal(mine, theirs[kept][:, :24])
    mine, theirs = pair("output.LayerNorm.bias")
    assert torch.equal(mine, theirs[kept])
    words = "bert.embeddings.word_embeddings.weight"
    assert torch.equal(s[words], t[words][:, kept])
    assert torch.equal(s["bert.pooler.dense.weight"], t["bert.pooler.dense.weight"][kept][:, kept])
    assert torch.equal(s["classifier.weight"], t["classifier.weight"][:, kept])
    assert torch.equal(s["classifier.bias"], t["classifier.bias"])


def test_importance_counts_real_tokens_only(teacher):
    plain = measure_importance(teacher, batches(), [0, 1])
    padded = measure_importance(teacher, batches(pad=5), [0, 1])
    assert torch.allclose(plain.channels, padded.channels, atol=1e-5)
    for index in (0, 1):
        assert plain.heads[index].shape == (2,) and plain.neurons[index].shape == (64,)
        assert torch.allclose(plain.heads[index], padded.heads[index], atol=1e-5)
        assert torch.allclose(plain.neurons[index], padded.neurons[index], atol=1e-5)
    assert (plain.channels > 0).all()


def test_refuses_a_student_with_another_head_width_or_wider_than_the_teacher(teacher):
    with pytest.raises(UserError, match="student.num_attention_heads to 1"):
        pruned_student(teacher, 16, 2, 32, [1], batches())
    with pytest.raises(UserError, match="cannot be wider"):
        pruned_student(teacher, 32, 2, 128, [1], batches())


def test_projection_starts_by_putting_kept_channels_back(teacher):
    student, kept = pruned_student(teacher, 16, 1, 32, [1], batches())
    pairs = layer_pairs(student, teacher, [1])
    attach_projections(student, teacher, pairs, kept)
    hidden = torch.randn(2, 3, 16)
    back = student.distill_projections[0](hidden)
    assert torch.equal(back[..., kept], hidden)
    others = [c for c in range(32) if c not in set(kept.tolist())]
    assert torch.count_nonzero(back[..., others]) == 0


def test_only_bert_style_encoders_are_pruned(teacher, tiny_llama):
    from transformers import AutoModelForSequenceClassification

    assert supports_width_pruning(teacher)
    decoder = AutoModelForSequenceClassification.from_pretrained(tiny_llama, num_labels=2)
    assert not supports_width_pruning(decoder)
