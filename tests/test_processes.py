import math

import pytest
import torch

from fokker import VE, VP, SubVP, process_from_config
from fokker.errors import UserError

F64 = torch.float64

PROCESSES = {
    "vp_linear_1000": lambda: VP(T=1000),
    "vp_cosine_100": lambda: VP(T=100, schedule="cosine"),
    "vp_continuous": lambda: VP(T=None),
    "subvp": lambda: SubVP(),
    "ve": lambda: VE(0.01, 50.0),
}


@pytest.mark.parametrize("T,schedule", [(1000, "linear"), (1000, "cosine"), (37, "linear")])
def test_composed_one_step_kernels_give_closed_form_marginal(T, schedule):
    """x_i = sqrt(1 - beta_i) x_{i-1} + sqrt(beta_i) eps: mean coefficient and variance composed exactly."""
    p = VP(T=T, schedule=schedule)
    betas = p.schedule.betas
    m, v = torch.ones((), dtype=F64), torch.zeros((), dtype=F64)
    means, variances = [m], [v]
    for b in betas:
        m, v = torch.sqrt(1 - b) * m, (1 - b) * v + b
        means.append(m)
        variances.append(v)
    t = p.grid
    assert torch.allclose(torch.stack(means), p.alpha(t), rtol=1e-11, atol=0)
    assert torch.allclose(torch.stack(variances), p.sigma(t) ** 2, rtol=1e-11, atol=1e-300)
    # and the process's own one-step transition is (sqrt(1 - beta_i), beta_i)
    a, var = p.transition(t=t[1:], s=t[:-1])
    assert torch.allclose(a, torch.sqrt(1 - betas), rtol=1e-12)
    assert torch.allclose(var, betas, rtol=1e-10)


@pytest.mark.parametrize("name", ["vp_linear_1000", "vp_continuous", "subvp", "ve"])
def test_sde_moment_equations_reproduce_marginal(name):
    """dm/dt = f m, dv/dt = 2 f v + g^2 (Saerkkae & Solin eq. 5.51) integrated by RK4 from the
    marginal at t0 matches alpha(t) and sigma(t)^2 at t = 1: the SDE and the marginal agree."""
    p = PROCESSES[name]()
    n = 2000 if p.T is None else p.T * 2
    t0 = 0.0 if p.T is not None else 1e-3
    ts = torch.linspace(t0, 1.0, n + 1, dtype=F64)

    def rhs(t, y):
        f = p.d_log_alpha(t)
        return torch.stack([f * y[0], 2 * f * y[1] + p.diffusion(t) ** 2])

    y = torch.stack([p.alpha(ts[0]), p.sigma(ts[0]) ** 2])
    for k in range(n):
        t, h = ts[k], ts[k + 1] - ts[k]
        eps_ = 1e-3 * h if p.T is not None else 0.0  # strictly inside each step: rates are constant there
        k1 = rhs(t + eps_, y)
        k2 = rhs(t + h / 2, y + h / 2 * k1)
        k3 = rhs(t + h / 2, y + h / 2 * k2)
        k4 = rhs(t + h - eps_, y + h * k3)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    assert y[0].item() == pytest.approx(p.alpha(ts[-1]).item(), rel=1e-8)
    assert y[1].item() == pytest.approx((p.sigma(ts[-1]) ** 2).item(), rel=1e-8)


@pytest.mark.parametrize("name", list(PROCESSES))
def test_posterior_equals_gaussian_product(name):
    """q(x_s | x_t, x0) propto q(x_t | x_s) q(x_s | x0), worked out as a product of Gaussians in x_s."""
    p = PROCESSES[name]()
    g = torch.Generator().manual_seed(1)
    if p.T is not None:
        i = torch.randint(2, p.T + 1, (64,), generator=g)
        j = (torch.rand(64, generator=g) * (i - 1)).long() + 1
        t, s = i.to(F64) / p.T, j.to(F64) / p.T
    else:
        t = 0.02 + 0.98 * torch.rand(64, generator=g, dtype=F64)
        s = t * (0.01 + 0.98 * torch.rand(64, generator=g, dtype=F64))
    x_t, x0 = torch.randn(64, 3, generator=g, dtype=F64), torch.randn(64, 3, generator=g, dtype=F64)
    # independent: q(x_t | x_s) = N(a x_s, v) with a, v from alpha and sigma directly
    alpha_t, alpha_s, sigma_t, sigma_s = p.alpha(t), p.alpha(s), p.sigma(t), p.sigma(s)
    a = alpha_t / alpha_s
    v = sigma_t**2 - a**2 * sigma_s**2
    precision = a**2 / v + 1 / sigma_s**2
    var = 1 / precision
    mean = var[:, None] * (a[:, None] * x_t / v[:, None] + alpha_s[:, None] * x0 / sigma_s[:, None] ** 2)
    got_mean, got_var = p.posterior(x_t, x0, t, s)
    assert torch.allclose(got_mean, mean, rtol=1e-9, atol=1e-10)
    assert torch.allclose(got_var.squeeze(-1), var, rtol=1e-9, atol=1e-14)


def test_posterior_one_step_is_ddpm_mu_tilde_beta_tilde():
    """Ho et al. 2020, eq. 7, at s = t - 1/T on the T = 1000 linear grid."""
    p = VP(T=1000)
    betas = p.schedule.betas
    abar = torch.cumprod(1 - betas, 0)
    i = torch.arange(2, 1001)  # t index; s = i - 1
    t, s = i.to(F64) / 1000, (i - 1).to(F64) / 1000
    c_t, c_0, var = p.posterior_coefficients(t, s)
    ab_t, ab_s, b = abar[i - 1], abar[i - 2], betas[i - 1]
    assert torch.allclose(c_0, ab_s.sqrt() * b / (1 - ab_t), rtol=1e-9)
    assert torch.allclose(c_t, (1 - b).sqrt() * (1 - ab_s) / (1 - ab_t), rtol=1e-9)
    assert torch.allclose(var, (1 - ab_s) / (1 - ab_t) * b, rtol=1e-9)
    # at the first step the posterior collapses onto x0: c_t = 0, c_0 = 1, var = 0
    c_t, c_0, var = p.posterior_coefficients(t=torch.tensor(1e-3, dtype=F64), s=torch.tensor(0.0, dtype=F64))
    assert (c_t.item(), c_0.item(), var.item()) == (0.0, pytest.approx(1.0, abs=1e-12), 0.0)


@pytest.mark.parametrize("name", PROCESSES)
def test_posterior_variance_and_first_time(name):
    """beta-tilde = var sigma_s^2 / sigma_t^2 is the posterior's variance and the low end of the learned range;
    times go later first, by position or keyword; first_time is 1 / T on a grid, else t_min."""
    p = PROCESSES[name]()
    t = torch.linspace(0.1, 1.0, 7, dtype=F64)
    s = 0.6 * t
    beta_tilde = p.posterior_variance(t, s)
    assert torch.equal(beta_tilde, p.posterior_coefficients(t, s)[2])
    assert torch.equal(beta_tilde, p.posterior_variance(s=s, t=t))
    assert torch.equal(torch.log(beta_tilde), p.log_variance_range(t, s)[0])
    var = p.transition(t, s)[1]
    assert torch.allclose(beta_tilde, var * p.sigma(s) ** 2 / p.sigma(t) ** 2, rtol=1e-12, atol=0)
    assert (beta_tilde < var).all()
    assert p.first_time == (1.0 / p.T if p.T is not None else p.t_min)


def test_sde_coefficients_closed_forms():
    t = torch.tensor([0.1, 0.5, 1.0], dtype=F64)
    ve = VE(0.01, 50.0)
    assert torch.allclose(ve.diffusion(t), ve.sigma(t) * math.sqrt(2 * math.log(5000.0)), rtol=1e-12)
    sub = SubVP()
    beta, abar = sub.schedule.beta(t), sub.alpha_bar(t)
    assert torch.allclose(sub.diffusion(t) ** 2, beta * (1 - abar**2), rtol=1e-12)
    vp = VP(T=None)
    assert torch.allclose(vp.diffusion(t) ** 2, vp.schedule.beta(t), rtol=1e-12)
    x = torch.ones(3, 2, dtype=F64)
    drift, _ = vp.sde(x, t)
    assert torch.allclose(drift, -0.5 * vp.schedule.beta(t)[:, None] * x)
    assert torch.all(sub.sigma(t) ** 2 <= vp.sigma(t) ** 2)  # sub-VP variance below VP


@pytest.mark.parametrize("name", list(PROCESSES))
def test_prior_logp_and_sampling(name, gen):
    p = PROCESSES[name]()
    x = p.prior_sample((20000, 2), gen, dtype=F64)
    assert x.std().item() == pytest.approx(p.prior_std, rel=0.02)
    normal = torch.distributions.Normal(torch.zeros((), dtype=F64), torch.tensor(p.prior_std, dtype=F64))
    assert torch.allclose(p.prior_logp(x[:5]), normal.log_prob(x[:5]).sum(1), rtol=1e-12)
    # the prior matches the marginal at t = 1 up to the schedule's residual signal
    assert p.sigma(1.0).item() == pytest.approx(p.prior_std, rel=1e-3)


def test_q_sample_and_times(gen):
    p = VP(T=10)
    x0 = torch.randn(5, 4, dtype=F64, generator=gen)
    noise = torch.randn(5, 4, dtype=F64, generator=gen)
    t = torch.tensor([0.1, 0.2, 0.3, 0.4, 1.0], dtype=F64)
    xt = p.q_sample(x0, t, noise)
    assert torch.allclose(xt, p.alpha(t)[:, None] * x0 + p.sigma(t)[:, None] * noise)
    ts = p.sample_time(10000, gen)
    assert set((ts * 10).round().long().tolist()) == set(range(1, 11))
    tc = VP(T=None).sample_time(10000, gen)
    assert tc.min() >= 1e-3 and tc.max() <= 1.0


@pytest.mark.parametrize("name", list(PROCESSES))
def test_config_round_trip(name):
    p = PROCESSES[name]()
    q = process_from_config(p.config())
    t = torch.linspace(0, 1, 11, dtype=F64)
    assert torch.equal(p.sigma(t), q.sigma(t)) and torch.equal(p.alpha(t), q.alpha(t)) and p.T == q.T


def test_bad_process_configs():
    with pytest.raises(UserError, match="unknown process type"):
        process_from_config({"type": "vpp"})
    with pytest.raises(UserError, match="bad options"):
        process_from_config({"type": "ve", "sigma": 3})
    with pytest.raises(UserError, match="sigma_min < sigma_max"):
        VE(1.0, 0.5)
