"""Improved DDPM: the learned reverse variance (sampling and the bound), the hybrid and L_vlb losses, and
the loss-aware importance sampler of training times."""

import math

import pytest
import torch

import fokker
from fokker.errors import UserError
from fokker.losses import hybrid_loss, simple_loss, vlb_loss
from fokker.samplers import get_sampler, time_grid
from fokker.targets import GaussianMixture, exact_denoiser
from fokker.timesteps import LossAwareSampler
from fokker.vlb import vlb

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py
F64 = torch.float64
MIXTURE = GaussianMixture.unequal_2d()


def with_constant_v(process, v: float) -> fokker.Denoiser:
    """The mixture's exact eps plus a constant learned-variance output v."""
    exact = exact_denoiser(MIXTURE, process)
    fn = lambda x, c: torch.cat([exact.fn(x, c), torch.full_like(x, v)], 1)  # noqa: E731
    return fokker.Denoiser(fn, process, variance="learned")


def test_learned_variance_output_is_split_off():
    process = fokker.VP(T=10)
    d = with_constant_v(process, 0.3)
    x = torch.randn(4, 2, dtype=F64)
    out, v = d.raw_and_variance(x, 0.5)
    assert out.shape == (4, 2) and torch.equal(v, torch.full_like(x, 0.3))
    assert torch.equal(d.raw(x, 0.5), out)
    bad = fokker.Denoiser(lambda x, c: x, process, variance="learned")
    with pytest.raises(UserError, match="2 x 2 channels"):
        bad.raw(x, 0.5)


@pytest.mark.parametrize("steps", [100, 7])
@pytest.mark.parametrize("v,fixed", [(0.0, "beta_tilde"), (1.0, "beta")])
def test_learned_variance_at_its_ends_samples_as_the_fixed_ones(steps, v, fixed):
    """v = 0 is beta-tilde and v = 1 is beta (Nichol & Dhariwal 2021, eq. 15), on the full and a respaced grid."""
    process = fokker.VP(T=100)
    times = time_grid(process, steps)
    x_T = torch.randn(64, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    ddpm = get_sampler("ddpm")
    learned, _ = ddpm(with_constant_v(process, v), x_T, times, generator=torch.Generator().manual_seed(1))
    plain, _ = ddpm(
        exact_denoiser(MIXTURE, process), x_T, times, variance=fixed, generator=torch.Generator().manual_seed(1)
    )
    assert torch.allclose(learned, plain, atol=1e-12)
    mid, _ = ddpm(with_constant_v(process, 0.5), x_T, times, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(mid, plain, atol=1e-6)


@pytest.mark.parametrize("v,fixed", [(0.0, "beta_tilde"), (1.0, "beta")])
def test_learned_variance_at_its_ends_bounds_as_the_fixed_ones(v, fixed):
    process = fokker.VP(T=50)
    x = MIXTURE.sample(200, torch.Generator().manual_seed(0)).double()
    learned = vlb(with_constant_v(process, v), x, generator=torch.Generator().manual_seed(1))
    plain = vlb(exact_denoiser(MIXTURE, process), x, variance=fixed, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(learned["terms"], plain["terms"], atol=1e-10)


def test_ddpm_refuses_a_learned_variance_the_model_lacks():
    process = fokker.VP(T=10)
    with pytest.raises(UserError, match="learned variance"):
        get_sampler("ddpm")(
            exact_denoiser(MIXTURE, process), torch.zeros(2, 2), time_grid(process, 5), variance="learned"
        )


def test_vlb_loss_is_an_unbiased_estimate_of_the_bound():
    """E_t[T L_{t-1}] / (D ln 2) is the bound less L_T, in bits per dimension."""
    process = fokker.VP(T=20)
    x = MIXTURE.sample(300, torch.Generator().manual_seed(0)).double()
    d = exact_denoiser(MIXTURE, process)
    full = vlb(d, x, generator=torch.Generator().manual_seed(1))
    target = (full["nll"] - full["prior"]).mean().item() / (2 * math.log(2))
    g = torch.Generator().manual_seed(2)
    losses = torch.cat([vlb_loss(d, x, generator=g) for _ in range(40)])
    se = losses.std().item() / math.sqrt(len(losses))
    assert abs(losses.mean().item() - target) < 4 * se


def test_hybrid_loss_trains_the_mean_by_l_simple_only():
    """The L_vlb part is stopped on the mean: its gradient reaches only the variance output."""
    process = fokker.VP(T=20)
    a = torch.tensor(0.5, dtype=F64, requires_grad=True)
    b = torch.tensor(0.2, dtype=F64, requires_grad=True)
    fn = lambda x, c: torch.cat([a * x, b * torch.ones_like(x)], 1)  # noqa: E731
    d = fokker.Denoiser(fn, process, variance="learned")
    x = MIXTURE.sample(64, torch.Generator().manual_seed(0)).double()
    t = torch.full((64,), 0.5, dtype=F64)
    noise = torch.randn(64, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    hybrid = hybrid_loss(d, x, t=t, noise=noise, weight=0.3).mean()
    (grad_a_hybrid, grad_b) = torch.autograd.grad(hybrid, (a, b))
    (grad_a_simple,) = torch.autograd.grad(simple_loss(d, x, t=t, noise=noise).mean(), a)
    assert grad_a_hybrid.item() == pytest.approx(grad_a_simple.item(), rel=1e-12)
    assert abs(grad_b.item()) > 1e-6
    (grad_a_vlb,) = torch.autograd.grad(vlb_loss(d, x, t=t, noise=noise).mean(), a)
    assert abs(grad_a_vlb.item()) > 1e-6  # pure L_vlb trains the mean too
    with pytest.raises(UserError, match="learned variance"):
        hybrid_loss(exact_denoiser(MIXTURE, process), x)


# --------------------------------------------------------------------------- importance sampling of t


def test_importance_sampler_is_uniform_until_every_time_has_its_history():
    s = LossAwareSampler(4, history=3)
    s.update(torch.tensor([0.25, 0.5, 0.75, 1.0] * 2), torch.arange(8.0))
    assert not s.warm and torch.equal(s.probabilities(), torch.full((4,), 0.25, dtype=F64))
    s.update(torch.tensor([0.25, 0.5, 0.75, 1.0]), torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert s.warm


def test_importance_sampler_probabilities_follow_the_second_moment_with_a_uniform_floor():
    T, s = 5, LossAwareSampler(5, history=10, uniform=0.01)
    per_t = torch.tensor([1.0, 2.0, 0.0, 4.0, 8.0], dtype=F64)
    t = (torch.arange(T).repeat(10) + 1) / T
    s.update(t, per_t[torch.arange(T).repeat(10)])
    p = s.probabilities()
    expected = 0.99 * per_t / per_t.sum() + 0.01 / T
    assert torch.allclose(p, expected) and p[2] == pytest.approx(0.002)
    s.update(torch.tensor([0.2] * 10), torch.full((10,), 3.0))  # the newest 10 replace the old
    assert s.probabilities()[0] > p[0] and s.losses[0].eq(3.0).all()


def test_importance_weighted_loss_is_unbiased():
    """E_{t ~ p}[L_t / (T p_t)] = mean_t L_t: exactly, and by 200,000 draws."""
    T = 50
    s = LossAwareSampler(T, history=10)
    g = torch.Generator().manual_seed(0)
    loss_at = torch.rand(T, dtype=F64, generator=g) ** 3 * 10
    grid = (torch.arange(T) + 1) / T
    for _ in range(10):
        s.update(grid, loss_at * (1 + 0.1 * torch.randn(T, dtype=F64, generator=g)))
    p = s.probabilities()
    assert s.warm and p.max() > 5 * p.min()
    assert (p * loss_at / (T * p)).sum().item() == pytest.approx(loss_at.mean().item(), rel=1e-12)
    t, w = s.sample(200_000, g)
    assert torch.allclose(t * T, torch.round(t * T)) and t.min() >= 1 / T and t.max() <= 1
    draws = loss_at[torch.round(t.double() * T).long() - 1] * w.double()
    se = draws.std().item() / math.sqrt(len(draws))
    assert abs(draws.mean().item() - loss_at.mean().item()) < 4 * se
    frequencies = torch.bincount(torch.round(t.double() * T).long() - 1, minlength=T) / len(t)
    assert torch.allclose(frequencies.double(), p, atol=4e-3)


def test_importance_sampler_state_round_trips_and_refuses_another_T():
    s = LossAwareSampler(8)
    s.update(torch.tensor([0.125, 1.0]), torch.tensor([1.0, 2.0]))
    other = LossAwareSampler(8)
    other.load_state_dict(s.state_dict())
    assert torch.equal(other.losses, s.losses) and torch.equal(other.counts, s.counts)
    with pytest.raises(UserError, match="does not fit"):
        LossAwareSampler(9).load_state_dict(s.state_dict())
    with pytest.raises(UserError, match="discrete process"):
        LossAwareSampler(None)
