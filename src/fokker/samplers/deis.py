"""DEIS (Zhang & Chen 2023): the exponential integrator of the probability-flow ODE in its noise form,
d(x / alpha) = eps_hat drho with rho = sigma / alpha, eps_hat extrapolated by the Lagrange polynomial through
its last `order` evaluations (rhoAB-DEIS, Zhang & Chen 2023, eq. 14):

    x_k+1 = (alpha_k+1 / alpha_k) x_k + alpha_k+1 sum_j w_j eps_hat_k-j,   w_j = int_rho_k^rho_k+1 L_j(rho) drho,

L_j the Lagrange basis on the nodes rho_k, rho_k-1, ... A polynomial in rho rather than in log-SNR: its
error terms are those of Adams-Bashforth in rho, not DPM-Solver's."""

from __future__ import annotations

import math

import torch

from fokker.denoiser import Denoiser
from fokker.errors import UserError
from fokker.samplers.exponential import Grid, Update, run_multistep
from fokker.samplers.registry import SamplerCall, register
from fokker.samplers.unipc import CORRECTOR_RULES, check_corrector, unic

ORDERS = (1, 2, 3, 4)


# Gauss-Legendre nodes and weights on [0, 1] with 3 points: exact for polynomials of degree <= 5, the Lagrange
# basis of order <= 4 has degree <= 3
_GL_NODES = (0.5 - 0.5 * math.sqrt(0.6), 0.5, 0.5 + 0.5 * math.sqrt(0.6))
_GL_WEIGHTS = (5 / 18, 8 / 18, 5 / 18)


def lagrange_weights(nodes: list[float], lo: float, hi: float) -> list[float]:
    """int_lo^hi L_j(u) du for the Lagrange basis L_j on `nodes` (float64; the variable shifted and scaled to
    [0, 1] over [lo, hi] so that nodes spread over decades stay well conditioned), by Gauss-Legendre
    quadrature, exact for these polynomials."""
    width = hi - lo
    u = [(n - lo) / width for n in nodes]
    out = []
    for j, uj in enumerate(u):
        total = 0.0
        for q, wq in zip(_GL_NODES, _GL_WEIGHTS, strict=True):
            term = wq
            for m, um in enumerate(u):
                if m != j:
                    term *= (q - um) / (uj - um)
            total += term
        out.append(total * width)
    return out


def rho_ab(grid: Grid, k: int, order: int) -> Update:
    """The rhoAB-DEIS step k -> k + 1 of the module docstring, over [eps_hat_k, eps_hat_k-1, ...]."""
    nodes = [grid.rho[k - j] for j in range(order)]
    weights = lagrange_weights(nodes, grid.rho[k], grid.rho[k + 1])
    alpha = grid.alpha[k + 1]
    return Update(alpha / grid.alpha[k], tuple(alpha * w for w in weights), basis="eps")


@register("deis", only_when=CORRECTOR_RULES)
def deis(
    denoiser: Denoiser,
    x: torch.Tensor,
    times: torch.Tensor,
    call: SamplerCall,
    *,
    order: int = 3,
    corrector: str = "none",
    b_h: str = "bh2",
) -> tuple[torch.Tensor, dict]:
    """rhoAB-DEIS of the given order (Zhang & Chen 2023, eq. 14; order 1 is DDIM), deterministic, NFE =
    steps; corrector "unic" adds UniPC's corrector (Zhao et al. 2023) with B(h) = `b_h`."""
    if order not in ORDERS:
        raise UserError(f"deis order must be one of {ORDERS}, got {order}")
    check_corrector(corrector, b_h)
    return run_multistep(denoiser, x, times, call, rho_ab, order, unic(b_h) if corrector == "unic" else None)
