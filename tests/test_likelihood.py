"""Likelihoods against closed forms: the discretized decoder, the variational bound with the exact eps of a
Gaussian target, the probability-flow ODE's log-density, Hutchinson's estimator, dequantization, and the
ODE's encode / decode round trip."""

import math

import pytest
import torch

import fokker
from fokker.divergence import divergence
from fokker.errors import UserError
from fokker.latents import decode, encode, interpolate, slerp
from fokker.likelihood import bits_offset, likelihood, ode_nll
from fokker.targets import GaussianMixture, GaussianTarget, exact_denoiser
from fokker.vlb import discretized_gaussian_log_prob, step_nll, vlb

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py
F64 = torch.float64
GAUSS = GaussianTarget.anisotropic(4, seed=0)
MIXTURE = GaussianMixture.unequal_2d()


@pytest.mark.parametrize("levels", [256, 17, 2])
@pytest.mark.parametrize("mean,logvar", [(0.0, -10.0), (0.3, -2.0), (-1.5, -14.0), (2.0, 1.0), (0.123, -30.0)])
def test_discretized_decoder_bins_sum_to_one(levels, mean, logvar):
    x = torch.linspace(-1, 1, levels, dtype=F64)
    p = discretized_gaussian_log_prob(x, torch.full_like(x, mean), torch.full_like(x, logvar), levels).exp()
    assert p.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert (p >= 0).all()


def test_discretized_decoder_is_density_times_width_for_a_broad_gaussian():
    x = torch.linspace(-1, 1, 256, dtype=F64)[1:-1]
    mean, logvar = torch.full_like(x, 0.2), torch.full_like(x, math.log(0.3**2))
    lp = discretized_gaussian_log_prob(x, mean, logvar, 256)
    density = -0.5 * (math.log(2 * math.pi) + logvar + (x - mean) ** 2 / logvar.exp())
    assert torch.allclose(lp, density + math.log(2 / 255), atol=1e-3)  # midpoint rule: h^2 f'' / 24f


def test_decoder_gradient_is_finite_where_a_bin_has_no_mass():
    x = torch.tensor([-1.0, 0.0, 1.0], dtype=F64)
    logvar = torch.full_like(x, -40.0, requires_grad=True)
    discretized_gaussian_log_prob(x, torch.tensor([1.0, -1.0, -1.0], dtype=F64), logvar, 256).sum().backward()
    assert torch.isfinite(logvar.grad).all()


def test_kl_term_vanishes_for_the_exact_posterior():
    """With x0_hat = x_0 and Sigma = beta-tilde, p(x_s | x_t) is q(x_s | x_t, x_0): the term is 0."""
    process = fokker.VP(T=100)
    x0 = torch.randn(5, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    t, s = torch.full((5,), 0.5, dtype=F64), torch.full((5,), 0.49, dtype=F64)
    x_t = process.q_sample(x0, t, torch.randn_like(x0))
    logvar = process.log_variance_range(t, s)[0]
    assert step_nll(process, x0, x_t, t, s, x0, logvar, None).abs().max().item() < 1e-12


def test_clipped_beta_tilde_on_the_step_onto_zero_is_the_step_above():
    process = fokker.VP(T=1000)
    t = torch.tensor([1 / 1000, 2 / 1000], dtype=F64)
    s = torch.tensor([0.0, 1 / 1000], dtype=F64)
    lo, hi = process.log_variance_range(t, s)
    assert lo[0] == lo[1]  # beta-tilde_2, improved-diffusion's clipped log variance
    assert hi[0].exp().item() == pytest.approx(process.schedule.betas[0].item(), rel=1e-9)


def test_vlb_bounds_the_true_nll_and_the_gap_shrinks_with_T():
    """Exact eps of a 4-D Gaussian, Sigma = beta: E[VLB] >= E[-log p(x)] (Gibbs), and the gap falls
    from 2.5 nats at T = 1 towards 0 at T = 1000; the same draws for every T."""
    x = GAUSS.sample(2000, torch.Generator().manual_seed(0)).double()
    true_nll = -GAUSS.log_prob(x)
    gaps = []
    for steps in (1, 10, 100, 1000):
        denoiser = exact_denoiser(GAUSS, fokker.VP(T=None))
        r = vlb(denoiser, x, steps=steps, variance="beta", generator=torch.Generator().manual_seed(1))
        gap = r["nll"] - true_nll
        se = gap.std().item() / math.sqrt(len(x))
        assert gap.mean().item() > -3 * se, (steps, gap.mean().item(), se)
        assert r["nfe"] == steps and r["terms"].shape == (2000, steps)
        gaps.append(gap.mean().item())
    assert gaps[0] > 2.0 and gaps[1] > 0.8 and abs(gaps[3]) < 0.1
    assert gaps[0] > gaps[1] > gaps[2] > gaps[3]


def test_vlb_by_sampled_t_is_unbiased():
    x = MIXTURE.sample(400, torch.Generator().manual_seed(0)).double()
    denoiser = exact_denoiser(MIXTURE, fokker.VP(T=50))
    full = vlb(denoiser, x, generator=torch.Generator().manual_seed(1))["nll"].mean().item()
    r = vlb(denoiser, x.repeat(10, 1), t_samples=5, generator=torch.Generator().manual_seed(2))
    assert r["nfe"] == 5
    se = r["nll"].std().item() / math.sqrt(len(r["nll"]))
    assert abs(r["nll"].mean().item() - full) < 4 * se


def test_vlb_refuses_ve():
    with pytest.raises(UserError, match="sigma\\(0\\) = 0"):
        vlb(exact_denoiser(MIXTURE, fokker.VE()), torch.zeros(2, 2), steps=10)


@pytest.mark.parametrize("target", [GaussianTarget.anisotropic(8, seed=1), MIXTURE], ids=["gauss8", "mixture"])
@pytest.mark.parametrize("process", [fokker.VP(T=None), fokker.SubVP()], ids=["vp", "subvp"])
def test_ode_log_likelihood_matches_the_true_density(target, process):
    x = target.sample(100, torch.Generator().manual_seed(0)).double()
    r = ode_nll(exact_denoiser(target, process), x, t_eps=1e-5, divergence="exact")
    per_dim = (r["nll"] + target.log_prob(x)).abs() / x.shape[1]
    assert per_dim.max().item() < 0.01
    assert r["nfe"] > 0 and r["accepted"] > 0


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_averages_to_the_exact_divergence(probe):
    w = torch.randn(6, 6, dtype=F64, generator=torch.Generator().manual_seed(0))
    x = torch.randn(3, 6, dtype=F64, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    f = torch.tanh(x @ w) * x
    exact = divergence(f, x, None)
    n, g = 20000, torch.Generator().manual_seed(2)
    z = torch.randn(n, *x.shape, dtype=F64, generator=g)
    z = z.sign() if probe == "rademacher" else z
    est = torch.stack([divergence(f, x, zi) for zi in z[:2000]])  # the estimator itself, one probe at a time
    jac = torch.stack([torch.autograd.grad(f[:, i].sum(), x, retain_graph=True)[0] for i in range(6)], 1)
    fast = torch.einsum("nbi,bij,nbj->nb", z, jac, z)  # the same estimator, vectorised over 20,000 probes
    assert torch.allclose(est, fast[:2000])
    se = fast.std(0) / math.sqrt(n)
    assert ((fast.mean(0) - exact).abs() < 4 * se).all()
    assert torch.allclose(exact, torch.einsum("bii->b", jac))


def test_ode_likelihood_by_hutchinson_averages_to_the_exact_one():
    x = MIXTURE.sample(20, torch.Generator().manual_seed(0)).double()
    denoiser = exact_denoiser(MIXTURE, fokker.VP(T=None))
    exact = ode_nll(denoiser, x, divergence="exact")["nll"]
    reps = x.repeat(100, 1)
    hutch = ode_nll(denoiser, reps, divergence="hutchinson", generator=torch.Generator().manual_seed(1))["nll"]
    hutch = hutch.reshape(100, 20)
    se = hutch.std(0) / math.sqrt(100)
    assert (hutch.std(0) > 0).all()
    assert ((hutch.mean(0) - exact).abs() < 4.5 * se).all()


def test_dequantized_bits_per_dim_match_the_discrete_probability():
    """A smooth 1-D density on 8-bit data: the ODE's bits/dim (uniform dequantization plus the explicit
    log2(255 / 2) offset) equals -log2 of the exact bin probability, on average over the dequantization."""
    target = GaussianTarget(torch.zeros(1, dtype=F64), torch.full((1, 1), 0.25, dtype=F64))
    levels = torch.linspace(-1, 1, 256, dtype=F64)
    x = levels[torch.randint(40, 216, (400,), generator=torch.Generator().manual_seed(0))][:, None]
    r = likelihood(
        exact_denoiser(target, fokker.VP(T=None)), x.repeat(8, 1), "ode", levels=256, t_eps=1e-5,
        generator=torch.Generator().manual_seed(1),
    )  # fmt: skip
    exact = -discretized_gaussian_log_prob(x, torch.zeros_like(x), torch.full_like(x, math.log(0.25)), 256)
    assert bits_offset(256, True) == pytest.approx(math.log2(127.5))
    assert r.bpd.mean().item() == pytest.approx((exact / math.log(2)).mean().item(), abs=0.01)


def test_likelihood_reports_nats_bits_and_nfe():
    x = MIXTURE.sample(50, torch.Generator().manual_seed(0)).double()
    denoiser = exact_denoiser(MIXTURE, fokker.VP(T=20))
    r = likelihood(denoiser, x, "vlb", generator=torch.Generator().manual_seed(1))
    assert r.nfe == 20 and r.method == "vlb" and r.nll.shape == (50,)
    assert torch.allclose(r.bpd, r.nll / (2 * math.log(2)))
    mean, se = r.mean_bpd()
    assert mean == pytest.approx(r.bpd.mean().item()) and 0 < se < 1
    with pytest.raises(UserError, match="unknown likelihood method"):
        likelihood(denoiser, x, "elbo")


@pytest.mark.parametrize("process", [fokker.VP(T=None), fokker.SubVP()], ids=["vp", "subvp"])
@pytest.mark.parametrize("tol", [1e-5, 1e-7])
def test_encode_then_decode_returns_the_input(process, tol):
    """The round trip's error is the solver's tolerance amplified by the flow's contraction, 1 / alpha(1)."""
    x = MIXTURE.sample(100, torch.Generator().manual_seed(0)).double()
    denoiser = exact_denoiser(MIXTURE, process)
    z, info = encode(denoiser, x, rtol=tol, atol=tol)
    y, _ = decode(denoiser, z, rtol=tol, atol=tol)
    alpha1 = process.alpha(torch.ones(1, dtype=F64)).item()
    assert (y - x).abs().max().item() < 3 * tol / alpha1
    assert z.std().item() == pytest.approx(1.0, abs=0.15)  # the prior
    assert info["nfe"] > 0


def test_slerp_keeps_the_ends_and_the_norm_of_equal_norm_vectors():
    a, b = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 3.0])
    out = slerp(a, b, torch.linspace(0, 1, 5))
    assert torch.allclose(out[0], a) and torch.allclose(out[-1], b)
    assert torch.allclose(out.norm(dim=1), torch.full((5,), 3.0))
    assert torch.allclose(out[2], torch.tensor([3.0, 3.0]) / math.sqrt(2))


def test_interpolations_keep_the_ends():
    x = MIXTURE.sample(2, torch.Generator().manual_seed(0)).double()
    denoiser = exact_denoiser(MIXTURE, fokker.VP(T=None))
    out, _ = interpolate(denoiser, x[0], x[1], 5, rtol=1e-7, atol=1e-7)
    assert out.shape == (5, 2) and torch.allclose(out[[0, -1]], x, atol=1e-4)
    ddpm_denoiser = exact_denoiser(MIXTURE, fokker.VP(T=100))
    out, info = interpolate(ddpm_denoiser, x[0], x[1], 4, method="ddpm", t=0.05, generator=torch.Generator())
    assert info["nfe"] == 5 and out.shape == (4, 2)
    assert torch.equal(MIXTURE.assign(out[[0, -1]]), MIXTURE.assign(x))  # a short diffusion keeps the modes


@pytest.mark.parametrize(
    "method,option",
    [("slerp", {"t": 0.3}), ("slerp", {"steps": 10}), ("slerp", {"generator": torch.Generator()}),
     ("ddpm", {"rtol": 1e-3}), ("ddpm", {"atol": 1e-3})],
)  # fmt: skip
def test_an_interpolation_refuses_the_other_methods_options(method, option):
    """An option of the other method would do nothing: it is an error."""
    x = MIXTURE.sample(2, torch.Generator().manual_seed(0)).double()
    denoiser = exact_denoiser(MIXTURE, fokker.VP(T=100))
    with pytest.raises(UserError, match=f"{method!r} takes no {next(iter(option))}"):
        interpolate(denoiser, x[0], x[1], 3, method=method, **option)
