"""Progressive distillation's rounds (Salimans & Ho 2022, Alg. 2): the student of round k starts from the
student of round k - 1 (the first from the teacher) and halves its step count; each round is an ordinary run
folder OUT/steps-N, sampled with `ddim` at N steps. OUT/model.safetensors and OUT/config.yaml are the last
round's, so OUT is sampled like any run; OUT/distill.json lists the rounds and OUT/loss.png plots their losses."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fokker.config import read_run_config, to_yaml
from fokker.distill.student import student_config
from fokker.errors import UserError
from fokker.files import atomic_write, atomic_write_text
from fokker.viz import round_curves


def round_steps(from_steps: int, to_steps: int) -> list[int]:
    """The students' step counts from_steps / 2, from_steps / 4, ..., to_steps (each round halves)."""
    if to_steps < 1 or from_steps <= to_steps:
        raise UserError(f"--to-steps must be at least 1 and below --from-steps, got {to_steps} and {from_steps}")
    steps, out = from_steps, []
    while steps > to_steps:
        if steps % 2:
            raise UserError(f"the step counts halve from {from_steps} to {to_steps}: {steps} is odd")
        steps //= 2
        out.append(steps)
    if out[-1] != to_steps:
        raise UserError(f"halving {from_steps} does not reach {to_steps}; give a power-of-two ratio")
    return out


@dataclass
class Round:
    """One round: the student's steps, its run folder, steps trained, minutes and last loss."""

    steps: int
    run: str
    trained_steps: int
    minutes: float
    loss: float


def distill_progressive(
    teacher: str | Path,
    out: str | Path,
    *,
    from_steps: int = 128,
    to_steps: int = 4,
    minutes: float | None = None,
    steps_per_round: int | None = None,
    prediction: str | None = None,
    weighting: str = "truncated_snr",
    resume: bool = False,
    device: str = "auto",
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> list[Round]:
    """Rounds from the teacher run (its DDIM at `from_steps` steps) down to `to_steps`, each round training for
    `minutes` / rounds or `steps_per_round` steps; a finished round (in OUT/distill.json) is kept on resume."""
    from fokker.model import weights_path
    from fokker.train import train

    if (minutes is None) == (steps_per_round is None):
        raise UserError("give the budget as --minutes (over all rounds) or --steps (per round), one of them")
    out, teacher = Path(out), Path(teacher)
    weights_path(teacher)
    plan = round_steps(from_steps, to_steps)
    done = _finished(out) if resume else []
    if not resume and (out / "distill.json").exists():
        raise UserError(f"{out} already holds a distillation; pass --resume to continue it, or choose another --out")
    budget = {"minutes": minutes / len(plan), "steps": None} if minutes is not None else {"steps": steps_per_round}
    source = teacher
    for n in plan:
        folder = out / f"steps-{n}"
        if n in [r.steps for r in done]:
            source = folder
            continue
        teacher_config = read_run_config(_config_of(source))
        options = {"weighting": weighting}
        config = student_config(teacher_config, source, "progressive", steps=n, prediction=prediction, options=options)
        if log is not None:
            log(f"round {plan.index(n) + 1} of {len(plan)}: {2 * n} teacher steps -> {n}, into {folder}")
        again = resume and (folder / "config.yaml").exists()
        result = train(config, folder, resume=again, device=device, budget=budget, progress=progress, log=log)
        done.append(Round(n, str(folder), result.step, result.elapsed / 60, result.loss))
        _record(out, done, folder)
        source = folder
    return done


def _config_of(run: Path) -> Path:
    path = run / "config.yaml"
    if not path.exists():
        raise UserError(f"{run} is not a run folder (no config.yaml)")
    return path


def _finished(out: Path) -> list[Round]:
    path = out / "distill.json"
    if not path.exists():
        return []
    return [Round(**r) for r in json.loads(path.read_text())["rounds"]]


def _record(out: Path, rounds: list[Round], last: Path) -> None:
    """OUT/distill.json, and the last round's weights and config as OUT's own."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "model.safetensors", lambda tmp: shutil.copyfile(last / "model.safetensors", tmp))
    atomic_write_text(out / "config.yaml", to_yaml(read_run_config(last / "config.yaml")))
    atomic_write_text(out / "distill.json", json.dumps({"rounds": [r.__dict__ for r in rounds]}, indent=1) + "\n")
    logs = {f"{2 * r.steps} -> {r.steps} steps": Path(r.run) / "metrics.jsonl" for r in rounds}
    round_curves(logs, out / "loss.png")
