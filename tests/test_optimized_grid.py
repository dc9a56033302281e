"""The optimized time grid (fokker.samplers.optimized_grid): the affine read-off of a deterministic sampler on an
exact Gaussian, its closed-form KL against samples, the optimizer beating the log_snr grid, the times= argument of
fokker.sample, and `fokker grid` / `fokker sample --spacing optimized` on a tiny run."""

import json

import numpy as np
import pytest
import torch

import fokker
from fokker.config import apply_overrides, load_preset
from fokker.errors import UserError
from fokker.metrics import gaussian_fit, gaussian_kl
from fokker.model import load_model
from fokker.samplers import fit_gaussian, grid_kl, optimize_grid, sample, sample_seeded, time_grid
from fokker.samplers.optimized_grid import affine_map, diagonal_denoiser
from fokker.targets import GaussianTarget, exact_denoiser
from fokker.train import train

F64 = torch.float64
TARGET = GaussianTarget.anisotropic(16, seed=0)
PROCESS = fokker.VP(T=1000)


def eigen(target: GaussianTarget) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean in the eigenbasis, eigenvalues, basis) of the target's covariance."""
    eigvals, basis = torch.linalg.eigh(target.cov.to(F64))
    return basis.T @ target.mean.to(F64), eigvals, basis


@pytest.mark.parametrize("sampler", ["dpmpp_2m", "ddim", "unipc", "edm_heun"])
def test_the_affine_read_off_is_the_sampler_in_the_original_basis(sampler):
    mean, eigvals, basis = eigen(TARGET)
    times = time_grid(PROCESS, 5, "log_snr")
    A, b = affine_map(PROCESS, mean, eigvals, sampler, times)
    y_T = torch.randn(8, 16, generator=torch.Generator().manual_seed(1), dtype=F64)
    # the full-covariance exact denoiser in the data's own basis: the sampler commutes with the rotation
    x, _ = sample(exact_denoiser(TARGET, PROCESS), sampler, x_T=y_T @ basis.T, times=times)
    assert torch.allclose(x @ basis, A * y_T + b, atol=1e-9)


def test_the_closed_form_kl_matches_the_kl_of_samples():
    mean, eigvals, _ = eigen(TARGET)
    times = time_grid(PROCESS, 5, "log_snr")
    closed = grid_kl(PROCESS, mean, eigvals, "ddim", times)
    x, _ = sample(exact_denoiser(TARGET, PROCESS), "ddim", shape=(20000, 16), times=times,
                  generator=torch.Generator().manual_seed(0))  # fmt: skip
    fitted = gaussian_kl(*gaussian_fit(x.double()), TARGET.mean.double(), TARGET.cov.double())
    assert closed > 1.0
    assert fitted == pytest.approx(closed, rel=0.03)


def test_fit_gaussian_recovers_the_spectrum():
    data = TARGET.sample(50000, torch.Generator().manual_seed(0))
    mean, eigvals = fit_gaussian(data, max_examples=50000)
    true_mean, true_eigvals, _ = eigen(TARGET)
    assert torch.allclose(eigvals, true_eigvals, rtol=0.05)
    assert float(mean.norm()) == pytest.approx(
        float(true_mean.norm()), rel=0.01
    )  # the same mean, in a basis up to signs
    assert fit_gaussian(torch.zeros(10, 3), min_var=1e-4)[1].tolist() == [1e-4] * 3  # a constant pixel is floored


@pytest.mark.parametrize("sampler", ["dpmpp_2m", "ddim"])
def test_the_optimized_grid_beats_log_snr_and_keeps_the_ends(sampler):
    mean, eigvals, _ = eigen(TARGET)
    times, info = optimize_grid(PROCESS, mean, eigvals, sampler, 5)
    assert info["kl"] == pytest.approx(grid_kl(PROCESS, mean, eigvals, sampler, times), rel=1e-12)
    assert info["kl_log_snr"] == pytest.approx(
        grid_kl(PROCESS, mean, eigvals, sampler, time_grid(PROCESS, 5, "log_snr"))
    )
    assert info["kl"] < 0.5 * info["kl_log_snr"]  # measured: 0.0038 vs 0.63 (dpmpp_2m), 1.18 vs 4.19 (ddim)
    assert len(times) == 6 and times[0] == 1 and times[-1] == 0 and bool((times[1:] < times[:-1]).all())
    assert torch.equal(times, torch.round(times * 1000) / 1000)  # a discrete process: grid times i / T
    assert times[-2] >= 1 / 1000


def test_a_continuous_process_gets_a_continuous_grid():
    process = fokker.VP(T=None)
    mean, eigvals, _ = eigen(GaussianTarget.anisotropic(4, seed=1))
    times, info = optimize_grid(process, mean, eigvals, "dpmpp_2m", 3)
    assert info["kl"] < info["kl_log_snr"]
    assert times[0] == 1 and times[-1] == 0 and bool((times[1:] < times[:-1]).all()) and times[-2] >= process.t_min


def test_one_step_has_nothing_to_optimize():
    mean, eigvals, _ = eigen(TARGET)
    times, info = optimize_grid(PROCESS, mean, eigvals, "ddim", 1)
    assert times.tolist() == [1.0, 0.0] and info["kl"] == info["kl_log_snr"]


@pytest.mark.parametrize(
    ("sampler", "options", "message"),
    [
        ("ddpm", {}, "draws noise"),
        ("ddim", {"eta": 0.5}, "draws noise"),
        ("euler_maruyama", {}, "draws noise"),
        ("dpmpp_2m_sde", {}, "draws noise"),
        ("edm", {"s_churn": 10.0}, "draws noise"),
        ("ode", {"method": "dopri5"}, "picks its own steps"),
    ],
)
def test_stochastic_and_adaptive_samplers_are_refused(sampler, options, message):
    mean, eigvals, _ = eigen(GaussianTarget.anisotropic(4, seed=1))
    with pytest.raises(UserError, match=message):
        optimize_grid(PROCESS, mean, eigvals, sampler, 4, **options)


def test_times_gives_the_same_samples_as_the_spacing():
    denoiser = exact_denoiser(TARGET, PROCESS)
    x_T = torch.randn(4, 16, generator=torch.Generator().manual_seed(0), dtype=F64)
    by_name, info = sample(denoiser, "dpmpp_2m", 7, x_T=x_T, spacing="karras")
    by_times, info2 = sample(denoiser, "dpmpp_2m", x_T=x_T, times=time_grid(PROCESS, 7, "karras"))
    assert torch.equal(by_name, by_times) and torch.equal(info["times"], info2["times"])
    seeded, _ = sample_seeded(denoiser, "ddim", 7, (16,), 3, times=time_grid(PROCESS, 7, "karras"))
    assert torch.equal(seeded, sample_seeded(denoiser, "ddim", 7, (16,), 3, spacing="karras")[0])


@pytest.mark.parametrize(
    ("times", "kwargs", "message"),
    [
        ([1.0, 0.5, 0.0], {"spacing": "karras"}, "either times or spacing"),
        ([1.0, 0.5, 0.0], {"steps": 3}, "times has 2 steps but steps = 3"),
        ([0.9, 0.5, 0.0], {}, "from 1 to 0"),
        ([1.0, 0.5, 0.1], {}, "from 1 to 0"),
        ([1.0, 0.5, 0.5, 0.0], {}, "strictly decreasing"),
        ([1.0, 0.5005, 0.0], {}, "grid time i / T"),
        ([[1.0, 0.0]], {}, "1-D grid"),
    ],
)
def test_times_are_checked(times, kwargs, message):
    with pytest.raises(UserError, match=message):
        sample(exact_denoiser(TARGET, PROCESS), "ddim", shape=(2, 16), times=torch.tensor(times), **kwargs)


def test_the_optimized_spacing_by_name_says_what_to_do():
    with pytest.raises(UserError, match="pass its times as times="):
        sample(exact_denoiser(TARGET, PROCESS), "ddim", 5, shape=(2, 16), spacing="optimized")


def test_diagonal_denoiser_is_the_exact_one_in_the_eigenbasis():
    mean, eigvals, basis = eigen(TARGET)
    y = torch.randn(5, 16, generator=torch.Generator().manual_seed(2), dtype=F64)
    t = torch.full((5,), 0.3, dtype=F64)
    eps_diag = diagonal_denoiser(PROCESS, mean, eigvals).eps(y, t)
    eps_full = exact_denoiser(TARGET, PROCESS).eps(y @ basis.T, t)
    assert torch.allclose(eps_full @ basis, eps_diag, atol=1e-10)


# --------------------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A toy run trained for 4 steps (moons, a tiny MLP)."""
    root = tmp_path_factory.mktemp("optgrid")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    tiny = ["model.network.hidden=32", "model.network.depth=2", "data.num_points=2000", "train.batch_size=64"]
    train(apply_overrides(load_preset("toy"), tiny), root / "run", device="cpu", budget={"steps": 4}, progress=False)
    torch.set_num_threads(n)
    return root


def cli(args: list[str], cwd, monkeypatch, capsys) -> tuple[int, str, str]:
    from fokker.cli import main

    monkeypatch.chdir(cwd)
    capsys.readouterr()
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_fokker_grid_writes_the_grid_and_sample_uses_it(run, monkeypatch, capsys):
    code, out, err = cli(
        ["grid", "--checkpoint", "run", "--sampler", "dpmpp_2m", "--steps", "4"], run, monkeypatch, capsys
    )
    assert code == 0, err
    record = json.loads((run / "run" / "grids" / "dpmpp_2m-4.json").read_text())
    assert record["sampler"] == "dpmpp_2m" and record["steps"] == 4 and len(record["times"]) == 5
    assert record["kl"] <= record["kl_log_snr"] and record["fit"]["dim"] == 2
    assert "on the optimized grid" in out
    args = ["sample", "--checkpoint", "run", "--sampler", "dpmpp_2m", "--steps", "4", "--spacing", "optimized"]
    code, out, err = cli([*args, "--num", "8", "--out", "s.png", "--no-progress"], run, monkeypatch, capsys)
    assert code == 0, err
    assert "4 steps, optimized spacing" in out
    denoiser, _ = load_model(run / "run")
    expected, _ = sample_seeded(denoiser, "dpmpp_2m", 4, (2,), 8, times=torch.tensor(record["times"]))
    assert np.allclose(np.load(run / "s.npz")["samples"], expected.numpy(), atol=1e-6)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["sample", "--checkpoint", "run", "--sampler", "ddim", "--steps", "3", "--spacing", "optimized"],
            "no optimized grid for ddim, 3 steps: run/grids/ddim-3.json is missing; compute it with "
            "`fokker grid --checkpoint run --sampler ddim --steps 3`",
        ),
        (
            ["sample", "--checkpoint", "run", "--sampler", "unipc", "--steps", "3", "--order", "3", "--spacing",
             "optimized"],
            "`fokker grid --checkpoint run --sampler unipc --steps 3 --order 3`",
        ),
        (["grid", "--checkpoint", "run", "--sampler", "ddpm", "--steps", "3"], "sampler 'ddpm' draws noise"),
        (["grid", "--checkpoint", "run", "--sampler", "ddim", "--steps", "3", "--max-examples", "1"],
         "max_examples (--max-examples) must be at least 2"),
        (["grid", "--checkpoint", "run", "--sampler", "ddim", "--steps", "3", "--min-var", "0"],
         "min_var (--min-var) positive"),
    ],
)  # fmt: skip
def test_grid_user_errors_are_one_line(run, args, message, monkeypatch, capsys):
    if args[0] == "sample":
        args = [*args, "--out", "e.png", "--no-progress"]
    code, out, err = cli(args, run, monkeypatch, capsys)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith(f"fokker {args[0]}: error: ") and message in err, err
