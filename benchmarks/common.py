"""What every benchmark shares: provenance of a results file, interleaved (ABBA) orders, and spreads of ratios."""

from __future__ import annotations

import platform
import statistics

from pipelines.artifacts import git_state


def provenance() -> dict:
    """The commit the figures were measured at, whether the tree differed from it, and the machine."""
    import torch

    return {**git_state(), "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, CPU"}


def abba(names: list[str], rounds: int) -> list[str]:
    """The arms in order, then reversed, and so on for `rounds` rounds (A B B A ...): a drift in the machine's
    speed falls on every arm alike."""
    order: list[str] = []
    for i in range(rounds):
        order += list(names) if i % 2 == 0 else list(reversed(names))
    return order


def timed_abba(arms: dict, inputs: list, warm_up: list, rounds: int) -> tuple[dict[str, list[float]], dict]:
    """Each arm (a function of the inputs) run once on `warm_up`, then timed on `inputs` in ABBA rounds:
    seconds per arm per round, and each arm's last output."""
    import time

    for run in arms.values():
        run(warm_up)
    seconds: dict[str, list[float]] = {name: [] for name in arms}
    outputs = {}
    for name in abba(list(arms), rounds):
        began = time.perf_counter()
        outputs[name] = arms[name](inputs)
        seconds[name].append(time.perf_counter() - began)
    return seconds, outputs


def pair_ratios(timings: dict[str, list[float]], faster: str, slower: str) -> dict:
    """How many times faster `faster` ran than `slower` (seconds of `slower` / seconds of `faster`), round by round
    (each round times both arms back to back), summed up by ratio_summary."""
    return ratio_summary([s / f for f, s in zip(timings[faster], timings[slower], strict=True)])


def spread(values: list[float]) -> dict:
    """Median, min and max of repeated figures (ratios of pairs, per-seed figures)."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "each": values}


def ratio_summary(ratios: list[float]) -> dict:
    """A speed ratio over repeats or seeds, and whether it is within noise (its spread reaches 1.0)."""
    summary = spread(ratios)
    summary["within_noise"] = summary["min"] <= 1.0 <= summary["max"]
    return summary


class ReportedSetTracker:
    """A TrainerCallback for runs that choose their checkpoint on a selection split: at each evaluation it also
    scores the reported eval data, so one run gives both figures: the accuracy of the checkpoint chosen off the
    reported set, and the best accuracy the reported set would have picked (the old, optimistic way)."""

    def __init__(self, data, max_length: int = 128):
        import numpy as np

        self.texts = [str(t) for t in data.eval["text"]]
        self.pairs = [str(t) for t in data.eval["text_pair"]] if data.has_pair else None
        self.labels = np.asarray(list(data.eval["label"]))
        self.max_length = max_length
        self.by_step: dict[int, float] = {}

    def __getattr__(self, name):  # every other callback event does nothing
        return lambda *args, **kwargs: None

    def on_evaluate(self, args, state, control, model=None, processing_class=None, **kwargs):
        from pipelines.inference import text_logits, torch_backend

        was_training = model.training
        logits, _ = text_logits(torch_backend(model, processing_class, self.max_length), self.texts, self.pairs, 128)
        model.train(was_training)
        self.by_step[state.global_step] = round(float((logits.argmax(1) == self.labels).mean()), 4)

    def figures(self) -> dict:
        """The reported set's accuracy at each evaluation and the best of them (what selecting on it would keep)."""
        best = max(self.by_step, key=lambda step: (self.by_step[step], -step)) if self.by_step else None
        return {"dev_accuracy_by_step": self.by_step,
                "dev_accuracy_if_selected_on_dev": self.by_step[best] if best is not None else None,
                "step_if_selected_on_dev": best}
