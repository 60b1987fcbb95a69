"""Explanations of generations on tiny GPT-2 and Llama decoders: the continuation's log-probability is scored the
same batched (left padding) as alone and as a plain forward pass computes it, and SHAP's attributions of the prompt
tokens sum to the score difference between the whole prompt and the masked one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explain.generation import ContinuationScorer, explain_continuation
from pipelines.lm_data import format_prompt
from pipelines.models import ModelSource, load_causal_lm, load_tokenizer


@pytest.fixture(params=["tiny_gpt2", "tiny_llama"])
def decoder(request):
    folder = request.getfixturevalue(request.param)
    source = ModelSource(str(folder), str(folder), "local")
    tokenizer = load_tokenizer(source)
    return load_causal_lm(source, tokenizer).eval(), tokenizer


def test_the_continuation_is_scored_as_a_plain_forward_pass_would(decoder):
    model, tokenizer = decoder
    prompts = ["the movie was", "it is a story about the plot and the actors", "this film"]
    scorer = ContinuationScorer(model, tokenizer, "very good", batch_size=3)
    batched = scorer(prompts)[:, 0]
    tail = tokenizer("very good", add_special_tokens=False)["input_ids"]
    for prompt, score in zip(prompts, batched, strict=True):
        head = tokenizer(format_prompt(tokenizer, prompt), add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logprobs = torch.log_softmax(model(input_ids=torch.tensor([head + tail])).logits[0].float(), -1)
        expected = sum(float(logprobs[len(head) - 1 + i, t]) for i, t in enumerate(tail))
        assert score == pytest.approx(expected, abs=1e-4)


def test_attributions_sum_to_the_score_difference(decoder):
    model, tokenizer = decoder
    attribution = explain_continuation(model, tokenizer, "the movie was really good but the plot", "is dull",
                                       max_evals=100)
    assert "".join(attribution.tokens).strip() == "the movie was really good but the plot"
    assert attribution.scores.sum() == pytest.approx(attribution.probability - attribution.base_values[0], abs=1e-3)
    assert np.count_nonzero(attribution.scores) > 0
