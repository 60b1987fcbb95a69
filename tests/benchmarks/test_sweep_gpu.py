"""The GPU sweep's stacked models (benchmarks/sweep_teacher_gpu.py) compute and learn what transformers'
BertForSequenceClassification with torch's AdamW and the Trainer's schedule would: the sweep's results
stand for the recipe's settings only if they do. (The clipping of the gradient norm at 1 hardly shows
through Adam, which divides out a gradient's scale, in five steps; these tests do not catch its loss.)"""

from __future__ import annotations

import importlib.util
import json
import math
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import BertConfig, BertForSequenceClassification, BertModel, get_scheduler

from tests.conftest import ROOT

spec = importlib.util.spec_from_file_location("sweep_teacher_gpu", ROOT / "benchmarks" / "sweep_teacher_gpu.py")
sweep = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = sweep  # its dataclass looks its module up there
spec.loader.exec_module(sweep)

LAYERS, HEADS, VOCAB = 2, 4, 60


@pytest.fixture()
def inputs(tmp_path):
    """A tiny random BERT packed as `--prepare` packs MiniLM (only the word rows the data uses), and data;
    weights drawn wide (std 0.5), so attention is far from uniform and gradient norms pass the clipping at 1."""
    config = BertConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                        intermediate_size=32, max_position_embeddings=32, initializer_range=0.5)
    torch.manual_seed(0)
    state = {k: v for k, v in BertModel(config).state_dict().items() if not k.endswith("_ids")}
    rng = np.random.default_rng(0)
    used = np.array(sorted(rng.choice(np.arange(1, VOCAB), size=25, replace=False)))  # id 0 pads
    arrays = {}
    for split, rows in (("train", 48), ("dev", 20)):
        lengths = rng.integers(2, 12, size=rows).astype(np.int32)
        arrays[f"{split}_ids"] = rng.choice(used, size=int(lengths.sum())).astype(np.uint16)
        arrays[f"{split}_len"] = lengths
        arrays[f"{split}_label"] = rng.integers(0, 2, size=rows).astype(np.int8)
    np.savez(tmp_path / "sst2_tok.npz", **arrays)
    words = state.pop("embeddings.word_embeddings.weight")
    packed = dict(state, word_rows=torch.from_numpy(used), word_emb_used=words[used].contiguous(),
                  word_emb_shape=torch.tensor(words.shape))
    save_file(packed, tmp_path / "weights.safetensors")
    config.to_json_file(tmp_path / "config.json")
    return tmp_path, config, dict(state, **{"embeddings.word_embeddings.weight": words}), arrays


def reference_model(config: BertConfig, pretrained: dict, stacked: dict, m: int, dropout: float = 0.0):
    """transformers' classifier with the full vocabulary, its head (and pooler) taken from stacked model m."""
    config = BertConfig.from_dict({**config.to_dict(), "num_labels": 2, "hidden_dropout_prob": dropout,
                                   "attention_probs_dropout_prob": dropout})
    model = BertForSequenceClassification(config)
    state = {f"bert.{k}": v for k, v in pretrained.items()}
    for name in ("pooler.dense.weight", "pooler.dense.bias"):
        state[f"bert.{name}"] = stacked[name][m].detach().cpu()
    state.update({name: stacked[name][m].detach().cpu() for name in ("classifier.weight", "classifier.bias")})
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"bert.embeddings.position_ids", "bert.embeddings.token_type_ids"}
    return model


def padded(arrays: dict, split: str, rows: np.ndarray):
    """Original word-piece ids padded with 0, and the attention mask, for some rows of a split."""
    lengths = arrays[f"{split}_len"]
    ends = np.cumsum(lengths)
    width = int(lengths[rows].max())
    ids = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, :lengths[row]] = arrays[f"{split}_ids"][ends[row] - lengths[row]:ends[row]]
    mask = np.arange(width)[None, :] < lengths[rows][:, None]
    return torch.from_numpy(ids), torch.from_numpy(mask)


def test_stacked_forward_gives_each_models_transformers_logits(inputs):
    folder, config, pretrained, arrays = inputs
    compact, remap = sweep.load_pretrained(folder / "weights.safetensors")
    settings = [sweep.Setting("kept pooler"), sweep.Setting("fresh pooler", reinit_pooler=True)]
    stacked = sweep.stacked_parameters(compact, settings, [3, 4], "cpu")
    assert not torch.equal(stacked["pooler.dense.weight"][0], stacked["pooler.dense.weight"][1])
    assert not torch.equal(stacked["classifier.weight"][0], stacked["classifier.weight"][1])
    ids, mask = padded(arrays, "dev", np.arange(20))
    with torch.no_grad():
        logits = sweep.forward(stacked, torch.from_numpy(remap[ids.numpy()]), mask, 2, None, LAYERS, HEADS)
        for m in range(2):
            expected = reference_model(config, pretrained, stacked, m).eval()(input_ids=ids,
                                                                                attention_mask=mask.long()).logits
            torch.testing.assert_close(logits[m], expected, rtol=1e-4, atol=1e-5)


def test_stacked_training_follows_transformers_with_torch_adamw(inputs, tmp_path):
    """Five steps of two models with different rates, decay, smoothing, warm-up, schedule and layer decay."""
    folder, config, pretrained, arrays = inputs
    settings = [sweep.Setting("a", learning_rate=1e-3, warmup=0.0, weight_decay=0.1, label_smoothing=0.1,
                              dropout=0.0),
                sweep.Setting("b", learning_rate=2e-3, warmup=0.4, scheduler="cosine", layer_lr_decay=0.8,
                              dropout=0.0)]
    steps, batch_size, seed = 5, 8, 5
    log = tmp_path / "log.jsonl"
    trained = sweep.train_group(folder, folder / "weights.safetensors", settings, [seed, seed], batch_size, seed,
                                log, max_steps=steps)
    compact, remap = sweep.load_pretrained(folder / "weights.safetensors")
    initial = sweep.stacked_parameters(compact, settings, [seed, seed], "cpu")
    batches = sweep.length_grouped_batches(arrays["train_len"], batch_size, torch.Generator().manual_seed(seed))
    used = np.flatnonzero(np.isin(np.arange(VOCAB), arrays["train_ids"]) | np.isin(np.arange(VOCAB),
                                                                                      arrays["dev_ids"]))
    for m, setting in enumerate(settings):
        model = reference_model(config, pretrained, initial, m).train()
        model.bert.embeddings.word_embeddings.padding_idx = None  # the stacked table has no padding row
        groups: dict = {}
        for name, param in model.named_parameters():
            short = name.removeprefix("bert.")
            decay = 0.0 if (name.endswith("bias") or "LayerNorm" in name) else setting.weight_decay
            scale = setting.layer_lr_decay ** (LAYERS + 1 - sweep.depth(short, LAYERS))
            groups.setdefault((decay, scale), []).append(param)
        optimizer = torch.optim.AdamW([{"params": p, "weight_decay": d, "lr": setting.learning_rate * s}
                                       for (d, s), p in groups.items()], lr=setting.learning_rate)
        scheduler = get_scheduler(setting.scheduler, optimizer, num_training_steps=steps,
                                  num_warmup_steps=math.ceil(steps * setting.warmup))
        loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=setting.label_smoothing)
        for rows in batches[:steps]:
            ids, mask = padded(arrays, "train", rows)
            labels = torch.from_numpy(arrays["train_label"][rows].astype(np.int64))
            loss_fn(model(input_ids=ids, attention_mask=mask.long()).logits, labels).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        moved = 0.0
        for name, param in model.named_parameters():
            short = name.removeprefix("bert.")
            if short.endswith("attention.self.key.bias"):
                continue  # its true gradient is 0 (softmax ignores a shift); Adam scales rounding noise up to lr
            ours, start = trained[short][m].detach(), initial[short][m].detach()
            if short == "embeddings.word_embeddings.weight":  # compare the rows the data uses
                param, ours, start = param[used], ours[remap[used]], start[remap[used]]
            torch.testing.assert_close(ours, param.detach(), rtol=0, atol=setting.learning_rate * 0.05, msg=name)
            moved = max(moved, (param.detach() - start).abs().max().item())
        assert moved > setting.learning_rate  # the comparison is not between two untouched models
    evaluations = [json.loads(line) for line in log.read_text().splitlines()]
    assert {(e["name"], e["step"], e["total"]) for e in evaluations} == {("a", 5, 5), ("b", 5, 5)}
    assert all(0.0 <= e["accuracy"] <= 1.0 and e["best"] == e["accuracy"] for e in evaluations)
