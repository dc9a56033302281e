"""UniPC (Zhao et al. 2023): the unified predictor UniP and corrector UniC, in the data form of the
probability-flow ODE (samplers/exponential.py). With h = lambda_k+1 - lambda_k, r_i = (lambda_k-i - lambda_k) / h
and D1_i = (x0_hat_k-i - x0_hat_k) / r_i (Zhao et al. 2023, Alg. 2-3, eq. 8):

    UniP-p:  x_k+1 = (sigma_k+1 / sigma_k) x_k - alpha_k+1 (e^-h - 1) x0_hat_k - alpha_k+1 B(h) sum_i<p a_i D1_i
    UniC-p:  the same from x_k with D1_p = x0_hat(x_k+1 predicted) - x0_hat_k added, weights c_i (order p + 1)

where the weights solve R a = g: R_ij = r_j^(i-1) and g_i = i! phi_i+1(h) / B(h) (Zhao et al. 2023, Thm. 3.1;
phi_k the exponential integrator's functions of -h), order 2's predictor taking a_1 = 1/2; B(h) = -h ("bh1")
or e^-h - 1 ("bh2"). The evaluation at the predicted x_k+1 is kept as step k + 1's own, so UniC adds no NFE."""

from __future__ import annotations

import functools
import math

import torch

from fokker.denoiser import Denoiser
from fokker.errors import UserError
from fokker.samplers.exponential import Corrector, Grid, Update, run_multistep
from fokker.samplers.registry import SamplerCall, register, when

B_H = ("bh1", "bh2")
CORRECTORS = ("unic", "none")
CORRECTOR_RULES = {"b_h": when("corrector", "unic")}
ORDERS = (1, 2, 3)


def check_corrector(corrector: str, b_h: str) -> None:
    """A UserError for an unknown corrector or B(h)."""
    if corrector not in CORRECTORS:
        raise UserError(f"unknown corrector {corrector!r}; expected one of {CORRECTORS}")
    if b_h not in B_H:
        raise UserError(f"unknown b_h {b_h!r}; expected one of {B_H}")


def _solve(matrix: list[list[float]], rhs: list[float]) -> list[float]:
    """The solution of a small dense linear system by Gaussian elimination with partial pivoting (python floats:
    the systems here are at most 3 x 3, where a tensor solve costs more than its arithmetic)."""
    n = len(rhs)
    a = [[*row, b] for row, b in zip(matrix, rhs, strict=True)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        a[col], a[pivot] = a[pivot], a[col]
        for r in range(col + 1, n):
            f = a[r][col] / a[col][col]
            a[r] = [x - f * y for x, y in zip(a[r], a[col], strict=True)]
    out = [0.0] * n
    for r in reversed(range(n)):
        out[r] = (a[r][n] - sum(a[r][c] * out[c] for c in range(r + 1, n))) / a[r][r]
    return out


def _system(
    grid: Grid, k: int, order: int, b_h: str
) -> tuple[float, float, list[float], list[list[float]], list[float]]:
    """(h, B(h), [r_1 .. r_order-1], R, g) of step k (the module docstring's), in float64."""
    h = grid.lam[k + 1] - grid.lam[k]
    b = -h if b_h == "bh1" else math.expm1(-h)
    rks = [(grid.lam[k - i] - grid.lam[k]) / h for i in range(1, order)]
    nodes = [*rks, 1.0]
    R = [[node**i for node in nodes] for i in range(order)]
    g, phi, factorial = [], math.expm1(-h) / -h - 1, 1.0  # phi_2(-h), then phi_3, ... by their recursion
    for i in range(1, order + 1):
        g.append(phi * factorial / b)
        factorial *= i + 1
        phi = phi / -h - 1 / factorial
    return h, b, rks, R, g


def _base(grid: Grid, k: int, h: float) -> tuple[float, float]:
    """(sigma_k+1 / sigma_k, -alpha_k+1 (e^-h - 1)): the first-order (DDIM) step's coefficients."""
    return grid.sigma[k + 1] / grid.sigma[k], -grid.alpha[k + 1] * math.expm1(-h)


@functools.cache
def unip(b_h: str):
    """UniP-p, the predictor of the module docstring, over [x0_hat_k, x0_hat_k-1, ...]."""

    def predictor(grid: Grid, k: int, order: int) -> Update:
        h, b, rks, R, g = _system(grid, k, order, b_h)
        a, c0 = _base(grid, k, h)
        if order == 1:
            return Update(a, (c0,))
        rhos = [0.5] if order == 2 else _solve([row[:-1] for row in R[:-1]], g[:-1])
        scale = -grid.alpha[k + 1] * b
        older = [scale * rho / r for rho, r in zip(rhos, rks, strict=True)]
        return Update(a, (c0 - sum(older), *older))

    return predictor


@functools.cache
def unic(b_h: str) -> Corrector:
    """UniC-p, the corrector of the module docstring, over [x0_hat(x_k+1 predicted), x0_hat_k, x0_hat_k-1, ...]."""

    def corrector(grid: Grid, k: int, order: int) -> Update:
        h, b, rks, R, g = _system(grid, k, order, b_h)
        a, c0 = _base(grid, k, h)
        rhos = [0.5] if order == 1 else _solve(R, g)
        scale = -grid.alpha[k + 1] * b
        older = [scale * rho / r for rho, r in zip(rhos[:-1], rks, strict=True)]
        new = scale * rhos[-1]
        return Update(a, (new, c0 - sum(older) - new, *older))

    return corrector


@register("unipc")
def unipc(
    denoiser: Denoiser,
    x: torch.Tensor,
    times: torch.Tensor,
    call: SamplerCall,
    *,
    order: int = 2,
    b_h: str = "bh2",
    corrector: str = "unic",
) -> tuple[torch.Tensor, dict]:
    """UniPC (Zhao et al. 2023): the UniP-`order` predictor with the UniC corrector (corrector "none": UniP
    alone), both with B(h) = `b_h` ("bh1": -h; "bh2": e^-h - 1). Deterministic, NFE = steps."""
    if order not in ORDERS:
        raise UserError(f"unipc order must be one of {ORDERS}, got {order}")
    check_corrector(corrector, b_h)
    return run_multistep(denoiser, x, times, call, unip(b_h), order, unic(b_h) if corrector == "unic" else None)
