import pytest
import torch

from fokker import VE, VP, SubVP, time_grid
from fokker.errors import UserError
from fokker.grids import noise_ratio
from fokker.samplers import SPACINGS

PROCESSES = {
    "vp1000": VP(T=1000),
    "vp50": VP(T=50, schedule="cosine"),
    "vpc": VP(T=None),
    "subvp": SubVP(),
    "ve": VE(0.01, 50.0),
}


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("name", list(PROCESSES))
@pytest.mark.parametrize("steps", [1, 2, 3, 10, 50])
def test_grid_ends_and_monotonicity(spacing, name, steps):
    p = PROCESSES[name]
    g = time_grid(p, steps, spacing)
    assert g.dtype == torch.float64 and len(g) == steps + 1
    assert g[0].item() == 1.0 and g[-1].item() == 0.0  # starts at the prior, lands on the data
    assert torch.all(g[1:] < g[:-1])
    if p.T is not None:  # on the process's own grid
        assert torch.isin(g, p.grid).all()  # bit-identical to the process's grid times


@pytest.mark.parametrize("spacing", SPACINGS)
def test_full_grid_when_steps_equal_T(spacing):
    p = VP(T=100)
    assert torch.equal(time_grid(p, 100, spacing), torch.arange(100, -1, -1, dtype=torch.float64) / 100)


def test_named_spacings():
    p = VP(T=1000)
    assert (time_grid(p, 10) * 1000).tolist() == [1000, 900, 800, 700, 600, 500, 400, 300, 200, 100, 0]
    assert (time_grid(p, 10, "quadratic") * 1000).tolist()[:3] == [1000, 810, 640]
    q = time_grid(VP(T=None), 4, "log_snr")
    lam = VP(T=None).log_snr(q[:-1])
    assert torch.allclose(lam[1:] - lam[:-1], (lam[1] - lam[0]).expand(3), rtol=1e-9)
    assert q[-2].item() == pytest.approx(1e-3, rel=1e-9)  # last evaluation at t_min


@pytest.mark.parametrize("name", ["vpc", "subvp", "ve"])
@pytest.mark.parametrize("steps", [2, 5, 40])
def test_karras_grid_is_eq5_in_the_noise_ratio(name, steps):
    """sigma_i = (smax^(1/7) + i / (N - 1) (smin^(1/7) - smax^(1/7)))^7, i = 0..N-1, sigma = sigma(t) / alpha(t)
    from t = 1 to t_min (Karras et al. 2022, eq. 5), then t = 0."""
    p = PROCESSES[name]
    g = time_grid(p, steps, "karras")
    ends = torch.tensor([1.0, p.t_min], dtype=torch.float64)
    smax, smin = (p.sigma(ends) / p.alpha(ends)).tolist()
    i = torch.arange(steps, dtype=torch.float64)
    want = (smax ** (1 / 7) + i / (steps - 1) * (smin ** (1 / 7) - smax ** (1 / 7))) ** 7
    torch.testing.assert_close(noise_ratio(p, g[:-1]), want, rtol=1e-10, atol=0)
    assert g[-2].item() == pytest.approx(p.t_min, rel=1e-9) and g[-1].item() == 0.0


@pytest.mark.parametrize("name", ["vp1000", "vp50"])
def test_karras_grid_on_a_discrete_process(name):
    """Each time is eq. 5's rounded to the grid: i / T at or next below where the process's ratio crosses eq. 5's
    value (between rho(1) and rho(1 / T)), unless moved next to a neighbour to keep the times distinct."""
    p = PROCESSES[name]
    steps = 10
    idx = (time_grid(p, steps, "karras") * p.T).round().long()
    ratios = noise_ratio(p, p.grid)  # increasing in i
    i = torch.arange(steps, dtype=torch.float64)
    want = (ratios[-1] ** (1 / 7) + i / (steps - 1) * (ratios[1] ** (1 / 7) - ratios[-1] ** (1 / 7))) ** 7
    crossing = torch.searchsorted(ratios, want * (1 - 1e-12))  # first i with ratio(i / T) >= the target
    rounded = (idx[:-1] == crossing) | (idx[:-1] == crossing - 1)
    gaps = idx[:-1] - idx[1:]  # a time moved to keep the times distinct sits next to a neighbour
    moved = (gaps == 1) | torch.cat([torch.tensor([False]), gaps[:-1] == 1])
    assert bool((rounded | moved).all()), (idx, crossing)
    assert rounded.sum() >= steps - 4  # at most the crowded top of the cosine schedule is moved
    assert idx[0] == p.T and idx[-2] == 1 and idx[-1] == 0
    assert (time_grid(p, 1, "karras") == torch.tensor([1.0, 0.0], dtype=torch.float64)).all()


def test_grid_errors():
    with pytest.raises(UserError, match="at most T = 10"):
        time_grid(VP(T=10), 11)
    with pytest.raises(UserError, match="at least 1"):
        time_grid(VP(T=10), 0)
    with pytest.raises(UserError, match="unknown spacing"):
        time_grid(VP(T=10), 5, "linear")
