"""Output folders: guarding them, atomic writes, publishing a stage's result, and the manifest of what produced it.

Every stage publishes the same way (`publishing`): it writes into a staging folder inside its output folder,
and only when everything is there do the entries replace the old ones, the manifest last. A crash, a full disk
or a refused check leaves the previous result as it was and no half folder that looks whole.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from pipelines.environment import PROJECT_ROOT
from pipelines.errors import UserError

MANIFEST = "manifest.json"
RUN_MARKER = "run.json"
CACHE = "cache"
LOCK = ".lock"
CHECKPOINTS = "checkpoints"
# Entries of an output folder that belong to the run in progress, not to the published artifact.
RUN_STATE = (CACHE, LOCK, RUN_MARKER, CHECKPOINTS)
_HELD_LOCKS: dict[Path, int] = {}


def lock_output_dir(path: Path) -> None:
    """Take the output folder's lock (an flock on path/.lock, held until release or the process ends).

    A second run on the same folder is refused while the first holds it; a killed run's lock goes with it.
    The file is removed on release; a lock taken on a file that was removed meanwhile is taken again.
    """
    import fcntl

    key = path.resolve()
    if key in _HELD_LOCKS:
        return
    path.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise UserError(f"output folder {path} is in use by another run (pid {holder}); wait for it to finish "
                            "or choose another output folder") from None
        try:
            if os.stat(path / LOCK).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder released and removed it between our open and flock: try again
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _HELD_LOCKS[key] = fd


def release_output_dir(path: Path) -> None:
    fd = _HELD_LOCKS.pop(path.resolve(), None)
    if fd is not None:
        (path / LOCK).unlink(missing_ok=True)  # while still holding it, so no one locks a doomed file
        os.close(fd)


def check_not_locked(path: Path) -> None:
    """Refuse (without taking it) a folder whose lock another process holds."""
    if path.resolve() in _HELD_LOCKS or not (path / LOCK).is_file():
        return
    lock_output_dir(path)
    release_output_dir(path)
PACKAGES = ("torch", "transformers", "peft", "datasets", "evaluate", "accelerate", "safetensors", "numpy")


def check_output_dir(path: Path, resume: bool, overwrite: bool, stage: str, settings: dict | None = None) -> str:
    """Decide what a run may do with path without touching it: "new", "resume" or "overwrite".

    Refuses (UserError) to clobber a finished run without overwrite, a folder this tool did not write, or
    to resume with different `settings` than the interrupted run recorded in run.json.
    """
    if "\x00" in str(path):
        raise UserError(f"output path {str(path)!r} contains a NUL character")
    if path.exists() and not path.is_dir():
        raise UserError(f"output path {path} is a file, not a folder")
    if path.is_dir():
        check_not_locked(path)
    if not (path.is_dir() and any(p.name != LOCK for p in path.iterdir())):
        probe_writable(path)
        return "new"
    ours = (path / RUN_MARKER).is_file() or (path / MANIFEST).is_file()
    finished = (path / MANIFEST).is_file()
    if overwrite:
        if not ours:
            raise UserError(f"output folder {path} is not empty and was not written by this tool; "
                            "refusing to delete it")
        return "overwrite"
    if resume and finished:
        raise UserError(f"output folder {path} holds a finished run, nothing to resume; pass --overwrite to "
                        "train again")
    if resume and ours:
        marker = json.loads((path / RUN_MARKER).read_text()) if (path / RUN_MARKER).is_file() else {}
        if marker.get("stage") not in (None, stage):
            raise UserError(f"output folder {path} holds a {marker['stage']} run, not a {stage} run")
        changed = _first_difference(marker.get("settings"), settings)
        if settings is not None and changed:
            raise UserError(f"cannot resume the run in {path}: setting '{changed}' differs from the interrupted "
                            "run; use the same settings, or pass --overwrite to start again")
        return "resume"
    if finished:
        raise UserError(f"output folder {path} already holds a finished run; pass --overwrite to replace it "
                        "or choose another --output-dir")
    if ours:
        raise UserError(f"output folder {path} holds an unfinished run; pass --resume to continue it or "
                        "--overwrite to restart")
    raise UserError(f"output folder {path} is not empty; choose an empty or new --output-dir")


def probe_writable(path: Path) -> None:
    """Refuse an output folder that cannot be created or written (read-only file systems, /proc, permissions).

    Creates the folder (and missing parents) and removes what it created, so nothing is left behind.
    """
    created = [p for p in [path, *path.parents] if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise UserError(f"cannot write to output folder {path}: {err.strerror or err}") from err
    finally:
        for folder in created:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                pass


def prepare_output_dir(path: Path, resume: bool, overwrite: bool, stage: str, settings: dict | None = None) -> str:
    """check_output_dir, then take the folder's lock and act: record run.json, drop stale run state.

    Overwriting keeps the previous published artifact in place until the new one is published (publish
    replaces it entry by entry), so a run that fails or is killed before then loses nothing.
    """
    action = check_output_dir(path, resume, overwrite, stage, settings)
    git_state()  # the code as it is now, not when the run ends
    try:
        lock_output_dir(path)
        for stale in path.glob(".staging-*"):  # a save that was interrupted: never published, safe to drop
            shutil.rmtree(stale, ignore_errors=True)
        if action == "resume":
            return action
        if action == "overwrite":
            shutil.rmtree(path / CHECKPOINTS, ignore_errors=True)  # another run's; cache/ is keyed by content
        write_json(path / RUN_MARKER, {"stage": stage, "settings": settings})
    except PermissionError as err:
        raise UserError(f"cannot write to output folder {path}: permission denied") from err
    return action


def _first_difference(old: Any, new: Any, prefix: str = "") -> str | None:
    """Dotted name of the first setting that differs between two nested dicts, or None."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            found = _first_difference(old.get(key), new.get(key), f"{prefix}{key}.")
            if found:
                return found
        return None
    return prefix.rstrip(".") if old != new else None


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file in the same folder, then rename)."""
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_jsonable) + "\n")


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """A temp file beside `path` to write; renamed onto `path` when the block ends, removed if it fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


@contextmanager
def publishing(output_dir: Path, stage: str, settings: dict, data_fingerprint: str, started: float,
               timings: dict[str, float] | None = None) -> Iterator[Path]:
    """A staging folder to write a stage's result into; published into output_dir, its manifest last, when the
    block ends without error (the manifest's timings: `timings` plus the total since `started`). On any error
    nothing is published and the staging folder is removed; a failed write says so in one sentence."""
    staging = staging_dir(output_dir)
    try:
        yield staging
        total = {**(timings or {}), "total": time.perf_counter() - started}
        write_json(staging / MANIFEST, manifest(stage, settings, data_fingerprint, total))
        publish(staging, output_dir)
    except OSError as err:
        raise UserError(f"saving the {stage} result to {output_dir} failed ({err.strerror or err}); nothing was "
                        "published and any previous result there is unchanged; free space and run again") from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def staging_dir(output_dir: Path) -> Path:
    """A fresh temp folder inside output_dir for files that are moved into place when complete."""
    return Path(tempfile.mkdtemp(prefix=".staging-", dir=output_dir))


def publish(staging: Path, output_dir: Path, last: str = MANIFEST) -> None:
    """Move every entry of staging into output_dir (replacing old ones), `last` at the very end.

    The old manifest goes first, so a folder is never marked finished over a mix of old and new files;
    entries of a previous artifact that the new one lacks are removed at the end.
    """
    (output_dir / last).unlink(missing_ok=True)
    entries = sorted(staging.iterdir(), key=lambda p: p.name == last)
    stale = {p.name for p in output_dir.iterdir() if p != staging and p.name not in RUN_STATE
             and not p.name.startswith(".staging-")} - {e.name for e in entries}
    for entry in entries:
        for path in [entry, *entry.rglob("*")] if entry.is_dir() else [entry]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        target = output_dir / entry.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(entry, target)
    staging.rmdir()
    for name in stale:
        target = output_dir / name
        shutil.rmtree(target) if target.is_dir() and not target.is_symlink() else target.unlink(missing_ok=True)
    release_output_dir(output_dir)


def file_digest(path: Path) -> str:
    """sha256 of a file, or of every file in a folder, in name order."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for item in files:
        digest.update(item.name.encode())
        with open(item, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _canonical(value: Any) -> Any:
    """Values as a config means them: a whole float is its integer (a warm-up of 0 written in Python and 0.0 read
    from YAML are one setting), containers recursively."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _canonical(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(item) for item in value]
    return value


def config_hash(config_dict: dict) -> str:
    """A short hash of a config's values, the same however the numbers were written."""
    return hashlib.sha256(json.dumps(_canonical(config_dict), sort_keys=True).encode()).hexdigest()[:16]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.cache
def git_state() -> dict[str, str | bool | None]:
    """The code's git commit and whether tracked files differed from it, read once per process: every stage
    asks when it starts (prepare_output_dir), so a run that outlives a commit records the code it ran."""
    changes = _git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": _git("rev-parse", "HEAD") or None, "git_dirty": None if changes is None else bool(changes)}


def git_commit() -> str | None:
    return git_state()["git_commit"]


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def manifest(stage: str, config_dict: dict, data_fingerprint: str, timings: dict[str, float]) -> dict:
    """What produced an artifact: config hash, data fingerprint, package versions, git commit, timings."""
    return {
        "stage": stage,
        "config_hash": config_hash(config_dict),
        "data_fingerprint": data_fingerprint,
        "packages": package_versions(),
        **git_state(),
        "timings_seconds": {k: round(v, 3) for k, v in timings.items()},
    }
