"""The bad-input matrix: every case is refused with one `error:` line naming the problem, exit code 2, no
traceback, and nothing written or changed in the output folder. docs/reliability.md lists the cases."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import sys
import time
from pathlib import Path

import pytest

from pipelines.cli import run_cli
from tests.conftest import ROOT, make_classifier, sentiment_rows, write_csv

SCRIPTS = {}


def script(name: str):
    if name not in SCRIPTS:
        spec = importlib.util.spec_from_file_location(f"script_{name}", ROOT / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        SCRIPTS[name] = module
    return SCRIPTS[name]


def snapshot(path: Path) -> dict | None:
    if not path.exists():
        return None
    if path.is_file():
        return {".": hashlib.sha256(path.read_bytes()).hexdigest()}
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(path.rglob("*"))}


THREE = ["negative", "neutral", "positive"]


def three_class_rows(n: int, seed: int) -> list[tuple[str, str]]:
    rows = sentiment_rows(n, seed)
    return [(text, THREE[i % 3]) for i, (text, _) in enumerate(rows)]


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_bert, tiny_llama, tiny_classifier) -> dict[str, Path]:
    """Every bad file, folder and config of the matrix, written once."""
    d = tmp_path_factory.mktemp("bad")
    w = {"tiny_bert": tiny_bert, "tiny_llama": tiny_llama, "classifier": tiny_classifier}

    def put(key: str, name: str, content: str | bytes) -> None:
        w[key] = d / name
        w[key].write_bytes(content if isinstance(content, bytes) else content.encode())

    w["train"] = write_csv(d / "train.csv", sentiment_rows(40, seed=1))
    w["eval"] = write_csv(d / "eval.csv", sentiment_rows(12, seed=2))
    w["train3"] = write_csv(d / "train3.csv", three_class_rows(30, seed=1))
    w["eval3"] = write_csv(d / "eval3.csv", three_class_rows(9, seed=2))
    put("empty", "empty.csv", b"")
    put("header_only", "header_only.csv", "text,label\n")
    put("semicolon", "semicolon.csv", "text;label\ngreat film;pos\nawful film;neg\n")
    put("mixed", "mixed.jsonl",
        '{"text": "a", "label": 1}\n{"text": "b", "label": "1"}\n{"text": "c", "label": "pos"}\n')
    w["unseen"] = write_csv(d / "unseen.csv", [("great", "pos"), ("awful", "neg"), ("hmm", "meh")])
    w["one_class"] = write_csv(d / "one_class.csv", [("great", "pos"), ("superb", "pos"), ("fine", "pos")])
    put("empty_texts", "empty_texts.csv", 'text,label\ngreat,pos\n,neg\n   ,pos\n"",neg\nawful,neg\n')
    put("bad_utf8", "bad_utf8.csv", b"text,label\ngreat,pos\nawful \xff film,neg\n")
    put("stray_quote", "stray_quote.csv", 'text,label\ngreat,pos\n"awful film,neg\nfine,pos\n')
    put("broken_jsonl", "broken.jsonl",
        '{"text": "a", "label": "pos"}\n{"text": "b", "label": "neg"}\n{"text": "c", "lab\n')
    put("fake_parquet", "fake.parquet", "this is not parquet")
    put("short_rationale", "short_rationale.tsv", "text\tlabel\trationale\ngreat film\tpositive\t[0, 1]\n"
        "an awful film\tnegative\t[0, 1]\n")
    w["no_weights"] = d / "no_weights"
    w["no_weights"].mkdir()
    shutil.copy(tiny_bert / "config.json", w["no_weights"] / "config.json")
    w["pickle_model"] = d / "pickle_model"
    w["pickle_model"].mkdir()
    shutil.copy(tiny_classifier / "config.json", w["pickle_model"] / "config.json")
    (w["pickle_model"] / "pytorch_model.bin").write_bytes(b"pickle, not safetensors")
    w["pickle_adapter"] = d / "pickle_adapter"
    w["pickle_adapter"].mkdir()
    (w["pickle_adapter"] / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tiny_bert)}))
    (w["pickle_adapter"] / "adapter_model.bin").write_bytes(b"pickle, not safetensors")
    w["other_labels"] = make_classifier(tiny_bert, d / "other_labels", labels=["bad", "good"])
    put("a_file", "a_file.txt", "not a folder")
    w["existing_csv"] = write_csv(d / "existing.csv", [("keep me", "x")])
    w["finished"] = d / "finished"
    w["finished"].mkdir()
    (w["finished"] / "manifest.json").write_text('{"stage": "finetune"}')
    (w["finished"] / "model.safetensors").write_bytes(b"previous model")
    put("unknown_key", "unknown_key.yaml", "trian:\n  epochs: 1\n")
    put("wrong_type", "wrong_type.yaml", "train:\n  epochs: many\n")
    put("pipeline_unknown", "pipeline_unknown.yaml",
        f"output_dir: {d / 'prun'}\ndata:\n  train_file: {w['train']}\nexplian: {{}}\n")
    put("pipeline_stages", "pipeline_stages.yaml", f"output_dir: {d / 'prun'}\nstages: [finetune, deploy]\n")
    put("pipeline_missing", "pipeline_missing.yaml",
        f"output_dir: {d / 'prun'}\ndata:\n  train_file: {d / 'nope.csv'}\n")
    w["pipeline_badlabels"] = d / "pipeline_badlabels.yaml"
    w["pipeline_badlabels"].write_text(f"output_dir: {d / 'prun'}\nfinetune:\n  model:\n    name: {tiny_bert}\n"
                                       f"data:\n  train_file: {w['one_class']}\n")
    put("old_option", "old_option.yaml", "train:\n  sam_rho: 0.05\n")
    put("old_pipeline", "old_pipeline.yaml", f"run_dir: {d / 'prun'}\n")
    w["wrong_adapter"] = d / "wrong_adapter"
    return w


FINETUNE = ["--model.name", "{tiny_bert}", "--data.train-file", "{train}", "--data.eval-file", "{eval}",
            "--train.max-steps", "2", "--train.batch-size", "4", "--train.num-threads", "1"]
DISTILL = ["--teacher", "{classifier}", "--data.train-file", "{train3}", "--data.eval-file", "{eval3}",
           "--student.layers", "1", "--train.max-steps", "2", "--train.batch-size", "4", "--train.num-threads", "1"]
EXPLAIN = ["--model", "{classifier}", "--input-file", "{eval3}", "--num-examples", "2", "--max-evals", "20",
           "--num-threads", "1"]
PREDICT = ["--model", "{classifier}", "--input-file", "{eval3}", "--num-threads", "1", "--no-progress"]

# (id, script, arguments, expected message (regex), output: "new" folder, or a world key to use as output)
CASES = [
    # data
    ("missing-text-column", "finetune", FINETUNE + ["--data.text-column", "body"],
     r"train\.csv: no text column 'body'; the columns are 'text', 'label'$", "new"),
    ("missing-pair-column", "finetune", FINETUNE + ["--data.text-pair-column", "premise"],
     r"train\.csv: no text pair column 'premise'; the columns are 'text', 'label'$", "new"),
    ("missing-label-column", "finetune", FINETUNE + ["--data.label-column", "sentiment"],
     r"no label column 'sentiment'; the columns are 'text', 'label'$", "new"),
    ("empty-file", "finetune", FINETUNE + ["--data.train-file", "{empty}"], r"empty\.csv is empty$", "new"),
    ("header-only", "finetune", FINETUNE + ["--data.train-file", "{header_only}"],
     r"header_only\.csv has a header but no rows", "new"),
    ("wrong-delimiter", "finetune", FINETUNE + ["--data.train-file", "{semicolon}"],
     r"semicolon\.csv: no text column 'text'; the columns are 'text;label'; the file looks ';'-separated", "new"),
    ("mixed-label-types", "finetune", FINETUNE + ["--data.train-file", "{mixed}"],
     r"mixed\.jsonl: column 'label' mixes value types \(1 and '1'\)", "new"),
    ("unseen-eval-label", "finetune", FINETUNE + ["--data.eval-file", "{unseen}"],
     r"unseen\.csv: label 'meh' is not one of the training labels: neg, pos", "new"),
    ("one-class", "finetune", FINETUNE + ["--data.train-file", "{one_class}"],
     r"one_class\.csv: only one class \('pos'\) in column 'label'", "new"),
    ("empty-texts", "finetune", FINETUNE + ["--data.train-file", "{empty_texts}"],
     r"empty_texts\.csv: 3 of 5 rows have an empty or missing text \(first at line 3\); drop them with "
     r"--data\.empty-texts drop", "new"),
    ("undecodable-bytes", "finetune", FINETUNE + ["--data.train-file", "{bad_utf8}"],
     r"bad_utf8\.csv: line 3 is not valid UTF-8 \(byte 0xff\)", "new"),
    ("stray-quote", "finetune", FINETUNE + ["--data.train-file", "{stray_quote}"],
     r"stray_quote\.csv: line 3 opens a quote \(\"\) that is never closed", "new"),
    ("broken-jsonl-line", "finetune", FINETUNE + ["--data.train-file", "{broken_jsonl}"],
     r"broken\.jsonl: line 3 is not valid JSON", "new"),
    ("not-parquet", "finetune", FINETUNE + ["--data.train-file", "{fake_parquet}"],
     r"fake\.parquet is not a readable parquet file", "new"),
    ("num-examples-too-large", "explain", EXPLAIN + ["--num-examples", "50"],
     r"num_examples 50 is larger than .*eval3\.csv, which has 9 rows", "new"),
    ("rationale-length", "explain", EXPLAIN[:3] + ["{short_rationale}", "--rationale-column", "rationale",
                                                   "--select", "first", "--num-examples", "2"],
     r"short_rationale\.tsv: line 3: has 2 rationale values for 3 words", "new"),
    ("rationale-column-missing", "explain", EXPLAIN + ["--rationale-column", "evidence"],
     r"eval3\.csv: no rationale column 'evidence'; the columns are 'text', 'label'", "new"),
    ("stride-too-large", "predict", PREDICT + ["--max-length", "32", "--stride", "20"],
     r"stride must be between 0 and half of max_length \(16\) tokens, got 20", "file"),
    ("distill-missing-column", "distill", DISTILL + ["--data.text-column", "body"],
     r"train3\.csv: no text column 'body'", "new"),
    ("predict-missing-column", "predict", PREDICT + ["--text-column", "body"],
     r"eval3\.csv: no text column 'body'; the columns are 'text', 'label'", "file"),
    # models
    ("model-missing", "finetune", FINETUNE + ["--model.name", "{a_file}/../no_such_model"],
     r"model folder .*no_such_model does not exist", "new"),
    ("model-without-weights", "finetune", FINETUNE + ["--model.name", "{no_weights}"],
     r"model folder .*no_weights holds no model weights \(no model\.safetensors\)", "new"),
    ("hub-id-offline", "finetune", FINETUNE + ["--model.name", "someorg/some-model"],
     r"model 'someorg/some-model' is not a preset .* set HF_HUB_OFFLINE=0 to download it", "new"),
    ("pickle-weights", "finetune", FINETUNE + ["--model.name", "{pickle_model}"],
     r"pickle_model holds only pickle weights \(pytorch_model\.bin\).*--allow-pickle", "new"),
    ("pickle-weights-predict", "predict", PREDICT + ["--model", "{pickle_model}"],
     r"pickle_model holds only pickle weights \(pytorch_model\.bin\).*--allow-pickle", "file"),
    ("pickle-adapter-predict", "predict", PREDICT + ["--model", "{pickle_adapter}"],
     r"pickle_adapter holds only pickle weights \(adapter_model\.bin\).*--allow-pickle", "file"),
    ("adapter-for-another-base", "predict", PREDICT + ["--model", "{wrong_adapter}"],
     r"the adapter in .*wrong_adapter was not made for the base model .*tiny_llama", "file"),
    ("student-more-layers-than-teacher", "distill", DISTILL + ["--student.layers", "5"],
     r"a student needs 1 to 2 layers \(the teacher has 2\); got 5", "new"),
    ("teacher-missing", "distill", DISTILL + ["--teacher", "{a_file}/../no_teacher"], r"no_teacher does not exist",
     "new"),
    ("compare-label-names-differ", "explain", EXPLAIN + ["--compare", "{other_labels}"],
     r"--compare model labels \(bad, good\) differ from the model's \(negative, neutral, positive\)", "new"),
    ("teacher-labels-differ", "distill", DISTILL + ["--data.train-file", "{train}", "--data.eval-file", "{eval}"],
     r"train\.csv: label 'neg' is not in data\.label_names \(negative, neutral, positive\)", "new"),
    # config
    ("unknown-yaml-key", "finetune", FINETUNE + ["--config", "{unknown_key}"],
     r"unknown key 'trian' in .*unknown_key\.yaml; did you mean 'train'\?", "new"),
    ("wrong-type", "finetune", FINETUNE + ["--config", "{wrong_type}"],
     r"train\.epochs must be a number, got 'many'", "new"),
    ("negative-learning-rate", "finetune", FINETUNE + ["--train.learning-rate", "-0.001"],
     r"train\.learning_rate must be a positive number, got -0\.001", "new"),
    ("zero-batch-size", "distill", DISTILL + ["--train.batch-size", "0"],
     r"train\.batch_size must be a positive number, got 0", "new"),
    ("zero-max-evals", "explain", EXPLAIN + ["--max-evals", "0"], r"max_evals must be a positive number, got 0",
     "new"),
    ("output-is-a-file", "finetune", FINETUNE, r"output path .*a_file\.txt is a file, not a folder", "a_file"),
    ("output-holds-another-run", "finetune", FINETUNE,
     r"output folder .*finished already holds a finished run; pass --overwrite", "finished"),
    ("output-not-writable", "finetune", FINETUNE, r"cannot write to output folder /proc/loradistill-out", "/proc"),
    ("predict-output-exists", "predict", PREDICT, r"output file .*existing\.csv already exists; pass --overwrite",
     "existing_csv"),
    ("pipeline-unknown-key", "run_pipeline", ["--config", "{pipeline_unknown}"],
     r"unknown key 'explian' in .*pipeline_unknown\.yaml; did you mean 'explain'\?", "none"),
    ("pipeline-unknown-stage", "run_pipeline", ["--config", "{pipeline_stages}"],
     r"stages must be among finetune, distill, export, explain, report; got deploy", "none"),
    ("pipeline-missing-data", "run_pipeline", ["--config", "{pipeline_missing}"], r"nope\.csv does not exist",
     "none"),
    ("pipeline-one-class", "run_pipeline", ["--config", "{pipeline_badlabels}"], r"only one class", "none"),
    ("export-pickle", "export", ["--model", "{pickle_model}", "--eval-file", "{eval3}"],
     r"pickle_model holds only pickle weights", "new"),
    ("export-no-recorded-split", "export", ["--model", "{classifier}"],
     r"tiny_classifier.* records no eval split \(no data\.json\); pass --eval-file", "new"),
    # settings an older version had
    ("removed-setting-in-config", "finetune", FINETUNE + ["--config", "{old_option}"],
     r"setting 'train\.sam_rho' in .*old_option\.yaml was removed: sharpness-aware minimisation ended level", "new"),
    ("removed-flag", "finetune", FINETUNE + ["--train.rdrop-alpha", "1"],
     r"--train\.rdrop-alpha: setting 'train\.rdrop_alpha' was removed: R-Drop ended level", "new"),
    ("moved-pipeline-setting", "run_pipeline", ["--config", "{old_pipeline}"],
     r"setting 'run_dir' in .*old_pipeline\.yaml has moved to output_dir", "none"),
]


@pytest.fixture(scope="module")
def wrong_adapter(world, tiny_bert, tiny_llama, tmp_path_factory) -> Path:
    """A LoRA adapter trained on the tiny BERT whose config names the tiny Llama as its base."""
    from finetune.config import FinetuneConfig, LoraSettings
    from finetune.stage import run_finetune
    from pipelines.data import DataSettings
    from pipelines.models import ModelSettings
    from pipelines.training.settings import TrainSettings

    out = tmp_path_factory.mktemp("adapter_run")
    run_finetune(FinetuneConfig(
        output_dir=str(out / "run"), model=ModelSettings(name=str(tiny_bert), max_length=32),
        data=DataSettings(train_file=str(world["train"]), eval_file=str(world["eval"])),
        lora=LoraSettings(r=2, alpha=4), train=TrainSettings(max_steps=1, batch_size=4, eval_strategy="no",
                                                             num_threads=1)))
    shutil.copytree(out / "run" / "adapter", world["wrong_adapter"])
    config = json.loads((world["wrong_adapter"] / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(tiny_llama)
    (world["wrong_adapter"] / "adapter_config.json").write_text(json.dumps(config))
    return world["wrong_adapter"]


@pytest.mark.parametrize("case_id, name, arguments, expected, output", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_cleanly(case_id, name, arguments, expected, output, world, wrong_adapter, tmp_path,
                                      capsys):
    argv = [a.format(**world) for a in arguments]
    if output == "new":
        target = tmp_path / "out"
    elif output == "file":
        target = tmp_path / "predictions.csv"
    elif output == "/proc":
        target = Path("/proc/loradistill-out")
    elif output == "none":
        target = tmp_path / "prun"
    else:
        target = world[output]
    if name in ("predict",):
        argv += ["--output-file", str(target)]
    elif name != "run_pipeline":
        argv += ["--output-dir", str(target)]
    before = snapshot(target)
    began = time.perf_counter()
    code = run_cli(script(name).main, argv)
    seconds = time.perf_counter() - began
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2, err
    assert "Traceback" not in err
    assert len(errors) == 1, err
    import re

    assert re.search(expected, errors[0]), errors[0]
    assert snapshot(target) == before, f"{case_id} changed {target}"
    if case_id == "hub-id-offline":
        assert seconds < 30  # generous: the hub's retries would take about 47 s
    if name == "run_pipeline":
        assert not (world["train"].parent / "prun").exists()
