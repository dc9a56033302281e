"""Samplers against exact models of analytic targets, in float64, 20,000 samples.

Tolerances: the KL between the Gaussian fitted to the samples and the true Gaussian (its floor from
finite sampling alone is ~0.001 here) and mode weights within 0.02 for the mixture."""

import itertools

import pytest
import torch

import fokker
from fokker.denoiser import from_x0_eps
from fokker.errors import UserError
from fokker.metrics import gaussian_fit, gaussian_kl
from fokker.processes import expand_as
from fokker.targets import GaussianMixture, GaussianTarget, exact_denoiser

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py
F64 = torch.float64
N = 20_000
GAUSS = GaussianTarget.anisotropic(8)
MIXTURE = GaussianMixture.unequal_2d()
COSINE = fokker.VP(T=1000, schedule="cosine")
LINEAR = fokker.VP(T=1000)


def fitted_kl(x: torch.Tensor, target: GaussianTarget) -> float:
    """KL(N(mean(x), cov(x)) || N(mu, S))."""
    return gaussian_kl(*gaussian_fit(x), target.mean, target.cov)


def run(target, process, sampler, steps, seed=1, n=N, **options):
    g = torch.Generator().manual_seed(seed)
    x_T = torch.randn(n, target.dim, generator=g, dtype=F64)
    return fokker.sample(exact_denoiser(target, process), sampler, steps, x_T=x_T, generator=g, **options)


def test_sampling_noise_floor():
    assert fitted_kl(GAUSS.sample(N, torch.Generator().manual_seed(5)), GAUSS) < 0.002


@pytest.mark.parametrize(
    "process,sampler,steps,spacing,options,tol",
    [
        (LINEAR, "ddpm", 1000, "uniform", {}, 0.01),  # measured 0.0034
        (COSINE, "ddpm", 1000, "uniform", {}, 0.01),
        (LINEAR, "ddpm", 100, "uniform", {"variance": "beta"}, 0.01),  # measured 0.0070
        (COSINE, "ddpm", 100, "quadratic", {}, 0.012),  # respaced; measured 0.0084
        (COSINE, "ddim", 50, "quadratic", {}, 0.012),  # measured 0.0090
    ],
    ids=["ddpm1000-linear", "ddpm1000-cosine", "ddpm100-beta", "ddpm100-respaced", "ddim50"],
)
def test_gaussian_target_reproduced(process, sampler, steps, spacing, options, tol):
    x, info = run(GAUSS, process, sampler, steps, spacing=spacing, **options)
    assert info["nfe"] == steps and info["steps"] == steps
    assert fitted_kl(x, GAUSS) < tol


@pytest.mark.parametrize("sampler,steps", [("ddpm", 1000), ("ddpm", 100), ("ddim", 50)])
def test_mixture_mode_weights(sampler, steps):
    x, _ = run(MIXTURE, LINEAR, sampler, steps)
    weights = torch.bincount(MIXTURE.assign(x), minlength=3).to(F64) / N
    assert torch.allclose(weights, MIXTURE.weights, atol=0.02), weights


def test_mixture_weights_wrong_at_too_few_steps():
    """The check above can fail: 10 DDIM steps visibly misplace mass (measured 0.169 vs 0.2)."""
    x, _ = run(MIXTURE, LINEAR, "ddim", 10)
    weights = torch.bincount(MIXTURE.assign(x), minlength=3).to(F64) / N
    assert (weights - MIXTURE.weights).abs().max() > 0.02


@pytest.mark.parametrize("sampler,grid", [("ddim", [5, 10, 20, 50]), ("ddpm", [10, 25, 100])])
def test_error_shrinks_as_steps_grow(sampler, grid):
    kls = [fitted_kl(run(GAUSS, COSINE, sampler, s, spacing="quadratic")[0], GAUSS) for s in grid]
    assert all(b < 0.7 * a for a, b in itertools.pairwise(kls)), kls


def test_ddim_eta0_is_deterministic_given_x_T():
    d = exact_denoiser(GAUSS, COSINE)
    x_T = torch.randn(500, 8, generator=torch.Generator().manual_seed(3), dtype=F64)
    a, _ = fokker.sample(d, "ddim", 20, x_T=x_T, generator=torch.Generator().manual_seed(0))
    b, _ = fokker.sample(d, "ddim", 20, x_T=x_T, generator=torch.Generator().manual_seed(99))
    assert torch.equal(a, b)


@pytest.mark.parametrize("steps,spacing", [(1000, "uniform"), (37, "quadratic"), (10, "log_snr")])
def test_ddim_eta1_equals_ancestral_beta_tilde(steps, spacing):
    d = exact_denoiser(MIXTURE, LINEAR)
    x_T = torch.randn(300, 2, generator=torch.Generator().manual_seed(3), dtype=F64)
    a, _ = fokker.sample(
        d, "ddim", steps, x_T=x_T, spacing=spacing, eta=1.0, generator=torch.Generator().manual_seed(7)
    )
    b, _ = fokker.sample(
        d, "ddpm", steps, x_T=x_T, spacing=spacing, variance="beta_tilde", generator=torch.Generator().manual_seed(7)
    )
    assert torch.allclose(a, b, rtol=0, atol=1e-9)
    c, _ = fokker.sample(
        d, "ddpm", steps, x_T=x_T, spacing=spacing, variance="beta", generator=torch.Generator().manual_seed(7)
    )
    assert not torch.allclose(a, c, atol=1e-3)  # the other variance really differs


def test_one_ancestral_step_is_ho_eq_11():
    """x_{t-1} = (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t) + sigma_t z on the full grid."""
    p = LINEAR
    d = exact_denoiser(GAUSS, p)
    i = 500
    times = torch.tensor([i / 1000, (i - 1) / 1000], dtype=F64)
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(0), dtype=F64)
    for variance in ("beta_tilde", "beta"):
        out, info = fokker.samplers.get_sampler("ddpm")(
            d, x, times, variance=variance, generator=torch.Generator().manual_seed(4)
        )
        z = torch.randn(64, 8, generator=torch.Generator().manual_seed(4), dtype=F64)
        beta = p.schedule.betas[i - 1]
        abar_t, abar_s = p.alpha_bar(times[0]), p.alpha_bar(times[1])
        var = beta * (1 - abar_s) / (1 - abar_t) if variance == "beta_tilde" else beta
        eps = d.eps(x, times[0])
        expected = (x - beta / (1 - abar_t).sqrt() * eps) / (1 - beta).sqrt() + var.sqrt() * z
        assert torch.allclose(out, expected, rtol=1e-10, atol=1e-10)
        assert info["nfe"] == 1


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
@pytest.mark.parametrize("process", [LINEAR, fokker.VP(T=None), fokker.VE(0.01, 5.0)], ids=["vp", "vpc", "ve"])
def test_grid_ends_first_eval_at_one_last_step_returns_x0(sampler, process):
    seen_t, seen = [], []

    def fn(x, t):
        seen_t.append(t.clone())
        return torch.zeros_like(x)

    d = fokker.Denoiser(fn, process, prediction="eps")
    x, info = fokker.sample(
        d,
        sampler,
        7,
        shape=(4, 2),
        generator=torch.Generator().manual_seed(0),
        callback=lambda k, x, x0: seen.append((x.clone(), x0.clone())),
    )
    assert seen_t[0].tolist() == [1.0] * 4 and seen_t[-1][0].item() > 0  # never evaluated at t = 0
    last_x, last_x0 = seen[-1]
    assert torch.equal(last_x, last_x0) and torch.equal(x, last_x0)  # no noise added at the end
    assert info["nfe"] == 7 and len(seen) == 7


def test_per_example_generators_make_samples_batch_independent():
    d = exact_denoiser(MIXTURE, LINEAR)
    gens = lambda seeds: [torch.Generator().manual_seed(s) for s in seeds]  # noqa: E731
    x_T = lambda seeds: torch.cat([torch.randn(1, 2, generator=g, dtype=F64) for g in gens(seeds)])  # noqa: E731
    big, _ = fokker.sample(d, "ddpm", 20, x_T=x_T(range(6)), generator=gens(range(6)))
    small, _ = fokker.sample(d, "ddpm", 20, x_T=x_T([2, 3]), generator=gens([2, 3]))
    assert torch.allclose(big[2:4], small, atol=1e-12)


def test_sample_seeded_depends_on_the_seed_not_on_the_batch_size():
    """sample i comes from seed_for(seed, i): every seed gives other samples (torch keeps only 32 bits of a
    seed, so packing seed * 2**32 + i would make all seeds alike), any batch size the same ones."""
    from fokker.samplers import sample_seeded, seed_for

    d = exact_denoiser(MIXTURE, LINEAR)
    runs = {(seed, bs): sample_seeded(d, "ddpm", 10, (2,), 7, seed=seed, batch_size=bs)[0]
            for seed in (0, 1, 2**32) for bs in (7, 3)}  # fmt: skip
    for seed in (0, 1, 2**32):
        a, b = runs[seed, 7], runs[seed, 3]  # float32: equal up to rounding, relative to the samples' size
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * a.abs().max().item())
    assert not torch.allclose(runs[0, 7], runs[1, 7]) and not torch.allclose(runs[0, 7], runs[2**32, 7])
    assert len({seed_for(s, i) for s in range(50) for i in range(200)}) == 50 * 200  # no collisions here


def test_float32_model_and_prior_shape():
    d = fokker.Denoiser(lambda x, t: torch.zeros_like(x), COSINE)
    x, info = fokker.sample(d, "ddim", 5, shape=(3, 1, 4, 4), generator=torch.Generator().manual_seed(0))
    assert x.shape == (3, 1, 4, 4) and x.dtype == torch.float32 and info["sampler"] == "ddim"


def test_sampler_option_errors():
    d = exact_denoiser(MIXTURE, LINEAR)
    with pytest.raises(UserError, match="unknown sampler 'plms'"):
        fokker.sample(d, "plms", 10, shape=(2, 2))
    with pytest.raises(UserError, match="has no option 'eta'"):
        fokker.sample(d, "ddpm", 10, shape=(2, 2), eta=0.5)
    with pytest.raises(UserError, match="eta must be in"):
        fokker.sample(d, "ddim", 10, shape=(2, 2), eta=1.5)
    with pytest.raises(UserError, match="unknown variance 'big'"):
        fokker.sample(d, "ddpm", 10, shape=(2, 2), variance="big")
    with pytest.raises(UserError, match="needs a model with a learned variance"):
        fokker.sample(d, "ddpm", 10, shape=(2, 2), variance="learned")


@pytest.mark.parametrize("prediction", ["eps", "x0", "v", "score"])
@pytest.mark.parametrize("process", [LINEAR, fokker.VE(0.01, 5.0)], ids=["vp", "ve"])
@pytest.mark.parametrize("sampler,options", [("ddim", {}), ("ddpm", {"variance": "beta"})])
def test_folded_update_equals_x0_eps_form(prediction, process, sampler, options):
    """Without a callback the loop folds each step into x_s = fold_x x + fold_out out; with one it forms x0_hat
    and eps_hat. Both, for every prediction type of the same exact model, give the same samples."""
    exact = exact_denoiser(MIXTURE, process)

    def fn(x, t):
        x0, eps = exact.predict(x, t)
        return from_x0_eps(x0, eps, *(expand_as(f(t), x) for f in (process.alpha, process.sigma)), prediction)

    d = fokker.Denoiser(fn, process, prediction=prediction)
    x_T = torch.randn(256, 2, generator=torch.Generator().manual_seed(0), dtype=F64) * process.prior_std
    draw = lambda **kw: run_from(d, sampler, x_T, **options, **kw)  # noqa: E731
    folded, explicit = draw(), draw(callback=lambda k, x, x0: None)
    reference = run_from(exact, sampler, x_T, **options)
    assert torch.allclose(folded, explicit, atol=1e-8, rtol=1e-8)
    assert torch.allclose(folded, reference, atol=1e-8, rtol=1e-8)


def run_from(d, sampler, x_T, **options):
    return fokker.sample(d, sampler, 20, x_T=x_T, generator=torch.Generator().manual_seed(1), **options)[0]
