"""Options that have no effect in the configuration given are errors, not no-ops (issue 13, A.5): the
samplers' conditional options, the likelihood methods' options, the config's variance and loss, and what
each sampler does with a learned variance; dopri5's callback, progress bar and end time."""

import pytest
import torch
from test_cli import TINY, fokker, snapshot

import fokker as fk
from fokker.config import RunConfig, apply_overrides, load_preset, validate
from fokker.errors import UserError
from fokker.samplers import check_options, get_sampler, uses_grid
from fokker.targets import GaussianMixture, exact_denoiser
from fokker.train import train

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py
F64 = torch.float64
MIXTURE = GaussianMixture.unequal_2d()


def with_v(process, v: float) -> fk.Denoiser:
    """The mixture's exact eps plus a constant learned-variance output v."""
    exact = exact_denoiser(MIXTURE, process)
    return fk.Denoiser(lambda x, c: torch.cat([exact.fn(x, c), torch.full_like(x, v)], 1), process, variance="learned")


def draw(denoiser, sampler, steps=10, n=64, **options):
    x_T = denoiser.process.prior_std * torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    return fk.sample(denoiser, sampler, steps, x_T=x_T, generator=torch.Generator().manual_seed(1), **options)


# --------------------------------------------------------------------------- samplers' conditional options

REFUSED = [
    ("pc", {"variance": "beta"}, "'variance' has no effect here; it applies only when predictor is ancestral (here "),
    ("pc", {"predictor": "euler_maruyama", "corrector": "none", "variance": "beta_tilde"}, "predictor='euler_maruy"),
    ("pc", {"corrector": "none", "snr": 0.1}, "'snr' has no effect here; it applies only when corrector is langevin"),
    ("pc", {"corrector": "none", "corrector_steps": 2}, "'corrector_steps' has no effect here; it applies only when"),
    ("pc", {"corrector_steps": 0, "snr": 0.3}, "(here corrector='langevin', corrector_steps=0, step_rule='sigma')"),
    ("ode", {"rtol": 1e-3}, "'rtol' has no effect here; it applies only when method is dopri5 (here method='heun')"),
    ("ode", {"method": "euler", "atol": 1e-3}, "'atol' has no effect here; it applies only when method is dopri5"),
]


@pytest.mark.parametrize("sampler,options,message", REFUSED, ids=[f"{s}-{'-'.join(o)}" for s, o, _ in REFUSED])
def test_an_option_without_effect_is_refused(sampler, options, message):
    """Through fokker.sample and called directly: the check is the registered function's own."""
    d = exact_denoiser(MIXTURE, fk.VP(T=100))
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        fk.sample(d, sampler, 5, shape=(4, 2), **options)
    with pytest.raises(UserError, match="has no effect here"):
        get_sampler(sampler)(d, torch.zeros(4, 2), fk.time_grid(d.process, 5), **options)


def test_the_same_options_are_accepted_where_they_apply():
    d = exact_denoiser(MIXTURE, fk.VP(T=100))
    for sampler, options in [
        ("pc", {"predictor": "ancestral", "variance": "beta", "corrector": "none"}),
        ("pc", {"step_rule": "snr", "snr": 0.1, "corrector_steps": 2}),
        ("pc", {"rate": 0.5, "corrector_steps": 2}),
        ("ode", {"method": "dopri5", "rtol": 1e-3, "atol": 1e-3}),
        ("pc", {"variance": None, "snr": None}),  # None: not given
    ]:
        x, _ = draw(d, sampler, 5, **options)
        assert torch.isfinite(x).all(), (sampler, options)


def test_the_grid_is_an_option_of_the_fixed_step_methods_only():
    """dopri5 picks its own steps: an explicit step count or spacing (the CLI's --steps / --spacing) is refused."""
    assert uses_grid("ode", {"method": "heun"}) and uses_grid("ddim", {}) and not uses_grid("ode", {"method": "dopri5"})
    check_options("ode", {"method": "euler"}, {"steps": 10, "spacing": "quadratic"})
    for key, value in (("steps", 10), ("spacing", "quadratic")):
        with pytest.raises(UserError, match=f"'{key}' has no effect here; it applies only when method is euler or"):
            check_options("ode", {"method": "dopri5"}, {key: value})
    with pytest.raises(UserError, match="sampler 'ode' has no option 'steps'"):  # the grid is no sampler option
        check_options("ode", {"method": "heun", "steps": 10})


# --------------------------------------------------------------------------- a learned variance, per sampler


MEAN_ONLY = [
    ("ddim", {}),
    ("ddim", {"eta": 1.0}),
    ("euler_maruyama", {}),
    ("pc", {"predictor": "reverse_diffusion", "corrector": "none"}),
    ("pc", {"predictor": "euler_maruyama"}),
    ("ode", {"method": "euler"}),
    ("ode", {"method": "heun"}),
    ("ode", {"method": "dopri5"}),
    ("annealed_langevin", {"steps_per_level": 2}),
]


@pytest.mark.parametrize(
    "sampler,options", MEAN_ONLY, ids=[f"{s}-{'-'.join(map(str, o.values()))}" for s, o in MEAN_ONLY]
)
def test_a_sampler_with_a_variance_of_its_own_uses_the_learned_variance_model_s_mean(sampler, options):
    """DDIM's eta, the reverse SDE's g sqrt(dt) and the ODE (no noise) define their own step variance: a
    learned-variance model is sampled by its mean prediction, exactly as the same model without v."""
    process = fk.VP(T=100)
    learned, _ = draw(with_v(process, 0.7), sampler, **options)
    fixed, _ = draw(exact_denoiser(MIXTURE, process), sampler, **options)
    assert torch.isfinite(learned).all() and torch.equal(learned, fixed)


@pytest.mark.parametrize("variance", [None, "learned", "beta", "beta_tilde"])
def test_the_ancestral_predictor_is_ddpm_with_its_variance_learned_by_default(variance):
    """pc's ancestral predictor is DDPM's posterior step: without a corrector it is ddpm, with the same
    variance, the learned one by default on a learned-variance model (Nichol & Dhariwal 2021, eq. 15)."""
    model = with_v(fk.VP(T=100), 0.5)
    given = {} if variance is None else {"variance": variance}
    pc, _ = draw(model, "pc", predictor="ancestral", corrector="none", **given)
    ddpm, _ = draw(model, "ddpm", **given)
    assert torch.equal(pc, ddpm)
    fixed, _ = draw(model, "pc", predictor="ancestral", corrector="none", variance="beta_tilde")
    assert (variance != "beta_tilde") == ((pc - fixed).abs().max() > 1e-3)  # v = 0.5 is not beta-tilde
    with_corrector, _ = draw(model, "pc", predictor="ancestral", **given)
    assert torch.isfinite(with_corrector).all()


def test_the_ancestral_predictor_s_learned_variance_needs_such_a_model():
    with pytest.raises(UserError, match="variance 'learned' needs a model with a learned variance"):
        draw(exact_denoiser(MIXTURE, fk.VP(T=100)), "pc", predictor="ancestral", variance="learned")


# --------------------------------------------------------------------------- dopri5


def test_dopri5_calls_back_at_each_accepted_step_and_shows_progress(capsys):
    d = exact_denoiser(MIXTURE, fk.VP(T=None))
    seen = []
    x, info = draw(d, "ode", method="dopri5", rtol=1e-4, atol=1e-4, denoise=False, progress=True,
                   callback=lambda k, x, x0: seen.append((k, x.clone(), x0.clone())))  # fmt: skip
    assert capsys.readouterr().err.count("t:") >= 1  # tqdm's bar: "t: ...", the time travelled
    assert [k for k, _, _ in seen] == list(range(info["accepted"])) and info["accepted"] >= 3
    torch.testing.assert_close(seen[-1][1], x, rtol=1e-12, atol=0)  # the last callback has the final state
    times = info["times"]  # 1, the accepted steps' ends, t_end
    assert len(times) == info["accepted"] + 1 and times[0] == 1 and (times.diff() < 0).all()
    assert times[-1].item() == pytest.approx(info["t_end"], rel=1e-12) and info["t_end"] == d.process.t_min
    denoised, more = draw(d, "ode", method="dopri5", rtol=1e-4, atol=1e-4, callback=lambda k, x, x0: seen.append(x0))
    torch.testing.assert_close(seen[-1], denoised, rtol=1e-9, atol=1e-9 * denoised.abs().max().item())
    assert more["times"][-1] == 0 and len(more["times"]) == more["accepted"] + 2  # then x0_hat at t = 0
    draw(d, "ode", method="dopri5", rtol=1e-4, atol=1e-4)
    assert capsys.readouterr().err == ""  # no bar unless asked


@pytest.mark.parametrize("process", [fk.VE(0.01, 5.0, T=10), fk.VE(0.01, 5.0), fk.VP(T=100)], ids=["ve10", "ve", "vp"])
def test_dopri5_never_evaluates_the_model_below_its_lowest_trained_time(process):
    """A discrete VE has sigma(0) = sigma_min > 0, but its model never saw t < 1 / T: the solve ends at
    1 / T (sigma(1 / T), the ladder's lowest level) and x0_hat is taken there; a continuous one at t_min."""
    exact = exact_denoiser(MIXTURE, process)
    seen = []
    d = fk.Denoiser(lambda x, t: seen.append(t.min().item()) or exact.fn(x, t), process)
    _, info = draw(d, "ode", method="dopri5", rtol=1e-4, atol=1e-4)
    lowest = process.first_time
    assert lowest == (1 / process.T if process.T else process.t_min) and info["t_end"] == lowest
    assert min(seen) == pytest.approx(lowest, rel=1e-12) and min(seen) >= lowest, (min(seen), lowest)


# --------------------------------------------------------------------------- the likelihood methods' options


@pytest.mark.parametrize(
    "method,options,message",
    [
        ("ode", {"steps": 5}, "method ode has no option 'steps' (it applies only to method vlb)"),
        ("ode", {"variance": "beta"}, "method ode has no option 'variance'"),
        ("ode", {"t_samples": 3}, "method ode has no option 't_samples'"),
        ("vlb", {"rtol": 1e-3}, "method vlb has no option 'rtol' (it applies only to method ode)"),
        ("vlb", {"divergence": "exact"}, "method vlb has no option 'divergence'"),
        ("vlb", {"probe": "gaussian"}, "method vlb has no option 'probe'"),
        ("ode", {"divergence": "exact", "probe": "gaussian"}, "probe 'gaussian' has no effect with the exact diverg"),
        ("ode", {"probe": "rademacher"}, "has no effect with the exact divergence \\(D = 2; auto is exact up to"),
    ],
)
def test_a_likelihood_option_of_the_other_method_is_refused(method, options, message):
    d = exact_denoiser(MIXTURE, fk.VP(T=50))
    with pytest.raises(
        UserError, match=message.replace("(it", r"\(it").replace("vlb)", r"vlb\)").replace("ode)", r"ode\)")
    ):
        fk.likelihood(d, MIXTURE.sample(4, torch.Generator().manual_seed(0)).double(), method, **options)


def test_likelihood_options_that_apply_are_taken():
    d = exact_denoiser(MIXTURE, fk.VP(T=50))
    x = MIXTURE.sample(4, torch.Generator().manual_seed(0)).double()
    hutch = fk.likelihood(d, x, "ode", divergence="hutchinson", probe="gaussian", rtol=1e-3, atol=1e-3,
                          generator=torch.Generator().manual_seed(1))  # fmt: skip
    assert torch.isfinite(hutch.bpd).all()
    assert torch.isfinite(fk.likelihood(d, x, "vlb", steps=10, variance="beta", t_samples=2).bpd).all()


# --------------------------------------------------------------------------- the config


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["model.variance=learned"], "model.variance learned needs a loss that trains the variance (vlb or hybrid);"),
        (["model.variance=learned", "train.loss=dsm"], "train.loss dsm does not train v"),
        (["model.variance=learned", "train.loss=ssm"], "train.loss ssm does not train v"),
        (["model.variance=learned", "train.loss=ism"], "train.loss ism does not train v"),
        (["process={type: ve, T: 100}", "train.loss=vlb"], "train.loss vlb: the variational bound needs a process "),
        (["process={type: ve, T: 100}", "train.loss=hybrid", "model.variance=learned"], "not ve with sigma(0) = 0.01"),
        (["sample.sampler=pc", "sample.options={corrector: none, snr: 0.1}"], "sample.options: sampler 'pc': option"),
    ],
)
def test_config_refuses_a_variance_nothing_trains_and_the_bound_on_ve(overrides, message):
    with pytest.raises(UserError) as err:
        validate(apply_overrides(load_preset("toy"), overrides))
    assert message in str(err.value)


def test_config_accepts_the_losses_that_train_a_learned_variance():
    for overrides in (["model.variance=learned", "train.loss=hybrid"], ["model.variance=learned", "train.loss=vlb"],
                      ["train.loss=vlb"], ["process={type: subvp, T: 100}", "train.loss=vlb"]):  # fmt: skip
        config = apply_overrides(load_preset("toy"), overrides)
        assert isinstance(validate(config), RunConfig)  # raises a UserError when refused


def test_the_bound_s_loss_refuses_ve_in_the_library_too():
    from fokker.losses import vlb_loss

    d = exact_denoiser(MIXTURE, fk.VE(0.01, 5.0, T=100))
    with pytest.raises(
        UserError, match="the 'vlb' and 'hybrid' losses: the variational bound needs a process with sigma"
    ):
        vlb_loss(d, MIXTURE.sample(8, torch.Generator().manual_seed(0)).double())


# --------------------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("options")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    config = apply_overrides(load_preset("toy"), [*TINY, "sample.num=16", "sample.steps=4", "process.T=50"])
    train(config, root / "run", device="cpu", budget={"steps": 4}, progress=False)
    torch.set_num_threads(n)
    return root


CLI_ERRORS = [
    (["sample", "--sampler", "ode", "--method", "dopri5", "--steps", "20"], "option 'steps' has no effect here; it"),
    (["sample", "--sampler", "pc", "--corrector", "none", "--snr", "0.2"], "option 'snr' has no effect here; it ap"),
    (["eval", "--sampler", "ode", "--method", "dopri5", "--spacing", "quadratic"], "'spacing' has no effect on any"),
    (["likelihood", "--method", "ode", "--steps", "5"], "method ode has no option --steps (it applies only to method"),
    (["likelihood", "--method", "vlb", "--probe", "gaussian"], "method vlb has no option --probe (it applies only to"),
    (["train", "--out", "new", "model.variance=learned"], "model.variance learned needs a loss that trains the var"),
    (["train", "--out", "new", "--process", "ve", "train.loss=vlb", "process.T=10"], "train.loss vlb: the variatio"),
]


@pytest.mark.parametrize("args,message", CLI_ERRORS, ids=lambda v: " ".join(v)[:50] if isinstance(v, list) else None)
def test_the_command_line_refuses_an_option_without_effect(run, args, message):
    if args[0] in ("sample", "eval", "likelihood"):
        args = [args[0], "--checkpoint", "run", *args[1:], "--out", "new.png" if args[0] == "sample" else "new"]
    before = snapshot(run)
    r = fokker(*args, "--no-progress", cwd=run)
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith(f"fokker {args[0]}: error: "), r.stderr
    assert message in r.stderr, r.stderr
    assert snapshot(run) == before


def test_the_command_line_takes_dopri5_without_a_step_count(run):
    r = fokker("sample", "--checkpoint", "run", "--sampler", "ode", "--method", "dopri5", "--rtol", "1e-3",
               "--num", "8", "--out", "ode.png", "--no-progress", cwd=run)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "sampled 8 with ode (" in r.stdout and " adaptive steps) in " in r.stdout, r.stdout
