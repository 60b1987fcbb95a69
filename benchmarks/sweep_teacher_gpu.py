r"""A GPU sweep of full fine-tuning settings for the SST-2 MiniLM teacher (issue 3's >= 0.91), for orientation.

The teacher recipe takes about 20 minutes a run on 2 CPU cores and its result moves by a point and a half
from seed to seed, so settings cannot be told apart there. This script trains dozens of runs at once on one
GPU. Runs that share a seed and a batch size see the same batches in the same order (as they would in
`scripts/finetune.py`, whose data order depends on those two alone), so each such group is one process
that stacks its models' weights along a leading axis and trains them together: one BERT forward written
with batched matrix products (`forward`, checked against transformers' `BertForSequenceClassification` in
tests/test_sweep_gpu.py), the gradient norm clipped at 1 per model, and torch's fused AdamW per model and
parameter group, with the Trainer's groups (no decay on biases and LayerNorm weights) and its linear or
cosine schedule with warm-up. Dev accuracy every 8,000 training examples (the recipe's 250 steps of 32);
a run's result is its best evaluation, as with the Trainer's best checkpoint. Only settings that
`scripts/finetune.py` has or could take in one field are swept; what wins is then run with the real
pipeline on CPU, which decides.

Inputs (made on the CPU machine, `--prepare`): the packaged all-MiniLM-L6-v2 weights with only the 12,007
word-piece rows SST-2 uses (the others are never looked up, so training is the same), xz-packed to fit the
device's 64 MiB transfer, and SST-2 tokenized by the packaged tokenizer (max length 128). The device runs
its own python3 (torch with CUDA, numpy, safetensors; transformers is not needed there).

    python benchmarks/sweep_teacher_gpu.py --prepare .gpu                                   # here
    python3 benchmarks/sweep_teacher_gpu.py --inputs .gpu --out $OUT --workers 12 --deadline 440   # device
Results: $OUT/sweep.json, to be copied unchanged to benchmarks/results/teacher_sweep_gpu.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import lzma
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

EVAL_EXAMPLES = 8000  # the recipe evaluates every 250 steps of 32


@dataclasses.dataclass
class Setting:
    """One fine-tuning setting; the defaults are the teacher recipe (configs/sst2_minilm.yaml)."""

    name: str
    epochs: float = 2.0
    learning_rate: float = 5e-5
    batch_size: int = 32
    warmup: float = 0.06
    weight_decay: float = 0.01
    label_smoothing: float = 0.0
    dropout: float = 0.1
    scheduler: str = "linear"
    layer_lr_decay: float = 1.0
    reinit_pooler: bool = False


SETTINGS = [
    Setting("recipe"),
    Setting("ep3", epochs=3),
    Setting("ep4", epochs=4),
    Setting("ep3_lr3e-5", epochs=3, learning_rate=3e-5),
    Setting("ep4_lr3e-5", epochs=4, learning_rate=3e-5),
    Setting("ep4_lr2e-5", epochs=4, learning_rate=2e-5),
    Setting("lr1e-4", learning_rate=1e-4),
    Setting("lr3e-5", learning_rate=3e-5),
    Setting("ls0.1", label_smoothing=0.1),
    Setting("ep3_ls0.1", epochs=3, label_smoothing=0.1),
    Setting("wd0.1", weight_decay=0.1),
    Setting("cosine_ep3", epochs=3, scheduler="cosine"),
    Setting("llrd0.8_lr1e-4_ep3", epochs=3, learning_rate=1e-4, layer_lr_decay=0.8),
    Setting("reinit_pooler", reinit_pooler=True),
    Setting("dropout0", dropout=0.0),
    Setting("warmup0.1_lr8e-5", warmup=0.1, learning_rate=8e-5),
    Setting("bs64_lr1e-4_ep3", epochs=3, learning_rate=1e-4, batch_size=64),
    Setting("bs64_lr5e-5_ep4", epochs=4, batch_size=64),
    Setting("bs16_lr3e-5", batch_size=16, learning_rate=3e-5),
    Setting("bs16_lr2e-5_ep3", epochs=3, batch_size=16, learning_rate=2e-5),
]


# ---------------------------------------------------------------- preparation (CPU machine, project venv)

def prepare(folder: Path) -> None:
    """Write the pruned, packed MiniLM weights, its config and SST-2 tokenized into `folder`."""
    import pandas as pd
    import torch
    from safetensors.torch import load_file, save
    from transformers import AutoTokenizer

    from pipelines.models import resolve_model

    source = Path(resolve_model("minilm").location)
    tokenizer = AutoTokenizer.from_pretrained(source)
    folder.mkdir(parents=True, exist_ok=True)
    arrays, used = {}, set()
    for split in ("train", "dev"):
        frame = pd.read_csv(f"data/sst2/{split}.tsv", sep="\t", quoting=3, keep_default_na=False)
        ids = tokenizer(frame["sentence"].tolist(), truncation=True, max_length=128)["input_ids"]
        for row in ids:
            used.update(row)
        arrays[f"{split}_ids"] = np.concatenate([np.array(row, dtype=np.uint16) for row in ids])
        arrays[f"{split}_len"] = np.array([len(row) for row in ids], dtype=np.int32)
        arrays[f"{split}_label"] = frame["label"].to_numpy().astype(np.int8)
    np.savez_compressed(folder / "sst2_tok.npz", **arrays)
    weights = load_file(source / "model.safetensors")
    words = weights.pop("embeddings.word_embeddings.weight")
    weights.pop("embeddings.position_ids", None)
    rows = torch.tensor(sorted(used))
    weights.update(word_rows=rows, word_emb_used=words[rows].contiguous(), word_emb_shape=torch.tensor(words.shape))
    (folder / "minilm_pruned.safetensors.xz").write_bytes(lzma.compress(save(weights), preset=6))
    (folder / "config.json").write_text((source / "config.json").read_text())
    print(f"wrote {folder}: {len(rows)} of {words.shape[0]} word rows")


# ---------------------------------------------------------------- stacked models (one group per process)

def load_split(data: dict, split: str, remap: np.ndarray):
    """Padded word-piece ids (remapped to the pruned embedding rows), lengths and labels of one split."""
    lengths = data[f"{split}_len"]
    ends = np.cumsum(lengths)
    ids = np.zeros((len(lengths), int(lengths.max())), dtype=np.int64)
    flat = remap[data[f"{split}_ids"].astype(np.int64)]
    for i, (end, length) in enumerate(zip(ends, lengths, strict=True)):
        ids[i, :length] = flat[end - length:end]
    return ids, lengths.astype(np.int64), data[f"{split}_label"].astype(np.int64)


def length_grouped_batches(lengths: np.ndarray, batch_size: int, generator) -> list[np.ndarray]:
    """Length-grouped batches in shuffled order, as `pipelines.training.sampling.shuffled_length_grouped_indices` makes
    them (mega-batches of 50 batches sorted longest first, batches shuffled, the longest batch first and a
    short last one last); not the same draws."""
    import torch

    permutation = torch.randperm(len(lengths), generator=generator).numpy()
    mega = 50 * batch_size
    order = np.concatenate([chunk[np.argsort(-lengths[chunk], kind="stable")]
                            for chunk in np.array_split(permutation, range(mega, len(permutation), mega))])
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    longest = int(np.argmax([lengths[b].max() for b in batches]))
    batches[0], batches[longest] = batches[longest], batches[0]
    short_last = len(batches[-1]) < batch_size
    middle = batches[1:-1] if short_last else batches[1:]
    shuffled = [middle[i] for i in torch.randperm(len(middle), generator=generator).tolist()]
    return [batches[0], *shuffled, *([batches[-1]] if short_last else [])]


def load_pretrained(weights: Path) -> tuple[dict, np.ndarray]:
    """The pruned MiniLM state dict (word rows compacted) and the map from word-piece id to row."""
    from safetensors.torch import load_file

    packed = load_file(str(weights))
    rows = packed.pop("word_rows").numpy()
    vocab = int(packed.pop("word_emb_shape")[0])
    remap = np.zeros(vocab, dtype=np.int64)
    remap[rows] = np.arange(len(rows))
    packed["embeddings.word_embeddings.weight"] = packed.pop("word_emb_used")
    return packed, remap


def stacked_parameters(pretrained: dict, settings: list[Setting], seeds: list[int], device) -> dict:
    """name -> a [models, ...] leaf tensor: the pretrained weights for each model, a fresh classifier (and
    pooler, where a setting re-initializes it) drawn as transformers does (normal 0.02, zero bias)."""
    import torch

    params = {name: value.unsqueeze(0).repeat(len(settings), *[1] * value.dim()).clone()
              for name, value in pretrained.items()}
    hidden = pretrained["pooler.dense.weight"].shape[0]
    params["classifier.weight"] = torch.zeros(len(settings), 2, hidden)
    params["classifier.bias"] = torch.zeros(len(settings), 2)
    for m, (setting, seed) in enumerate(zip(settings, seeds, strict=True)):
        generator = torch.Generator().manual_seed(seed)
        params["classifier.weight"][m].normal_(0.0, 0.02, generator=generator)
        if setting.reinit_pooler:
            params["pooler.dense.weight"][m].normal_(0.0, 0.02, generator=generator)
            params["pooler.dense.bias"][m].zero_()
    return {name: value.to(device).requires_grad_(True) for name, value in params.items()}


def forward(params: dict, ids, mask, keep: int, dropout, layers: int, heads: int):
    """BertForSequenceClassification's forward for the first `keep` stacked models at once.

    ids, mask: [batch, width], shared by all models; dropout: [models] rates (None: evaluation)."""
    import torch
    import torch.nn.functional as F

    def p(name):
        return params[name][:keep]

    def linear(x, name):  # x [M, N, in]; weight [M, out, in]
        return torch.baddbmm(p(f"{name}.bias").unsqueeze(1), x, p(f"{name}.weight").transpose(1, 2))

    def norm(x, name):
        x = F.layer_norm(x, x.shape[-1:], eps=1e-12)
        return x * p(f"{name}.weight").unsqueeze(1) + p(f"{name}.bias").unsqueeze(1)

    def drop(x):
        if dropout is None:
            return x
        rate = dropout[:keep].view(-1, *[1] * (x.dim() - 1))
        return x * (torch.rand_like(x) >= rate) / (1.0 - rate)

    batch, width = ids.shape
    words = p("embeddings.word_embeddings.weight")  # [M, V, H]: one lookup in the models' tables laid end to end
    offsets = torch.arange(keep, device=ids.device).view(keep, 1, 1) * words.shape[1]
    x = F.embedding(ids.unsqueeze(0) + offsets, words.reshape(-1, words.shape[-1]))  # [M, B, W, H]
    x = x + p("embeddings.position_embeddings.weight")[:, :width].unsqueeze(1)
    x = x + p("embeddings.token_type_embeddings.weight")[:, 0].view(keep, 1, 1, -1)
    hidden = x.shape[-1]
    x = drop(norm(x.reshape(keep, batch * width, hidden), "embeddings.LayerNorm"))
    bias = torch.zeros(batch, width, device=ids.device).masked_fill(~mask, torch.finfo(x.dtype).min)
    bias = bias.view(1, batch, 1, 1, width)
    size = hidden // heads
    for layer in range(layers):
        name = f"encoder.layer.{layer}"

        def split(t):
            return t.view(keep, batch, width, heads, size).transpose(2, 3)  # [M, B, heads, W, size]

        q = split(linear(x, f"{name}.attention.self.query"))
        k = split(linear(x, f"{name}.attention.self.key"))
        v = split(linear(x, f"{name}.attention.self.value"))
        scores = torch.matmul(q, k.transpose(-1, -2)) * size ** -0.5 + bias
        context = torch.matmul(drop(scores.softmax(-1)), v).transpose(2, 3).reshape(keep, batch * width, hidden)
        x = norm(drop(linear(context, f"{name}.attention.output.dense")) + x, f"{name}.attention.output.LayerNorm")
        inner = F.gelu(linear(x, f"{name}.intermediate.dense"))
        x = norm(drop(linear(inner, f"{name}.output.dense")) + x, f"{name}.output.LayerNorm")
    first = x.view(keep, batch, width, hidden)[:, :, 0]
    pooled = torch.tanh(linear(first, "pooler.dense"))
    return linear(drop(pooled), "classifier")  # [M, B, 2]


def schedule(setting: Setting, step: int, total: int) -> float:
    """transformers' linear / cosine schedules with warm-up (the rate of update number `step`, from 0)."""
    warmup = math.ceil(total * setting.warmup)
    if step < warmup:
        return step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    if setting.scheduler == "cosine":
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
    return max(0.0, 1.0 - progress)


def depth(name: str, layers: int) -> int:
    if name.startswith("embeddings"):
        return 0
    if name.startswith("encoder.layer."):
        return int(name.split(".")[2]) + 1
    return layers + 1


def train_group(inputs: Path, weights: Path, settings: list[Setting], seeds: list[int], batch_size: int,
                data_seed: int, log_path: Path, max_steps: int = 0) -> dict:
    """Train the stacked models of one group (same batch size, same data order), log every evaluation and
    return the trained weights (in the group's order: longest run first)."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = True
    config = json.loads((inputs / "config.json").read_text())
    layers, heads = config["num_hidden_layers"], config["num_attention_heads"]
    pretrained, remap = load_pretrained(weights)
    data = dict(np.load(inputs / "sst2_tok.npz"))
    train_ids, train_len, train_y = load_split(data, "train", remap)
    dev_ids, dev_len, dev_y = load_split(data, "dev", remap)
    per_epoch = math.ceil(len(train_y) / batch_size)
    totals = [max_steps or math.ceil(per_epoch * s.epochs) for s in settings]
    order = sorted(range(len(settings)), key=lambda m: -totals[m])  # longest first: the active ones are a prefix
    settings, seeds, totals = [settings[m] for m in order], [seeds[m] for m in order], [totals[m] for m in order]
    params = stacked_parameters(pretrained, settings, seeds, device)
    names = list(params)
    averages = {n: torch.zeros_like(params[n]) for n in names}
    squares = {n: torch.zeros_like(params[n]) for n in names}
    optimizer_groups = []  # per model: the Trainer's AdamW groups (weight decay, rate scale) and their tensors
    for m, setting in enumerate(settings):
        by_group: dict = {}
        for n in names:
            decay = 0.0 if (n.endswith("bias") or "LayerNorm" in n) else setting.weight_decay
            by_group.setdefault((decay, setting.layer_lr_decay ** (layers + 1 - depth(n, layers))), []).append(n)
        optimizer_groups.append([(decay, scale, group, [params[n][m] for n in group], [averages[n][m] for n in group],
                                  [squares[n][m] for n in group]) for (decay, scale), group in by_group.items()])
    update_count = torch.zeros((), device=device)
    dropout = torch.tensor([s.dropout for s in settings], device=device)
    smoothing = torch.tensor([s.label_smoothing for s in settings], device=device)
    eval_every = max(1, EVAL_EXAMPLES // batch_size)
    gpu_ids, gpu_len, gpu_y = (torch.from_numpy(a).to(device) for a in (train_ids, train_len, train_y))
    dev_order = np.argsort(-dev_len, kind="stable")
    dev_batches = [dev_order[i:i + 128] for i in range(0, len(dev_order), 128)]
    generator = torch.Generator().manual_seed(data_seed)
    torch.manual_seed(data_seed)

    def evaluate(keep: int) -> np.ndarray:
        correct = np.zeros(keep)
        with torch.no_grad():
            for rows in dev_batches:
                width = int(dev_len[rows].max())
                ids = torch.from_numpy(dev_ids[rows, :width]).to(device)
                mask = (torch.arange(width)[None, :] < torch.from_numpy(dev_len[rows])[:, None]).to(device)
                logits = forward(params, ids, mask, keep, None, layers, heads)
                correct += (logits.argmax(-1).cpu().numpy() == dev_y[rows][None, :]).sum(1)
        return correct / len(dev_y)

    started, step, history = time.perf_counter(), 0, [dict() for _ in settings]

    def record(keep: int, log) -> None:
        """Evaluate the active models and log those due: every eval_every steps and at a run's last step."""
        accuracy = evaluate(keep)
        for m in range(keep):
            if step % eval_every == 0 or step == totals[m]:
                history[m][step] = float(accuracy[m])
                best = max(history[m], key=lambda s, h=history[m]: (h[s], -s))
                log.write(json.dumps({"name": settings[m].name, "seed": seeds[m], "step": step, "total": totals[m],
                                      "accuracy": float(accuracy[m]), "best": history[m][best], "best_step": best,
                                      "seconds": round(time.perf_counter() - started, 1),
                                      "setting": dataclasses.asdict(settings[m])}) + "\n")
        log.flush()

    with open(log_path, "w") as log:
        while step < totals[0]:
            for rows in length_grouped_batches(train_len, batch_size, generator):
                keep = sum(total > step for total in totals)
                rows_t = torch.from_numpy(rows).to(device)
                width = int(train_len[rows].max())
                ids = gpu_ids[rows_t, :width]
                mask = torch.arange(width, device=device)[None, :] < gpu_len[rows_t][:, None]
                logits = forward(params, ids, mask, keep, dropout, layers, heads)
                logp = logits.log_softmax(-1)
                nll = -logp.gather(-1, gpu_y[rows_t].view(1, -1, 1).expand(keep, -1, 1)).squeeze(-1)
                eps_ls = smoothing[:keep, None]
                loss = ((1 - eps_ls) * nll - eps_ls * logp.mean(-1)).mean(1).sum()
                grads = torch.autograd.grad(loss, [params[n] for n in names])
                with torch.no_grad():  # per model: clip the gradient norm at 1, then torch's fused AdamW per group
                    per_model = dict(zip(names, (g.unbind(0) for g in grads), strict=True))
                    norms = torch.stack(torch._foreach_norm([per_model[n][m] for m in range(keep) for n in names]))
                    norms = norms.view(keep, len(names)).pow(2).sum(1).sqrt()
                    unclip = (norms + 1e-6).clamp(min=1.0)  # the fused step divides gradients by it
                    update_count += 1
                    for m in range(keep):
                        rate = settings[m].learning_rate * schedule(settings[m], step, totals[m])
                        for decay, scale, group, weights_m, averages_m, squares_m in optimizer_groups[m]:
                            torch._fused_adamw_(weights_m, [per_model[n][m] for n in group], averages_m, squares_m,
                                                [], [update_count] * len(group), lr=rate * scale, beta1=0.9,
                                                beta2=0.999, weight_decay=decay, eps=1e-8, amsgrad=False,
                                                maximize=False, grad_scale=unclip[m:m + 1])
                step += 1
                if step % eval_every == 0 or step in totals:
                    record(keep, log)
                if step >= totals[0]:
                    break
    return params


# ---------------------------------------------------------------- the driver

def summarize(log_dir: Path) -> dict:
    """Per run (setting and seed): evaluations, best, final; per setting: the mean of its finished runs' bests."""
    lines: dict = {}
    for path in sorted(log_dir.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                lines.setdefault(f"{row['name']}__s{row['seed']}", []).append(row)
    runs = {}
    for tag, rows in sorted(lines.items()):
        last = rows[-1]
        runs[tag] = {"name": last["name"], "seed": last["seed"], "done": last["step"] >= last["total"],
                     "steps": last["step"], "total": last["total"], "best": last["best"],
                     "best_step": last["best_step"], "final": last["accuracy"], "seconds": last["seconds"],
                     "by_step": {str(x["step"]): x["accuracy"] for x in rows}, "setting": last["setting"]}
    by_setting: dict = {}
    for run in runs.values():
        if run["done"]:
            by_setting.setdefault(run["name"], []).append(run["best"])
    table = {name: {"runs": len(v), "mean_best": float(np.mean(v)), "min_best": min(v), "max_best": max(v),
                    "at_least_0.91": sum(b >= 0.91 for b in v)} for name, v in by_setting.items()}
    return {"settings": dict(sorted(table.items(), key=lambda kv: -kv[1]["mean_best"])), "runs": runs}


def groups(seeds: list[int], settings: list[Setting]) -> list[dict]:
    """One group per seed and batch size: its models see the same batches in the same order."""
    out = []
    for seed in seeds:
        for size in sorted({s.batch_size for s in settings}, key=lambda b: b != 32):
            names = [s.name for s in settings if s.batch_size == size]
            out.append({"seed": seed, "batch_size": size, "settings": names})
    return out


def drive(args) -> None:
    import torch

    started = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log_dir = Path(args.logs)
    log_dir.mkdir(parents=True, exist_ok=True)
    weights = log_dir / "minilm_pruned.safetensors"
    weights.write_bytes(lzma.decompress((Path(args.inputs) / "minilm_pruned.safetensors.xz").read_bytes()))
    print(f"torch {torch.__version__}, "
          f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}; unpacked in "
          f"{time.time() - started:.1f} s", flush=True)
    chosen = [s for s in SETTINGS if s.name in args.only.split(",")] if args.only else SETTINGS[: args.settings or None]
    queue = groups([int(s) for s in args.seeds.split(",")], chosen)
    running: dict = {}
    last_write = 0.0
    while time.time() - started < args.deadline:
        for tag, process in list(running.items()):
            if process.poll() is not None:
                del running[tag]
                print(f"{time.time() - started:5.0f} s: {tag} ended ({process.returncode})", flush=True)
                if process.returncode:
                    print((log_dir / f"{tag}.out").read_text()[-3000:], flush=True)
        while queue and len(running) < args.workers:
            group = queue.pop(0)
            tag = f"bs{group['batch_size']}_s{group['seed']}"
            command = [sys.executable, __file__, "--group", json.dumps(group), "--inputs", args.inputs,
                       "--weights", str(weights), "--log", str(log_dir / f"{tag}.jsonl"),
                       "--max-steps", str(args.max_steps)]
            running[tag] = subprocess.Popen(command, stdout=open(log_dir / f"{tag}.out", "w"),
                                            stderr=subprocess.STDOUT, env=dict(os.environ, OMP_NUM_THREADS="1"))
            print(f"{time.time() - started:5.0f} s: {tag} started: {len(group['settings'])} models", flush=True)
        if not running:
            break
        if time.time() - last_write > 15:
            (out / "sweep.json").write_text(json.dumps(summarize(log_dir), indent=1))
            last_write = time.time()
        time.sleep(1)
    for process in running.values():
        process.kill()
    summary = summarize(log_dir)
    summary.update(wall_seconds=round(time.time() - started, 1), workers=args.workers, torch=torch.__version__,
                   device=torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu")
    (out / "sweep.json").write_text(json.dumps(summary, indent=1))
    print(f"{'setting':22} {'runs':>4} {'mean best':>9} {'min':>6} {'max':>6} {'>=.91':>5}")
    for name, row in summary["settings"].items():
        print(f"{name:22} {row['runs']:4d} {row['mean_best']:9.4f} {row['min_best']:6.4f} {row['max_best']:6.4f} "
              f"{row['at_least_0.91']:5d}")
    for tag, run in summary["runs"].items():
        print(f"{tag:32} {'done' if run['done'] else 'cut '} {run['steps']:5d}/{run['total']:5d} "
              f"best {run['best']:.4f} @ {run['best_step']:5d} final {run['final']:.4f} {run['seconds']:6.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepare", help="write the inputs into this folder (CPU machine) and stop")
    parser.add_argument("--inputs", default=".gpu")
    parser.add_argument("--out", default="benchmarks/work/sweep")
    parser.add_argument("--logs", default="/tmp/sweep_logs")
    parser.add_argument("--seeds", default="42,1,2,3")
    parser.add_argument("--workers", type=int, default=12, help="groups trained at once (one process each)")
    parser.add_argument("--deadline", type=float, default=420, help="seconds; running groups are cut after it")
    parser.add_argument("--settings", type=int, default=0, help="only the first N settings (a dry run)")
    parser.add_argument("--only", default="", help="only these settings (comma-separated names)")
    parser.add_argument("--max-steps", type=int, default=0, help="cut each run after N steps (a dry run)")
    parser.add_argument("--group", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    parser.add_argument("--log", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare:
        prepare(Path(args.prepare))
    elif args.group:
        group = json.loads(args.group)
        by_name = {s.name: s for s in SETTINGS}
        settings = [by_name[name] for name in group["settings"]]
        train_group(Path(args.inputs), Path(args.weights), settings, [group["seed"]] * len(settings),
                    group["batch_size"], group["seed"], Path(args.log), args.max_steps)
    else:
        drive(args)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
