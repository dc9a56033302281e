import math

import pytest
import torch

from fokker.errors import UserError
from fokker.schedules import (
    DiscreteVPSchedule,
    LinearVPSchedule,
    cosine_alpha_bar,
    cosine_betas,
    cosine_end_time,
    ddpm_terminal_alpha_bar,
    geometric_sigmas,
    linear_betas,
    vp_schedule,
)

F64 = torch.float64


def alpha_bars(schedule, T):
    return torch.exp(schedule.log_alpha_bar(torch.arange(T + 1, dtype=F64) / T))


@pytest.mark.parametrize(
    "schedule,T",
    [
        (vp_schedule("linear", 1000), 1000),
        (vp_schedule("linear", 50), 50),
        (vp_schedule("cosine", 1000), 1000),
        (vp_schedule("cosine", 20), 20),
        (LinearVPSchedule(), 997),
    ],
)
def test_alpha_bar_strictly_decreasing_in_unit_interval(schedule, T):
    abar = alpha_bars(schedule, T)
    assert abar[0] == 1.0
    assert torch.all(abar[1:] > 0) and torch.all(abar[1:] < 1)
    assert torch.all(abar[1:] < abar[:-1])


def test_linear_alpha_bar_is_product_of_one_minus_beta():
    betas = linear_betas(1000)
    assert betas[0].item() == pytest.approx(1e-4, abs=1e-15) and betas[-1].item() == pytest.approx(0.02, abs=1e-15)
    product = torch.tensor([math.prod(1 - b for b in betas[:i].tolist()) for i in range(1001)], dtype=F64)
    assert torch.allclose(alpha_bars(DiscreteVPSchedule(betas), 1000), product, rtol=0, atol=1e-12)


def test_linear_betas_scale_with_T():
    assert torch.allclose(linear_betas(250)[[0, -1]], torch.tensor([4e-4, 0.08], dtype=F64), atol=1e-15)


def closed_cosine(t: torch.Tensor, s: float = 0.008) -> torch.Tensor:
    return torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2 / math.cos(s / (1 + s) * math.pi / 2) ** 2


def test_cosine_is_the_closed_form_up_to_ddpm_terminal_snr():
    """alpha-bar_i = f(t_end i / T) / f(0) with t_end where it meets Ho et al.'s alpha-bar_T; no clipping."""
    T = 1000
    terminal = math.exp(torch.log1p(-linear_betas(1000)).sum().item())
    assert ddpm_terminal_alpha_bar() == pytest.approx(terminal, rel=1e-14)
    assert terminal == pytest.approx(4.036e-5, rel=1e-3)
    t_end = cosine_end_time(terminal)
    assert closed_cosine(torch.tensor(t_end, dtype=F64)).item() == pytest.approx(terminal, rel=1e-10)
    abar = alpha_bars(DiscreteVPSchedule(cosine_betas(T)), T)
    t = torch.arange(T + 1, dtype=F64) / T
    assert torch.allclose(abar, closed_cosine(t * t_end), rtol=1e-10, atol=0)
    assert torch.allclose(cosine_alpha_bar(t), closed_cosine(t), rtol=1e-14, atol=1e-300)
    assert abar[-1].item() == pytest.approx(terminal, rel=1e-10)


def test_cosine_terminal_is_well_conditioned():
    """The first sampling step's conditioning: sigma / alpha at t = 1 and g^2(1) as on the linear schedule's
    scale (157 and 437), where Nichol & Dhariwal's clip at 0.999 gives 2e4 and 6,908."""
    from fokker.processes import VP

    one = torch.tensor(1.0, dtype=F64)
    for process, ratio, g2 in [(VP(1000, "cosine"), 158, 438), (VP(1000, "cosine", min_alpha_bar=0.0), 2.03e4, 6908)]:
        assert (process.sigma(one) / process.alpha(one)).item() == pytest.approx(ratio, rel=0.01)
        assert (process.diffusion(one) ** 2).item() == pytest.approx(g2, rel=0.01)


def test_cosine_min_alpha_bar_zero_is_nichol_dhariwal():
    T = 1000
    betas = cosine_betas(T, min_alpha_bar=0.0)
    unclipped = betas < 0.999
    assert unclipped[:-1].all() and not unclipped[-1]  # only the last step is clipped at T = 1000
    abar = alpha_bars(DiscreteVPSchedule(betas), T)
    closed = closed_cosine(torch.arange(T + 1, dtype=F64) / T)
    assert torch.allclose(abar[:-1], closed[:-1], rtol=1e-10, atol=0)
    assert abar[-1] == pytest.approx(closed[-2].item() * (1 - 0.999), rel=1e-10)
    with pytest.raises(UserError, match="min_alpha_bar"):
        cosine_betas(T, min_alpha_bar=1.0)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("T", [1000, 37])
def test_grid_lookup_is_exact_at_every_grid_time_in_float32_and_float64(schedule, T):
    """At t_k = k / T: log alpha-bar_k exactly, and the rate of the step below, T log(1 - beta_k) (the first
    step at t = 0), whether t_k arrives in float64 or rounded to float32."""
    sch = vp_schedule(schedule, T)
    k = torch.arange(T + 1)
    rate = T * torch.log1p(-sch.betas)
    expected_rate = torch.cat([rate[:1], rate])
    for t in (k.double() / T, (k.float() / T).double()):
        assert torch.equal(sch.log_alpha_bar(t), sch.log_alpha_bars)
        assert torch.allclose(sch.d_log_alpha_bar(t), expected_rate, rtol=1e-12, atol=0)
    inside = (k[:-1].double() + 0.5) / T  # between grid times: the step holding t
    assert torch.allclose(sch.d_log_alpha_bar(inside), rate, rtol=1e-12, atol=0)


def test_continuous_linear_vp_closed_form():
    sch = LinearVPSchedule(0.1, 20.0)
    t = torch.tensor([0.0, 0.3, 1.0], dtype=F64)
    expected = -(0.1 * t + 0.5 * 19.9 * t**2)
    assert torch.allclose(sch.log_alpha_bar(t), expected, atol=1e-15)
    # derivative by central differences
    h = 1e-6
    fd = (sch.log_alpha_bar(t[1] + h) - sch.log_alpha_bar(t[1] - h)) / (2 * h)
    assert fd.item() == pytest.approx(-sch.beta(t[1]).item(), rel=1e-8)


def test_discrete_schedule_is_piecewise_linear_between_grid_points():
    sch = vp_schedule("linear", 10)
    lab = sch.log_alpha_bars
    mid = sch.log_alpha_bar(torch.tensor(0.35, dtype=F64))
    assert mid.item() == pytest.approx(0.5 * (lab[3] + lab[4]).item(), abs=1e-15)
    assert sch.d_log_alpha_bar(torch.tensor(0.35, dtype=F64)).item() == pytest.approx(
        10 * math.log1p(-sch.betas[3].item()), rel=1e-12
    )


def test_geometric_sigmas():
    s = geometric_sigmas(0.01, 50.0, 10)
    assert s[0].item() == pytest.approx(50.0, rel=1e-14) and s[-1].item() == pytest.approx(0.01, rel=1e-14)
    ratios = s[1:] / s[:-1]
    assert torch.allclose(ratios, ratios[0].expand(9), rtol=1e-12)


def test_bad_schedule_names():
    with pytest.raises(UserError, match="cosine"):
        vp_schedule("cosine", None)
    with pytest.raises(UserError, match="expected 'linear' or 'cosine'"):
        vp_schedule("quadratic", 1000)


def test_float32_training_times_give_the_float64_loss_and_index_conditioning():
    """Training times i / T arrive in float32 (Process.sample_time); the likelihood-weighted DSM loss (weight
    g^2(t), 210.75 instead of 235.6 at i = 991 when t fell below i / T) and DDPM's step number must be those
    of i / T exactly."""
    from fokker.denoiser import Denoiser
    from fokker.losses import dsm_loss
    from fokker.processes import VP

    process = VP(1000, "cosine")
    i = torch.arange(1, 1001)
    t32, t64 = i.float() / 1000, i.double() / 1000
    x0, noise = torch.zeros(1000, 2), torch.randn(1000, 2, generator=torch.Generator().manual_seed(0))
    model = Denoiser(lambda x, c: torch.zeros_like(x), process)
    losses = [dsm_loss(model, x0, weighting="likelihood", t=t, noise=noise) for t in (t32, t64)]
    assert torch.equal(losses[0], losses[1])
    index = Denoiser(lambda x, c: x, process, conditioning="index").condition(t32.double())
    assert torch.equal(index, i.double())
