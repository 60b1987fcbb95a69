"""Students cut from a teacher: layer maps, copied layers, fresh narrow students."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distill.architecture import evenly_spaced, group_tops
from distill.student import fresh_student, student_from_teacher_layers
from pipelines.errors import UserError


def test_evenly_spaced_layer_maps():
    assert evenly_spaced(6, 3) == [0, 2, 5]
    assert evenly_spaced(6, 2) == [0, 5]
    assert evenly_spaced(6, 6) == list(range(6))
    assert evenly_spaced(6, 1) == [5]
    with pytest.raises(UserError, match="1 to 6 layers"):
        evenly_spaced(6, 7)


def test_group_tops_layer_maps():
    assert group_tops(6, 3) == [1, 3, 5]
    assert group_tops(6, 2) == [2, 5]
    assert group_tops(12, 4) == [2, 5, 8, 11]
    assert group_tops(6, 4) == [0, 2, 3, 5]
    assert group_tops(6, 6) == list(range(6))
    assert group_tops(6, 1) == [5]
    with pytest.raises(UserError, match="1 to 6 layers"):
        group_tops(6, 0)


@pytest.mark.parametrize("fixture", ["tiny_bert", "tiny_llama", "tiny_gpt2"])
def test_copied_layers_equal_the_teachers(request, fixture):
    from transformers import AutoModelForSequenceClassification

    teacher = AutoModelForSequenceClassification.from_pretrained(request.getfixturevalue(fixture), num_labels=2)
    student = student_from_teacher_layers(teacher, [1])
    assert student.config.num_hidden_layers == 1
    teacher_state, student_state = teacher.state_dict(), student.state_dict()
    checked = 0
    for key, value in student_state.items():
        source = key.replace(".0.", ".1.") if any(p in key for p in ("layer.0.", "layers.0.", "h.0.")) else key
        torch.testing.assert_close(value, teacher_state[source], rtol=0, atol=0)
        checked += 1
    assert checked == len(student_state)
    ids = torch.tensor([[3, 5, 7, 2]])
    assert student(input_ids=ids).logits.shape == (1, 2)
    with pytest.raises(UserError, match="out of range"):
        student_from_teacher_layers(teacher, [0, 2])


def test_fresh_student_is_narrow_and_starts_from_teacher_embeddings(tiny_bert):
    from transformers import AutoModelForSequenceClassification

    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    student = fresh_student(teacher, hidden_size=16, num_hidden_layers=1, num_heads=2, intermediate_size=32)
    assert student.config.hidden_size == 16 and student.config.num_hidden_layers == 1
    words = student.get_input_embeddings().weight
    assert words.shape == (teacher.config.vocab_size, 16)
    # PCA keeps neighbourhoods: similarities of the reduced embeddings correlate with the teacher's
    t = torch.nn.functional.normalize(teacher.get_input_embeddings().weight.detach(), dim=1)
    s = torch.nn.functional.normalize(words.detach(), dim=1)
    assert np.corrcoef((t @ t.T).flatten().numpy(), (s @ s.T).flatten().numpy())[0, 1] > 0.3
