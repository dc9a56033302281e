import itertools

import pytest
import torch

from fokker import VE, VP, Denoiser
from fokker.denoiser import PREDICTIONS, from_x0_eps, linear_coefficients, to_x0_eps
from fokker.errors import UserError
from fokker.targets import GaussianTarget, exact_denoiser

F64 = torch.float64


@pytest.mark.parametrize("process", [VP(T=1000), VE(0.01, 50.0)], ids=["vp", "ve"])
@pytest.mark.parametrize("pred,other", list(itertools.product(PREDICTIONS, PREDICTIONS)))
def test_conversions_round_trip(process, pred, other, gen):
    t = torch.rand(16, generator=gen, dtype=F64) * 0.98 + 0.01
    alpha, sigma = process.alpha(t)[:, None], process.sigma(t)[:, None]
    x0, eps = torch.randn(16, 5, generator=gen, dtype=F64), torch.randn(16, 5, generator=gen, dtype=F64)
    x = alpha * x0 + sigma * eps
    out = from_x0_eps(x0, eps, alpha, sigma, pred)
    back_x0, back_eps = to_x0_eps(out, x, alpha, sigma, pred)
    assert torch.allclose(back_x0, x0, atol=1e-10, rtol=0) and torch.allclose(back_eps, eps, atol=1e-10, rtol=0)
    # through a second parameterisation and back
    out2 = from_x0_eps(back_x0, back_eps, alpha, sigma, other)
    assert torch.allclose(
        from_x0_eps(*to_x0_eps(out2, x, alpha, sigma, other), alpha, sigma, pred), out, atol=1e-10, rtol=1e-10
    )


@pytest.mark.parametrize("pred", PREDICTIONS)
def test_linear_coefficients_are_the_conversions(pred, gen):
    """The folded sampler step's coefficients (x0 = a0 x + b0 out, eps = a1 x + b1 out) come from the same
    table as to_x0_eps and give the same (x0, eps)."""
    process = VP(T=1000)
    t = torch.rand(16, generator=gen, dtype=F64) * 0.98 + 0.01
    alpha, sigma = process.alpha(t)[:, None], process.sigma(t)[:, None]
    x, out = torch.randn(16, 5, generator=gen, dtype=F64), torch.randn(16, 5, generator=gen, dtype=F64)
    a0, b0, a1, b1 = linear_coefficients(alpha, sigma, pred)
    x0, eps = to_x0_eps(out, x, alpha, sigma, pred)
    assert torch.allclose(a0 * x + b0 * out, x0, rtol=1e-12, atol=1e-12)
    assert torch.allclose(a1 * x + b1 * out, eps, rtol=1e-12, atol=1e-12)


def test_tweedie_relations_explicitly(gen):
    alpha, sigma = torch.tensor(0.6, dtype=F64), torch.tensor(0.8, dtype=F64)
    x0, eps = torch.randn(3, 2, generator=gen, dtype=F64), torch.randn(3, 2, generator=gen, dtype=F64)
    assert torch.allclose(from_x0_eps(x0, eps, alpha, sigma, "score"), -eps / sigma)
    assert torch.allclose(from_x0_eps(x0, eps, alpha, sigma, "v"), alpha * eps - sigma * x0)


def wrapped(target, process, prediction, **kw):
    """A Denoiser whose fn returns the exact quantity of type `prediction` for a Gaussian target."""

    def fn(x, t):
        alpha, sigma = process.alpha(t)[:, None], process.sigma(t)[:, None]
        x0 = target.posterior_mean(x, t, process)
        return from_x0_eps(x0, (x - alpha * x0) / sigma, alpha, sigma, prediction)

    return Denoiser(fn, process, prediction=prediction, **kw)


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("process", [VP(T=1000), VP(T=None), VE(0.01, 20.0)], ids=["vp", "vpc", "ve"])
def test_denoiser_answers_all_four_by_tweedie(prediction, process, gen):
    target = GaussianTarget.anisotropic(8)
    d = wrapped(target, process, prediction)
    t = torch.rand(32, generator=gen, dtype=F64) * 0.9 + 0.05
    x = process.q_sample(target.sample(32, gen), t, torch.randn(32, 8, generator=gen, dtype=F64))
    alpha, sigma = process.alpha(t)[:, None], process.sigma(t)[:, None]
    score = target.score(x, t, process)
    assert torch.allclose(d.score(x, t), score, rtol=1e-8, atol=1e-10)
    assert torch.allclose(d.eps(x, t), -sigma * score, rtol=1e-8, atol=1e-10)
    assert torch.allclose(d.x0(x, t), target.posterior_mean(x, t, process), rtol=1e-8, atol=1e-10)
    x0 = target.posterior_mean(x, t, process)
    assert torch.allclose(d.v(x, t), alpha * (-sigma * score) - sigma * x0, rtol=1e-8, atol=1e-10)
    assert d.nfe == 4


def test_nfe_counts_and_scalar_time(gen):
    d = exact_denoiser(GaussianTarget.anisotropic(4), VP(T=100))
    x = torch.randn(6, 4, generator=gen, dtype=F64)
    a = d.eps(x, 0.5)
    b = d.eps(x, torch.full((6,), 0.5, dtype=F64))
    assert torch.allclose(a, b) and d.nfe == 2


def test_clip_bounds_x0_and_recomputes_eps(gen):
    p = VP(T=1000)
    d = Denoiser(lambda x, c: torch.full_like(x, -5.0), p, prediction="x0", clip=(-1.0, 1.0))
    x = torch.randn(4, 3, generator=gen, dtype=F64)
    x0, eps = d.predict(x, 0.3)
    assert torch.all(x0 == -1.0)
    assert torch.allclose(p.alpha(0.3) * x0 + p.sigma(0.3) * eps, x)


@pytest.mark.parametrize("conditioning", ["time", "index", "sigma", "log_sigma"])
def test_conditioning_passed_to_network(conditioning):
    p = VP(T=1000)
    seen = []
    d = Denoiser(lambda x, c: seen.append(c) or torch.zeros_like(x), p, conditioning=conditioning)
    t = torch.tensor([0.25, 0.5], dtype=F64)
    d.eps(torch.zeros(2, 3, dtype=F64), t)
    expected = {"time": t, "index": t * 1000, "sigma": p.sigma(t), "log_sigma": torch.log(p.sigma(t))}
    assert torch.allclose(seen[0], expected[conditioning]) and seen[0].shape == (2,)


def test_model_kwargs_reach_the_network():
    got = {}
    d = Denoiser(lambda x, c, y=None: got.setdefault("y", y) is None or torch.zeros_like(x), VP(T=10))
    d.eps(torch.zeros(2, 1), 0.5, y=torch.tensor([3, 4]))
    assert got["y"].tolist() == [3, 4]


def test_bad_arguments():
    with pytest.raises(UserError, match="unknown prediction"):
        Denoiser(lambda x, t: x, VP(), prediction="noise")
    with pytest.raises(UserError, match="unknown conditioning"):
        Denoiser(lambda x, t: x, VP(), conditioning="step")
    with pytest.raises(UserError, match="discrete"):
        Denoiser(lambda x, t: x, VP(T=None), conditioning="index")
