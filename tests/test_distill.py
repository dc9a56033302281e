"""Few-step models against exact answers: progressive distillation of an exact Gaussian teacher (the two-step
DDIM target, and a student that learns it), the consistency function's boundary condition, consistency
distillation and training converging to the closed-form probability-flow map, the levels and curriculum."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from fokker.denoiser import Denoiser
from fokker.distill.consistency_model import ConsistencyDenoiser, noise_ratio, skip_coefficient
from fokker.distill.levels import (
    curriculum_levels,
    ect_gap,
    karras_times,
    lognormal_pair_probabilities,
    pseudo_huber,
)
from fokker.distill.losses import (
    ConsistencyDistillationLoss,
    ConsistencyTrainingLoss,
    ConsistencyTuningLoss,
    ProgressiveLoss,
    two_step_target,
)
from fokker.errors import UserError
from fokker.processes import VE, VP
from fokker.samplers import sample, time_grid
from fokker.targets import GaussianTarget, exact_denoiser

F64 = torch.float64
PROCESSES = {
    "vp-cosine-1000": lambda: VP(1000, "cosine"),
    "vp-linear-continuous": lambda: VP(None),
    "ve": lambda: VE(0.01, 20.0),
}


def oracle_ddim(target: GaussianTarget, process, z, t, s):
    """One DDIM step with the exact posterior mean, written from the Gaussian's closed form."""
    a_t, s_t, a_s, s_s = (float(f(torch.tensor(v, dtype=F64))) for v in (t, s) for f in (process.alpha, process.sigma))
    m = target.posterior_mean(z, t, process)
    return a_s * m + s_s * (z - a_t * m) / s_t


class PerLevel(nn.Module):
    """An affine map x -> A_k x + b_k for each of a fixed set of times (the conditioning picks k): it can
    represent every Gaussian answer exactly, so training error measures the method, not the network."""

    def __init__(self, times: torch.Tensor, dim: int):
        super().__init__()
        self.times = times.to(F64)
        self.A = nn.Parameter(torch.zeros(len(times), dim, dim, dtype=F64))
        self.b = nn.Parameter(torch.zeros(len(times), dim, dtype=F64))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        k = (c.to(F64)[:, None] - self.times[None]).abs().argmin(1)
        return torch.einsum("bij,bj->bi", self.A[k], x) + self.b[k]


@pytest.mark.parametrize("name", PROCESSES)
def test_two_step_target_is_the_teachers_two_ddim_steps(name):
    process, target = PROCESSES[name](), GaussianTarget.anisotropic(4)
    teacher = exact_denoiser(target, process)
    grid = time_grid(process, 8)
    g = torch.Generator().manual_seed(0)
    for k in (0, 2, 6):  # the first pair starts at t = 1, the last lands on t = 0
        t, tm, s = grid[k], grid[k + 1], grid[k + 2]
        z = process.q_sample(target.sample(256, g), t, torch.randn(256, 4, generator=g, dtype=F64))
        n = torch.full((256,), float(t), dtype=F64)
        got = two_step_target(teacher, z, n, torch.full_like(n, float(tm)), torch.full_like(n, float(s)), {})
        z2 = oracle_ddim(target, process, oracle_ddim(target, process, z, float(t), float(tm)), float(tm), float(s))
        a_t, s_t, a_s, s_s = (float(f(v)) for v in (t, s) for f in (process.alpha, process.sigma))
        want = (z2 - s_s / s_t * z) / (a_s - s_s / s_t * a_t)
        assert torch.allclose(got, want, rtol=1e-9, atol=1e-9 * want.abs().max().item())
        # one student DDIM step with x0 = the target lands where the two teacher steps do
        assert torch.allclose(a_s * got + s_s * (z - a_t * got) / s_t, z2, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("prediction", ["x0", "v"])
def test_progressive_student_learns_the_two_step_teacher(prediction):
    process, target, N = VP(1000, "cosine"), GaussianTarget.anisotropic(3), 4
    teacher = exact_denoiser(target, process)
    student_net = PerLevel(time_grid(process, N)[:-1], 3)
    student = Denoiser(student_net, process, prediction)
    loss_fn = ProgressiveLoss(teacher, steps=N)
    opt = torch.optim.Adam(student_net.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(1)
    x_T = torch.randn(2000, 3, generator=torch.Generator().manual_seed(2), dtype=F64)
    teacher_x = sample(teacher, "ddim", 2 * N, x_T=x_T)[0]

    def error() -> float:
        with torch.no_grad():
            got = sample(student, "ddim", N, x_T=x_T)[0]
        return float((got - teacher_x).norm() / teacher_x.norm())

    before = error()
    for _ in range(400):
        loss = loss_fn(student, target.sample(512, g), generator=g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = error()
    assert after < 0.01 < before, (before, after)


def test_progressive_refuses_what_it_cannot_do():
    process = VP(1000, "cosine")
    teacher = exact_denoiser(GaussianTarget.anisotropic(2), process)
    x0 = torch.zeros(4, 2, dtype=F64)
    with pytest.raises(UserError, match="draws its own times"):
        ProgressiveLoss(teacher, steps=2)(teacher, x0, t=torch.ones(4))
    with pytest.raises(UserError, match="steps"):
        ProgressiveLoss(teacher)(teacher, x0)
    with pytest.raises(UserError, match="at most T"):
        ProgressiveLoss(teacher, steps=600)(teacher, x0)
    cm = ConsistencyDenoiser(lambda x, c: x, process, "x0")
    with pytest.raises(UserError, match="parameterisation diffusion"):
        ProgressiveLoss(teacher, steps=2)(cm, x0)


@pytest.mark.parametrize("name", PROCESSES)
@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("inner", ["eps", "x0", "v"])
def test_boundary_condition_is_exact_for_any_network(name, dtype, inner):
    process = PROCESSES[name]()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 2)).to(dtype)
    model = ConsistencyDenoiser(lambda x, c: net(torch.cat([x, c[:, None]], 1)), process, inner)
    x = 3 * torch.randn(64, 2, dtype=dtype)
    t_min = process.first_time
    alpha = process.alpha(torch.tensor(t_min, dtype=F64)).to(dtype)
    assert torch.equal(model.x0(x, t_min), x / alpha)
    assert torch.equal(model.x0(x, torch.full((64,), t_min, dtype=dtype)), x / alpha)  # float32 times too
    r = noise_ratio(process, torch.tensor([t_min, 0.5, 1.0], dtype=F64))
    skip = skip_coefficient(r, model.r_min)
    assert skip[0] == 1.0 and bool((skip[1:] < 1).all())


def exact_consistency_function(target, process, x, t):
    """f*(x, t) = the exact probability-flow solution at t_min, divided by alpha(t_min) (the boundary)."""
    t_min = process.first_time
    alpha_min = float(process.alpha(torch.tensor(t_min, dtype=F64)))
    return target.flow(x, t, t_min, process) / alpha_min


def consistency_error(model, target, process, levels, g) -> float:
    """Relative error of f against f* over the levels above t_min, on noisy data."""
    num = den = 0.0
    with torch.no_grad():
        for t in levels[1:].tolist():
            x = process.q_sample(target.sample(512, g), t, torch.randn(512, target.dim, generator=g, dtype=F64))
            want = exact_consistency_function(target, process, x, t)
            num += float((model.x0(x, t) - want).pow(2).sum())
            den += float(want.pow(2).sum())
    return math.sqrt(num / den)


def train_consistency(loss_fn, model, net, target, steps, g, lr=0.02):
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for step in range(steps):
        loss = loss_fn.at_step(step)(model, target.sample(512, g), generator=g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize(("solver", "floor"), [("edm_heun", 0.06), ("ddim", 0.16)])
def test_consistency_distillation_converges_to_the_exact_flow_map(solver, floor):
    """f converges to the consistency function of the solver's steps on 18 levels, so its error against the
    exact flow map falls to the solver's accumulated discretisation error (Heun's is about half DDIM's)."""
    process, target = VP(None, "linear"), GaussianTarget.anisotropic(2)
    teacher = exact_denoiser(target, process)
    levels = karras_times(process, 18)
    net = PerLevel(levels, 2)
    model = ConsistencyDenoiser(net, process, "x0")
    g = torch.Generator().manual_seed(3)
    loss_fn = ConsistencyDistillationLoss(teacher=teacher, solver=solver, levels=18, p_std=3.0, huber_c=1.0)
    errors = [consistency_error(model, target, process, levels, g)]
    for steps in (60, 600):
        train_consistency(loss_fn, model, net, target, steps, g)
        errors.append(consistency_error(model, target, process, levels, g))
    assert errors[2] < 0.6 * errors[1] < 0.6 * errors[0] and errors[2] < floor, errors


def test_consistency_training_approaches_the_exact_flow_map():
    process, target = VE(0.01, 10.0), GaussianTarget.anisotropic(2)
    levels = karras_times(process, 11)  # the curriculum stays at s0 + 1 = 11 levels
    net = PerLevel(levels, 2)
    model = ConsistencyDenoiser(net, process, "x0")
    g = torch.Generator().manual_seed(4)
    loss_fn = ConsistencyTrainingLoss(s0=10, s1=10, doubling_every=10**6, p_std=3.0, huber_c=1.0)
    before = consistency_error(model, target, process, levels, g)
    train_consistency(loss_fn, model, net, target, 600, g, lr=0.01)
    after = consistency_error(model, target, process, levels, g)
    assert after < 0.3 * before, (before, after)


def test_one_step_sampling_with_the_exact_consistency_function_is_the_flow_map():
    process, target = VP(1000, "cosine"), GaussianTarget.anisotropic(3)
    model = Denoiser(lambda x, c: exact_consistency_function(target, process, x, c), process, "x0")
    x_T = torch.randn(100, 3, generator=torch.Generator().manual_seed(5), dtype=F64)
    got, info = sample(model, "consistency", 1, x_T=x_T)
    assert info["nfe"] == 1
    assert torch.allclose(got, exact_consistency_function(target, process, x_T, 1.0), rtol=1e-12, atol=1e-12)


def test_multistep_consistency_sampling_renoises_with_the_exact_marginal():
    process = VP(1000, "cosine")
    seen = []

    def fn(x, c):
        seen.append((x.clone(), c.clone()))
        return torch.full_like(x, 0.25)  # f = 0.25 everywhere

    model = Denoiser(fn, process, "x0")
    g = torch.Generator().manual_seed(6)
    x, info = sample(model, "consistency", 2, shape=(20000, 2), generator=g)
    assert info["nfe"] == 2 and torch.equal(x, torch.full_like(x, 0.25))
    x_mid, c_mid = seen[1]
    t = float(c_mid[0])
    alpha, sigma = float(process.alpha(torch.tensor(t))), float(process.sigma(torch.tensor(t)))
    assert t == 0.5
    assert abs(x_mid.mean().item() - 0.25 * alpha) < 5 * sigma / math.sqrt(40000)
    assert abs(x_mid.std().item() / sigma - 1) < 0.03


def test_levels_curriculum_and_distance():
    assert [curriculum_levels(k, 10, 1280, 100) for k in (0, 99, 100, 250, 10**6)] == [11, 11, 21, 41, 1281]
    for name in PROCESSES:
        process = PROCESSES[name]()
        t = karras_times(process, 12)
        assert t[0] == process.first_time and t[-1] == 1.0 and bool((t[1:] > t[:-1]).all())
        p = lognormal_pair_probabilities(noise_ratio(process, t), -1.1, 2.0)
        assert len(p) == len(t) - 1 and abs(float(p.sum()) - 1) < 1e-12 and bool((p >= 0).all())
    a, b = torch.zeros(3, 4), torch.tensor([[0.0] * 4, [3.0, 4.0, 0, 0], [1.0, 0, 0, 0]])
    c = 0.00054 * 2
    assert torch.allclose(pseudo_huber(a, b), torch.tensor([0.0, math.sqrt(25 + c * c) - c, math.sqrt(1 + c * c) - c]))
    r = torch.tensor([0.5, 2.0, 50.0], dtype=F64)
    assert bool((ect_gap(r, 0, 2.0, 8.0, 1.0) <= 0).all())  # stage 0: the diffusion loss
    gap1, gap3 = r - ect_gap(r, 1, 2.0, 8.0, 1.0), r - ect_gap(r, 3, 2.0, 8.0, 1.0)
    assert torch.allclose(gap1 / gap3, torch.full_like(r, 4.0))  # the gap halves each stage


def test_consistency_tuning_pairs_are_ordered_and_shrink():
    process = VP(1000, "cosine")
    model = ConsistencyDenoiser(lambda x, c: x, process, "v")
    g = torch.Generator().manual_seed(7)
    gaps = []
    for step in (0, 100, 400):
        s, t = ConsistencyTuningLoss(doubling_every=100, step=step).pair(model, 5000, g)
        assert bool((s < t).all()) and bool((s >= process.first_time).all()) and bool((t <= 1).all())
        gaps.append(float((noise_ratio(process, t) - noise_ratio(process, s)).median()))
        if step == 0:
            assert bool((s == process.first_time).all())  # stage 0 is the diffusion loss
    assert gaps[0] > gaps[1] > gaps[2]


def test_consistency_distillation_pairs_are_lognormal_or_uniform():
    """CD's pair is a uniform n of the N levels with pairs uniform (Song et al. 2023, Alg. 2), so the top pair,
    where one-step sampling evaluates f, is drawn as often as any; iCT's lognormal pairs (r median e^-1.1, the
    default) almost never draw it."""
    process = VP(1000, "cosine")
    model = ConsistencyDenoiser(lambda x, c: x, process, "v")
    levels = karras_times(process, 18)
    n, draws = len(levels) - 1, 34000
    for pairs, top_share in (("uniform", (0.8 / n, 1.2 / n)), ("lognormal", (0.0, 0.01))):
        loss = ConsistencyDistillationLoss(teacher=exact_denoiser(GaussianTarget.anisotropic(2), process), pairs=pairs)
        s, t = loss.pair(model, draws, torch.Generator().manual_seed(8))
        index = torch.searchsorted(levels, t) - 1
        assert torch.equal(s, levels[index])  # adjacent levels
        counts = torch.bincount(index, minlength=n).double() / draws
        assert top_share[0] <= float(counts[-1]) <= top_share[1], (pairs, counts)
        if pairs == "uniform":  # each share within 20% of 1 / n: over 9 standard deviations at 34,000 draws
            assert bool(((counts - 1 / n).abs() < 0.2 / n).all()), counts
    assert ConsistencyDistillationLoss(teacher=model).pairs == "lognormal"
    with pytest.raises(UserError, match="pairs: lognormal"):
        ConsistencyDistillationLoss(teacher=model, pairs="uniform", p_std=3.0)
    with pytest.raises(UserError, match=r"unknown loss_options\.pairs"):
        ConsistencyDistillationLoss(teacher=model, pairs="sometimes")
