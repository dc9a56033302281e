"""Inpainting against the exact answer: on a Gaussian the unknown coordinates given the known ones are Gaussian in
closed form (fokker.inpaint.conditional_gaussian, the Schur complement), and the exact eps
(fokker.targets.exact_denoiser) leaves only the sampler's and the scheme's own errors.

The target: 8 independent pairs (x_i, y_i), correlation 0.9, std 0.5 (fokker.inpaint.correlated_pairs), every
y_i missing, the x_i known at -0.6..1.0; the exact y_i | x_i has std 0.218. The distance: the KL per unknown
coordinate of the fitted 1-D Gaussians from the exact conditional (floor ~1/N = 0.001). Measured (1,000
samples; replace, then repaint with jump 10, resample 10; bench/inpaint_vs_diffusers.py prints it):

    process (steps)    ddpm          ddim          e-maruyama    pc            ode heun
    vp linear (200)    0.300 0.011   0.806 0.020   0.311 0.019   0.126 0.020   0.862 0.032
    vp cosine (100)    0.278 0.010   0.808 0.016   0.283 0.016   0.129 0.016   0.858 0.025
    ve (100)           0.298 0.002   0.833 0.011   0.284 0.002   0.132 0.003   0.854 0.013

Replacement is biased whatever the sampler (its mean is off by ~0.6 conditional std, its std ~1.25x too large:
the known part of each step is drawn independently of the unknown one); pc's Langevin corrector (its default
sigma step rule) mixes the unknown part given the known one at every level and halves that bias, but it stays
over 0.1; RePaint is within 0.05 everywhere."""

import itertools

import pytest
import torch

import fokker
from fokker.errors import UserError
from fokker.inpaint import (
    conditional_error,
    conditional_gaussian,
    coordinate_kl,
    correlated_pairs,
    inpaint,
    make_mask,
    repaint_schedule,
)
from fokker.inpaint.complete import runs
from fokker.metrics import gaussian_fit, gaussian_kl
from fokker.samplers import SAMPLERS, time_grid
from fokker.targets import GaussianTarget, exact_denoiser

pytestmark = pytest.mark.usefixtures("one_thread")
F64 = torch.float64
PAIRS = correlated_pairs(8, rho=0.9)
MISSING = torch.tensor([False, True]).repeat(8)  # every y_i
X0 = torch.stack([torch.linspace(-0.6, 1.0, 8, dtype=F64), torch.zeros(8, dtype=F64)], 1).reshape(-1)
PROCESSES = {
    "vp-linear": (fokker.VP(T=1000), 200),  # 100 respaced linear steps leave ~0.06-0.13 of their own
    "vp-cosine": (fokker.VP(T=1000, schedule="cosine"), 100),
    "ve": (fokker.VE(0.01, 4.0), 100),
}
EXACT_SAMPLERS = {
    "ddpm": {},
    "ddim": {},
    "euler_maruyama": {},
    "pc": {},
    "ode": {"method": "heun"},
}
REPAINT_TOL, REPLACE_MIN = 0.05, 0.15
REPLACE_MIN_PC = 0.1  # the corrector halves replacement's bias (the module docstring)


def pair_error(process, steps, sampler, scheme, n=1000, **options) -> float:
    """KL per unknown coordinate of `n` inpaintings of X0 from the exact conditional."""
    d = exact_denoiser(PAIRS, process)
    x, _ = inpaint(d, sampler, X0.expand(n, -1).clone(), MISSING, steps, scheme=scheme,
                   generator=torch.Generator().manual_seed(0), **options)  # fmt: skip
    mean, cov = conditional_gaussian(PAIRS.mean, PAIRS.cov, ~MISSING, X0)
    return coordinate_kl(x[:, MISSING], mean, cov.diagonal())


@pytest.mark.slow
@pytest.mark.parametrize("process", list(PROCESSES))
@pytest.mark.parametrize("sampler", list(EXACT_SAMPLERS))
def test_repaint_meets_the_exact_conditional_and_replacement_does_not(sampler, process):
    """The module docstring's table: RePaint within REPAINT_TOL, replacement above REPLACE_MIN."""
    proc, steps = PROCESSES[process]
    replaced = pair_error(proc, steps, sampler, "replace", **EXACT_SAMPLERS[sampler])
    repainted = pair_error(proc, steps, sampler, "repaint", **EXACT_SAMPLERS[sampler])
    replace_min = REPLACE_MIN_PC if sampler == "pc" else REPLACE_MIN
    assert repainted < REPAINT_TOL < replace_min < replaced, (replaced, repainted)


def test_one_correlated_pair_with_a_full_gaussian_fit():
    """One 2-D pair, y given x = 0.7 (1 std off the mean), ddpm on VE: the fitted conditional's mean error (in
    conditional std) and relative covariance error. Measured: replace 0.62 and 0.56, repaint 0.07 and 0.01."""
    target = correlated_pairs(1)
    known, x0 = torch.tensor([True, False]), torch.tensor([0.7, 0.0], dtype=F64)
    mean, cov = conditional_gaussian(target.mean, target.cov, known, x0)
    assert torch.allclose(mean, torch.tensor([-0.1 + 0.9 * 0.5], dtype=F64))
    assert torch.allclose(cov, torch.tensor([[0.25 * (1 - 0.81)]], dtype=F64))
    d, errors = exact_denoiser(target, fokker.VE(0.01, 4.0)), {}
    for scheme in ("replace", "repaint"):
        g = torch.Generator().manual_seed(1)
        x, info = inpaint(d, "ddpm", x0.expand(4000, 2).clone(), ~known, 100, scheme=scheme, generator=g)
        assert torch.equal(x[:, 0], x0[0].expand(4000))  # the known part pasted in
        errors[scheme] = conditional_error(x[:, 1:], mean, cov)
    assert info["nfe"] == 910  # 100 steps + 9 stretches of 10 steps resampled 9 more times
    assert errors["repaint"]["mean"] < 0.15 and errors["repaint"]["cov"] < 0.1, errors
    assert errors["replace"]["mean"] > 0.4 and errors["replace"]["cov"] > 0.3, errors


# --------------------------------------------------------------------------- the schedule


def lugmayr_schedule(t_T: int, jump_length: int, jump_n_sample: int) -> list[int]:
    """RePaint's get_schedule_jump (Lugmayr et al. 2022, their repository), verbatim but for names."""
    jumps = {j: jump_n_sample - 1 for j in range(0, t_T - jump_length, jump_length)}
    t, ts = t_T, []
    while t >= 1:
        t = t - 1
        ts.append(t)
        if jumps.get(t, 0) > 0:
            jumps[t] = jumps[t] - 1
            for _ in range(jump_length):
                t = t + 1
                ts.append(t)
    ts.append(-1)
    return ts


@pytest.mark.parametrize("steps,jump,resample", [(250, 10, 10), (20, 5, 3), (50, 10, 2), (7, 1, 4), (30, 7, 5)])
def test_the_schedule_is_lugmayrs(steps, jump, resample):
    levels = repaint_schedule(steps, jump, resample)
    assert levels == [t + 1 for t in lugmayr_schedule(steps, jump, resample)]  # their t is the level below ours
    pieces = runs(levels)
    assert all(a[-1] == b[0] for a, b in itertools.pairwise(pieces))
    down = sum(len(p) - 1 for p in pieces if p[-1] < p[0])
    assert down == steps + (resample - 1) * jump * len(range(1, steps - jump + 1, jump))


# --------------------------------------------------------------------------- every sampler applies the constraint


def recording(target, process):
    """An exact denoiser that records coordinate 0 of every input, and a constraint that writes 10 + s there."""
    seen, calls = [], []
    d = exact_denoiser(target, process)
    inner = d.fn

    def fn(x, t, **kw):
        seen.append(x[:, 0].clone())
        return inner(x, t, **kw)

    def constraint(x, s):
        calls.append(s)
        return torch.cat([torch.full_like(x[:, :1], 10 + s), x[:, 1:]], 1)

    d.fn = fn
    return d, constraint, seen, calls


SHORT = {"annealed_langevin": {"steps_per_level": 2}}  # defaults otherwise (ode: heun)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_applies_the_constraint_after_each_step(name):
    """After each step onto s > 0 (and each Langevin update at level s) the sampler hands x to the constraint and
    goes on from what it returns: for every grid time s in (0, 1) a network input carries the mark 10 + s."""
    process = fokker.VP(T=1000)
    d, constraint, seen, calls = recording(GaussianTarget.anisotropic(3), process)
    times = time_grid(process, 6)
    SAMPLERS[name](d, torch.randn(5, 3, dtype=F64), times, constraint=constraint, **SHORT.get(name, {}))
    assert set(times[1:-1].tolist()) <= set(calls) <= set(times[:-1].tolist())
    assert 0.0 not in calls  # never at t = 0: the caller pastes the known part there
    marked = {v[0].item() for v in seen if bool((v == v[0]).all())}
    assert {10 + t for t in times[1:-1].tolist()} <= marked, name


def test_the_adaptive_ode_refuses_a_constraint():
    d = exact_denoiser(GaussianTarget.anisotropic(2), fokker.VP(T=1000))
    with pytest.raises(UserError, match="dopri5' cannot take a constraint"):
        SAMPLERS["ode"](d, torch.randn(2, 2), time_grid(d.process, 5), method="dopri5", constraint=lambda x, s: x)
    with pytest.raises(UserError, match="dopri5' cannot take a constraint"):
        inpaint(d, "ode", torch.zeros(2, 2), torch.tensor([False, True]), 5, method="dopri5")


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_a_grid_between_two_times_samples_the_marginal_there(name):
    """A sub-grid from t = 0.6 to 0.3 (RePaint's calls) takes an exact draw of p_0.6 to one of p_0.3: no final
    denoising. KL of the fit to N(alpha mu, alpha^2 S + sigma^2 I); floor ~0.001 (4,000 samples, 3-D)."""
    target, process = GaussianTarget.anisotropic(3, seed=2), fokker.VE(0.01, 4.0)
    g = torch.Generator().manual_seed(0)
    times = torch.linspace(0.6, 0.3, 31, dtype=F64)
    x_a = process.q_sample(target.sample(4000, g), 0.6, torch.randn(4000, 3, generator=g, dtype=F64))
    options = {"ode": {"method": "euler"}, "annealed_langevin": {"steps_per_level": 20}}
    options = options.get(name, {})
    model = exact_consistency_model(target, process) if name == "consistency" else exact_denoiser(target, process)
    x, _ = SAMPLERS[name](model, x_a, times, generator=g, **options)
    sigma = float(process.sigma(torch.tensor(0.3, dtype=F64)))
    kl = gaussian_kl(*gaussian_fit(x), target.mean, target.cov + sigma**2 * torch.eye(3, dtype=F64))
    assert kl < 0.01, (name, kl)


def exact_consistency_model(target: GaussianTarget, process) -> fokker.Denoiser:
    """The exact consistency function f*(x, t) = the flow to t_min over alpha(t_min), the model the `consistency`
    sampler is for (on a diffusion model, E[x0 | x_t] re-noised is not a draw of p_s)."""
    t_min = process.first_time
    alpha = float(process.alpha(torch.tensor(t_min, dtype=torch.float64)))
    return fokker.Denoiser(lambda x, c: target.flow(x, c, t_min, process) / alpha, process, "x0")


# --------------------------------------------------------------------------- masks and errors


def test_mask_names():
    size = (1, 8, 8)
    for name, rows, cols in [("left", ..., slice(0, 4)), ("right", ..., slice(4, 8)), ("top", slice(0, 4), ...),
                             ("bottom", slice(4, 8), ...), ("center", slice(2, 6), slice(2, 6))]:  # fmt: skip
        expected = torch.zeros(8, 8, dtype=torch.bool)
        expected[rows, cols] = True
        assert torch.equal(make_mask(name, size), expected), name
    random = make_mask("random-0.25", size, seed=3)
    assert random.sum() == 16 and torch.equal(random, make_mask("random-0.25", size, seed=3))
    assert not torch.equal(random, make_mask("random-0.25", size, seed=4))
    assert make_mask("y", (2,)).tolist() == [False, True] and make_mask("x", (2,)).tolist() == [True, False]
    assert make_mask("0,2", (4,)).tolist() == [True, False, True, False]
    assert make_mask("random-0.5", (4,)).sum() == 2


def test_a_png_mask_is_white_where_missing(tmp_path):
    from PIL import Image

    picture = torch.zeros(6, 8, dtype=torch.uint8)
    picture[1:3, 2:7] = 255
    Image.fromarray(picture.numpy()).save(tmp_path / "hole.png")
    assert torch.equal(make_mask(str(tmp_path / "hole.png"), (3, 6, 8)), picture == 255)
    with pytest.raises(UserError, match=r"hole.png is 8x6 pixels; this model's images are 8x8"):
        make_mask(str(tmp_path / "hole.png"), (3, 8, 8))


YX = torch.tensor([False, True])  # y missing


def inpaint_pair(d, sampler="ddpm", known=None, mask=YX, steps=5, **options):
    return inpaint(d, sampler, torch.zeros(2, 2) if known is None else known, mask, steps, **options)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda d: make_mask("middle", (1, 8, 8)), "unknown mask 'middle' for images"),
        (lambda d: make_mask("random-1.5", (1, 8, 8)), "0 < P < 1"),
        (lambda d: make_mask("z", (2,)), "unknown mask 'z' for vectors"),
        (lambda d: make_mask("3", (2,)), "names coordinate 3"),
        (lambda d: inpaint_pair(d, mask=torch.ones(3, dtype=torch.bool)), "does not fit"),
        (lambda d: inpaint_pair(d, mask=torch.tensor([0, 1])), "bool tensor"),
        (lambda d: inpaint_pair(d, mask=torch.tensor([False, False])), "nothing missing"),
        (lambda d: inpaint_pair(d, mask=torch.tensor([True, True])), "nothing known"),
        (lambda d: inpaint_pair(d, jump=3), "jump has no effect with scheme 'replace'"),
        (lambda d: inpaint_pair(d, scheme="repaint", resample=1), "resample >= 2"),
        (lambda d: inpaint_pair(d, scheme="repaint"), "jump < steps = 5"),
        (lambda d: inpaint_pair(d, scheme="paint"), "unknown scheme"),
        (lambda d: inpaint_pair(d, "ddim", snr=0.1), "no option 'snr'"),
        (lambda d: inpaint_pair(d, "annealed_langevin", steps=20, scheme="repaint", epsilon=1e-3), "leave epsilon"),
    ],
)
def test_user_errors(call, message):
    with pytest.raises(UserError, match=message):
        call(exact_denoiser(correlated_pairs(1), fokker.VP(T=1000)))


# --------------------------------------------------------------------------- the command line


def tiny_run(folder, preset: str, *overrides: str):
    """A run trained for 4 steps (seconds): its pictures are noise, but every path of the commands runs."""
    from fokker.config import apply_overrides, load_preset
    from fokker.train import train

    config = apply_overrides(load_preset(preset), ["sample.num=4", "sample.steps=3", *overrides])
    train(config, folder, device="cpu", budget={"steps": 4}, progress=False)
    return folder


@pytest.fixture(scope="module")
def runs_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("inpaint_cli")
    small = ["train.batch_size=16", "model.network.base_channels=8", "model.network.attention_resolutions=[]"]
    tiny_run(root / "digits", "digits", *small)
    tiny_run(root / "moons", "toy", "model.network.hidden=16", "model.network.depth=1", "data.num_points=500")
    return root


def test_inpaint_from_the_command_line(runs_folder, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from fokker.cli import main

    run = str(runs_folder / "digits")
    out = tmp_path / "in.png"
    args = ["inpaint", "--checkpoint", run, "--index", "7", "8", "--mask", "left", "--num", "3", "--steps", "6"]
    args += ["--scheme", "repaint", "--jump", "2", "--resample", "2", "--no-progress"]
    assert main([*args, "--out", str(out)]) == 0
    assert "inpainted 2 inputs x 3 with ddim (6 steps, repaint)" in capsys.readouterr().out
    arrays = np.load(tmp_path / "in.npz")
    assert arrays["samples"].shape == (6, 1, 8, 8) and arrays["inputs"].shape == (2, 1, 8, 8)
    assert arrays["mask"].shape == (8, 8) and arrays["mask"][:, :4].all() and not arrays["mask"][:, 4:].any()
    known = ~arrays["mask"]
    assert np.array_equal(arrays["samples"][:3, 0][:, known], np.repeat(arrays["inputs"][:1, 0][:, known], 3, 0))
    with Image.open(out) as img:  # one row per input: masked input, 3 completions, the input
        assert img.width > 4 * img.height / 2
    # a file and a PNG mask; the same completions whatever the batch size
    Image.fromarray(np.uint8(arrays["mask"]) * 255).save(tmp_path / "mask.png")
    Image.fromarray(np.uint8((arrays["inputs"][0, 0] + 1) * 127.5)).save(tmp_path / "digit.png")
    for batch in ("1", "8"):
        assert main(["inpaint", "--checkpoint", run, "--image", str(tmp_path / "digit.png"), "--mask",
                     str(tmp_path / "mask.png"), "--steps", "4", "--batch-size", batch, "--out",
                     str(tmp_path / f"f{batch}.png"), "--no-progress"]) == 0  # fmt: skip
    assert np.array_equal(np.load(tmp_path / "f1.npz")["samples"], np.load(tmp_path / "f8.npz")["samples"])
    # 2-D data: y given x of three test points
    moons = ["inpaint", "--checkpoint", str(runs_folder / "moons"), "--index", "0", "1", "2", "--mask", "y"]
    assert main([*moons, "--num", "20", "--steps", "5", "--out", str(tmp_path / "moons.png"), "--no-progress"]) == 0
    moons = np.load(tmp_path / "moons.npz")
    assert moons["samples"].shape == (60, 2)
    assert np.array_equal(moons["samples"][:, 0], np.repeat(moons["inputs"][:, 0], 20))


@pytest.mark.parametrize(
    "args,message",
    [
        (["--image", "x.png", "--index", "1"], "either as --image files or as --index numbers of the test split, not"),
        (["--index", "1", "--mask", "MASK"], "is 6x6 pixels; this model's images are 8x8"),
        (["--index", "1", "--sampler", "ode", "--method", "dopri5"], "dopri5' cannot take a constraint"),
        (["--index", "1", "--jump", "3"], "jump has no effect with scheme 'replace'"),
        (["--index", "1", "--mask", "middle"], "unknown mask 'middle' for images"),
        (["--index", "999"], "--index 999 is out of range; the test split has 179 examples: 0..178"),
        (["--index", "1", "--out", "x.jpg"], "--out must name a .png file"),
        (["--index", "1", "--num", "0"], "--num and --batch-size must be positive"),
        (["--index", "1", "--sampler", "ddim", "--snr", "0.1"], "sampler 'ddim' has no option 'snr'"),
    ],
)
def test_inpaint_user_errors_exit_2_with_one_line(runs_folder, tmp_path, capsys, args, message):
    from PIL import Image

    from fokker.cli import main

    Image.new("L", (6, 6), 255).save(tmp_path / "mask.png")
    args = [a.replace("MASK", str(tmp_path / "mask.png")) for a in args]
    out = [] if "--out" in args else ["--out", str(tmp_path / "x.png")]
    steps = [] if "dopri5" in args else ["--steps", "4"]  # dopri5 refuses --steps first
    assert main(["inpaint", "--checkpoint", str(runs_folder / "digits"), *steps, *out, *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fokker inpaint: error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "x.png").exists()


def test_the_inpaint_commands_have_help_with_examples(capsys):
    from fokker.cli import main

    for command in ("inpaint", "colorize"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert "examples:" in text and f"fokker {command} --checkpoint" in text and "--scheme" in text
