"""Samplers of training times. Uniform t is the process's own (`Process.sample_time`); the loss-aware
importance sampler (Nichol & Dhariwal 2021, sec. 3.3) draws t = i / T with p_i proportional to
sqrt(E[L_i^2]), reweighting each loss by 1 / (T p_i) so that the mean loss stays an unbiased estimate of
the uniform average (the variational bound, for L_vlb)."""

from __future__ import annotations

import torch

from fokker.errors import UserError
from fokker.noise import rand

TIME_SAMPLERS = ("uniform", "importance")


class LossAwareSampler:
    """p_i proportional to sqrt(mean of the last `history` squared losses at t_i = i / T), mixed with the
    uniform distribution at weight `uniform`; uniform until every i has `history` losses (improved-diffusion's
    LossSecondMomentResampler). Its state goes into checkpoints (`state_dict` / `load_state_dict`)."""

    def __init__(self, T: int | None, history: int = 10, uniform: float = 0.001):
        if T is None:
            raise UserError("importance sampling of t needs a discrete process (process.T steps)")
        if history < 1 or not 0 < uniform <= 1:
            raise UserError(f"need history >= 1 and uniform in (0, 1], got {history} and {uniform}")
        self.T, self.uniform = T, uniform
        self.losses = torch.zeros(T, history, dtype=torch.float64)
        self.counts = torch.zeros(T, dtype=torch.int64)

    @property
    def warm(self) -> bool:
        """Whether every time has a full history (before that, t is uniform)."""
        return bool((self.counts >= self.losses.shape[1]).all())

    def probabilities(self) -> torch.Tensor:
        """p_i for i = 1..T (float64)."""
        if not self.warm:
            return torch.full((self.T,), 1.0 / self.T, dtype=torch.float64)
        p = self.losses.pow(2).mean(1).sqrt()
        p = p / p.sum()
        return (1 - self.uniform) * p + self.uniform / self.T

    def sample(
        self, n: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(t, weights): n float32 times i / T with i ~ p, and the weights 1 / (T p_i), on `device`."""
        p = self.probabilities()
        u = rand((n,), generator, dtype=torch.float64).cpu()
        i = torch.searchsorted(torch.cumsum(p, 0), u * p.sum(), right=True).clamp(max=self.T - 1)
        t = ((i + 1).to(torch.float32) / self.T).to(device)
        return t, (1.0 / (self.T * p[i])).to(device=device, dtype=torch.float32)

    def update(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        """Record per-example (unweighted) losses at times t: each i keeps its `history` newest, in a ring."""
        idx = torch.round(t.detach().double().cpu() * self.T).long() - 1
        order = torch.argsort(idx, stable=True)
        idx, values = idx[order], losses.detach().double().cpu()[order]
        sizes = torch.bincount(idx, minlength=self.T)
        rank = torch.arange(len(idx)) - (torch.cumsum(sizes, 0) - sizes)[idx]  # position among equal i
        history = self.losses.shape[1]
        keep = rank >= sizes[idx] - history  # of more than `history` at one i, the newest
        self.losses[idx[keep], ((self.counts[idx] + rank) % history)[keep]] = values[keep]
        self.counts += sizes

    def state_dict(self) -> dict:
        return {"losses": self.losses.clone(), "counts": self.counts.clone()}

    def load_state_dict(self, state: dict) -> None:
        if state["losses"].shape != self.losses.shape:
            shape = tuple(state["losses"].shape)
            raise UserError(f"importance sampler state of shape {shape} does not fit T = {self.T}")
        self.losses, self.counts = state["losses"].clone(), state["counts"].clone()
