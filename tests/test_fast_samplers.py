"""The exponential integrators (DPM-Solver++, UniPC, DEIS) on exact models: their order, the ends of the
grid on every process, batch independence, guidance, option checks and conformance with diffusers."""

from __future__ import annotations

import math

import pytest
import torch

import fokker
from fokker.errors import UserError
from fokker.guidance import ClassifierFree
from fokker.metrics import gaussian_fit, gaussian_kl
from fokker.samplers import get_sampler, sample_seeded, time_grid
from fokker.samplers.deis import rho_ab
from fokker.samplers.dpm_solver import dpmpp_multistep
from fokker.samplers.exponential import grid_of
from fokker.samplers.unipc import unic, unip
from fokker.targets import GaussianMixture, GaussianTarget, class_denoiser, exact_denoiser

F64 = torch.float64
TARGET = GaussianTarget.anisotropic(8, seed=1)
PROCESSES = {
    "vp": fokker.VP(T=None),
    "vp-cosine-discrete": fokker.VP(T=1000, schedule="cosine"),
    "vp-discrete": fokker.VP(T=1000),
    "ve": fokker.VE(),
    "subvp": fokker.SubVP(),
}
# name: (sampler, options, order of the method's local step)
METHODS = {
    "dpmpp_2m": ("dpmpp_2m", {}, 2),
    "dpmpp_3m": ("dpmpp_3m", {}, 3),
    "dpmpp_2s": ("dpmpp_2s", {}, 2),
    "unipc-2": ("unipc", {}, 2),
    "unipc-3": ("unipc", {"order": 3}, 3),
    "unipc-bh1": ("unipc", {"b_h": "bh1"}, 2),
    "deis-3": ("deis", {}, 3),
    "dpmpp_2m+unic": ("dpmpp_2m", {"corrector": "unic"}, 2),
}


def log_snr_times(process, steps: int, t_end: float) -> torch.Tensor:
    """steps + 1 times from 1 to t_end, uniform in log-SNR (bisection)."""
    lam = process.log_snr(torch.tensor([1.0, t_end], dtype=F64))
    target = torch.linspace(float(lam[0]), float(lam[1]), steps + 1, dtype=F64)
    lo, hi = torch.full_like(target, t_end), torch.ones_like(target)
    for _ in range(80):
        mid = (lo + hi) / 2
        above = process.log_snr(mid) > target
        lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
    times = (lo + hi) / 2
    times[0], times[-1] = 1.0, t_end
    return times


def start(process, n: int = 64, seed: int = 0, dtype=F64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return process.prior_std * torch.randn(n, TARGET.dim, generator=g, dtype=F64).to(dtype)


def relative_error(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float((x.double() - ref).norm() / ref.norm())


# -- the local order of each step formula, from an exact history -------------------------------------------


def local_error(update_fn, order: int, h: float, corrector: bool = False) -> float:
    """|one step from exact states and exact x0_hat / eps_hat history - the exact flow|, relative, for steps of
    length h in log-SNR ending at lambda = 1 (continuous VP)."""
    process, k = fokker.VP(T=None), order + 1
    lam_end = 1.0
    lams = torch.tensor([lam_end - (k + 1 - i) * h for i in range(k + 2)], dtype=F64)  # ends one past k + 1
    lams = lams[: k + 2]
    lo, hi = torch.full_like(lams, 1e-4), torch.ones_like(lams)
    for _ in range(80):
        mid = (lo + hi) / 2
        above = process.log_snr(mid) > 2 * lams
        lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
    times = ((lo + hi) / 2)[: k + 2]
    d = exact_denoiser(TARGET, process)
    grid = grid_of(d, times)
    x1 = start(process, 16)
    states = [TARGET.flow(x1, 1.0, float(t), process) for t in times]
    x0s = [d.x0(s, float(t)) for s, t in zip(states, times, strict=True)]
    epss = [d.eps(s, float(t)) for s, t in zip(states, times, strict=True)]
    # step k -> k + 1 (history back to k - order + 1)
    update = update_fn(grid, k, order)
    history = (x0s if update.basis == "x0" else epss)[k::-1]
    if corrector:
        history = [x0s[k + 1], *x0s[k::-1]]
    x = update.a * states[k] + sum(w * hh for w, hh in zip(update.weights, history, strict=False))
    return relative_error(x, states[k + 1])


@pytest.mark.parametrize(
    ("name", "update_fn", "order", "corrector"),
    [
        ("dpmpp 1", dpmpp_multistep, 1, False),
        ("dpmpp 2", dpmpp_multistep, 2, False),
        ("dpmpp 3", dpmpp_multistep, 3, False),
        ("unip 2", unip("bh2"), 2, False),
        ("unip 3 bh1", unip("bh1"), 3, False),
        ("unic 1", unic("bh2"), 1, True),
        ("unic 2", unic("bh2"), 2, True),
        ("unic 2 bh1", unic("bh1"), 2, True),
        ("deis 2", rho_ab, 2, False),
        ("deis 3", rho_ab, 3, False),
        ("deis 4", rho_ab, 4, False),
    ],
)
def test_local_order(name, update_fn, order, corrector):
    """A step of order p from an exact history errs by O(h^(p+1)); UniC-p, which also uses the evaluation at
    the new point, by O(h^(p+2)) (Zhao et al. 2023, Thm. 3.1)."""
    expected = order + 1 + (1 if corrector else 0)
    errs = [local_error(update_fn, order, h, corrector) for h in (0.2, 0.1, 0.05)]
    slopes = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    assert abs(slopes[-1] - expected) < 0.35, (name, errs, slopes)


# -- the whole sampler: global convergence and the ends of the grid ----------------------------------------


@pytest.mark.parametrize("process_name", ["vp", "ve", "subvp"])
@pytest.mark.parametrize("method", list(METHODS))
def test_global_convergence(process_name, method):
    """Against NFE, on a grid that ends above 0 (no final denoising): error O(NFE^-min(p, 2)). A multistep
    method's first step (and, as diffusers' lower_order_final, its last) is first order, and one first-order
    step limits the global order to 2 (measured: 3M and UniPC-3 reach slopes of 2 to 4 before that)."""
    process = PROCESSES[process_name]
    sampler, options, order = METHODS[method]
    d, x_T = exact_denoiser(TARGET, process), start(process)
    ref = TARGET.flow(x_T, 1.0, 0.05, process)
    errs = [relative_error(get_sampler(sampler)(d, x_T, log_snr_times(process, n, 0.05), **options)[0], ref)
            for n in (16, 32, 64)]  # fmt: skip
    slope = math.log2(errs[0] / errs[2]) / 2  # over 16 -> 64 NFE
    assert slope > min(order, 2) - 0.2, (errs, slope)
    ddim = relative_error(get_sampler("ddim")(d, x_T, log_snr_times(process, 32, 0.05))[0], ref)
    assert errs[1] < ddim / 4, (errs[1], ddim)


def exact_output(process, x_T: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """What a deterministic sampler that ends with x0_hat at the last time above 0 tends to: the exact flow to
    that time, then E[x0 | x_t]."""
    last = float(times[-2])
    return TARGET.posterior_mean(TARGET.flow(x_T.double(), 1.0, last, process), last, process)


@pytest.mark.parametrize("process_name", list(PROCESSES))
@pytest.mark.parametrize("method", ["dpmpp_2m", "dpmpp_3m", "dpmpp_2s", "unipc-3", "deis-3"])
def test_whole_grid_reaches_the_data(method, process_name):
    """On a whole grid (t = 1 to 0) of every process: 40 log-SNR steps land closer to the exact map than
    DDIM's by 2.5x or more, the first step included (the cosine schedule's t = 1 has alpha = 0.006), and in
    float32 within 1e-4 of float64."""
    process = PROCESSES[process_name]
    sampler, options, _ = METHODS[method]
    d, x_T = exact_denoiser(TARGET, process), start(process)
    times = time_grid(process, 40, "log_snr")
    x, info = get_sampler(sampler)(d, x_T, times, **options)
    assert info["nfe"] == 40 and torch.isfinite(x).all()
    exact = exact_output(process, x_T, times)
    ddim = relative_error(get_sampler("ddim")(d, x_T, times)[0], exact)
    assert relative_error(x, exact) < ddim / 2.5
    single, _ = get_sampler(sampler)(d, x_T.float(), times, **options)
    assert single.dtype == torch.float32 and relative_error(single, x) < 1e-4


FOLDED = {
    "dpmpp_2m": ("dpmpp_2m", {}),
    "dpmpp_3m": ("dpmpp_3m", {}),
    "dpmpp_2s": ("dpmpp_2s", {}),
    "dpmpp_2m_sde": ("dpmpp_2m_sde", {}),
    "deis": ("deis", {}),
    "unip": ("unipc", {"corrector": "none"}),
    "unipc-2": ("unipc", {}),
    "unipc-3-bh1": ("unipc", {"order": 3, "b_h": "bh1"}),
    "dpmpp_3m+unic": ("dpmpp_3m", {"corrector": "unic"}),
    "deis+unic": ("deis", {"corrector": "unic"}),
    "edm_heun": ("edm_heun", {}),
    "edm": ("edm", {"s_churn": 10.0}),
}


@pytest.mark.parametrize("prediction", ["eps", "x0", "v", "score"])
@pytest.mark.parametrize("process_name", ["vp-cosine-discrete", "ve", "subvp"])
@pytest.mark.parametrize("method", FOLDED)
def test_folded_steps_equal_the_explicit_ones(method, process_name, prediction):
    """Without a clip or callback a step is one combination of the raw outputs and the states they were
    evaluated at, a corrected state eliminated (exponential.folded_plan; EDM's Heun step likewise); with a
    callback the loop forms x0_hat, eps_hat and the corrected states (the module docstring's form). Both give
    the same samples, on a grid whose last time is above 0 and on one that ends at 0, for every prediction
    type, on a non-Gaussian target (float64, same noise)."""
    sampler, options = FOLDED[method]
    process = PROCESSES[process_name]
    target = GaussianMixture.unequal_2d()
    d = exact_denoiser(target, process, prediction=prediction)
    x_T = process.prior_std * torch.randn(256, 2, generator=torch.Generator().manual_seed(3), dtype=F64)
    for times in (time_grid(process, 9, "log_snr"), time_grid(process, 9, "karras")[:-1]):
        runs = [
            get_sampler(sampler)(d, x_T, times, generator=torch.Generator().manual_seed(1), **options, **extra)[0]
            for extra in ({}, {"callback": lambda k, x, x0: None})
        ]
        assert relative_error(*runs) < 1e-12


def test_final_step_is_tweedie():
    """The step onto t = 0 returns x0_hat at the last time, with no extra evaluation: on a one-step grid every
    method is x0_hat(x_1, 1)."""
    process = fokker.VP(T=1000)
    d, x_T = exact_denoiser(TARGET, process), start(process)
    for sampler, options, _ in METHODS.values():
        x, info = get_sampler(sampler)(d, x_T, torch.tensor([1.0, 0.0], dtype=F64), **options)
        assert info["nfe"] == 1
        torch.testing.assert_close(x, TARGET.posterior_mean(x_T, 1.0, process), rtol=1e-12, atol=1e-12)


def test_first_order_steps_are_ddim():
    """DPM-Solver++ at first order (one step before the final one) and DEIS of order 1 are DDIM."""
    process = fokker.VP(T=1000, schedule="cosine")
    d, x_T = exact_denoiser(TARGET, process), start(process)
    times = time_grid(process, 12, "log_snr")
    ddim = get_sampler("ddim")(d, x_T, times)[0]
    torch.testing.assert_close(get_sampler("deis")(d, x_T, times, order=1)[0], ddim, rtol=1e-10, atol=1e-12)
    two = torch.tensor([1.0, 0.4, 0.0], dtype=F64)
    torch.testing.assert_close(get_sampler("dpmpp_3m")(d, x_T, two)[0], get_sampler("ddim")(d, x_T, two)[0])


def test_unip2_without_corrector_is_dpmpp_2m():
    """UniP-2 with B(h) = e^-h - 1 and a_1 = 1/2 is DPM-Solver++(2M) (Zhao et al. 2023, sec. 3.3)."""
    process = fokker.VE()
    d, x_T = exact_denoiser(TARGET, process), start(process)
    times = time_grid(process, 10, "log_snr")
    a = get_sampler("unipc")(d, x_T, times, corrector="none")[0]
    torch.testing.assert_close(a, get_sampler("dpmpp_2m")(d, x_T, times)[0], rtol=1e-10, atol=1e-12)


def test_sde_variant_samples_the_target():
    """SDE-DPM-Solver++(2M) on the 16-D Gaussian at 50 steps: mean and covariance of 20,000 samples within a
    few standard errors (KL of the fit 0.02, where exact samples of that count give about 0.004)."""
    target, process = GaussianTarget.anisotropic(16, seed=0), fokker.VP(T=1000)
    d = exact_denoiser(target, process)
    x, _ = fokker.sample(d, "dpmpp_2m_sde", 50, (20000, 16), generator=torch.Generator().manual_seed(3),
                         spacing="log_snr")  # fmt: skip
    kl = gaussian_kl(*gaussian_fit(x), target.mean, target.cov)
    assert kl < 0.02, kl


def test_stochastic_samples_do_not_depend_on_the_batch():
    process = fokker.VP(T=1000)
    d = exact_denoiser(TARGET, process)
    a, _ = sample_seeded(d, "dpmpp_2m_sde", 8, (TARGET.dim,), 7, seed=5, batch_size=3, spacing="log_snr")
    b, _ = sample_seeded(d, "dpmpp_2m_sde", 8, (TARGET.dim,), 7, seed=5, batch_size=7, spacing="log_snr")
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("sampler", ["dpmpp_2m", "dpmpp_2s", "unipc", "deis", "dpmpp_2m_sde"])
def test_guided_without_code_of_its_own(sampler):
    """Classifier-free guidance with w = 1 is the conditional model, through every solver."""
    mixture, process = GaussianMixture.unequal_2d(), fokker.VP(T=1000)
    base = class_denoiser(mixture, process)
    y = torch.tensor([0, 1, 2, 1])
    x_T = torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    kw = {"model_kwargs": {"y": y}, "generator": torch.Generator().manual_seed(1)}
    plain, _ = fokker.sample(base, sampler, 10, x_T=x_T, spacing="log_snr", **kw)
    kw["generator"] = torch.Generator().manual_seed(1)
    guided, _ = fokker.sample(ClassifierFree(base, 1.0), sampler, 10, x_T=x_T, spacing="log_snr", **kw)
    torch.testing.assert_close(guided, plain)


def test_constraint_follows_every_state_above_zero():
    process = fokker.VP(T=1000)
    d, x_T = exact_denoiser(TARGET, process), start(process, 4)
    seen = []

    def constraint(x, s):
        seen.append(s)
        return x

    times = time_grid(process, 6, "uniform")
    get_sampler("unipc")(d, x_T, times, constraint=constraint)
    predicted, corrected = times[1:-1].tolist(), times[1:-2].tolist()  # no correction of the last state
    assert sorted(seen, reverse=True) == sorted(predicted + corrected, reverse=True)


def test_options_without_effect_are_refused():
    d = exact_denoiser(TARGET, fokker.VP(T=1000))
    with pytest.raises(UserError, match="b_h"):
        fokker.sample(d, "dpmpp_2m", 5, (2, TARGET.dim), b_h="bh1")
    with pytest.raises(UserError, match="order"):
        fokker.sample(d, "unipc", 5, (2, TARGET.dim), order=5)
    with pytest.raises(UserError, match="corrector"):
        fokker.sample(d, "deis", 5, (2, TARGET.dim), corrector="pc")


# -- conformance with diffusers' schedulers on their own grid ---------------------------------------------


def diffusers_run(scheduler, steps: int, d, x_T: torch.Tensor, T: int = 1000):
    """diffusers' scheduler driving the exact model (its timestep k is fokker's t = (k + 1) / T)."""
    scheduler.set_timesteps(steps)
    x = x_T.clone()
    for k in scheduler.timesteps:
        eps = d.eps(x, torch.full((len(x),), (int(k) + 1) / T, dtype=F64))
        x = scheduler.step(eps, k, x).prev_sample
    return x, torch.tensor([(int(k) + 1) / T for k in scheduler.timesteps], dtype=F64)


@pytest.mark.parametrize("spacing", ["trailing", "leading"])
@pytest.mark.parametrize("steps", [5, 10, 20])
@pytest.mark.parametrize(
    ("sampler", "options", "config"),
    [
        ("dpmpp_2m", {}, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
        ("unipc", {}, {}),
        ("unipc", {"order": 3}, {"solver_order": 3}),
        ("unipc", {"b_h": "bh1"}, {"solver_type": "bh1", "final_sigmas_type": "sigma_min"}),
    ],
)
def test_same_samples_as_diffusers(sampler, options, config, steps, spacing):
    """On diffusers' grid, the same noise and model: diffusers' samples to 1e-4 (diffusers steps in float32).
    bh1 ends at sigma_min (timestep 0, fokker's t = 1 / T) since diffusers' bh1 step onto sigma = 0 is NaN."""
    diffusers = pytest.importorskip("diffusers")
    cls = diffusers.DPMSolverMultistepScheduler if sampler == "dpmpp_2m" else diffusers.UniPCMultistepScheduler
    scheduler = cls(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                    timestep_spacing=spacing, **config)  # fmt: skip
    process = fokker.VP(T=1000)
    d = exact_denoiser(GaussianMixture.unequal_2d(), process)
    x_T = torch.randn(256, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    theirs, times = diffusers_run(scheduler, steps, d, x_T)
    end = 1 / 1000 if config.get("final_sigmas_type") == "sigma_min" else 0.0  # sigma_min: timestep 0
    times = torch.cat([times, torch.tensor([end], dtype=F64)])
    ours, _ = get_sampler(sampler)(d, x_T, times, **options)
    assert float((ours - theirs).abs().max() / theirs.abs().max()) < 1e-4
