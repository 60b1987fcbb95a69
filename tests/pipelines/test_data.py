"""Data loading and validation: every refusal is one UserError naming the problem, before any training."""

from __future__ import annotations

import json

import pytest

from pipelines.data import DataSettings, prepare_data, tokenize
from pipelines.errors import UserError
from pipelines.tables import read_table
from tests.conftest import sentiment_rows, write_csv


def settings(train, eval_file=None, **kw) -> DataSettings:
    return DataSettings(train_file=str(train), eval_file=str(eval_file) if eval_file else None, **kw)


def refuse(data_settings: DataSettings, *fragments: str) -> str:
    with pytest.raises(UserError) as caught:
        prepare_data(data_settings, seed=0)
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_missing_column_lists_existing_columns(tmp_path):
    train = write_csv(tmp_path / "t.csv", [("a b", "pos"), ("c d", "neg")], header=("sentence", "label"))
    refuse(settings(train), "no text column 'text'", "'sentence', 'label'", str(train))


def test_missing_label_and_pair_columns(tmp_path):
    train = write_csv(tmp_path / "t.csv", [("a", "pos"), ("b", "neg")], header=("text", "y"))
    refuse(settings(train), "no label column 'label'", "'text', 'y'")
    refuse(settings(train, text_pair_column="second", label_column="y"), "no text pair column 'second'")


def test_semicolon_file_read_as_csv_is_named(tmp_path):
    train = tmp_path / "t.csv"
    train.write_text("text;label\ngood;pos\nbad;neg\n")
    refuse(settings(train), "no text column", "';'-separated")


@pytest.mark.parametrize("content", ["", "\n\n"])
def test_empty_file(tmp_path, content):
    train = tmp_path / "t.csv"
    train.write_text(content)
    refuse(settings(train), "is empty", str(train))


def test_header_only(tmp_path):
    train = tmp_path / "t.csv"
    train.write_text("text,label\n")
    refuse(settings(train), "header but no rows")


def test_empty_texts_counted_refused_or_dropped(tmp_path, caplog):
    rows = [("good", "pos"), ("", "neg"), ("   ", "pos"), ("bad", "neg"), ("fine", "pos"), ("sad", "neg")]
    train = write_csv(tmp_path / "t.csv", rows)
    refuse(settings(train), "2 of 6 rows have an empty or missing text", "line 3", "--data.empty-texts drop")
    data = prepare_data(settings(train, empty_texts="drop", validation_split=0.5), seed=0)
    assert len(data.train) + len(data.eval) == 4
    assert any("dropped 2 rows" in note for note in data.notes)


def test_missing_texts_in_jsonl(tmp_path):
    train = tmp_path / "t.jsonl"
    rows = [{"text": "good", "label": "pos"}, {"text": None, "label": "neg"}, {"label": "neg"},
            {"text": "bad", "label": "neg"}]
    train.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    refuse(settings(train), "2 of 4 rows have an empty or missing text")


def test_eval_label_unseen_in_training(tmp_path):
    train = write_csv(tmp_path / "t.csv", [("good", "pos"), ("bad", "neg")] * 3)
    evaluation = write_csv(tmp_path / "e.csv", [("good", "pos"), ("meh", "neutral")])
    refuse(settings(train, evaluation), "label 'neutral'", "neg, pos", str(evaluation))


def test_eval_label_in_names_but_not_in_training(tmp_path):
    train = write_csv(tmp_path / "t.csv", [("good", 0), ("bad", 1)] * 3)
    evaluation = write_csv(tmp_path / "e.csv", [("good", 0), ("meh", 2)])
    refuse(settings(train, evaluation, label_names=["neg", "pos", "neutral"]), "'neutral' never occurs")


def test_single_class(tmp_path):
    train = write_csv(tmp_path / "t.csv", [("good", "pos"), ("fine", "pos"), ("nice", "pos")])
    refuse(settings(train), "only one class", "'pos'")


def test_undecodable_bytes_name_file_and_line(tmp_path):
    train = tmp_path / "t.csv"
    train.write_bytes(b"text,label\ngood,pos\nbad \xff\xfe,neg\n")
    refuse(settings(train), str(train), "line 3", "UTF-8")


def test_mixed_label_types(tmp_path):
    train = write_csv(tmp_path / "t.csv", [("good", "1"), ("bad", "pos"), ("fine", "0")])
    refuse(settings(train), "mixes label types")
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": "1"}\n')
    refuse(settings(jsonl), "mixes value types", "1 and '1'")


def test_broken_jsonl_line_number(tmp_path):
    train = tmp_path / "t.jsonl"
    train.write_text('{"text": "good", "label": "pos"}\n{"text": "bad", "label": \n')
    refuse(settings(train), "line 2 is not valid JSON")


def test_not_parquet(tmp_path):
    train = tmp_path / "t.parquet"
    train.write_text("text,label\ngood,pos\n")
    refuse(settings(train), "not a readable parquet file")


def test_unknown_extension_and_missing_file(tmp_path):
    train = tmp_path / "t.xlsx"
    train.write_text("x")
    refuse(settings(train), "unknown file type '.xlsx'", "csv, tsv, jsonl")
    refuse(settings(tmp_path / "nope.csv"), "does not exist")


def test_bom_and_crlf_accepted(tmp_path):
    train = tmp_path / "t.csv"
    train.write_bytes("\ufefftext,label\r\ngood,pos\r\nbad,neg\r\nfine,pos\r\nsad,neg\r\n".encode())
    data = prepare_data(settings(train, validation_split=0.5), seed=0)
    assert data.label_names == ["neg", "pos"]
    assert sorted(list(data.train["text"]) + list(data.eval["text"])) == ["bad", "fine", "good", "sad"]


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "json", "parquet", "disk"])
def test_every_format_reads_the_same_rows(tmp_path, fmt):
    import datasets

    rows = sentiment_rows(10)
    records = [{"text": t, "label": y} for t, y in rows]
    path = tmp_path / f"t.{fmt}"
    if fmt in ("csv", "tsv"):
        write_csv(path, rows, sep="," if fmt == "csv" else "\t")
    elif fmt == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in records))
    elif fmt == "json":
        path.write_text(json.dumps(records))
    elif fmt == "parquet":
        datasets.Dataset.from_list(records).to_parquet(str(path))
    else:
        datasets.Dataset.from_list(records).save_to_disk(str(path))
    table = read_table(path)
    assert list(table["text"]) == [t for t, _ in rows]
    assert list(table["label"]) == [y for _, y in rows]


def test_integer_labels_with_names_and_stratified_split(tmp_path):
    rows = [(f"text {i}", i % 2) for i in range(40)]
    train = write_csv(tmp_path / "t.csv", rows)
    data = prepare_data(settings(train, label_names=["negative", "positive"], validation_split=0.25), seed=3)
    assert data.label_names == ["negative", "positive"]
    assert len(data.eval) == 10
    assert sorted(data.eval["label"]) == [0] * 5 + [1] * 5  # stratified: the classes keep their balance
    again = prepare_data(settings(train, label_names=["negative", "positive"], validation_split=0.25), seed=3)
    assert list(again.eval["text"]) == list(data.eval["text"])  # seeded
    assert again.fingerprint == data.fingerprint


def test_sentence_pairs(tmp_path):
    rows = [("a good", "b film", "yes"), ("a bad", "b plot", "no")] * 4
    train = write_csv(tmp_path / "t.csv", rows, header=("premise", "hypothesis", "label"))
    data = prepare_data(settings(train, text_column="premise", text_pair_column="hypothesis",
                                 validation_split=0.25), seed=0)
    assert data.has_pair
    assert set(data.train.column_names) == {"text", "text_pair", "label"}


def test_tokenize_caches_in_run_folder_and_counts_truncation(tmp_path, tiny_bert, caplog):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    rows = [(" ".join(["good"] * 20), "pos"), ("bad", "neg")] * 4
    train = write_csv(tmp_path / "t.csv", rows)
    data = prepare_data(settings(train, validation_split=0.25), seed=0)
    cache = tmp_path / "run" / "cache"
    with caplog.at_level("WARNING"):
        first = tokenize(data.train, tokenizer, 8, False, cache, "train", data.fingerprint)
    assert "were truncated" in caplog.text
    assert max(first["length"]) == 8
    files = sorted(cache.glob("tokenized-train-*.arrow"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    second = tokenize(data.train, tokenizer, 8, False, cache, "train", data.fingerprint)
    assert files[0].stat().st_mtime_ns == stamp  # loaded from the cache, not recomputed
    assert list(second["input_ids"]) == list(first["input_ids"])
    assert "attention_mask" in first.column_names and "label" in first.column_names


def test_extra_columns_are_kept_for_later_stages_and_the_eval_file_must_have_them(tmp_path):
    rows = [("good film", "pos", "[1, 0]"), ("bad film", "neg", "[1, 0]")] * 4
    train = write_csv(tmp_path / "train.tsv", rows, header=("text", "label", "rationale"), sep="\t")
    evaluation = write_csv(tmp_path / "eval.tsv", rows[:2], header=("text", "label", "rationale"), sep="\t")
    settings = DataSettings(train_file=str(train), eval_file=str(evaluation))
    data = prepare_data(settings, seed=0, keep_columns=("rationale",))
    assert data.eval["rationale"] == ["[1, 0]", "[1, 0]"]
    assert "rationale" not in prepare_data(settings, 0).eval.column_names
    bare = write_csv(tmp_path / "bare.tsv", [r[:2] for r in rows[:2]], sep="\t")
    with pytest.raises(UserError, match=r"bare\.tsv: no rationale column 'rationale'"):
        prepare_data(DataSettings(train_file=str(train), eval_file=str(bare)), 0, keep_columns=("rationale",))
