import pytest
import torch

from fokker import VE, VP, SubVP, time_grid
from fokker.errors import UserError
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


def test_grid_errors():
    with pytest.raises(UserError, match="at most T = 10"):
        time_grid(VP(T=10), 11)
    with pytest.raises(UserError, match="at least 1"):
        time_grid(VP(T=10), 0)
    with pytest.raises(UserError, match="unknown spacing"):
        time_grid(VP(T=10), 5, "linear")
