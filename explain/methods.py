"""Attribution methods over a Predictor: SHAP (Partition + Text masker), LIME, integrated gradients (captum)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from explain.attribution import Attribution, unit_spans
from explain.predictor import Predictor


@dataclass(frozen=True)
class MethodSpec:
    name: str
    description: str


METHODS = {
    "shap": MethodSpec("shap", "SHAP Partition explainer with a Text masker on the model's tokenizer"),
    "lime": MethodSpec("lime", "LIME: a local linear model on word-masked samples (lime.lime_text)"),
    "ig": MethodSpec("ig", "Integrated gradients on the input embeddings (captum), pad-token baseline"),
}


def masker_for(predictor: Predictor):
    import shap

    return shap.maskers.Text(predictor.tokenizer)


def _targets(probabilities: np.ndarray, targets: list[int] | None) -> list[int]:
    """The class each text is explained for: the given one, else the predicted one."""
    return [int(t) for t in targets] if targets is not None else [int(i) for i in probabilities.argmax(axis=1)]


def explain_shap(predictor: Predictor, texts: list[str], max_evals: int = 500, batch_size: int = 256,
                 progress: bool = False, targets: list[int] | None = None) -> list[Attribution]:
    """SHAP values for every class; scores are those of the target class (default: the predicted one)."""
    import shap

    explainer = shap.Explainer(predictor, masker_for(predictor), output_names=predictor.label_names,
                               algorithm="partition")
    explanation = explainer(texts, max_evals=max_evals, batch_size=batch_size, silent=not progress)
    probabilities = predictor(texts)
    results = []
    for i, (text, predicted) in enumerate(zip(texts, _targets(probabilities, targets), strict=True)):
        values = np.asarray(explanation.values[i], dtype=np.float64)
        results.append(Attribution(
            text=text, tokens=[str(t) for t in explanation.data[i]], scores=values[:, predicted],
            predicted=predicted, probability=float(probabilities[i, predicted]),
            label=predictor.label_names[predicted], method="shap", values=values,
            base_values=np.asarray(explanation.base_values[i], dtype=np.float64),
        ))
    return results


def units_of(predictor: Predictor, text: str) -> list[str]:
    """The masker's units for a text (the same tokens SHAP attributes), so every method is comparable."""
    return [str(t) for t in masker_for(predictor).data_transform(text)[0]]


def explain_lime(predictor: Predictor, texts: list[str], num_samples: int = 500, seed: int = 0,
                 targets: list[int] | None = None) -> list[Attribution]:
    """LIME word weights for the target class (default: the predicted one), spread onto the masker's units by
    character position."""
    from lime.lime_text import LimeTextExplainer

    explainer = LimeTextExplainer(class_names=predictor.label_names, bow=False, random_state=seed)
    results = []
    probabilities = predictor(texts)
    for i, (text, predicted) in enumerate(zip(texts, _targets(probabilities, targets), strict=True)):
        explanation = explainer.explain_instance(text, predictor, labels=(predicted,), num_features=10_000,
                                                 num_samples=num_samples)
        indexed = explanation.domain_mapper.indexed_string
        word_weight = {}
        for position, weight in explanation.as_map()[predicted]:
            start = int(indexed.string_start[indexed.positions[position]])
            word_weight[(start, start + len(indexed.word(position)))] = weight
        units = units_of(predictor, text)
        scores = np.zeros(len(units))
        for u, span in enumerate(unit_spans(text, units)):
            if span is None:
                continue
            for (start, end), weight in word_weight.items():
                if start <= span[0] < end:
                    scores[u] = weight
        results.append(Attribution(text=text, tokens=units, scores=scores, predicted=predicted,
                                   probability=float(probabilities[i, predicted]),
                                   label=predictor.label_names[predicted], method="lime"))
    return results


def explain_ig(predictor: Predictor, texts: list[str], n_steps: int = 50,
               targets: list[int] | None = None) -> list[Attribution]:
    """Integrated gradients w.r.t. the input embeddings for the target class (default: the predicted one),
    summed onto the masker's units."""
    import torch
    from captum.attr import LayerIntegratedGradients

    model, tokenizer = predictor.model, predictor.tokenizer

    def forward(input_ids, attention_mask):
        return torch.softmax(model(input_ids=input_ids, attention_mask=attention_mask).logits, dim=-1)

    integrated = LayerIntegratedGradients(forward, model.get_input_embeddings())
    special = set(tokenizer.all_special_ids)
    results = []
    for i, text in enumerate(texts):
        encoded = tokenizer(text, truncation=True, max_length=predictor.max_length, return_offsets_mapping=True,
                            return_tensors="pt")
        ids, mask = encoded["input_ids"], encoded["attention_mask"]
        with torch.inference_mode():
            probabilities = forward(ids, mask)[0]
        predicted = int(targets[i]) if targets is not None else int(probabilities.argmax())
        baseline = torch.where(torch.isin(ids, torch.tensor(sorted(special))), ids,
                               torch.full_like(ids, tokenizer.pad_token_id))
        attributions = integrated.attribute(ids, baselines=baseline, additional_forward_args=(mask,),
                                            target=predicted, n_steps=n_steps)
        per_token = attributions.sum(dim=-1)[0].detach().numpy()
        offsets = encoded["offset_mapping"][0].tolist()
        units = units_of(predictor, text)
        scores = np.zeros(len(units))
        spans = unit_spans(text, units)
        for token_score, (start, end), token_id in zip(per_token, offsets, ids[0].tolist(), strict=True):
            if token_id in special or end <= start:
                continue
            for u, span in enumerate(spans):
                if span is not None and span[0] <= start < span[1]:
                    scores[u] += token_score
                    break
        results.append(Attribution(text=text, tokens=units, scores=scores, predicted=predicted,
                                   probability=float(probabilities[predicted]),
                                   label=predictor.label_names[predicted], method="ig"))
    return results


def explain(method: str, predictor: Predictor, texts: list[str], max_evals: int = 500, batch_size: int = 256,
            seed: int = 0, targets: list[int] | None = None) -> list[Attribution]:
    """Attributions of each text (which must fit the predictor's window) to its target class (default: the
    predicted one)."""
    if not texts:
        return []
    if method == "shap":
        return explain_shap(predictor, texts, max_evals, batch_size, targets=targets)
    if method == "lime":
        return explain_lime(predictor, texts, num_samples=max_evals, seed=seed, targets=targets)
    if method == "ig":
        return explain_ig(predictor, texts, targets=targets)
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
