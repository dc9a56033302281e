"""The student of a distillation method, as an ordinary run: its config is the teacher's, with the model's
parameterisation, the loss that distills and the teacher's weights to start from (train.init)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from fokker.config import RunConfig
from fokker.errors import UserError

# method -> (train.loss, model.parameterisation)
METHODS = {
    "progressive": ("progressive", "diffusion"),
    "consistency": ("consistency_distillation", "consistency"),
    "ect": ("consistency_tuning", "consistency"),
}
STUDENT_EMA = 0.995  # distillation rounds are short: an EMA of 0.999 would still hold half the teacher
STUDENT_LR_FACTOR = 0.25  # the student fine-tunes a trained network: a quarter of the teacher's rate
CONSISTENCY_PICTURE_STEPS = 2


def default_prediction(teacher: RunConfig) -> str:
    """The student's prediction type: the teacher's when it is x0 or v, else v (eps-prediction is ill-posed
    at few steps, where x0 = (x - sigma eps) / alpha with alpha near 0; Salimans & Ho 2022, sec. 4)."""
    return teacher.model.prediction if teacher.model.prediction in ("x0", "v") else "v"


def student_config(
    teacher: RunConfig,
    teacher_path: str | Path,
    method: str,
    *,
    steps: int | None = None,
    prediction: str | None = None,
    options: dict | None = None,
) -> RunConfig:
    """The config of a student of `teacher` (a denoiser's run config) by `method` (METHODS): progressive with
    the student's `steps`, consistency (CD) or ect; `options` are the loss's own (fokker.distill.losses). The
    budget is left to the caller."""
    if method not in METHODS:
        raise UserError(f"unknown distillation method {method!r}; expected one of {', '.join(METHODS)}")
    if teacher.model.task != "denoiser" or teacher.model.parameterisation != "diffusion":
        raise UserError("the teacher must be a diffusion model (a denoiser run with model.parameterisation diffusion)")
    if teacher.model.variance != "fixed":
        raise UserError("distillation takes a teacher with a fixed variance (model.variance fixed)")
    loss, parameterisation = METHODS[method]
    loss_options = dict(options or {})
    if method != "ect":
        loss_options["teacher"] = str(teacher_path)
    if method == "progressive":
        loss_options["steps"] = steps
    elif steps is not None:
        raise UserError("steps is the progressive student's step count; consistency models sample with 1-4 steps")
    model = dataclasses.replace(
        teacher.model, prediction=prediction or default_prediction(teacher), parameterisation=parameterisation
    )
    tc = teacher.train
    train = dataclasses.replace(
        tc, loss=loss, loss_options=loss_options, init=str(teacher_path), weighting="sigma2", loss_target=None,
        time_sampler="uniform", lr=tc.lr * STUDENT_LR_FACTOR, ema_decay=STUDENT_EMA, warmup=min(tc.warmup, 50),
    )  # fmt: skip
    if method == "progressive":
        sample = dataclasses.replace(teacher.sample, sampler="ddim", steps=steps, spacing="uniform", options={})
    else:
        sample = dataclasses.replace(
            teacher.sample, sampler="consistency", steps=CONSISTENCY_PICTURE_STEPS, spacing="uniform", options={}
        )
    return dataclasses.replace(teacher, model=model, train=train, sample=sample)


CONSISTENCY_STEP_COST = 4 / 3  # two forward passes and one backward (~2 forwards) against one of each


def estimated_steps(teacher_run: str | Path, minutes: float) -> int:
    """The updates a consistency student makes in `minutes` on this machine, from the teacher's own training
    rate (its metrics.jsonl: steps over elapsed seconds) and the cost of a consistency step (CONSISTENCY_STEP_COST):
    a curriculum spread over a budget in minutes needs it."""
    import json

    log = Path(teacher_run) / "metrics.jsonl"
    rows = [json.loads(x) for x in log.read_text().splitlines() if x.strip()] if log.exists() else []
    rows = [r for r in rows if r.get("elapsed")]
    if not rows:
        raise UserError(f"{log} has no training rate to size the curriculum from; give the budget as --steps")
    rate = rows[-1]["step"] / rows[-1]["elapsed"]
    return max(8, int(minutes * 60 * rate / CONSISTENCY_STEP_COST))
