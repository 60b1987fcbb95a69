"""FastDropout: torch's dropout semantics (rate, scaling, gradient, eval mode, seeding) with numpy-drawn masks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pipelines.training.dropout import FastDropout, keep_mask, use_fast_dropout


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_drop_rate_and_scaling_match_torch_dropout(p):
    x = torch.rand(1_000_000) + 1.0  # no zeros of its own
    torch.manual_seed(0)
    ours = FastDropout(p).train()(x)
    theirs = nn.functional.dropout(x, p, training=True)
    dropped = (ours == 0).float().mean().item()
    assert dropped == pytest.approx(p, abs=0.003)
    assert dropped == pytest.approx((theirs == 0).float().mean().item(), abs=0.004)
    kept = ours != 0
    torch.testing.assert_close(ours[kept], x[kept] / (1 - p))
    assert ours.mean().item() == pytest.approx(x.mean().item(), rel=0.01)


def test_masks_follow_torch_seed_and_differ_between_calls():
    x = torch.ones(4, 7, 33)  # an element count that is not a multiple of 4
    dropout = FastDropout(0.3).train()
    torch.manual_seed(5)
    first, second = dropout(x), dropout(x)
    torch.manual_seed(5)
    assert torch.equal(dropout(x), first)
    assert torch.equal(dropout(x), second)
    assert not torch.equal(first, second)
    assert first.shape == x.shape


def test_each_rank_draws_its_own_masks_from_the_same_seed(monkeypatch):
    """Under DDP every rank gets the same seed: the rank is mixed in, rank 0 keeps the single-process stream."""
    shape = torch.Size([8, 64])
    draws = {}
    for rank in ("0", "1", "2", None):
        if rank is None:
            monkeypatch.delenv("RANK", raising=False)
        else:
            monkeypatch.setenv("RANK", rank)
        torch.manual_seed(11)
        draws[rank] = keep_mask(shape, 0.5)
    assert torch.equal(draws["0"], draws[None])  # one process alone draws rank 0's masks
    assert not torch.equal(draws["0"], draws["1"]) and not torch.equal(draws["1"], draws["2"])
    for mask in draws.values():
        assert abs(mask.float().mean().item() - 0.5) < 0.1


def test_gradient_is_mask_times_scale():
    x = torch.randn(64, 32, requires_grad=True)
    out = FastDropout(0.25).train()(x)
    out.sum().backward()
    expected = (out != 0).float() / 0.75
    torch.testing.assert_close(x.grad, expected)


def test_eval_mode_zero_rate_and_empty_input_pass_through():
    x = torch.randn(3, 5)
    assert FastDropout(0.5).eval()(x) is x
    assert FastDropout(0.0).train()(x) is x
    empty = torch.empty(0, 5)
    assert FastDropout(0.5).train()(empty) is empty
    assert torch.equal(FastDropout(1.0).train()(x), torch.zeros_like(x))


def test_keep_mask_shape_and_dtype():
    torch.manual_seed(0)
    mask = keep_mask(torch.Size([3, 5, 7]), 0.2)
    assert mask.shape == (3, 5, 7) and mask.dtype == torch.bool


def test_use_fast_dropout_replaces_every_dropout_and_keeps_eval_outputs(tiny_bert):
    from pipelines.models import load_classifier, load_tokenizer, resolve_model

    source = resolve_model(str(tiny_bert))
    tokenizer = load_tokenizer(source)
    model = load_classifier(source, ["neg", "pos"], tokenizer).eval()
    rates = sorted(module.p for module in model.modules() if type(module) is nn.Dropout)
    batch = tokenizer(["a good movie", "bad"], padding=True, return_tensors="pt")
    with torch.no_grad():
        before = model(**batch).logits
    assert use_fast_dropout(model) == len(rates) > 0
    assert not any(type(module) is nn.Dropout for module in model.modules())
    assert sorted(module.p for module in model.modules() if isinstance(module, FastDropout)) == rates
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, before)
    model.train()
    torch.manual_seed(1)
    with torch.no_grad():
        assert not torch.equal(model(**batch).logits, before)
