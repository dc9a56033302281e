"""The losses of few-step models, each a fokker Loss (its options are its fields), so a student is an
ordinary training run: progressive distillation (Salimans & Ho 2022, Algorithm 2), consistency distillation
(Song et al. 2023, Algorithm 2), consistency training with iCT's improvements (Song & Dhariwal 2023) and
consistency tuning from a diffusion model (ECT, Geng et al. 2024). They draw their own times (a grid or
noise levels), so the trainer's time sampler must be uniform; those with a curriculum get the training step
through `at_step`. The teacher (`teacher`) is a Denoiser or a run folder (fokker.distill.teacher)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from fokker.denoiser import Denoiser, to_x0_eps
from fokker.distill.consistency_model import ConsistencyDenoiser, noise_ratio
from fokker.distill.levels import (
    curriculum_levels,
    ect_gap,
    karras_times,
    lognormal_pair_probabilities,
    pseudo_huber,
    times_of_ratios,
)
from fokker.distill.teacher import teacher_model
from fokker.errors import UserError
from fokker.grids import time_grid
from fokker.losses.base import Loss
from fokker.losses.registry import register_loss
from fokker.noise import randn
from fokker.processes import Process, expand_as
from fokker.samplers.registry import get_sampler, uses_grid
from fokker.schedules import F64

SNR_WEIGHTINGS = ("truncated_snr", "snr_plus_one")  # Salimans & Ho 2022, sec. 4
P_MEAN, P_STD = -1.1, 2.0  # iCT's lognormal noise levels (Song & Dhariwal 2023, sec. 3.5)
PAIRS = ("uniform", "lognormal")  # how CD draws its pair of adjacent levels


def _draws_on(generator: torch.Generator | None) -> torch.device | None:
    return generator.device if generator is not None else None


@dataclass(frozen=True)
class DistillLoss(Loss):
    """A loss that draws its own times: called as any Loss, but given times t are refused."""

    uses_teacher: ClassVar[bool] = False
    consistency: ClassVar[bool] = True  # trains a ConsistencyDenoiser (else a diffusion Denoiser)
    takes_loss_options: ClassVar[bool] = True

    def draw(self, denoiser: Denoiser, x0: torch.Tensor, t, noise, generator) -> tuple[None, torch.Tensor]:
        """No times (per_example draws its own grid points or levels; given times are refused), and the noise."""
        if t is not None:
            raise UserError(f"train.loss {self.name} draws its own times; use train.time_sampler uniform")
        if noise is None:
            noise = randn(x0.shape, generator, device=x0.device, dtype=x0.dtype)
        return None, noise

    def __post_init__(self) -> None:
        self.validate_options()

    def validate_options(self) -> None:
        """A UserError for an option that cannot work, before any model or data is built."""
        if not self.uses_teacher:
            return
        if self.teacher is None:
            raise UserError(f"train.loss {self.name} needs a teacher (train.loss_options.teacher: a run folder)")
        if not isinstance(self.teacher, Denoiser):
            from fokker.model import weights_path

            weights_path(self.teacher)

    def check(self, denoiser: Denoiser, x0: torch.Tensor) -> None:
        if self.consistency != isinstance(denoiser, ConsistencyDenoiser):
            kind = "consistency" if self.consistency else "diffusion"
            raise UserError(f"train.loss {self.name} trains a {kind} model: set model.parameterisation {kind}")


def snr_weight(process: Process, t: torch.Tensor, weighting: str) -> torch.Tensor:
    """Salimans & Ho's weights of an x0 error: max(SNR, 1) ("truncated_snr") or SNR + 1 ("snr_plus_one"),
    SNR = alpha^2 / sigma^2."""
    snr = torch.exp(process.log_snr(t))
    return snr.clamp(min=1.0) if weighting == "truncated_snr" else snr + 1


def ddim_step(model: Denoiser, z: torch.Tensor, t: torch.Tensor, s: torch.Tensor, kw: dict) -> torch.Tensor:
    """One DDIM step t -> s per example: z_s = alpha_s x0_hat + sigma_s eps_hat (Song et al. 2021, eq. 12 with
    eta 0; Salimans & Ho 2022, Alg. 2), with the model's own clip."""
    x0, eps = model.predict(z, t, **kw)
    return expand_as(model.process.alpha(s), z) * x0 + expand_as(model.process.sigma(s), z) * eps


def two_step_target(
    teacher: Denoiser, z: torch.Tensor, t: torch.Tensor, t_mid: torch.Tensor, s: torch.Tensor, kw: dict
) -> torch.Tensor:
    """The x0 that makes one student DDIM step t -> s land where two teacher steps t -> t_mid -> s do
    (Salimans & Ho 2022, Alg. 2): x~ = (z'' - (sigma_s / sigma_t) z) / (alpha_s - (sigma_s / sigma_t) alpha_t)."""
    with torch.no_grad():
        z2 = ddim_step(teacher, ddim_step(teacher, z, t, t_mid, kw), t_mid, s, kw)
    p = teacher.process
    ratio = p.sigma(s) / p.sigma(t)
    den = p.alpha(s) - ratio * p.alpha(t)
    return (z2 - expand_as(ratio, z) * z) / expand_as(den, z)


@dataclass(frozen=True)
class ProgressiveLoss(DistillLoss):
    """Progressive distillation (Salimans & Ho 2022, Alg. 2): at t of the student's uniform grid of `steps`
    steps (time_grid, the grid `ddim` samples on), the student's x0 matches `two_step_target` of the teacher's
    grid of 2 `steps`, weighted by `weighting` (truncated SNR or SNR + 1) and averaged over dimensions."""

    name: ClassVar[str] = "progressive"
    uses_teacher: ClassVar[bool] = True
    consistency: ClassVar[bool] = False
    teacher: Any = None
    steps: int | None = None
    weighting: str = "truncated_snr"

    def validate_options(self) -> None:
        if not isinstance(self.steps, int) or self.steps < 1:
            raise UserError(f"train.loss progressive needs the student's steps (loss_options.steps), got {self.steps}")
        if self.weighting not in SNR_WEIGHTINGS:
            raise UserError(f"unknown weighting {self.weighting!r} for progressive; expected one of {SNR_WEIGHTINGS}")
        super().validate_options()

    def check(self, denoiser: Denoiser, x0: torch.Tensor) -> None:
        super().check(denoiser, x0)
        time_grid(denoiser.process, 2 * self.steps)  # the teacher's grid must exist (2 steps <= T)

    def per_example(self, model, x0, t64, noise, generator, kw) -> torch.Tensor:
        process, n = model.process, x0.shape[0]
        fine = time_grid(process, 2 * self.steps)
        k = 2 * torch.randint(0, self.steps, (n,), generator=generator, device=_draws_on(generator)).cpu()
        t, t_mid, s = fine[k], fine[k + 1], fine[k + 2]
        z = process.q_sample(x0, t, noise)
        target = two_step_target(teacher_model(self.teacher, x0.device), z, t, t_mid, s, kw)
        alpha, sigma = expand_as(process.alpha(t), z), expand_as(process.sigma(t), z)
        x0_hat = to_x0_eps(model.raw(z, t, **kw), z, alpha, sigma, model.prediction)[0]
        error = (x0_hat - target).pow(2).flatten(1).mean(1)
        return snr_weight(process, t, self.weighting).to(error) * error


@dataclass(frozen=True)
class ConsistencyLoss(DistillLoss):
    """What the consistency losses share: a pair of times s < t per example, the noisy x_t, the stopped
    target f(x_s, s) (no EMA teacher: iCT, sec. 3.2) and lambda = 1 / (r_t - r_s) times the pseudo-Huber
    distance (Song & Dhariwal 2023, sec. 3.1-3.3). Noise levels lognormal in r (p_mean, p_std; sec. 3.5;
    None: iCT's -1.1 and 2.0)."""

    p_mean: float | None = None
    p_std: float | None = None
    huber_c: float | None = None
    step: int = 0  # the training step, for a curriculum (`at_step`)

    def at_step(self, step: int) -> ConsistencyLoss:
        return dataclasses.replace(self, step=step)

    def pair(self, model: Denoiser, n: int, generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(s, t), s < t, per example (abstract)."""
        raise NotImplementedError  # abstract

    def lower_state(self, model, x0, noise, x_t, s, t, kw) -> torch.Tensor:
        """x_s with the same noise: the CT estimate alpha_s x0 + sigma_s eps (CD replaces it)."""
        return model.process.q_sample(x0, s, noise)

    def per_example(self, model, x0, t64, noise, generator, kw) -> torch.Tensor:
        s, t = self.pair(model, x0.shape[0], generator)
        process = model.process
        x_t = process.q_sample(x0, t, noise)
        x_s = self.lower_state(model, x0, noise, x_t, s, t, kw)
        with torch.no_grad():
            target = model.raw(x_s, s, **kw)
        weight = 1 / (noise_ratio(process, t) - noise_ratio(process, s))
        return weight.to(x0) * pseudo_huber(model.raw(x_t, t, **kw), target, self.huber_c)

    def lognormal(self) -> tuple[float, float]:
        """(P_mean, P_std) of log r: the options, or iCT's (Song & Dhariwal 2023, sec. 3.5)."""
        return (P_MEAN if self.p_mean is None else self.p_mean, P_STD if self.p_std is None else self.p_std)

    def lognormal_pair(self, process: Process, levels: torch.Tensor, n: int, generator) -> tuple[torch.Tensor, ...]:
        """Adjacent levels (s, t) of the increasing times `levels`, the pair drawn lognormally in r."""
        probs = lognormal_pair_probabilities(noise_ratio(process, levels), *self.lognormal())
        i = torch.multinomial(probs.float().to(_draws_on(generator)), n, replacement=True, generator=generator).cpu()
        return levels[i], levels[i + 1]


def _doubling(name: str, value: int | None, what: str) -> None:
    if not isinstance(value, int) or value < 1:
        raise UserError(
            f"train.loss {name} needs loss_options.doubling_every ({what}; by default from train.steps, so give it "
            "with a budget in minutes)"
        )


@dataclass(frozen=True)
class ConsistencyTrainingLoss(ConsistencyLoss):
    """Consistency training from data alone, with iCT's curriculum: N(k) Karras levels at step k, doubling from
    s0 to s1 every `doubling_every` steps (Song & Dhariwal 2023, eq. 6)."""

    name: ClassVar[str] = "consistency_training"
    s0: int = 10
    s1: int = 1280
    doubling_every: int | None = None

    def validate_options(self) -> None:
        _doubling(self.name, self.doubling_every, "steps per doubling of the levels")
        if not (isinstance(self.s0, int) and isinstance(self.s1, int) and 1 <= self.s0 <= self.s1):
            raise UserError(f"loss_options s0 and s1 must be integers with 1 <= s0 <= s1, got {self.s0} and {self.s1}")

    def pair(self, model, n, generator):
        levels = karras_times(model.process, curriculum_levels(self.step, self.s0, self.s1, self.doubling_every))
        return self.lognormal_pair(model.process, levels, n, generator)


@dataclass(frozen=True)
class ConsistencyDistillationLoss(ConsistencyLoss):
    """Consistency distillation (Song et al. 2023, Alg. 2): `levels` Karras levels; x_s is one step of the
    teacher's probability-flow ODE from x_t, taken by the fokker sampler `solver` on the grid [t, s] (edm_heun:
    Heun, the paper's; ddim, dpmpp_2m: first order on one step; dpmpp_2s, unipc ...). One sampler call per
    distinct level of the batch. `pairs`: the pair of adjacent levels is drawn lognormally in r (iCT's, with
    p_mean and p_std; the default: on the MNIST benchmark it beat uniform pairs at 2 and 4 steps) or uniform
    (the paper's n ~ U[1, N - 1]), which draws the top pair, where one-step sampling evaluates f, far more."""

    name: ClassVar[str] = "consistency_distillation"
    uses_teacher: ClassVar[bool] = True
    teacher: Any = None
    solver: str = "edm_heun"
    levels: int = 18
    pairs: str = "lognormal"

    def validate_options(self) -> None:
        get_sampler(self.solver)
        if not uses_grid(self.solver, {}):
            raise UserError(f"solver {self.solver!r} is adaptive; CD needs a sampler that steps on a grid")
        if not isinstance(self.levels, int) or self.levels < 2:
            raise UserError(f"loss_options.levels must be an integer >= 2, got {self.levels}")
        if self.pairs not in PAIRS:
            raise UserError(f"unknown loss_options.pairs {self.pairs!r}; expected one of {', '.join(PAIRS)}")
        if self.pairs == "uniform" and (self.p_mean, self.p_std) != (None, None):
            raise UserError("loss_options p_mean and p_std shape lognormal pairs; with them set pairs: lognormal")
        super().validate_options()

    def pair(self, model, n, generator):
        levels = karras_times(model.process, self.levels)
        if self.pairs == "lognormal":
            return self.lognormal_pair(model.process, levels, n, generator)
        i = torch.randint(0, len(levels) - 1, (n,), generator=generator, device=_draws_on(generator)).cpu()
        return levels[i], levels[i + 1]

    def lower_state(self, model, x0, noise, x_t, s, t, kw) -> torch.Tensor:
        teacher, solve = teacher_model(self.teacher, x0.device), get_sampler(self.solver)
        x_s = torch.empty_like(x_t)
        with torch.no_grad():
            for level in torch.unique(t).tolist():  # one solver step per distinct level, not per example
                rows = (t == level).nonzero().flatten()
                grid = torch.tensor([level, float(s[rows[0]])], dtype=F64)
                sub = {k: v[rows] if isinstance(v, torch.Tensor) else v for k, v in kw.items()}
                x_s[rows.to(x_t.device)] = solve(teacher, x_t[rows.to(x_t.device)], grid, model_kwargs=sub)[0]
        return x_s


@dataclass(frozen=True)
class ConsistencyTuningLoss(ConsistencyLoss):
    """Easy consistency tuning (Geng et al. 2024, sec. 3): from a diffusion model's weights, t lognormal in r,
    s at the ratio `ect_gap` gives, whose gap to t shrinks by q every `doubling_every` steps (stage 0: s =
    t_min, the diffusion loss); n(r) = 1 + k sigmoid(-b r)."""

    name: ClassVar[str] = "consistency_tuning"
    q: float = 2.0
    k: float = 8.0
    b: float = 1.0
    doubling_every: int | None = None

    def validate_options(self) -> None:
        _doubling(self.name, self.doubling_every, "steps per halving of the gap")
        if not self.q > 1:
            raise UserError(f"loss_options.q must exceed 1, got {self.q}")

    def pair(self, model, n, generator):
        process = model.process
        p_mean, p_std = self.lognormal()
        log_r = p_mean + p_std * torch.randn(n, generator=generator, device=_draws_on(generator)).cpu()
        ends = noise_ratio(process, torch.tensor([process.first_time, 1.0], dtype=F64))
        t = times_of_ratios(process, torch.exp(log_r.double()).clamp(*ends.tolist()))
        step_above = 1.0 / process.T if process.T is not None else 0.0
        t = t.clamp(min=process.first_time + step_above) if process.T is not None else t.clamp(min=2 * process.t_min)
        stage = math.ceil(self.step / self.doubling_every)
        r_s = ect_gap(noise_ratio(process, t), stage, self.q, self.k, self.b).clamp(min=float(ends[0]))
        s = times_of_ratios(process, r_s)
        s = torch.minimum(s, t - step_above) if process.T is not None else torch.minimum(s, t * (1 - 1e-6))
        return s.clamp(min=process.first_time), t


for _loss in (ProgressiveLoss, ConsistencyDistillationLoss, ConsistencyTrainingLoss, ConsistencyTuningLoss):
    register_loss(_loss)
