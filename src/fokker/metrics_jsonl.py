"""RUN/metrics.jsonl, the training log: one strict-JSON record per log interval (step, loss, lr, grad_norm,
steps_per_sec, elapsed). Written by the trainer, read by `fokker eval` and the training curve."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

from fokker.errors import FokkerWarning
from fokker.files import atomic_write_text


def append_record(path: Path, record: dict) -> None:
    """One line of metrics.jsonl, strict JSON: a NaN or infinite value is written as null."""
    clean = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
    with open(path, "a") as f:
        f.write(json.dumps(clean, allow_nan=False) + "\n")


def read_metrics(path: Path) -> list[dict]:
    """The records of a run's metrics.jsonl. A line that is not a JSON record (the last one, cut short by a
    kill) is dropped with a warning."""
    return [record for _, record in metric_lines(path)]


def metric_lines(path: Path) -> list[tuple[str, dict]]:
    """(line, record) for every line of metrics.jsonl that is a JSON record with a step; see `read_metrics`."""
    out = []
    for i, line in enumerate(path.read_bytes().decode("utf-8", "replace").splitlines(), 1):
        try:
            record = json.loads(line) if line.strip() else None
        except ValueError:
            record = None
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            out.append((line, record))
        elif line.strip():
            warnings.warn(f"{path}: line {i} is not a JSON record (cut short?); dropped", FokkerWarning, stacklevel=3)
    return out


def trim_metrics(path: Path, step: int) -> None:
    """On resume, drop log lines written after the checkpoint being resumed from (and a line cut short)."""
    if path.exists():
        lines = [line for line, record in metric_lines(path) if record["step"] <= step]
        atomic_write_text(path, "".join(ln + "\n" for ln in lines))
