"""Guidance against exact answers. A mixture with one isotropic Gaussian per class has closed-form p_t(x),
p_t(x | y) and p_t(y | x) at every t (fokker.targets), so

- the classifier-free guided eps at scale w is exactly -sigma grad log [p_t(x) p_t(y | x)^w], the score of
  the tilted density, on every process a preset uses, at the ends of the time grid, in float32 and float64;
- classifier guidance at s = 1 with the exact p_t(y | x) is exactly the conditional model, and sampling with
  it (every sampler; the score-SDE samplers are class-conditional sampling, Song et al. 2021, sec. 5) gives
  component y: its mode mass and moments within the sampling floor plus the samplers' discretisation error.

The mixture's two classes overlap (means 1 apart, std 0.4), so that p_t(y | x) is far from 0 or 1 and a
wrong scale or sign moves the mode mass by tenths (at t = 0 component 0 puts 0.894 of its mass on its
mode); the binomial floor of 20,000 samples is 0.0022, the tolerance 0.015."""

import itertools

import pytest
import torch

import fokker
from fokker.denoiser import Denoiser, from_x0_eps
from fokker.errors import UserError
from fokker.guidance import ClassifierFree, ClassifierGuidance, conditional_score
from fokker.processes import process_from_config
from fokker.targets import ExactClassifier, GaussianMixture, class_denoiser, exact_denoiser

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py
F64 = torch.float64
MIX = GaussianMixture(torch.tensor([0.5, 0.5]), torch.tensor([[-0.5, 0.0], [0.5, 0.0]]), torch.tensor([0.4, 0.4]))
OWN_MODE = 0.8944  # the mass component 0 puts on its own mode (the half plane x < 0): Phi(0.5 / 0.4)
# the processes of the presets: toy (vp linear), mnist / digits (vp cosine), ve-toy, ncsn (ve, 10 levels)
PROCESSES = {
    "vp-linear": {"type": "vp", "T": 1000, "schedule": "linear"},
    "vp-cosine": {"type": "vp", "T": 1000, "schedule": "cosine"},
    "ve": {"type": "ve", "sigma_min": 0.01, "sigma_max": 4.0},
    "ve-ncsn": {"type": "ve", "T": 10, "sigma_min": 0.011988, "sigma_max": 2.0},
    "subvp": {"type": "subvp"},
}


def ends(process) -> list[float]:
    """The first trained time, the middle and t = 1."""
    return [process.first_time, 0.5, 1.0]


def points(n: int = 64, dtype=F64) -> torch.Tensor:
    return (1.5 * torch.randn(n, 2, generator=torch.Generator().manual_seed(5), dtype=F64)).to(dtype)


def tilted_eps(x: torch.Tensor, t: float, process, y: int, w: float) -> torch.Tensor:
    """-sigma grad log [p_t(x) p_t(y | x)^w] by autograd of the closed forms, in float64."""
    return tilted_eps_graph(x.to(F64).requires_grad_(True), t, process, y, w).detach()


def close(a: torch.Tensor, b: torch.Tensor, dtype) -> bool:
    tol = 1e-10 if dtype == F64 else 2e-4
    return bool(((a.to(F64) - b.to(F64)).norm(dim=-1) <= tol * (1 + b.to(F64).norm(dim=-1))).all())


@pytest.mark.parametrize("name", PROCESSES)
@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_classifier_free_eps_is_the_tilted_score(name, dtype):
    process = process_from_config(PROCESSES[name])
    x = points(dtype=dtype)
    for w in (0.0, 1.0, 2.5, 7.0):
        guided = ClassifierFree(class_denoiser(MIX, process), w)
        for t in ends(process):
            assert close(guided.eps(x, t, y=1), tilted_eps(x, t, process, 1, w), dtype), (w, t)


@pytest.mark.parametrize("name", PROCESSES)
@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_classifier_guidance_at_scale_one_is_the_conditional_model(name, dtype):
    """Bayes' rule: grad log p_t(x) + grad log p_t(y | x) = grad log p_t(x | y); at scale s the tilted score."""
    process = process_from_config(PROCESSES[name])
    x, exact = points(dtype=dtype), ExactClassifier(MIX, process)
    conditional = class_denoiser(MIX, process)
    for t in ends(process):
        guided = conditional_score(exact_denoiser(MIX, process), exact)
        assert close(guided.eps(x, t, y=0), conditional.eps(x, t, y=0), dtype), t
        scaled = ClassifierGuidance(exact_denoiser(MIX, process), exact, 3.0)
        assert close(scaled.eps(x, t, y=0), tilted_eps(x, t, process, 0, 3.0), dtype), t


def as_prediction(denoiser: Denoiser, prediction: str) -> Denoiser:
    """The same exact model, its network predicting x0, v or the score instead of eps."""
    process = denoiser.process

    def fn(x, c, **kw):
        alpha, sigma = (f(c.to(F64))[:, None] for f in (process.alpha, process.sigma))
        eps = denoiser.fn(x, c, **kw)
        return from_x0_eps((x - sigma * eps) / alpha, eps, alpha, sigma, prediction).to(x.dtype)

    return Denoiser(fn, process, prediction, num_classes=denoiser.num_classes)


@pytest.mark.parametrize("prediction", ["x0", "v", "score"])
def test_guidance_is_the_same_whatever_the_network_predicts(prediction):
    process = process_from_config(PROCESSES["vp-cosine"])
    x, exact = points(), ExactClassifier(MIX, process)
    for t in ends(process):
        for guide in (
            lambda d: ClassifierFree(d, 3.0, rescale=0.7),
            lambda d: ClassifierGuidance(d, exact, 2.0),
        ):
            want = guide(class_denoiser(MIX, process)).predict(x, t, y=1)
            got = guide(as_prediction(class_denoiser(MIX, process), prediction)).predict(x, t, y=1)
            assert all(close(g, w, F64) for g, w in zip(got, want, strict=True)), t


# (sampler, options, steps): every sampler, on the VP cosine process of the image presets and on VE
SAMPLERS = [
    ("ddpm", {}, 200),
    ("ddim", {}, 100),
    ("euler_maruyama", {}, 200),
    ("pc", {"predictor": "reverse_diffusion", "corrector": "none"}, 200),
    ("ode", {"method": "heun"}, 50),
]


def draw(denoiser: Denoiser, sampler: str, steps: int, n: int = 20_000, y: int | None = 0, **options) -> tuple:
    g = torch.Generator().manual_seed(11)
    x_T = denoiser.process.prior_std * torch.randn(n, 2, generator=g, dtype=F64)
    kw = None if y is None else {"y": y}
    return fokker.sample(denoiser, sampler, steps, x_T=x_T, generator=g, model_kwargs=kw, **options)


def check_component(x: torch.Tensor, y: int = 0) -> None:
    """x is component y: its mode mass, mean and per-axis std within tolerances well above the floor."""
    mass = (MIX.assign(x) == y).to(F64).mean().item()
    assert abs(mass - OWN_MODE) < 0.015, mass
    assert (x.mean(0) - MIX.means[y]).norm().item() < 0.03, x.mean(0)
    assert ((x.std(0) / MIX.stds[y] - 1).abs() < 0.04).all(), x.std(0)


# VE with sigma_max = 50: at the ve-toy preset's 4 the prior N(0, 16) misses the data's spread and the
# deterministic samplers carry that mismatch (mean off by 0.048 at any step count), guided or not
SAMPLING = {"vp-cosine": PROCESSES["vp-cosine"], "ve": {"type": "ve", "sigma_min": 0.01, "sigma_max": 50.0}}


@pytest.mark.parametrize(("sampler", "options", "steps"), SAMPLERS)
@pytest.mark.parametrize("name", SAMPLING)
def test_class_conditional_sampling_with_the_exact_classifier(sampler, options, steps, name):
    """Classifier guidance at s = 1 (Song et al. 2021, sec. 5) samples component y with every sampler, the
    same samples as the exact conditional model from the same noise; with no guidance the same sampler gives
    the mixture (mass 0.5 on each mode: the test can fail). Largest errors measured: mass 0.0081, mean
    0.0043, std 2.8%."""
    process = process_from_config(SAMPLING[name])
    guided = conditional_score(exact_denoiser(MIX, process), ExactClassifier(MIX, process))
    x, _ = draw(guided, sampler, steps, **options)
    check_component(x)
    want, _ = draw(class_denoiser(MIX, process), sampler, steps, **options)
    assert ((x - want).norm(dim=1) <= 1e-6 * (1 + want.norm(dim=1))).all()


def test_annealed_langevin_samples_the_class_by_bayes_rule():
    """The same through NCSN's sampler on VE (50 levels, 30 Langevin updates each); its own error is larger
    (measured: mass -0.0085, mean 0.0033, std 3.8%), so the std is held to 6% here."""
    process = process_from_config(SAMPLING["ve"])
    guided = conditional_score(exact_denoiser(MIX, process), ExactClassifier(MIX, process))
    x, info = draw(guided, "annealed_langevin", 50, n=10_000, steps_per_level=30)
    assert abs(mode_mass(x, 0) - OWN_MODE) < 0.02 and (x.mean(0) - MIX.means[0]).norm() < 0.03
    assert ((x.std(0) / MIX.stds[0] - 1).abs() < 0.06).all(), x.std(0)
    assert info["nfe"] == 50 * 30 + 1  # 50 levels (the grid's 51 times but t = 0), then x0_hat


@pytest.mark.parametrize(("sampler", "options", "steps"), SAMPLERS)
def test_classifier_free_guidance_at_one_samples_the_conditional(sampler, options, steps):
    """w = 1 is the conditional model: the same samples from the same noise, one evaluation per step."""
    process = process_from_config(PROCESSES["vp-linear"])
    guided = ClassifierFree(class_denoiser(MIX, process), 1.0)
    x, info = draw(guided, sampler, steps, n=2000, y=1, **options)
    want, _ = draw(class_denoiser(MIX, process), sampler, steps, n=2000, y=1, **options)
    assert torch.equal(x, want)
    assert info["nfe"] == {"ode": 2 * steps - 1}.get(sampler, steps)  # w = 1: one evaluation per step


def mode_mass(x: torch.Tensor, y: int) -> float:
    return (MIX.assign(x) == y).to(F64).mean().item()


def test_larger_guidance_concentrates_mass_on_the_class():
    """w > 1 concentrates mass on the class, monotonically in w; it overshoots the tilted density
    p(x) p(y | x)^w at t = 0 (mode mass 0.966 at w = 2, 0.987 at w = 3): guiding every p_t is not sampling the
    tilted p_0. Measured with ddim, 100 steps: 0.9002 (w = 1), 0.9996 (w = 2), 1.0 (w = 3)."""
    process = process_from_config(PROCESSES["vp-cosine"])
    masses, means = [], []
    for w in (1.0, 1.5, 2.0, 3.0):
        x, _ = draw(ClassifierFree(class_denoiser(MIX, process), w), "ddim", 100, n=10_000)
        masses.append(mode_mass(x, 0))
        means.append(x[:, 0].mean().item())
    assert masses[0] == pytest.approx(OWN_MODE, abs=0.015)
    assert masses[0] < masses[1] < masses[2] and masses[-1] > 0.995, masses
    assert all(b < a - 0.05 for a, b in itertools.pairwise(means)), means  # pushed away from class 1


def test_mean_shift_form_with_ancestral_sampling():
    """Dhariwal & Nichol's Algorithm 1 at s = 1 with the exact classifier samples the conditional to first order
    in the step size; any other sampler refuses it."""
    process = process_from_config(PROCESSES["vp-cosine"])
    guided = ClassifierGuidance(exact_denoiser(MIX, process), ExactClassifier(MIX, process), 1.0, form="mean")
    x, _ = draw(guided, "ddpm", 500)
    check_component(x)
    unguided, _ = draw(exact_denoiser(MIX, process), "ddpm", 500, y=None)
    assert abs(mode_mass(unguided, 0) - 0.5) < 0.02  # without the shift: the mixture
    for sampler in ("ddim", "euler_maruyama", "pc", "ode", "annealed_langevin"):
        with pytest.raises(UserError, match="mean-shift"):
            draw(guided, sampler, 10, n=4)


def test_nfe_counts_both_halves_and_the_interval_saves_them():
    process = process_from_config(PROCESSES["vp-cosine"])
    _, info = draw(ClassifierFree(class_denoiser(MIX, process), 3.0), "ddim", 10, n=8)
    assert info["nfe"] == 20
    inside = ClassifierFree(class_denoiser(MIX, process), 3.0, interval=(0.3, 0.7))
    calls = []
    inside.base.fn = record(inside.base.fn, calls)
    _, info = draw(inside, "ddim", 10, n=8)
    doubled = sum(1 for t, size in calls if 0.3 <= t <= 0.7)
    assert doubled > 0 and all(size == (16 if 0.3 <= t <= 0.7 else 8) for t, size in calls)
    assert info["nfe"] == 10 + doubled


def record(fn, calls: list):
    def wrapped(x, c, **kw):
        calls.append((c[0].item(), x.shape[0]))
        return fn(x, c, **kw)

    return wrapped


def test_guidance_rescale_matches_the_conditional_spread():
    """phi = 1: the guided x0_hat has the conditional x0_hat's std, example by example (Lin et al. 2024,
    eq. 15-16); phi = 0.5 is halfway between the two factors; the eps_hat it gives is consistent with it."""
    process = process_from_config(PROCESSES["vp-cosine"])
    x = points()
    for t in ends(process):
        conditional = class_denoiser(MIX, process).x0(x, t, y=0)
        plain = ClassifierFree(class_denoiser(MIX, process), 4.0).x0(x, t, y=0)
        full = ClassifierFree(class_denoiser(MIX, process), 4.0, rescale=1.0)
        x0, eps = full.predict(x, t, y=0)
        assert torch.allclose(x0.std(1), conditional.std(1), rtol=1e-9)
        alpha, sigma = process.alpha(torch.tensor(t)), process.sigma(torch.tensor(t))
        assert torch.allclose(alpha * x0 + sigma * eps, x, rtol=1e-9, atol=1e-12)
        half = ClassifierFree(class_denoiser(MIX, process), 4.0, rescale=0.5).x0(x, t, y=0)
        factor = 0.5 * conditional.std(1) / plain.std(1) + 0.5
        assert torch.allclose(half, plain * factor[:, None], rtol=1e-9)


def test_a_learned_variance_comes_from_the_conditional_half():
    def fn(x, c, y):
        frac = (y.to(x.dtype) / 10)[:, None].expand_as(x)
        return torch.cat([x * (1 + y[:, None]), frac], dim=1)

    process = process_from_config(PROCESSES["vp-linear"])
    d = Denoiser(fn, process, variance="learned", num_classes=2)
    out, frac = ClassifierFree(d, 2.0).raw_and_variance(torch.ones(3, 2), 0.5, y=torch.tensor([0, 1, 0]))
    assert torch.allclose(frac, torch.tensor([0.0, 0.1, 0.0])[:, None].expand(3, 2))
    uncond, cond = 1 + 2.0, torch.tensor([1.0, 2.0, 1.0])[:, None]  # null class 2: x * 3
    assert torch.allclose(out, uncond + 2.0 * (cond - uncond))


def test_guides_compose_and_share_the_count():
    process = process_from_config(PROCESSES["vp-cosine"])
    base = class_denoiser(MIX, process)
    both = ClassifierGuidance(ClassifierFree(base, 2.0), ExactClassifier(MIX, process), 1.0)
    x = points()
    want = tilted_eps(x, 0.4, process, 0, 3.0)  # w = 2 and s = 1 tilt by p_t(y | x)^3
    assert close(both.eps(x, 0.4, y=0), want, F64)
    assert both.nfe == base.nfe == 2


def test_guidance_refuses_what_cannot_work():
    process = process_from_config(PROCESSES["vp-cosine"])
    exact = ExactClassifier(MIX, process)
    with pytest.raises(UserError, match="class-conditional model"):
        ClassifierFree(exact_denoiser(MIX, process), 3.0)
    with pytest.raises(UserError, match="needs the class"):
        ClassifierFree(class_denoiser(MIX, process), 3.0).eps(points(), 0.5)
    with pytest.raises(UserError, match="no effect at w = 1"):
        ClassifierFree(class_denoiser(MIX, process), 1.0, rescale=0.5)
    for interval in [(0.5, 0.2), (-0.1, 0.5), (0.2, 1.5)]:
        with pytest.raises(UserError, match="guidance interval"):
            ClassifierFree(class_denoiser(MIX, process), 3.0, interval=interval)
    with pytest.raises(UserError, match="rescale"):
        ClassifierFree(class_denoiser(MIX, process), 3.0, rescale=1.5)
    with pytest.raises(UserError, match="another process"):
        ClassifierGuidance(exact_denoiser(MIX, process), ExactClassifier(MIX, process_from_config(PROCESSES["ve"])))
    with pytest.raises(UserError, match="out of the classifier's range"):
        ClassifierGuidance(exact_denoiser(MIX, process), exact).eps(points(), 0.5, y=2)
    with pytest.raises(UserError, match="form"):
        ClassifierGuidance(exact_denoiser(MIX, process), exact, form="gradient")


def test_a_guided_model_is_differentiable_like_its_closed_form():
    """The Jacobian of the guided eps (what a divergence, and so the ODE likelihood, needs) is that of the
    tilted closed form: the classifier's gradient stays differentiable when x requires grad."""
    process = process_from_config(PROCESSES["vp-cosine"])
    x = points(4)
    guided = ClassifierGuidance(exact_denoiser(MIX, process), ExactClassifier(MIX, process), 2.0)
    got = torch.autograd.functional.jacobian(lambda z: guided.eps(z, 0.3, y=0).sum(0), x)
    want = torch.autograd.functional.jacobian(lambda z: tilted_eps_graph(z, 0.3, process, 0, 2.0).sum(0), x)
    assert torch.allclose(got, want, rtol=1e-9, atol=1e-12)


def tilted_eps_graph(x: torch.Tensor, t: float, process, y: int, w: float) -> torch.Tensor:
    """`tilted_eps`, differentiable in x."""
    log_p = MIX.log_prob_t(x, t, process) + w * torch.log(MIX.responsibilities(x, t, process)[:, y])
    (grad,) = torch.autograd.grad(log_p.sum(), x, create_graph=True)
    return -process.sigma(torch.tensor([t], dtype=F64)) * grad
