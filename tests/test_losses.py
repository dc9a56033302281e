import pytest
import torch

import fokker
from fokker.errors import UserError
from fokker.targets import GaussianTarget, exact_denoiser

F64 = torch.float64


def test_simple_loss_per_example_and_matches_manual(gen):
    p = fokker.VP(T=1000)
    net = torch.nn.Linear(3, 3).double()
    d = fokker.Denoiser(lambda x, c: net(x) * c[:, None], p)
    x0 = torch.randn(8, 3, generator=gen, dtype=F64)
    t = torch.full((8,), 0.3, dtype=F64)
    noise = torch.randn(8, 3, generator=gen, dtype=F64)
    loss = fokker.simple_loss(d, x0, t=t, noise=noise)
    x_t = p.alpha(0.3) * x0 + p.sigma(0.3) * noise
    manual = (net(x_t) * 0.3 - noise).pow(2).mean(1)
    assert loss.shape == (8,) and torch.allclose(loss, manual)
    loss.sum().backward()
    assert net.weight.grad is not None and net.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("t", [0.05, 0.5, 0.95])
def test_bayes_optimal_eps_reaches_the_irreducible_loss(t, gen):
    """With the exact E[eps | x_t] of a Gaussian, E[loss] = mean_i alpha^2 l_i / (alpha^2 l_i + sigma^2)."""
    target, p = GaussianTarget.anisotropic(8), fokker.VP(T=1000)
    d = exact_denoiser(target, p)
    x0 = target.sample(40_000, gen)
    loss = fokker.simple_loss(d, x0, t=torch.full((40_000,), t, dtype=F64), generator=gen)
    a2, s2 = p.alpha(t) ** 2, p.sigma(t) ** 2
    expected = (a2 * target.eigvals / (a2 * target.eigvals + s2)).mean()
    se = loss.std() / 40_000**0.5
    assert abs(loss.mean() - expected) < 4 * se


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_targets_convert_through_tweedie(prediction, gen):
    """For an eps-model, x0-loss = (sigma/alpha)^2 eps-loss and v-loss = ((alpha^2+sigma^2)/alpha)^2 eps-loss."""
    p = fokker.VE(0.01, 5.0) if prediction == "v" else fokker.VP(T=1000)
    d = fokker.Denoiser(lambda x, c: torch.sin(x) * c[:, None], p, prediction="eps")
    x0 = torch.randn(16, 4, generator=gen, dtype=F64)
    t = torch.rand(16, generator=gen, dtype=F64) * 0.9 + 0.05
    noise = torch.randn(16, 4, generator=gen, dtype=F64)
    base = fokker.simple_loss(d, x0, t=t, noise=noise)
    other = fokker.simple_loss(d, x0, t=t, noise=noise, target=prediction)
    a, s = p.alpha(t), p.sigma(t)
    factor = {"eps": torch.ones_like(t), "x0": (s / a) ** 2, "v": ((a**2 + s**2) / a) ** 2}[prediction]
    assert torch.allclose(other, factor * base, rtol=1e-10)


def test_uniform_times_and_bad_target(gen):
    seen = []
    d = fokker.Denoiser(lambda x, c: seen.append(c) or torch.zeros_like(x), fokker.VP(T=10))
    fokker.simple_loss(d, torch.zeros(5000, 1), generator=gen)
    counts = torch.bincount((seen[0] * 10).round().long(), minlength=11)
    assert counts[0] == 0 and (counts[1:] > 400).all()
    with pytest.raises(UserError, match="unknown loss target"):
        fokker.simple_loss(d, torch.zeros(2, 1), target="score")
