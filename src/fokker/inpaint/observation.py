"""What is known of x_0, in an orthogonal basis, and the replacement constraint that keeps it known while a
sampler runs (Song et al. 2021, sec. 5 and app. I.2-I.3).

Known coordinates are those of u = B x, B an orthogonal matrix acting on the channels of each pixel (the
identity for inpainting, the colour basis of fokker.inpaint.colour for colorization). Since B is orthogonal,
B x_t = alpha B x_0 + sigma B eps with B eps ~ N(0, I): the known part of u_t is alpha(t) u_0 + sigma(t) z."""

from __future__ import annotations

from typing import NamedTuple

import torch

from fokker.noise import Generators, randn
from fokker.processes import Process


class Observation(NamedTuple):
    """u_0 = B x_0 is known where `known` is True: `values` (B x_0's shape, only the known entries are read),
    `known` a bool tensor broadcastable to it, `basis` the (C, C) orthogonal B acting on dim 1 (None: the
    identity, x's own coordinates)."""

    values: torch.Tensor
    known: torch.Tensor
    basis: torch.Tensor | None = None

    def to_basis(self, x: torch.Tensor) -> torch.Tensor:
        """u = B x, channel by channel (dim 1)."""
        if self.basis is None:
            return x
        return torch.einsum("cd,bd...->bc...", self.basis.to(x), x)

    def from_basis(self, u: torch.Tensor) -> torch.Tensor:
        """x = B^T u (B orthogonal)."""
        if self.basis is None:
            return u
        return torch.einsum("dc,bd...->bc...", self.basis.to(u), u)

    def replace(self, x: torch.Tensor, known_part: torch.Tensor) -> torch.Tensor:
        """x with the known coordinates of B x set to those of `known_part` (given in the basis)."""
        return self.from_basis(torch.where(self.known.to(x.device), known_part, self.to_basis(x)))

    def paste(self, x: torch.Tensor) -> torch.Tensor:
        """x with its known part set to the data itself (at t = 0)."""
        return self.replace(x, self.values.to(x))


class Replacement:
    """The replacement constraint (Song et al. 2021, app. I.2): x = constraint(x, s) sets the known part of
    B x to a fresh draw of q(u_s | u_0) = N(alpha(s) u_0, sigma(s)^2 I) at each new time s. Repeated calls
    at one time s (the Langevin updates at one noise level) reuse that draw, as NCSN's inpainting draws the
    noised known image once per level (Song & Ermon 2019, app. B.3, Alg. 2), so that the updates at a level
    move the unknown part toward p_s(unknown | known part) with the known part held still."""

    def __init__(self, observation: Observation, process: Process, generator: Generators = None):
        self.observation, self.process, self.generator = observation, process, generator
        self._time: float | None = None
        self._known_part: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor, s: float) -> torch.Tensor:
        if s != self._time:
            alpha, sigma = (
                float(f(torch.tensor(s, dtype=torch.float64))) for f in (self.process.alpha, self.process.sigma)
            )
            z = randn(x.shape, self.generator, device=x.device, dtype=x.dtype)
            self._known_part, self._time = self.observation.values.to(x).mul(alpha).add_(z, alpha=sigma), s
        return self.observation.replace(x, self._known_part)
