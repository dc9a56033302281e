"""The Langevin corrector of `pc` and its step rules, on exact scores (float64 unless said).

The "sigma" rule (the default) sets the step from the process alone, sigma_t^2 min(rate h_k, 1), h_k the
step's log-SNR increment, so it depends on neither the batch nor the noise, and its ULA bias vanishes as the
grid refines: pc then converges to the exact marginals. The "snr" rule (Song et al. 2021, per example) and
"snr_batch" (score_sde's and diffusers', batch-averaged) keep a fixed step per level, so their bias stays.
Floors are those of finite samples: a fitted Gaussian's KL (d (d + 3) / 4 n) and the expected mode total
variation of n exact draws (sum_k sqrt(2 w_k (1 - w_k) / (pi n)) / 2)."""

import math

import pytest
import torch

import fokker
from fokker.errors import UserError
from fokker.metrics import gaussian_fit, gaussian_kl
from fokker.samplers import sample_seeded, sde
from fokker.samplers.langevin import sigma_step
from fokker.targets import GaussianMixture, GaussianTarget, exact_denoiser

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py
F64 = torch.float64
GAUSS = GaussianTarget.anisotropic(16, seed=0)
RING = GaussianMixture.ring(11)
VP = fokker.VP(T=None)


def draw(target, process, steps, n, dtype=F64, spacing="log_snr", **options) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    d = exact_denoiser(target, process)
    x_T = (process.prior_std * torch.randn(n, target.dim, generator=g, dtype=F64)).to(dtype)
    return fokker.sample(d, "pc", steps, x_T=x_T, generator=g, spacing=spacing, **options)[0]


def kl(x: torch.Tensor) -> float:
    return gaussian_kl(*gaussian_fit(x), GAUSS.mean, GAUSS.cov)


def mode_tv(x: torch.Tensor) -> float:
    weights = torch.bincount(RING.assign(x), minlength=len(RING.weights)).to(F64) / len(x)
    return 0.5 * (weights - RING.weights).abs().sum().item()


def tv_floor(n: int) -> float:
    return 0.5 * sum(math.sqrt(2 * w * (1 - w) / (math.pi * n)) for w in RING.weights.tolist())


def test_sigma_step_is_the_formula():
    assert sigma_step(0.5, 0.1, 2.0) == pytest.approx(0.25 * 0.2, rel=1e-12)
    assert sigma_step(0.5, 3.0, 1.0) == 0.25  # capped at sigma_t^2
    assert sigma_step(0.5, math.inf, 1.0) == 0.25  # the step onto t = 0


PROCESSES = [fokker.VP(T=1000), fokker.VP(T=1000, schedule="cosine"), fokker.SubVP(), fokker.VE()]


@pytest.mark.parametrize("process", PROCESSES)
def test_the_corrector_takes_sigma_t_squared_times_the_log_snr_step(monkeypatch, process):
    """Every update's step is sigma_t^2 min(rate h_k, 1) with h_k = lambda(s) - lambda(t) of the grid step
    t -> s, at the step's own time t: the first (t = 1) and the last (onto s = 0) included."""
    seen = []

    def record(denoiser, x, level, n_steps, step, call):
        seen.append((level[0], level[2], step, n_steps))
        return x, None

    monkeypatch.setattr(sde, "denoiser_langevin", record)
    d = exact_denoiser(GAUSS, process)
    times = fokker.time_grid(process, 6, "log_snr")
    fokker.sample(d, "pc", x_T=torch.zeros(3, GAUSS.dim, dtype=F64), times=times, rate=0.3, corrector_steps=2)
    lam = process.log_snr(times).tolist()
    assert [t for t, *_ in seen] == pytest.approx(times[:-1].tolist(), rel=1e-12)
    for k, (t, sigma, step, n_steps) in enumerate(seen):
        assert sigma == pytest.approx(process.sigma(torch.tensor(t, dtype=F64)).item(), rel=1e-12)
        assert step == pytest.approx(sigma**2 * min(0.3 * (lam[k + 1] - lam[k]), 1.0), rel=1e-12)
        assert n_steps == 2
    if process.sigma(torch.tensor(0.0, dtype=F64)) == 0:  # VP, sub-VP: the step onto the data has h = inf
        assert math.isinf(lam[-1]) and seen[-1][2] == pytest.approx(seen[-1][1] ** 2, rel=1e-12)


def test_pc_converges_with_nfe_on_the_gaussian_where_the_batch_rule_stalls():
    """16-D anisotropic Gaussian, continuous VP, log-SNR grid, 20,000 samples (KL floor 0.0038). Measured:
    sigma rule 0.072 / 0.0084 / 0.0039 at 30 / 100 / 300 steps; the batch-averaged snr rule 0.0082 at 300
    and 0.0090 at 1,000 (it stalls), the per-example snr rule 0.42 at 300 (10,000 samples)."""
    n = 20_000
    floor = GAUSS.dim * (GAUSS.dim + 3) / (4 * n)
    sigma = [kl(draw(GAUSS, VP, steps, n)) for steps in (30, 100, 300)]
    batch = kl(draw(GAUSS, VP, 300, n, step_rule="snr_batch"))
    assert sigma[0] > 2 * sigma[1] and sigma[1] > 1.3 * sigma[2], sigma
    assert sigma[2] < 1.3 * floor, (sigma, floor)
    assert batch > 1.6 * sigma[2], (batch, sigma)


def test_pc_reaches_the_floor_on_the_ring_where_the_snr_rule_stays_off():
    """11-mode ring mixture, continuous VP, 40,000 samples. Measured at 100,000: sigma rule mode TV 0.037 /
    0.0045 at 10 / 100 steps (floor 0.0040, the ODE 0.0041); the per-example snr rule 0.045 at 100 and 300."""
    n = 40_000
    sigma10, sigma100 = (mode_tv(draw(RING, VP, steps, n)) for steps in (10, 100))
    snr100 = mode_tv(draw(RING, VP, 100, n, step_rule="snr"))
    assert sigma100 < 1.75 * tv_floor(n), (sigma100, tv_floor(n))
    assert sigma10 > 2 * sigma100 and snr100 > 3 * sigma100, (sigma10, sigma100, snr100)


def test_float32_follows_float64():
    """The step sizes are python floats from the float64 grid: float32 samples stay at float64's KL."""
    k64, k32 = (kl(draw(GAUSS, VP, 100, 10_000, dtype=dtype)) for dtype in (F64, torch.float32))
    assert abs(k32 - k64) < 0.1 * k64, (k32, k64)


@pytest.mark.parametrize("rule", ["sigma", "snr"])
def test_samples_do_not_depend_on_the_batch(rule):
    d = exact_denoiser(RING, VP)
    a, b = (
        sample_seeded(d, "pc", 8, (2,), 12, batch_size=size, spacing="log_snr", step_rule=rule)[0] for size in (12, 5)
    )
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6 * a.abs().max().item())


def test_the_batch_rule_depends_on_the_batch():
    d = exact_denoiser(RING, VP)
    a, b = (
        sample_seeded(d, "pc", 8, (2,), 12, batch_size=size, spacing="log_snr", step_rule="snr_batch")[0]
        for size in (12, 5)
    )
    assert not torch.allclose(a, b)


@pytest.mark.parametrize(
    "options,message",
    [
        ({"step_rule": "mala"}, "unknown step_rule 'mala'"),
        ({"rate": 0.0}, "rate > 0"),
        ({"snr": 0.1}, "'snr' has no effect here; it applies only when corrector is langevin, corrector_steps >= 1 "),
        ({"step_rule": "snr", "rate": 2.0}, "'rate' has no effect here"),
        ({"corrector": "none", "step_rule": "snr"}, "'step_rule' has no effect here"),
    ],
)
def test_refused(options, message):
    d = exact_denoiser(RING, VP)
    with pytest.raises(UserError, match=message):
        fokker.sample(d, "pc", 5, (4, 2), **options)
