"""A consistency model distilled from (CD, Song et al. 2023) or tuned from (ECT, Geng et al. 2024) a trained
diffusion run: one ordinary run folder, trained by fokker.train with the student's config
(fokker.distill.student); `fokker distill --method consistency|ect` is this function."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fokker.errors import UserError

if TYPE_CHECKING:
    from fokker.train import TrainResult


def distill_consistency(
    checkpoint: str | Path,
    out: str | Path,
    method: str = "ect",
    *,
    minutes: float | None = None,
    steps: int | None = None,
    solver: str | None = None,
    pairs: str | None = None,
    prediction: str | None = None,
    resume: bool = False,
    device: str = "auto",
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train a consistency student of the run `checkpoint` into `out` by `method` ("consistency": CD with the
    teacher's ODE step taken by the sampler `solver`, default edm_heun, on pairs of levels drawn `pairs`,
    lognormal by default or uniform; "ect": tuning from the teacher's weights) for `minutes` or `steps` (one
    of them). ECT under `minutes` spreads its stages over the updates the teacher's training rate predicts.
    Returns fokker.train's TrainResult."""
    from fokker.config import read_run_config
    from fokker.distill.student import estimated_steps, student_config
    from fokker.losses import LOSS_TYPES, default_doubling
    from fokker.model import weights_path
    from fokker.train import train

    if method not in ("consistency", "ect"):
        raise UserError(f"distill_consistency's method is consistency or ect, got {method!r}")
    if (minutes is None) == (steps is None):
        raise UserError("give the budget as --minutes or --steps, one of them")
    teacher = Path(checkpoint)
    weights_path(teacher)
    config = None  # a resumed run keeps its own
    if not resume:
        if not (teacher / "config.yaml").exists():
            raise UserError(f"{teacher} is not a run folder (no config.yaml)")
        if pairs is not None and method != "consistency":
            raise UserError("pairs applies only to consistency distillation (method consistency)")
        options: dict[str, Any] = {k: v for k, v in (("solver", solver), ("pairs", pairs)) if v is not None}
        if method == "ect" and minutes is not None:  # ECT's stages are spread over the updates expected
            expected = estimated_steps(teacher, minutes)
            options["doubling_every"] = default_doubling(LOSS_TYPES["consistency_tuning"], {}, expected)
            if log is not None:
                log(f"ECT: about {expected} updates expected (from the teacher's rate), a new stage every "
                    f"{options['doubling_every']}")  # fmt: skip
        config = student_config(
            read_run_config(teacher / "config.yaml"), teacher, method, prediction=prediction, options=options
        )
    budget = {"minutes": minutes, "steps": None} if minutes is not None else {"steps": steps}
    return train(config, out, resume=resume, device=device, budget=budget, progress=progress, log=log)
