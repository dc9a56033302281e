"""EDM's samplers (Karras et al. 2022, Alg. 1 and 2) against exact models of Gaussian targets.

A Gaussian N(mu, S) has an exact probability-flow map: in S's eigenbasis, x_t - alpha_t mu scales as
sqrt(alpha_t^2 lambda + sigma_t^2), lambda the eigenvalue, so the sampler's error is measured, not estimated."""

import itertools
import math

import pytest
import torch

import fokker
from fokker.errors import UserError
from fokker.guidance import ClassifierFree
from fokker.samplers import SAMPLERS, sample_seeded, time_grid
from fokker.targets import GaussianMixture, GaussianTarget, class_denoiser, exact_denoiser

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py
F64 = torch.float64
TARGET = GaussianTarget.anisotropic(4)
PROCESSES = {
    "vp-linear": fokker.VP(T=1000),
    "vp-cosine": fokker.VP(T=1000, schedule="cosine"),
    "vp-continuous": fokker.VP(T=None),
    "ve": fokker.VE(0.01, 50.0),
    "subvp": fokker.SubVP(),
}


def flow(process, x: torch.Tensor, t: float, s: float, target: GaussianTarget = TARGET) -> torch.Tensor:
    """The exact probability-flow map of x at time t to time s (float64)."""
    (a_t, a_s), (s_t, s_s) = (f(torch.tensor([t, s], dtype=F64)) for f in (process.alpha, process.sigma))
    z = (x.to(F64) - a_t * target.mean) @ target.eigvecs
    z = z * ((a_s**2 * target.eigvals + s_s**2) / (a_t**2 * target.eigvals + s_t**2)).sqrt()
    return a_s * target.mean + z @ target.eigvecs.T


def prior(process, n: int, seed: int = 0, dim: int = 4) -> torch.Tensor:
    return process.prior_std * torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=F64)


def relative_error(x: torch.Tensor, want: torch.Tensor) -> float:
    """The largest per-sample error relative to the sample's norm."""
    return ((x.to(F64) - want).norm(dim=1) / want.norm(dim=1)).max().item()


@pytest.mark.parametrize("name", ["vp-continuous", "ve", "subvp"])
def test_heun_in_the_noise_ratio_is_second_order(name):
    """On a grid from t = 1 to 0.05 (a state there, no denoising) the error falls as N^-2: log2 of its ratio
    between N = 8, 16, 32 in [1.7, 2.4] (measured 2.03-2.21); the Euler step alone would give ~1."""
    process = PROCESSES[name]
    d, x1 = exact_denoiser(TARGET, process), prior(process, 200)
    want = flow(process, x1, 1.0, 0.05)
    errors = []
    for n in (8, 16, 32):
        x, info = SAMPLERS["edm_heun"](d, x1.clone(), torch.linspace(1.0, 0.05, n + 1, dtype=F64))
        assert info["nfe"] == 2 * n  # a grid ending above 0: every step is corrected
        errors.append(relative_error(x, want))
    slopes = [math.log2(a / b) for a, b in itertools.pairwise(errors)]
    assert all(1.7 <= s <= 2.4 for s in slopes), (errors, slopes)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize("name", list(PROCESSES))
def test_whole_grid_reaches_the_exact_sample_map(name, dtype, prediction):
    """40 karras steps land within 3% (per sample, relative) of the exact map: the flow to the last time, then
    x0_hat there (measured at most 2.5%, sub-VP; 10 steps: 26-57%), in float32 as in float64."""
    process = PROCESSES[name]
    d, x1 = exact_denoiser(TARGET, process, prediction=prediction), prior(process, 100)
    x, info = fokker.sample(d, "edm_heun", 40, x_T=x1.to(dtype), spacing="karras")
    last = float(info["times"][-2])
    want = TARGET.posterior_mean(flow(process, x1, 1.0, last), last, process)
    assert x.dtype == dtype and info["nfe"] == 2 * 40 - 1
    assert relative_error(x, want) < 0.03
    few, _ = fokker.sample(d, "edm_heun", 10, x_T=x1.to(dtype), spacing="karras")
    assert relative_error(few, want) > 0.1  # the check can fail


@pytest.mark.parametrize("name", list(PROCESSES))
def test_edm_without_churn_is_edm_heun(name):
    process = PROCESSES[name]
    d, x1 = exact_denoiser(TARGET, process), prior(process, 50)
    times = time_grid(process, 12, "karras")
    a, info_a = SAMPLERS["edm_heun"](d, x1.clone(), times)
    b, info_b = SAMPLERS["edm"](d, x1.clone(), times, s_churn=0.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and info_a == info_b
    # a churn window that holds no grid ratio churns nowhere
    c, _ = SAMPLERS["edm"](d, x1.clone(), times, s_churn=40.0, s_tmin=1e6, generator=torch.Generator())
    assert torch.equal(a, c)


def test_the_same_samples_for_any_batch_size():
    d = exact_denoiser(TARGET, PROCESSES["vp-cosine"])
    options = {"spacing": "karras", "s_churn": 10.0}
    runs = {bs: sample_seeded(d, "edm", 20, (4,), 7, seed=3, batch_size=bs, **options)[0] for bs in (3, 7)}
    torch.testing.assert_close(runs[3], runs[7], rtol=1e-5, atol=1e-5 * runs[7].abs().max().item())
    plain = sample_seeded(d, "edm", 20, (4,), 7, seed=3, batch_size=7, spacing="karras")[0]
    assert not torch.allclose(plain, runs[7])  # the churn draws noise


@pytest.mark.parametrize("name", ["ve", "vp-cosine"])
def test_churn_samples_the_target(name):
    """20,000 samples with heavy churn (s_churn = 40 on 200 steps, gamma = 0.2): mean and variance of each
    eigen-direction within 4 standard errors (measured at most 2.4); with s_noise = 1.1 the variance is
    25 standard errors off."""
    target, process = GaussianTarget.anisotropic(2, seed=3), PROCESSES[name]
    d, n = exact_denoiser(target, process), 20_000

    def errors(**options):
        g = torch.Generator().manual_seed(1)
        x, _ = fokker.sample(d, "edm", 200, x_T=prior(process, n, 2, dim=2), generator=g, spacing="karras",
                                s_churn=40.0, **options)  # fmt: skip
        z = (x - target.mean) @ target.eigvecs
        mean = z.mean(0) / (target.eigvals / n).sqrt()
        var = (z.var(0) / target.eigvals - 1) / math.sqrt(2 / n)
        return mean.abs().max().item(), var.abs().max().item()

    mean, var = errors()
    assert mean < 4 and var < 4, (mean, var)
    assert errors(s_noise=1.1)[1] > 10


def test_churn_never_evaluates_above_t1_and_works_on_fractional_indices():
    """t_hat = the time of ratio (1 + gamma) r, at most t = 1; on a discrete process it lies between grid
    times, which an "index"-conditioned network takes as a fractional step number."""
    process, seen = PROCESSES["vp-linear"], []
    exact = exact_denoiser(TARGET, process)

    def by_index(x, c):
        seen.append(c[0].item())
        return exact.fn(x, c / process.T)

    d = fokker.Denoiser(by_index, process, conditioning="index")
    x1, times = prior(process, 20), time_grid(process, 10, "karras")
    times[1] = 0.97  # sqrt(2) rho(0.97) > rho(1): the churn there is clamped to t_hat = 1
    options = {"s_churn": 1e3, "generator": torch.Generator().manual_seed(0)}
    x, _ = SAMPLERS["edm"](d, x1.clone(), times, **options)
    options["generator"] = torch.Generator().manual_seed(0)
    want, _ = SAMPLERS["edm"](exact, x1.clone(), times, **options)
    torch.testing.assert_close(x, want, rtol=1e-10, atol=1e-10)
    assert max(seen) <= process.T and any(c != round(c) for c in seen)
    t_hat = torch.tensor(seen[0::2], dtype=F64)[1:] / process.T  # the first evaluation of steps 1..N-1
    rho = process.sigma(t_hat) / process.alpha(t_hat)
    grid_rho = process.sigma(times) / process.alpha(times)
    want = torch.minimum(grid_rho[1:-1] * math.sqrt(2), grid_rho[0])  # gamma = sqrt(2) - 1, clamped to rho(1)
    assert (want == grid_rho[0]).any() and (want < grid_rho[0]).any()  # both the clamp and the free churn
    torch.testing.assert_close(rho, want, rtol=1e-9, atol=0)


def test_steps_callback_and_constraint():
    process = PROCESSES["ve"]
    d, calls, constrained = exact_denoiser(TARGET, process), [], []
    times = time_grid(process, 6, "karras")

    def constraint(x, s):
        constrained.append(s)
        return x

    _, info = SAMPLERS["edm"](d, prior(process, 5), times, s_churn=5.0, generator=torch.Generator(),
                              callback=lambda k, x, x0: calls.append(k), constraint=constraint)  # fmt: skip
    assert info == {"nfe": 11, "steps": 6} and calls == list(range(6)) and constrained == times[1:-1].tolist()
    _, one = SAMPLERS["edm_heun"](d, prior(process, 5), time_grid(process, 1))
    assert one == {"nfe": 1, "steps": 1}  # [1, 0]: x0_hat at t = 1


def test_options_are_refused_where_ineffective():
    d = exact_denoiser(TARGET, PROCESSES["vp-continuous"])
    with pytest.raises(UserError, match="'s_tmin' has no effect here; it applies only when s_churn > 0"):
        fokker.sample(d, "edm", 5, shape=(2, 4), s_tmin=0.1)
    for option in ("s_tmax", "s_noise"):
        with pytest.raises(UserError, match=f"'{option}' has no effect"):
            SAMPLERS["edm"](d, torch.zeros(2, 4), time_grid(d.process, 5), s_churn=0.0, **{option: 1.0})
    with pytest.raises(UserError, match="has no option 's_churn'"):
        fokker.sample(d, "edm_heun", 5, shape=(2, 4), s_churn=1.0)
    with pytest.raises(UserError, match="s_churn must be a finite number >= 0"):
        fokker.sample(d, "edm", 5, shape=(2, 4), s_churn=-1.0)
    with pytest.raises(UserError, match="s_tmin must be at most s_tmax"):
        fokker.sample(d, "edm", 5, shape=(2, 4), s_churn=1.0, s_tmin=2.0, s_tmax=1.0)


def test_classifier_free_guidance_runs_through_edm_heun():
    """w = 1 is the conditional model: the same samples. w = 3 evaluates both halves at every evaluation and
    solves the guided flow: near the 1000-step ODE Heun's samples in t (median 2%, at most 11%, at 20 steps)."""
    mix, process = GaussianMixture.unequal_2d(), PROCESSES["vp-cosine"]
    x1, kw = prior(process, 500, dim=2), {"model_kwargs": {"y": 1}}
    want, _ = fokker.sample(class_denoiser(mix, process), "edm_heun", 20, x_T=x1, spacing="karras", **kw)
    same, _ = fokker.sample(ClassifierFree(class_denoiser(mix, process), 1.0), "edm_heun", 20, x_T=x1,
                            spacing="karras", **kw)  # fmt: skip
    assert torch.equal(same, want)
    guided, info = fokker.sample(ClassifierFree(class_denoiser(mix, process), 3.0), "edm_heun", 20, x_T=x1,
                                 spacing="karras", **kw)  # fmt: skip
    assert info["nfe"] == 2 * (2 * 20 - 1) and torch.isfinite(guided).all()
    reference, _ = fokker.sample(ClassifierFree(class_denoiser(mix, process), 3.0), "ode", 1000, x_T=x1, **kw)
    assert relative_error(guided, reference) < 0.2 and not torch.allclose(guided, want)  # measured 0.11
