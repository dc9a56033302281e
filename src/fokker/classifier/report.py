"""A classifier run's report of its accuracy against t: RUN/accuracy.json holds the accuracy on the
held-out split at REPORT_TIMES for every step it was measured at (with RUN/accuracy/step_N.png, its plot,
written by the trainer), trimmed like the sample pictures on resume."""

from __future__ import annotations

from pathlib import Path

import torch

from fokker.step_reports import read_step_report, record_step, trim_steps

REPORT = "accuracy.json"  # in the run folder
REPORT_TIMES = 21  # the report's times: t = 0, 0.05, ..., 1
REPORT_EXAMPLES = 2000  # at most this many examples of the held-out split (the first ones)
SUMMARY_TIMES = (0.0, 0.25, 0.5, 0.75, 1.0)  # the times `summary` names


def report_times() -> torch.Tensor:
    """The report's fixed grid of times, float64: t_i = i / (REPORT_TIMES - 1), from 0 to 1."""
    return torch.arange(REPORT_TIMES, dtype=torch.float64) / (REPORT_TIMES - 1)


def read_accuracy(run: str | Path) -> dict:
    """The report of a classifier run (its folder, or the accuracy.json file): {"split", "examples",
    "chance", "times", "evaluations": [{"step", "accuracy": one per time}, ...] in step order}; an empty
    list of evaluations when there is none yet. A damaged file is a UserError."""
    return read_step_report(run, REPORT, "accuracy")


def record_accuracy(path: Path, step: int, accuracy: torch.Tensor, times: torch.Tensor, about: dict) -> None:
    """Write the accuracy at `times` of `step` into the report at `path` (replacing that step's, dropping
    those after it), with `about` (split, examples, chance); written atomically."""
    evaluation = {"step": step, "accuracy": [round(a, 6) for a in accuracy.tolist()]}
    record_step(path, evaluation, {**about, "times": [round(t, 6) for t in times.tolist()]}, "accuracy")


def trim_accuracy(path: Path, step: int) -> None:
    """On resume, drop the evaluations after the checkpoint's step (fokker.step_reports.trim_steps)."""
    trim_steps(path, step, "accuracy")


def summary(run: str | Path) -> str | None:
    """One line with the newest evaluation's accuracy at SUMMARY_TIMES (those on the report's grid), or None
    when the run has no report."""
    report = read_accuracy(run)
    if not report["evaluations"]:
        return None
    last, times = report["evaluations"][-1], report["times"]
    parts = [f"{t:g}: {a:.1%}" for t, a in zip(times, last["accuracy"], strict=True) if t in SUMMARY_TIMES]
    return (
        f"accuracy at step {last['step']} on {report['examples']} {report['split']} examples by t "
        f"({', '.join(parts)}; chance {report['chance']:.1%})"
    )
