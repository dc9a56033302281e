import pytest
import torch

import fokker
from fokker import losses
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


def linear_score_model(dim: int, process) -> tuple[fokker.Denoiser, torch.Tensor, torch.Tensor]:
    """A Denoiser whose score is A x + b, with A and b trainable (zero at first)."""
    A = torch.zeros(dim, dim, dtype=F64, requires_grad=True)
    b = torch.zeros(dim, dtype=F64, requires_grad=True)
    return fokker.Denoiser(lambda x, c: x @ A.T + b, process, prediction="score"), A, b


@pytest.mark.parametrize("loss", ["dsm", "ssm", "ism"])
@pytest.mark.parametrize("process", [fokker.VP(T=None), fokker.VE(0.01, 5.0)], ids=["vp", "ve"])
def test_linear_model_recovers_the_exact_gaussian_score(loss, process, gen):
    """Fitted by L-BFGS on 20,000 draws of x_t at t = 0.3, the linear score A x + b reaches the score of
    p_t = N(alpha mu, alpha^2 S + sigma^2 I): A = -(alpha^2 S + sigma^2 I)^-1, b = -A alpha mu. Relative
    error of A measured (VP / VE): DSM 0.003 / 0.012, SSM 0.012 / 0.024, ISM 0.017 / 0.019, from finite
    samples; the tolerance is 0.05."""
    target = GaussianTarget.anisotropic(3, seed=1)
    n, t = 20_000, torch.full((20_000,), 0.3, dtype=F64)
    x0, noise = target.sample(n, gen), torch.randn(n, 3, generator=gen, dtype=F64)
    d, A, b = linear_score_model(3, process)
    fn = {"dsm": losses.dsm_loss, "ssm": losses.ssm_loss, "ism": losses.ism_loss}[loss]
    opt = torch.optim.LBFGS([A, b], lr=1, max_iter=200, line_search_fn="strong_wolfe", tolerance_grad=1e-12)

    def closure():
        opt.zero_grad()
        # the same projections at every evaluation (ssm): a deterministic objective for L-BFGS
        value = fn(d, x0, t=t, noise=noise, generator=torch.Generator().manual_seed(3)).mean()
        value.backward()
        return value

    opt.step(closure)
    alpha, sigma = process.alpha(0.3), process.sigma(0.3)
    A_true = -torch.linalg.inv(alpha**2 * target.cov + sigma**2 * torch.eye(3, dtype=F64))
    error = (torch.linalg.norm(A.detach() - A_true) / torch.linalg.norm(A_true)).item()
    assert error < 0.05, error
    assert torch.allclose(b.detach(), -A_true @ (alpha * target.mean), atol=0.05 * A_true.abs().max())


@pytest.mark.parametrize("projection", ["rademacher", "gaussian"])
def test_sliced_score_matching_is_unbiased(projection, gen):
    """For a fixed non-linear model, the average of SSM over many projections equals the implicit score
    matching value (exact Jacobian trace) per example, within 4 standard errors."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4)).double()
    d = fokker.Denoiser(lambda x, c: net(x) * (1 + c[:, None]), fokker.VP(T=None))
    b, k = 8, 4000
    x0, noise = torch.randn(b, 4, generator=gen, dtype=F64), torch.randn(b, 4, generator=gen, dtype=F64)
    t = torch.rand(b, generator=gen, dtype=F64) * 0.8 + 0.1
    exact = losses.ism_loss(d, x0, t=t, noise=noise).detach()
    repeat = lambda a: a.repeat(k, *[1] * (a.dim() - 1))  # noqa: E731
    sliced = losses.ssm_loss(d, repeat(x0), t=repeat(t), noise=repeat(noise), projection=projection, generator=gen)
    sliced = sliced.detach().reshape(k, b)
    se = sliced.std(0) / k**0.5
    assert ((sliced.mean(0) - exact).abs() < 4 * se + 1e-12).all(), (sliced.mean(0), exact, se)
    assert (se > 0).all()  # the slices really are random


def test_dsm_weightings_relate_to_l_simple(gen):
    """lambda = sigma^2 makes DSM 1/2 L_simple (Song & Ermon 2019, eq. 5 and sec. 4.2, with the 1/2 of their
    eq. 5); lambda = g^2 multiplies it by g^2 / sigma^2."""
    p = fokker.SubVP()
    d = fokker.Denoiser(lambda x, c: torch.sin(x) * c[:, None], p, prediction="x0")
    x0, noise = torch.randn(16, 4, generator=gen, dtype=F64), torch.randn(16, 4, generator=gen, dtype=F64)
    t = torch.rand(16, generator=gen, dtype=F64) * 0.9 + 0.05
    base = fokker.simple_loss(d, x0, t=t, noise=noise, target="eps")
    assert torch.allclose(losses.dsm_loss(d, x0, t=t, noise=noise), base / 2, rtol=1e-12)
    weighted = losses.dsm_loss(d, x0, t=t, noise=noise, weighting="likelihood")
    assert torch.allclose(weighted, base / 2 * p.diffusion(t) ** 2 / p.sigma(t) ** 2, rtol=1e-12)


def test_score_matching_losses_reject_bad_options(gen):
    d = fokker.Denoiser(lambda x, c: x, fokker.VP(T=None))
    with pytest.raises(UserError, match="unknown weighting 'snr'"):
        losses.dsm_loss(d, torch.zeros(2, 2), weighting="snr")
    with pytest.raises(UserError, match="unknown projection 'sobol'"):
        losses.ssm_loss(d, torch.zeros(2, 2), projection="sobol")
    with pytest.raises(UserError, match="D = 300 > 256, use 'ssm'"):
        losses.ism_loss(d, torch.zeros(2, 300))
    with pytest.raises(UserError, match="unknown loss 'nce'"):
        losses.training_loss("nce")


def gauss_hermite_nodes(dim: int, n: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes (n^dim, dim) and weights (n^dim,) of the product Gauss-Hermite rule for N(0, I): E[f(z)] is
    exactly sum w f(z) for every polynomial f of degree < 2n in each coordinate."""
    from numpy.polynomial.hermite_e import hermegauss

    z, w = (torch.tensor(a, dtype=F64) for a in hermegauss(n))
    nodes = torch.cartesian_prod(*[z] * dim).reshape(-1, dim)
    weights = torch.cartesian_prod(*[w / w.sum()] * dim).reshape(-1, dim).prod(1)
    return nodes, weights


@pytest.mark.parametrize("weighting", ["sigma2", "likelihood"])
@pytest.mark.parametrize(
    "process", [fokker.VP(T=None), fokker.VE(0.01, 5.0), fokker.SubVP()], ids=["vp", "ve", "subvp"]
)
def test_score_losses_share_one_scale(process, weighting):
    """DSM, SSM and ISM are all the weighted Fisher divergence 1/2 lambda(t) E||s - grad log p_t||^2 / D up to
    a constant in the model (Hyvarinen 2005, Thm. 1; Vincent 2011; Song & Ermon 2019, eq. 5), so for any two
    models m1, m2 each loss's E[L(m1)] - E[L(m2)] is the same number, that of the Fisher divergences.
    Linear diagonal scores on a Gaussian make every integrand quadratic in (x_0, eps) and v' J v = tr J for
    Rademacher v, so Gauss-Hermite quadrature gives the expectations exactly (relative error ~1e-15; a loss
    that drops the 1/2 is off by 2)."""
    target = GaussianTarget(torch.tensor([0.3, -0.2], dtype=F64), torch.tensor([[0.5, 0.2], [0.2, 0.3]], dtype=F64))
    models = [  # an eps-model and a score-model, each linear in x at a fixed t
        fokker.Denoiser(lambda x, c: x * torch.tensor([0.8, -0.3]) * (1 + c[:, None]) + 0.1, process),
        fokker.Denoiser(lambda x, c: x * torch.tensor([-1.5, -0.4]) - 0.2, process, prediction="score"),
    ]
    nodes, w = gauss_hermite_nodes(4)
    times = torch.tensor([0.1, 0.5, 0.9], dtype=F64)
    t = times.repeat_interleave(len(w))
    z = nodes.repeat(len(times), 1)
    x0 = target.mean + z[:, :2] @ torch.linalg.cholesky(target.cov).T
    noise = z[:, 2:]
    expect = lambda per_example: (per_example.detach().reshape(len(times), -1) * w).sum(1)  # noqa: E731
    lam = losses.score_weight(process, times, weighting)

    def fisher(d: fokker.Denoiser) -> torch.Tensor:
        alpha, sigma = process.alpha(t)[:, None], process.sigma(t)[:, None]
        x_t = alpha * x0 + sigma * noise
        score = -d.predict(x_t, t)[1] / sigma
        return 0.5 * lam * expect((score - target.score(x_t, t, process)).pow(2).mean(1))

    def differences(fn) -> torch.Tensor:
        gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
        m1, m2 = (fn(d, x0, weighting=weighting, t=t, noise=noise, generator=gen()) for d in models)
        return expect(m1) - expect(m2)

    reference = fisher(models[0]) - fisher(models[1])
    assert (reference.abs() > 1e-3 * lam).all()  # the two models really differ
    for name, fn in [("dsm", losses.dsm_loss), ("ssm", losses.ssm_loss), ("ism", losses.ism_loss)]:
        assert torch.allclose(differences(fn), reference, rtol=1e-9, atol=0), (name, differences(fn) / reference)
