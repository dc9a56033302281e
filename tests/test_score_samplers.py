"""Score-SDE samplers (Euler-Maruyama, predictor-corrector, probability-flow ODE, annealed Langevin)
against exact scores of analytic targets under VE, VP and sub-VP, in float64.

Errors: the KL between the Gaussian fitted to the samples and the true Gaussian (8-D target; its
floor from 10,000 samples alone is ~0.002) and the largest mode-weight error on a 2-D mixture with
weights 0.2 / 0.5 / 0.3."""

import itertools

import pytest
import torch

import fokker
from fokker.denoiser import from_x0_eps
from fokker.errors import UserError
from fokker.metrics import gaussian_fit, gaussian_kl
from fokker.processes import expand_as
from fokker.samplers import get_sampler
from fokker.targets import GaussianMixture, GaussianTarget, exact_denoiser

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py
F64 = torch.float64
N = 10_000
FLOOR = 0.004  # twice the KL of 10,000 exact samples: below it, an error need not shrink
GAUSS = GaussianTarget.anisotropic(8)
MIXTURE = GaussianMixture.unequal_2d()
# each process with the spacing that puts its first time near t = 0 (uniform t is uniform log-SNR for VE)
PROCESSES = {
    "ve": (fokker.VE(0.01, 50.0), "uniform"),
    "vp": (fokker.VP(T=None), "log_snr"),
    "subvp": (fokker.SubVP(), "log_snr"),
}


def fitted_kl(x: torch.Tensor, target: GaussianTarget) -> float:
    return gaussian_kl(*gaussian_fit(x), target.mean, target.cov)


def draw(target, process, sampler, steps, spacing, n=N, seed=0, **options):
    g = torch.Generator().manual_seed(seed)
    x_T = process.prior_std * torch.randn(n, target.dim, generator=g, dtype=F64)
    d = exact_denoiser(target, process)
    return fokker.sample(d, sampler, steps, x_T=x_T, generator=g, spacing=spacing, **options)


def weight_error(x: torch.Tensor, mixture: GaussianMixture = MIXTURE) -> float:
    weights = torch.bincount(mixture.assign(x), minlength=len(mixture.weights)).to(F64) / len(x)
    return (weights - mixture.weights).abs().max().item()


# (sampler, options, step counts, KL tolerance at the last count). Measured KLs at the last count, VE / VP /
# sub-VP: euler_maruyama 0.0010 / 0.0037 / 0.0041; reverse diffusion 0.015 / 0.014 / 0.033; ancestral
# 0.016 / 0.020 / 0.037; ODE Euler 0.40 (VE, 100 steps) / 0.0019 / 0.0013; Heun 0.0397 (VE, 30 steps) /
# 0.0010 / 0.0017 at 30 steps; annealed Langevin (10 updates per level) 0.019 / 0.016 / 0.027.
CASES = [
    ("euler_maruyama", {}, [10, 30, 100], 0.01),
    ("pc", {"predictor": "reverse_diffusion", "corrector": "none"}, [10, 30, 100], 0.05),
    ("pc", {"predictor": "ancestral", "corrector": "none"}, [10, 30, 100], 0.05),
    ("ode", {"method": "euler"}, [30, 100, 300], 0.15),
    ("ode", {"method": "heun"}, [10, 30, 100], 0.01),
    ("annealed_langevin", {"steps_per_level": 10}, [10, 30, 100], 0.05),
]


@pytest.mark.parametrize("process,spacing", PROCESSES.values(), ids=PROCESSES.keys())
@pytest.mark.parametrize(
    "sampler,options,grid,tol", CASES, ids=[f"{c[0]}-{next(iter(c[1].values()), '')}" for c in CASES]
)
def test_sampler_reaches_targets_and_error_shrinks(process, spacing, sampler, options, grid, tol):
    kls = []
    for steps in grid:
        x, info = draw(GAUSS, process, sampler, steps, spacing, **options)
        kls.append(fitted_kl(x, GAUSS))
        per_step = 2 if options.get("method") == "heun" else options.get("steps_per_level", 1)
        assert per_step * steps - 1 <= info["nfe"] <= per_step * steps + 1
    assert all(b < 0.7 * a or b < FLOOR for a, b in itertools.pairwise(kls)), kls
    assert kls[-1] < tol, kls
    x, _ = draw(MIXTURE, process, sampler, grid[-1], spacing, **options)
    assert weight_error(x) < 0.03


def test_adaptive_ode_hits_its_tolerance_on_the_exact_flow():
    """For a Gaussian target the probability-flow ODE has a closed-form solution: in the eigenbasis of the
    covariance S, (x_t - alpha_t mu) / sqrt(alpha_t^2 lambda + sigma_t^2) is constant along a path."""
    process = fokker.VP(T=None)
    d = exact_denoiser(GAUSS, process)
    x1 = torch.randn(2000, 8, generator=torch.Generator().manual_seed(0), dtype=F64)
    end = torch.tensor([0.05], dtype=F64)

    def exact(x, t_from, t_to):
        z = (x - process.alpha(t_from) * GAUSS.mean) @ GAUSS.eigvecs
        scale = ((process.alpha(t_to) ** 2 * GAUSS.eigvals + process.sigma(t_to) ** 2)
                 / (process.alpha(t_from) ** 2 * GAUSS.eigvals + process.sigma(t_from) ** 2)).sqrt()  # fmt: skip
        return process.alpha(t_to) * GAUSS.mean + (z * scale) @ GAUSS.eigvecs.T

    truth = exact(x1, torch.ones(1, dtype=F64), end)
    times = torch.cat([torch.ones(1, dtype=F64), end])
    errors, nfes = [], []
    for tol in (1e-3, 1e-5, 1e-7):
        x, info = get_sampler("ode")(d, x1, times, method="dopri5", rtol=tol, atol=tol)
        errors.append((x - truth).abs().max().item())
        nfes.append(info["nfe"])
        assert errors[-1] < 20 * tol, (tol, errors[-1])
        assert info["accepted"] > 0 and info["rejected"] >= 0 and info["steps"] == info["accepted"]
        assert info["nfe"] >= 6 * info["accepted"]  # dopri5: 6 new evaluations per step attempt
    assert errors[0] > errors[1] > errors[2] and nfes[0] < nfes[1] < nfes[2], (errors, nfes)
    # fixed steps: Euler is first order, Heun second order (error ratios at 2x the steps ~2 and ~4)
    for method, order in (("euler", 1), ("heun", 2)):
        err = []
        for steps in (20, 40, 80):
            grid = torch.linspace(1, 0.05, steps + 1, dtype=F64)
            err.append((get_sampler("ode")(d, x1, grid, method=method)[0] - truth).abs().max().item())
        for a, b in itertools.pairwise(err):
            assert 2**order * 0.8 < a / b < 2**order * 1.25, (method, err)


@pytest.mark.parametrize("process", [p for p, _ in PROCESSES.values()], ids=PROCESSES.keys())
def test_reverse_sde_and_probability_flow_share_marginals(process):
    """Stopped at t = 0.3, Euler-Maruyama on the reverse SDE and dopri5 on the probability-flow ODE both
    give p_0.3, whose moments are known; their mixture-component responsibilities agree too."""
    t_mid = 0.3
    times = torch.linspace(1, t_mid, 301, dtype=F64)
    a, s = process.alpha(torch.tensor(t_mid, dtype=F64)), process.sigma(torch.tensor(t_mid, dtype=F64))
    noised = GaussianTarget(a * GAUSS.mean, a**2 * GAUSS.cov + s**2 * torch.eye(8, dtype=F64))
    results = {}
    for name, options in (("euler_maruyama", {}), ("ode", {"method": "dopri5", "rtol": 1e-6, "atol": 1e-6})):
        g = torch.Generator().manual_seed(1)
        x1 = process.prior_std * torch.randn(N, 8, generator=g, dtype=F64)
        x, _ = get_sampler(name)(exact_denoiser(GAUSS, process), x1, times, generator=g, **options)
        assert fitted_kl(x, noised) < 0.005, name
        y1 = process.prior_std * torch.randn(N, 2, generator=g, dtype=F64)
        y, _ = get_sampler(name)(exact_denoiser(MIXTURE, process), y1, times, generator=g, **options)
        results[name] = MIXTURE.responsibilities(y, t_mid, process).mean(0)
    assert torch.allclose(results["euler_maruyama"], results["ode"], atol=0.015), results
    assert torch.allclose(results["ode"], MIXTURE.weights, atol=0.015), results


def test_song_ermon_mixture_weights():
    """Song & Ermon 2019, sec. 3.2.2: for 0.2 N((-5,-5), I) + 0.8 N((5,5), I) with exact scores,
    Langevin dynamics started uniformly in [-8, 8]^2 keeps each chain in its starting basin and gets the
    weights wrong; annealed Langevin over 10 noise levels from 20 to 1 gets them right.
    Measured: plain 0.484 / 0.516, annealed 0.214 / 0.786 (N = 10,000)."""
    mixture = GaussianMixture(torch.tensor([0.2, 0.8]), torch.tensor([[-5.0, -5.0], [5.0, 5.0]]), torch.ones(2))
    g = torch.Generator().manual_seed(0)
    x_init = 16 * torch.rand(N, 2, generator=g, dtype=F64) - 8
    score = fokker.score_from_log_prob(mixture.log_prob)
    plain, info = fokker.langevin(score, x_init, step_size=0.1, n_steps=1000, generator=g)
    assert info["nfe"] == 1000
    assert weight_error(plain, mixture) > 0.25
    # levels sigma(t) at t = 1, 0.9, ..., 0.1: geometric from 20 to 1 when sigma_min = 20^(-1/9)
    process = fokker.VE(sigma_min=20 ** (-1 / 9), sigma_max=20.0)
    d = exact_denoiser(mixture, process)
    levels = process.sigma(fokker.time_grid(process, 10)[:-1])
    assert torch.allclose(levels, torch.logspace(torch.log10(torch.tensor(20.0)), 0, 10, dtype=F64))
    annealed, info = fokker.sample(d, "annealed_langevin", 10, x_T=x_init, generator=g, steps_per_level=100)
    assert info["nfe"] == 10 * 100 + 1
    assert weight_error(annealed, mixture) < 0.03


def eigen_kl(x: torch.Tensor, target: GaussianTarget) -> float:
    """Sum over the eigen-directions of the 1-D KLs of the fitted marginals (for high dimension, where
    a full covariance fit would need far more samples)."""
    z = (x - target.mean) @ target.eigvecs
    r = z.var(0) / target.eigvals
    return (0.5 * (r - 1 - torch.log(r)) + 0.5 * z.mean(0) ** 2 / target.eigvals).sum().item()


def test_langevin_corrector_improves_the_predictor():
    """On a 256-D anisotropic Gaussian (VE), 20 reverse-diffusion steps leave a large error; Langevin
    corrector steps at each step shrink it. Measured: 15.5 (none), 2.4 (1), 0.85 (2) with the default sigma
    step; 7.2 and 3.9 with Song et al.'s snr 0.16 per example; floor 0.05. The corrector's convergence in
    low dimension has its own tests (tests/test_corrector.py)."""
    target = GaussianTarget.anisotropic(256)
    process = fokker.VE(0.01, 50.0)
    kls = [
        eigen_kl(draw(target, process, "pc", 20, "uniform", n=4000, corrector=c, **k)[0], target)
        for c, k in (
            ("none", {}),
            ("langevin", {"corrector_steps": 1}),
            ("langevin", {"corrector_steps": 2}),
            ("langevin", {"corrector_steps": 1, "step_rule": "snr"}),
        )
    ]
    assert kls[1] < 0.6 * kls[0] and kls[2] < 0.7 * kls[1] and kls[3] < 0.6 * kls[0], kls
    assert kls[1] < 0.5 * kls[3], kls


def test_pc_nfe_and_its_euler_maruyama_predictor():
    x, info = draw(MIXTURE, fokker.VP(T=1000), "pc", 25, "uniform", n=50, corrector_steps=3)
    assert info["nfe"] == 25 * 4 and info["steps"] == 25 and x.shape == (50, 2)
    pc, _ = draw(GAUSS, fokker.SubVP(), "pc", 20, "log_snr", n=50, predictor="euler_maruyama", corrector="none")
    em, _ = draw(GAUSS, fokker.SubVP(), "euler_maruyama", 20, "log_snr", n=50)
    assert torch.equal(pc, em)


@pytest.mark.parametrize("prediction", ["x0", "v", "score"])
@pytest.mark.parametrize(
    "sampler,options",
    [
        ("pc", {"predictor": "reverse_diffusion"}),
        ("pc", {"predictor": "ancestral"}),
        ("euler_maruyama", {}),
        ("ode", {"method": "euler"}),
        ("ode", {"method": "heun"}),
        ("ode", {"method": "dopri5"}),
        ("annealed_langevin", {"steps_per_level": 3}),
    ],
)
def test_any_prediction_type_gives_the_same_samples(prediction, sampler, options):
    """A model that predicts x0, v or the score samples exactly like the eps model it equals, with and
    without the folded update (a callback forces x0_hat to be formed)."""
    process = fokker.VE(0.01, 5.0)
    exact = exact_denoiser(MIXTURE, process)

    def fn(x, t):
        x0, eps = exact.predict(x, t)
        return from_x0_eps(x0, eps, *(expand_as(f(t), x) for f in (process.alpha, process.sigma)), prediction)

    model = fokker.Denoiser(fn, process, prediction=prediction)
    x_T = 5 * torch.randn(200, 2, generator=torch.Generator().manual_seed(0), dtype=F64)

    def run(d, **kw):
        return fokker.sample(d, sampler, 12, x_T=x_T, generator=torch.Generator().manual_seed(1), **options, **kw)[0]

    reference = run(exact)
    torch.testing.assert_close(run(model), reference, rtol=1e-7, atol=1e-7)
    if sampler != "ode" or options["method"] != "dopri5":
        torch.testing.assert_close(run(model, callback=lambda k, x, x0: None), reference, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("sampler,options", [("euler_maruyama", {}), ("ode", {"method": "heun"}), ("pc", {})])
def test_denoise_false_ends_with_the_method_s_own_step(sampler, options):
    """Without the final denoising step the last step is the method's own (a different result), and
    without any grid time at sigma = 0 (VE) the samplers never evaluate the model at t = 0."""
    process = fokker.VE(0.01, 5.0)
    seen = []
    exact = exact_denoiser(MIXTURE, process)
    d = fokker.Denoiser(lambda x, t: seen.append(t[0].item()) or exact.fn(x, t), process)
    x_T = 5 * torch.randn(100, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    kwargs = {"x_T": x_T, **options}
    a, _ = fokker.sample(d, sampler, 10, generator=torch.Generator().manual_seed(1), **kwargs)
    b, _ = fokker.sample(d, sampler, 10, generator=torch.Generator().manual_seed(1), denoise=False, **kwargs)
    assert not torch.allclose(a, b) and seen[0] == 1.0
    assert (0.0 in seen) == (sampler == "ode")  # Heun's second stage may evaluate at t = 0, where sigma > 0


def test_score_sampler_option_errors():
    d = exact_denoiser(MIXTURE, fokker.VP(T=1000))
    with pytest.raises(UserError, match="unknown predictor 'leapfrog'"):
        fokker.sample(d, "pc", 10, shape=(2, 2), predictor="leapfrog")
    with pytest.raises(UserError, match="unknown corrector 'mala'"):
        fokker.sample(d, "pc", 10, shape=(2, 2), corrector="mala")
    with pytest.raises(UserError, match="snr > 0"):
        fokker.sample(d, "pc", 10, shape=(2, 2), step_rule="snr", snr=0)
    with pytest.raises(UserError, match="unknown ODE method 'rk4'"):
        fokker.sample(d, "ode", 10, shape=(2, 2), method="rk4")
    with pytest.raises(UserError, match="rtol and atol must be positive"):
        fokker.sample(d, "ode", 10, shape=(2, 2), method="dopri5", rtol=0)
    with pytest.raises(UserError, match="has no option 'snr'"):
        fokker.sample(d, "ode", 10, shape=(2, 2), snr=0.1)
    with pytest.raises(UserError, match="epsilon > 0"):
        fokker.sample(d, "annealed_langevin", 10, shape=(2, 2), epsilon=-1.0)
    with pytest.raises(UserError, match="step_size > 0"):
        fokker.langevin(lambda x: -x, torch.zeros(2, 2), step_size=0, n_steps=3)
