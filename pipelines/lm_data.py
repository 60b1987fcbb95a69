"""Data for causal language modelling: prompt/response pairs (or plain text), the prompt format, and tokenization
with the loss on the response tokens only (every token for plain text).

Accepted layouts, by column: `prompt` + `response` (names configurable), Alpaca's `instruction` + `input` +
`output`, or a `text` column of plain text; or a .txt file, one document per blank-line-separated block. A prompt
is wrapped in the tokenizer's chat template when it has one, else in an Alpaca-style instruction frame.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from pipelines import artifacts
from pipelines.errors import UserError

log = logging.getLogger(__name__)

PROMPT, RESPONSE = "prompt", "response"
ALPACA = ("instruction", "input", "output")
IGNORE = -100  # label of a token the loss skips (the prompt, padding)
FRAME = "### Instruction:\n{prompt}\n\n### Response:\n"


@dataclass
class LmData:
    """Train and eval rows with `prompt` and `response` columns (prompt '' for plain text)."""

    train: object  # datasets.Dataset
    eval: object
    layout: str  # "prompt/response", "alpaca" or "text"
    fingerprint: str
    files: dict[str, str] = field(default_factory=dict)


def read_lm_table(path: str | Path, prompt_column: str = PROMPT, response_column: str = RESPONSE,
                  text_column: str = "text"):
    """A file's rows as a Dataset with prompt and response columns, and the layout found."""
    import datasets

    from pipelines.tables import read_table

    path = Path(path)
    if path.suffix.lower() == ".txt":
        if not path.is_file():
            raise UserError(f"data file {path} does not exist")
        blocks = [b.strip() for b in path.read_text(encoding="utf-8").split("\n\n") if b.strip()]
        if not blocks:
            raise UserError(f"{path} is empty")
        return datasets.Dataset.from_dict({PROMPT: [""] * len(blocks), RESPONSE: blocks}), "text"
    table = read_table(path)
    columns = list(table.column_names)
    if prompt_column in columns and response_column in columns:
        prompts, responses, layout = table[prompt_column], table[response_column], "prompt/response"
    elif all(c in columns for c in ALPACA):
        prompts = [f"{i}\n\n{x}" if str(x or "").strip() else str(i)
                   for i, x in zip(table["instruction"], table["input"], strict=True)]
        responses, layout = table["output"], "alpaca"
    elif text_column in columns:
        prompts, responses, layout = [""] * len(table), table[text_column], "text"
    else:
        raise UserError(f"{path}: no '{prompt_column}' and '{response_column}' columns, no Alpaca columns "
                        f"(instruction, input, output) and no '{text_column}' column; the columns are "
                        f"{', '.join(repr(c) for c in columns)}")
    prompts = ["" if p is None else str(p) for p in prompts]
    responses = ["" if r is None else str(r) for r in responses]
    empty = [i for i, r in enumerate(responses) if not r.strip()]
    if empty:
        line = empty[0] + (1 if path.suffix.lower() in (".jsonl", ".json") else 2)
        raise UserError(f"{path}: {len(empty)} rows have an empty response (first at row {line})")
    return datasets.Dataset.from_dict({PROMPT: prompts, RESPONSE: responses}), layout


SETTINGS = ("train_file", "eval_file", "validation_split", "prompt_column", "response_column", "text_column",
            "max_train_samples", "max_eval_samples")  # the data settings (pipelines.data.DataSettings) used here


def prepare_lm_data(settings, seed: int) -> LmData:
    """Read and split prompt/response data as `settings` (a DataSettings) say: a seeded share of train held out
    when there is no eval file."""
    train_file, eval_file, validation_split, prompt_column, response_column, text_column, max_train_samples, \
        max_eval_samples = (getattr(settings, key) for key in SETTINGS)
    if not train_file:
        raise UserError("no training file: set data.train_file (--data.train-file FILE)")
    train, layout = read_lm_table(train_file, prompt_column, response_column, text_column)
    files = {str(train_file): artifacts.file_digest(Path(train_file))}
    if eval_file:
        evaluation, _ = read_lm_table(eval_file, prompt_column, response_column, text_column)
        files[str(eval_file)] = artifacts.file_digest(Path(eval_file))
    else:
        if len(train) < 4:
            raise UserError(f"{train_file}: {len(train)} rows are too few to hold out an evaluation split")
        split = train.train_test_split(test_size=validation_split, seed=seed)
        train, evaluation = split["train"], split["test"]
    if max_train_samples and max_train_samples < len(train):
        train = train.shuffle(seed=seed).select(range(max_train_samples))
    if max_eval_samples and max_eval_samples < len(evaluation):
        evaluation = evaluation.select(range(max_eval_samples))
    parts = [*files.values(), layout, f"{seed}|{validation_split}|{max_train_samples}|{max_eval_samples}",
             prompt_column, response_column, text_column]
    return LmData(train, evaluation, layout, hashlib.sha256("|".join(parts).encode()).hexdigest()[:16], files)


def format_prompt(tokenizer, prompt: str) -> str:
    """The prompt as the model sees it: in its chat template when it has one, else in an instruction frame."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
    return FRAME.format(prompt=prompt)


def _tokenize_batch(batch: dict, tokenizer, max_length: int) -> dict:
    ids, labels = [], []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    for prompt, response in zip(batch[PROMPT], batch[RESPONSE], strict=True):
        if prompt:
            head = tokenizer(format_prompt(tokenizer, prompt), add_special_tokens=False)["input_ids"]
            body = tokenizer(response, add_special_tokens=False)["input_ids"] + eos
        else:  # plain text: every token is learnt
            head, body = [], tokenizer(response)["input_ids"] + eos
        ids.append((head + body)[:max_length])
        labels.append(([IGNORE] * len(head) + body)[:max_length])
    return {"input_ids": ids, "attention_mask": [[1] * len(i) for i in ids], "labels": labels,
            "length": [len(i) for i in ids]}


def tokenize_lm(ds, tokenizer, max_length: int, cache_dir: Path, split: str, data_fingerprint: str):
    """Token ids, attention masks and labels (IGNORE on the prompt) through a cached Dataset.map; rows whose
    response is cut away entirely by max_length are dropped (they would teach nothing), and counted."""
    from pipelines.data import tokenizer_fingerprint

    cache_dir.mkdir(parents=True, exist_ok=True)
    template = getattr(tokenizer, "chat_template", None) or FRAME
    key = hashlib.sha256(f"{data_fingerprint}|{split}|lm|{tokenizer_fingerprint(tokenizer, max_length)}|"
                         f"{template}|{len(ds)}".encode()).hexdigest()[:16]
    tokenized = ds.map(_tokenize_batch, batched=True, fn_kwargs={"tokenizer": tokenizer, "max_length": max_length},
                       remove_columns=list(ds.column_names), cache_file_name=str(cache_dir / f"{split}-{key}.arrow"),
                       new_fingerprint=key, desc=f"tokenizing {split}")
    keep = [i for i, row in enumerate(tokenized["labels"]) if any(t != IGNORE for t in row)]
    if len(keep) < len(tokenized):
        log.warning("%s: %d of %d rows have no response token within %d tokens and were dropped", split,
                    len(tokenized) - len(keep), len(tokenized), max_length)
        tokenized = tokenized.select(keep)
    return tokenized


LM_RECORD = "lm_data.json"


def write_lm_record(folder: Path, data: LmData, settings, seed: int, max_length: int) -> None:
    """lm_data.json in folder: how the prompt/response data was read and split, so distillation reuses it."""
    artifacts.write_json(folder / LM_RECORD, {"settings": {k: getattr(settings, k) for k in SETTINGS}, "seed": seed,
                                              "max_length": max_length, "files": data.files,
                                              "fingerprint": data.fingerprint, "layout": data.layout})


def recorded_lm_data(folder: str | Path) -> tuple[LmData, int]:
    """The data a decoder in `folder` was fine-tuned on, rebuilt from its lm_data.json, and its max length;
    refused, naming the file, when a data file changed since."""
    import json

    path = Path(folder) / LM_RECORD
    if not path.is_file():
        raise UserError(f"{folder} has no {LM_RECORD} (it was not fine-tuned by this tool with task causal-lm); "
                        "give the data files explicitly")
    record = json.loads(path.read_text())
    from pipelines.data import DataSettings

    data = prepare_lm_data(DataSettings(**record["settings"]), record["seed"])
    changed = [p for p, digest in data.files.items() if record["files"].get(p, digest) != digest]
    if changed:
        raise UserError(f"{changed[0]} changed since the model in {folder} was trained on it")
    return data, int(record["max_length"])
