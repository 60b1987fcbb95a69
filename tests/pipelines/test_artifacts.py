"""Publishing a stage's result: atomic, manifest last, nothing published on a failure; provenance read once."""

from __future__ import annotations

import errno
import json
import time

import pytest

from pipelines import artifacts
from pipelines.errors import UserError


def test_git_state_is_read_once_when_a_stage_starts(monkeypatch, tmp_path):
    artifacts.git_state.cache_clear()
    artifacts.prepare_output_dir(tmp_path / "out", resume=False, overwrite=False, stage="finetune")
    first = artifacts.git_state()
    assert set(first) == {"git_commit", "git_dirty"}
    assert first["git_commit"] is None or len(first["git_commit"]) == 40

    def no_more_git(*args, **kwargs):
        raise AssertionError("git asked again after the stage started")

    monkeypatch.setattr(artifacts.subprocess, "run", no_more_git)  # e.g. a commit lands while the run trains
    manifest = artifacts.manifest("finetune", {"a": 1}, "fingerprint", {"train": 1.0})
    assert (manifest["git_commit"], manifest["git_dirty"]) == (first["git_commit"], first["git_dirty"])


def test_publishing_replaces_the_result_and_writes_the_manifest_last(tmp_path):
    out = tmp_path / "out"
    artifacts.prepare_output_dir(out, resume=False, overwrite=False, stage="s", settings={})
    (out / "old.txt").write_text("a file of the previous result")
    started = time.perf_counter()
    with artifacts.publishing(out, "s", {"k": 1}, "fp", started, {"train": 2.0}) as staging:
        assert staging.parent == out and staging.name.startswith(".staging-")
        (staging / "model.txt").write_text("new")
        assert not (out / "model.txt").exists() and not (out / artifacts.MANIFEST).exists()
    assert (out / "model.txt").read_text() == "new" and not (out / "old.txt").exists()
    manifest = json.loads((out / artifacts.MANIFEST).read_text())
    assert manifest["stage"] == "s" and manifest["data_fingerprint"] == "fp"
    assert set(manifest["timings_seconds"]) == {"train", "total"}
    assert not list(out.glob(".staging-*")) and not (out / artifacts.LOCK).exists()


@pytest.mark.parametrize("failure", [ValueError("a refused check"), OSError(errno.ENOSPC, "No space left on device")])
def test_a_failure_while_publishing_leaves_the_previous_result(tmp_path, failure):
    out = tmp_path / "out"
    artifacts.prepare_output_dir(out, resume=False, overwrite=False, stage="s", settings={})
    with artifacts.publishing(out, "s", {}, "fp", time.perf_counter()) as staging:
        (staging / "model.txt").write_text("first")
    artifacts.prepare_output_dir(out, resume=False, overwrite=True, stage="s", settings={})
    expected = UserError if isinstance(failure, OSError) else ValueError
    with pytest.raises(expected) as caught:
        with artifacts.publishing(out, "s", {}, "fp", time.perf_counter()) as staging:
            (staging / "model.txt").write_text("second, half written")
            raise failure
    if expected is UserError:
        assert "nothing was published and any previous result there is unchanged" in str(caught.value)
    assert (out / "model.txt").read_text() == "first" and (out / artifacts.MANIFEST).is_file()
    assert not list(out.glob(".staging-*"))


def test_the_config_hash_is_the_same_however_numbers_were_written():
    assert artifacts.config_hash({"train": {"warmup": 0, "epochs": 2}}) == artifacts.config_hash(
        {"train": {"warmup": 0.0, "epochs": 2.0}})
    assert artifacts.config_hash({"lr": 0.5}) != artifacts.config_hash({"lr": 0.25})
    assert artifacts.config_hash({"flag": True}) != artifacts.config_hash({"flag": 1.5})
