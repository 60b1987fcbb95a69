"""Provenance in manifests: the git commit is read once, when a stage starts, with whether the code differed."""

from __future__ import annotations

from pipelines import artifacts


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
