"""The loop shared by the multistep exponential integrators (DPM-Solver++, UniPC, DEIS).

Every Gaussian process x_t = alpha x_0 + sigma eps has the probability-flow ODE (Song et al. 2021, eq. 13)
in two exactly integrable forms, with lambda = log(alpha / sigma) (half the log-SNR) and rho = sigma / alpha:

    d(x / sigma) = e^lambda x0_hat dlambda          (the data form: DPM-Solver++, UniPC; Lu et al. 2022, eq. 9)
    d(x / alpha) = eps_hat drho                     (the noise form: DEIS; Zhang & Chen 2023, eq. 11)

A multistep method approximates x0_hat (or eps_hat) by a polynomial through its last evaluations, so one step
t_k -> t_k+1 is linear in them with coefficients that depend on the grid alone:

    x_k+1 = A_k x_k + sum_j P_kj D_k-j + std_k z,        D = x0_hat (data form) or eps_hat (noise form)

The coefficients are computed for the whole grid before the loop, in float64, by the method's `plan`. A
corrector (UniC, Zhao et al. 2023) re-estimates x_k+1 from the evaluation at the predicted x_k+1 before the next
step, x_k+1 = A_k x_k + sum_j C_kj M_k+1-j (M: x0_hat, the new evaluation first), at no extra NFE.

Shared by every method: step k's order is min(order, k + 1, steps - k) (a warm start and lower-order final
steps, as diffusers' lower_order_final), and a step that lands on t = 0 returns x0_hat at t_k with no noise (the
final step to the data, as DDPM and DDIM do). A grid that ends above 0 ends on the state at its last time."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from fokker.denoiser import Denoiser, linear_coefficients
from fokker.noise import randn
from fokker.samplers.registry import SamplerCall
from fokker.samplers.steps import conditionings

BASES = ("x0", "eps")


class Grid(NamedTuple):
    """The grid's times and, at each, alpha, sigma, lambda = log(alpha / sigma) and rho = sigma / alpha, as
    tuples of python floats (lambda = inf and rho = 0 where sigma = 0); hashable, so plans are cached by it."""

    t: tuple[float, ...]
    alpha: tuple[float, ...]
    sigma: tuple[float, ...]
    lam: tuple[float, ...]
    rho: tuple[float, ...]


Folds = dict[str, tuple[tuple[float, float], ...]]


@functools.lru_cache(maxsize=64)
def fold_table(grid: Grid, prediction: str) -> Folds:
    """Per basis ("x0", "eps") and grid time, (fx, fo) with x0_hat (or eps_hat) = fx x + fo out for a network
    that predicts `prediction` (`linear_coefficients`)."""
    alpha, sigma = torch.tensor(grid.alpha, dtype=torch.float64), torch.tensor(grid.sigma, dtype=torch.float64)
    table = [c.tolist() if isinstance(c, torch.Tensor) else [c] * len(grid.t)
             for c in linear_coefficients(alpha, sigma, prediction)]  # fmt: skip
    return {b: tuple(zip(u, v, strict=True)) for b, (u, v) in zip(BASES, (table[:2], table[2:]), strict=True)}


def clear_plans() -> None:
    """Empty the caches of `plan`, `folded_plan` and `fold_table` (a benchmark of the first call on a grid)."""
    for cached in (plan, folded_plan, fold_table):
        cached.cache_clear()


def grid_of(denoiser: Denoiser, times: torch.Tensor) -> Grid:
    """The Grid of `times` on the denoiser's process (float64)."""
    process = denoiser.process
    alpha, sigma = process.alpha(times), process.sigma(times)
    lam = torch.where(sigma > 0, torch.log(alpha) - torch.log(sigma), math.inf)
    return Grid(*(tuple(c.tolist()) for c in (times, alpha, sigma, lam, sigma / alpha)))


class Update(NamedTuple):
    """x_new = a x + sum_j weights[j] D_j + std z, D_0 the newest evaluation in `basis`, D_1 the one before...;
    x is the step's own start x_k, or with `from_previous` the state x_k-1 before it (a singlestep method's
    second stage, which restarts from the state its first stage left)."""

    a: float
    weights: tuple[float, ...]
    std: float = 0.0
    basis: str = "x0"
    from_previous: bool = False


# (grid, k, order) -> the Update of step k at that order (k's earlier evaluations are at times t_k, t_k-1, ...)
Predictor = Callable[[Grid, int, int], Update]
# (grid, k, order) -> the Update that corrects x_k+1 from x_k and [x0_hat(x_k+1 predicted), x0_hat_k, ...]
Corrector = Callable[[Grid, int, int], Update]


def step_orders(steps: int, order: int, lands_on_zero: bool) -> list[int]:
    """The order of each step: min(order, k + 1, steps - k); 0 for the step onto t = 0 (it returns x0_hat)."""
    orders = [min(order, k + 1, steps - k) for k in range(steps)]
    if lands_on_zero:
        orders[-1] = 0
    return orders


class _Evaluator:
    """One network evaluation at grid time k, as x0_hat and/or eps_hat (the bases asked for), each
    formed from the raw output by coefficients computed before the loop (`linear_coefficients`); through
    `predict_full` when the model clips x0_hat."""

    def __init__(self, denoiser: Denoiser, x: torch.Tensor, times: torch.Tensor, grid: Grid):
        self.denoiser, self.grid = denoiser, grid
        self.conds = conditionings(denoiser, times, x)
        self.folds = fold_table(grid, denoiser.prediction)

    def __call__(self, x: torch.Tensor, k: int, model_kwargs: dict, bases: set[str]) -> dict[str, torch.Tensor]:
        d, g = self.denoiser, self.grid
        if d.clip is not None:
            kw = {"alpha": g.alpha[k], "sigma": g.sigma[k], "cond": self.conds[k]}
            x0, eps, _ = d.predict_full(x, g.t[k], **kw, **model_kwargs)
            return {"x0": x0, "eps": eps}
        out = d.raw_and_variance(x, g.t[k], self.conds[k], **model_kwargs)[0]
        values = {}
        for basis in bases:
            fx, fo = self.folds[basis][k]
            same = fx == 0 and fo == 1  # the network predicts this basis itself
            values[basis] = out if same else torch.add(x * fx, out, alpha=fo)
        return values


def _combine(update: Update, x: torch.Tensor, history: Sequence[torch.Tensor]) -> torch.Tensor:
    """a x + sum_j weights[j] history[j]."""
    out = x * update.a
    for w, h in zip(update.weights, history, strict=False):
        out.add_(h, alpha=w)
    return out


Plan = tuple[list[Update | None], list[Update | None]]


@functools.lru_cache(maxsize=64)
def plan(grid: Grid, predictor: Predictor, order: int, corrector: Corrector | None) -> Plan:
    """Every step's predictor Update (None for the step onto t = 0, which returns x0_hat) and corrector Update
    (None where there is none: the last state before the data needs no correction), at the orders of
    `step_orders`. Cached by grid and method, so the batches of one sampling run compute it once; predictors
    and correctors are module-level functions or cached factories, so equal methods are the same object."""
    steps, lands_on_zero = len(grid.t) - 1, grid.t[-1] == 0
    orders = step_orders(steps, order, lands_on_zero)
    predictions = [predictor(grid, k, p) if p > 0 else None for k, p in enumerate(orders)]
    last_corrected = steps - 2 if lands_on_zero else steps - 1
    corrections = [corrector(grid, k, p) if corrector is not None and k < last_corrected else None
                   for k, p in enumerate(orders)]  # fmt: skip
    return predictions, corrections


Term = tuple[bool, int, float]  # (a network output? else a state, how many evaluations back, its weight)
Expr = dict[tuple[bool, int], float]  # (a network output? else a state, evaluation index) -> coefficient


def _linear(a: float, start: Expr, update: Update, k: int, folds: Folds) -> Expr:
    """a start + sum_i w_i D_k-i, with D_j = fx x_j + fo out_j (x_j the state evaluated at j, out_j the raw
    output there; `folds`), as coefficients on those tensors."""
    expr = {key: a * v for key, v in start.items()}
    for i, w in enumerate(update.weights):
        fx, fo = folds[update.basis][k - i]
        for key, v in (((False, k - i), fx), ((True, k - i), fo)):
            expr[key] = expr.get(key, 0.0) + w * v
    return expr


@functools.lru_cache(maxsize=64)
def folded_plan(
    grid: Grid, predictor: Predictor, order: int, corrector: Corrector | None, prediction: str
) -> tuple[list[list[Term]], list[float], int]:
    """`plan` with every step written as one combination of the raw outputs out_k-j and the states x_k-j they
    were evaluated at (the predicted states), so that neither x0_hat, eps_hat nor a corrected state is ever
    formed: (terms per step, noise std per step, how many evaluations back the terms reach); cached like `plan`.

    A corrected state x_k^c = a_c x_k-1^c + sum C M (the corrector's Update) needs x_k-1^c, the start of the
    prediction x_k = a_p x_k-1^c + R_k-1 that was evaluated at k, so x_k-1^c = (x_k - R_k-1) / a_p: every
    expression stays within the last order + 2 evaluations."""
    folds = fold_table(grid, prediction)
    predictions, corrections = plan(grid, predictor, order, corrector)
    plans, start_prev, rest_prev = [], {}, {}
    for k, update in enumerate(predictions):
        start = {(False, k): 1.0}  # x_k as evaluated
        if k > 0 and corrections[k - 1] is not None:
            a_p = predictions[k - 1].a
            x_prev = {key: -v / a_p for key, v in rest_prev.items()}
            x_prev[False, k] = x_prev.get((False, k), 0.0) + 1 / a_p
            start = _linear(corrections[k - 1].a, x_prev, corrections[k - 1], k, folds)
        if update is None:  # the step onto t = 0: x0_hat_k
            expr = _linear(0.0, {}, Update(0.0, (1.0,)), k, folds)
        else:
            rest_prev = _linear(0.0, {}, update, k, folds)
            expr = dict(rest_prev)
            base = start_prev if update.from_previous else start
            for key, v in base.items():
                expr[key] = expr.get(key, 0.0) + update.a * v
        start_prev = start
        plans.append([(is_out, k - j, w) for (is_out, j), w in expr.items() if w != 0])
    noise = [0.0 if u is None else u.std for u in predictions]
    return plans, noise, 1 + max((back for step in plans for _, back, _ in step), default=0)


def _run_folded(
    denoiser: Denoiser, x: torch.Tensor, times: torch.Tensor, grid: Grid, call: SamplerCall, method: tuple
) -> torch.Tensor:
    """The multistep loop without clipping or a callback (and, with a corrector, without a constraint): each
    step is one network evaluation and the combination of `folded_plan`, so no x0_hat, eps_hat or corrected
    state is formed (a 2M step on an eps-predicting network: four tensor operations; UniPC-2's: six)."""
    plans, noise, keep = folded_plan(grid, *method, denoiser.prediction)
    t, conds, kwargs = grid.t, conditionings(denoiser, times, x), call.model_kwargs
    states: list[torch.Tensor] = []
    outs: list[torch.Tensor] = []
    for k in tqdm(range(len(plans)), leave=False) if call.progress else range(len(plans)):
        states.insert(0, x)
        outs.insert(0, denoiser.raw_and_variance(x, t[k], conds[k], **kwargs)[0])
        del states[keep:], outs[keep:]
        (first, j, w), *rest = plans[k]
        x = (outs if first else states)[j] * w
        for is_out, j, w in rest:
            x.add_((outs if is_out else states)[j], alpha=w)
        if noise[k] > 0:
            x.add_(randn(x.shape, call.generator, device=x.device, dtype=x.dtype), alpha=noise[k])
        if call.constraint is not None and t[k + 1] > 0:
            x = call.constraint(x, t[k + 1])
    return x


@torch.no_grad()
def run_multistep(
    denoiser: Denoiser,
    x: torch.Tensor,
    times: torch.Tensor,
    call: SamplerCall,
    predictor: Predictor,
    order: int,
    corrector: Corrector | None = None,
) -> tuple[torch.Tensor, dict]:
    """The multistep loop of the module docstring: each step evaluates the model at (x_k, t_k) once; with a
    corrector, that evaluation first corrects x_k (from x_k-1 and the history) and is kept as step k's own.
    call.constraint(x, s) follows each predicted and each corrected state at s > 0; callback(k, x, x0_hat)
    ends each step. Without clipping or callback (and a constraint, with a corrector) the steps run folded
    (`_run_folded`): the same arithmetic, regrouped. Returns
    (x, {"nfe", "steps"})."""
    grid, steps = grid_of(denoiser, times), len(times) - 1
    nfe0 = denoiser.nfe
    if denoiser.clip is None and call.callback is None and (corrector is None or call.constraint is None):
        x = _run_folded(denoiser, x, times, grid, call, (predictor, order, corrector))
        return x, {"nfe": denoiser.nfe - nfe0, "steps": steps}
    predictions, corrections = plan(grid, predictor, order, corrector)
    # x0_hat is formed only where something reads it: the corrector, the callback, the step onto t = 0
    bases = {u.basis for u in predictions if u is not None}
    if corrector is not None or call.callback is not None:
        bases.add("x0")
    evaluate = _Evaluator(denoiser, x, times, grid)
    history: dict[str, list[torch.Tensor]] = {b: [] for b in bases}
    keep = max(order, 1) + 1
    x_prev = None
    for k in tqdm(range(steps), leave=False, disable=not call.progress):
        values = evaluate(x, k, call.model_kwargs, bases if predictions[k] is not None else bases | {"x0"})
        if k > 0 and corrections[k - 1] is not None:
            x = _combine(corrections[k - 1], x_prev, [values["x0"], *history["x0"]])
            if call.constraint is not None:
                x = call.constraint(x, grid.t[k])
        for basis in bases:
            history[basis].insert(0, values[basis])
            del history[basis][keep:]
        update = predictions[k]
        if update is None:  # the step onto t = 0: the data, x0_hat
            x_prev, x = x, values["x0"]
        else:
            start = x_prev if update.from_previous else x
            x_prev, x = x, _combine(update, start, history[update.basis])
            if update.std > 0:
                x.add_(randn(x.shape, call.generator, device=x.device, dtype=x.dtype), alpha=update.std)
            if call.constraint is not None and grid.t[k + 1] > 0:
                x = call.constraint(x, grid.t[k + 1])
        if call.callback is not None:
            call.callback(k, x, values["x0"])
    return x, {"nfe": denoiser.nfe - nfe0, "steps": steps}
