"""The stage contract: `run_<stage>(config, *, resume=False, overwrite=False) -> StageResult`.

A stage reads its inputs from files and folders (the data, a model folder an earlier stage wrote), writes
its result into its own output folder through `artifacts.publishing` (atomically, manifest last), and returns
a `StageResult`. Stages never import each other; `chain.runner` runs them in order from a table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass
class StageResult:
    """What a stage produced: where, the figures it measured, and how long it took."""

    stage: str
    output: Path  # the output folder (a file for predict)
    metrics: dict = field(default_factory=dict)  # empty on DDP ranks other than 0, which publish nothing
    seconds: float = 0.0


class Stage(Protocol):
    def __call__(self, config: Any, *, resume: bool = False, overwrite: bool = False) -> StageResult: ...
