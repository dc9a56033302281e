"""A classifier run's report of its accuracy against t: RUN/accuracy.json holds the accuracy on the
held-out split at REPORT_TIMES for every step it was measured at (with RUN/accuracy/step_N.png, its plot,
written by the trainer), trimmed like the sample pictures on resume."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from fokker.errors import UserError
from fokker.files import atomic_write_text

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
    path = Path(run)
    path = path / REPORT if path.is_dir() else path
    if not path.exists():
        return {"evaluations": []}
    try:
        report = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"{path} is not JSON: the run's accuracy report is damaged") from None
    if not isinstance(report, dict) or not isinstance(report.get("evaluations"), list):
        raise UserError(f"{path} holds no list of evaluations: the run's accuracy report is damaged")
    return report


def record_accuracy(path: Path, step: int, accuracy: torch.Tensor, times: torch.Tensor, about: dict) -> None:
    """Write the accuracy at `times` of `step` into the report at `path` (replacing that step's, dropping
    those after it), with `about` (split, examples, chance); written atomically."""
    report = read_accuracy(path)
    kept = [e for e in report["evaluations"] if e["step"] < step]
    evaluation = {"step": step, "accuracy": [round(a, 6) for a in accuracy.tolist()]}
    report = {**about, "times": [round(t, 6) for t in times.tolist()], "evaluations": [*kept, evaluation]}
    atomic_write_text(path, to_json(report))


def to_json(report: dict) -> str:
    """The report as JSON text, one line per key and per evaluation."""
    lines = [f" {json.dumps(k)}: {json.dumps(v)}," for k, v in report.items() if k != "evaluations"]
    evaluations = ",\n".join(f"  {json.dumps(e)}" for e in report["evaluations"])
    return "{\n" + "\n".join(lines) + f'\n "evaluations": [\n{evaluations}\n ]\n}}\n'


def trim_accuracy(path: Path, step: int) -> None:
    """On resume, drop the evaluations of steps after the checkpoint being resumed from (they are measured
    again); on a fresh start (step 0) those of a stopped attempt."""
    report = read_accuracy(path)
    kept = [e for e in report["evaluations"] if e["step"] <= step]
    if len(kept) < len(report["evaluations"]):
        atomic_write_text(path, to_json({**report, "evaluations": kept}))


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
