"""Explanations of generated text: how much each prompt token moves the log-probability of a continuation.

The score of a (masked) prompt is the log-probability a causal LM gives the continuation after it, teacher-forced
in one batched forward pass per batch of masked prompts (prompts formatted as in training, the continuation's
tokens appended). SHAP's Partition explainer with a Text masker on the prompt attributes the score difference
between the whole prompt and the fully masked one to the prompt's tokens (the attributions sum to it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from explain.attribution import Attribution
from pipelines.lm_data import format_prompt


@dataclass
class ContinuationScorer:
    """Callable f(prompts) -> [n, 1]: the summed log-probability of `continuation` after each prompt."""

    model: object
    tokenizer: object
    continuation: str
    batch_size: int = 32
    label_names: list[str] = field(default_factory=lambda: ["log p(continuation)"])

    def __call__(self, prompts) -> np.ndarray:
        import torch

        prompts = [str(p) for p in (prompts.tolist() if hasattr(prompts, "tolist") else prompts)]
        tail = self.tokenizer(self.continuation, add_special_tokens=False)["input_ids"]
        scores = np.zeros((len(prompts), 1))
        with torch.inference_mode():
            for start in range(0, len(prompts), self.batch_size):
                heads = [self.tokenizer(format_prompt(self.tokenizer, p), add_special_tokens=False)["input_ids"]
                         for p in prompts[start : start + self.batch_size]]
                width = max(len(h) for h in heads) + len(tail)
                ids = torch.full((len(heads), width), self.tokenizer.pad_token_id, dtype=torch.long)
                mask = torch.zeros_like(ids)
                for r, head in enumerate(heads):  # left padding: the continuation ends every row
                    row = head + tail
                    ids[r, width - len(row):] = torch.tensor(row)
                    mask[r, width - len(row):] = 1
                positions = (mask.cumsum(-1) - 1).clamp(min=0)
                logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions).logits.float()
                logprobs = torch.log_softmax(logits[:, width - len(tail) - 1 : width - 1], -1)
                picked = logprobs.gather(-1, torch.tensor(tail).expand(len(heads), -1).unsqueeze(-1))
                scores[start : start + len(heads), 0] = picked.squeeze(-1).sum(-1).numpy()
        return scores


def explain_continuation(model, tokenizer, prompt: str, continuation: str, max_evals: int = 300,
                         batch_size: int = 32) -> Attribution:
    """SHAP attributions of the prompt's tokens to log p(continuation | prompt); `probability` holds that
    log-probability and `base_values` the fully masked prompt's."""
    import shap

    scorer = ContinuationScorer(model, tokenizer, continuation, batch_size)
    explainer = shap.Explainer(scorer, shap.maskers.Text(tokenizer), output_names=scorer.label_names,
                               algorithm="partition")
    explanation = explainer([prompt], max_evals=max_evals, batch_size=batch_size, silent=True)
    values = np.asarray(explanation.values[0], dtype=np.float64).reshape(len(explanation.data[0]), -1)
    return Attribution(text=prompt, tokens=[str(t) for t in explanation.data[0]], scores=values[:, 0], predicted=0,
                       probability=float(scorer([prompt])[0, 0]), label=continuation, method="shap",
                       values=values, base_values=np.asarray(explanation.base_values[0], dtype=np.float64).ravel(),
                       extra={"continuation": continuation})


def explain_generations(config, models: list[tuple[str, object, object]], prompts: list[str],
                        max_new_tokens: int = 32) -> dict:
    """For each prompt, the first model's greedy continuation, explained for every model (SHAP on the prompt),
    with faithfulness (AOPC on the continuation's log-probability, random baseline beside it) and, for two
    models, the agreement of their attributions. Returns the results the stage publishes."""
    from explain.agreement import aggregate, agreement
    from explain.faithfulness import faithfulness, random_baseline, summarize
    from pipelines.lm_eval import generate

    continuations = generate(models[0][1], models[0][2], prompts, max_new_tokens)
    results, faithfulness_rows = {}, []
    for name, model, tokenizer in models:
        attributions, scores, baseline = [], [], []
        for prompt, continuation in zip(prompts, continuations, strict=True):
            a = explain_continuation(model, tokenizer, prompt, continuation, config.max_evals, config.batch_size)
            scorer = ContinuationScorer(model, tokenizer, continuation, config.batch_size)
            scores += faithfulness(scorer, [a])
            baseline += random_baseline(scorer, [a], seed=config.seed)
            a.extra.update({"model": name, "faithfulness": scores[-1]})
            attributions.append(a)
        results[name] = attributions
        faithfulness_rows += [{"model": name, "method": "shap", **summarize(scores)},
                              {"model": name, "method": "random", **summarize(baseline)}]
    agreement_rows = []
    if len(models) == 2:
        pairs = list(zip(*results.values(), strict=True))
        agreement_rows.append({"method": "shap", **aggregate([agreement(a, b, config.top_k) for a, b in pairs]),
                               "same_prediction": 1.0})
    return {"continuations": continuations, "results": results, "faithfulness": faithfulness_rows,
            "agreement": agreement_rows}
