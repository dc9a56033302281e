"""A run's report of numbers measured at training steps, RUN/<name>.json: what the run is measured on (its
`about` keys) and one evaluation per step, {"step", ...}, in step order; a step measured again replaces its
evaluation and drops those after it, and a resumed run drops the steps after its checkpoint. The classifier's
accuracy against t (fokker.classifier.report) and an autoencoder's numbers (fokker.autoencoder.report) are such
reports."""

from __future__ import annotations

import json
from pathlib import Path

from fokker.errors import UserError
from fokker.files import atomic_write_text


def read_step_report(run: str | Path, name: str, what: str) -> dict:
    """The report `name` of a run (its folder, or the file itself): its keys and "evaluations" in step order;
    an empty list of evaluations when there is none yet. A damaged file is a UserError naming `what` it holds."""
    path = Path(run)
    path = path / name if path.is_dir() else path
    if not path.exists():
        return {"evaluations": []}
    try:
        report = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"{path} is not JSON: the run's {what} report is damaged") from None
    if not isinstance(report, dict) or not isinstance(report.get("evaluations"), list):
        raise UserError(f"{path} holds no list of evaluations: the run's {what} report is damaged")
    return report


def record_step(path: Path, evaluation: dict, about: dict, what: str) -> None:
    """Write `evaluation` (with its "step") into the report at `path`, replacing that step's and dropping those
    after it, under the keys `about`; written atomically."""
    kept = [e for e in read_step_report(path, path.name, what)["evaluations"] if e["step"] < evaluation["step"]]
    atomic_write_text(path, to_json({**about, "evaluations": [*kept, evaluation]}))


def trim_steps(path: Path, step: int, what: str) -> None:
    """On resume, drop the evaluations of steps after the checkpoint being resumed from (they are measured
    again); on a fresh start (step 0) those of a stopped attempt."""
    report = read_step_report(path, path.name, what)
    kept = [e for e in report["evaluations"] if e["step"] <= step]
    if len(kept) < len(report["evaluations"]):
        atomic_write_text(path, to_json({**report, "evaluations": kept}))


def to_json(report: dict) -> str:
    """The report as JSON text, one line per key and per evaluation."""
    lines = [f" {json.dumps(k)}: {json.dumps(v)}," for k, v in report.items() if k != "evaluations"]
    evaluations = ",\n".join(f"  {json.dumps(e)}" for e in report["evaluations"])
    return "{\n" + "\n".join(lines) + f'\n "evaluations": [\n{evaluations}\n ]\n}}\n'
