"""Latent diffusion (fokker.autoencoder.space): a Denoiser over z = scale * E(x) plus the decoder D(z / scale).

Against exact answers: with a linear "autoencoder" (D(z) = W z + b, E its left inverse) and latents of a
Gaussian, the exact denoiser of the scaled latents sampled through the pipeline gives images of the analytic
image distribution N(W mu + b, W S W'), and each sample is D of the exact probability-flow map of its noise.
Then the real trainer on tiny runs: the run keeps its autoencoder and the measured scale, its weights file is a
whole model, resume is exact, and every command works on it or refuses with one line."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import with_untrained_features
from test_autoencoder import TINY
from torch import nn

from fokker.autoencoder import latent_scale
from fokker.autoencoder.space import AUTOENCODER_FILE, AUTOENCODER_PREFIX, LatentSpace
from fokker.checkpoint import load_checkpoint
from fokker.classifier.noisy import NoisyClassifier
from fokker.cli.main import main
from fokker.config import apply_overrides, load_preset, validate
from fokker.errors import UserError
from fokker.guidance.classifier import ClassifierGuidance
from fokker.inpaint import colorize, inpaint
from fokker.latents import interpolate
from fokker.model import load_model
from fokker.processes import process_from_config
from fokker.reports import likelihood_report
from fokker.samplers import sample, sample_seeded
from fokker.targets import GaussianTarget, exact_denoiser
from fokker.train import train
from fokker.weights import read_weights

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

F64 = torch.float64


# --------------------------------------------------------------------------- the exact pipeline


class LinearAutoencoder(nn.Module):
    """D(z) = W z + b from (2, 2, 2) latents to (1, 4, 4) images, E(x) = W^+ (x - b): E(D(z)) = z exactly."""

    in_channels, image_size, latent_shape = 1, 4, (2, 2, 2)

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("weight", torch.randn(16, 8, generator=g, dtype=F64))
        self.register_buffer("bias", torch.randn(16, generator=g, dtype=F64))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.linalg.lstsq(self.weight, (x.reshape(len(x), 16) - self.bias).T).solution.T
        return z.reshape(len(x), *self.latent_shape)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return (z.reshape(len(z), 8) @ self.weight.T + self.bias).reshape(len(z), 1, 4, 4)


SCALE = 2.5  # any positive scale: the model draws scale * u, the decoder divides it out


def latent_model(process_config: dict) -> tuple:
    """(the exact Denoiser of the scaled latents with the linear autoencoder's space, the latent target u,
    the autoencoder)."""
    process = process_from_config(process_config)
    target = GaussianTarget.anisotropic(8, seed=1)
    scaled = GaussianTarget(SCALE * target.mean, SCALE**2 * target.cov)
    flat = exact_denoiser(scaled, process)

    def fn(x, c):
        return flat.fn(x.reshape(len(x), 8), c).reshape(x.shape)

    denoiser = exact_denoiser(scaled, process)
    denoiser.fn = fn
    ae = LinearAutoencoder()
    denoiser.space = LatentSpace(ae, SCALE)
    return denoiser, target, scaled, ae


PROCESSES = [
    {"type": "vp", "T": 1000, "schedule": "cosine"},
    {"type": "vp", "T": None, "schedule": "linear"},
    {"type": "ve", "T": None},
]


@pytest.mark.parametrize("process", PROCESSES, ids=lambda p: f"{p['type']}-{p.get('schedule', '')}-T{p['T']}")
def test_latent_samples_decode_to_the_analytic_image_distribution(process):
    denoiser, target, _, ae = latent_model(process)
    n = 8000
    z, _ = sample_seeded(denoiser, "ddim", 200, (2, 2, 2), n, seed=0, batch_size=4000)
    x = denoiser.to_data(z.to(F64)).reshape(n, 16)
    w, b = ae.weight, ae.bias
    mean, cov = w @ target.mean + b, w @ target.cov @ w.T
    scale = cov.diagonal().sqrt().mean()
    # the sample mean's standard error is ~std / 90 and the covariance's ~1.6%: bounds of several of them
    assert (x.mean(0) - mean).abs().max() < 0.08 * scale
    assert torch.linalg.matrix_norm(torch.cov(x.T) - cov) < 0.08 * torch.linalg.matrix_norm(cov)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("process", PROCESSES, ids=lambda p: f"{p['type']}-{p.get('schedule', '')}-T{p['T']}")
def test_each_latent_sample_is_the_decoded_exact_flow_of_its_noise(process, dtype):
    """The adaptive ode sampler on the scaled latents, then the decoder: D(flow(z_T) / scale), sample by sample."""
    denoiser, _, scaled, ae = latent_model(process)
    ae.to(dtype)
    t_eps = denoiser.process.first_time
    g = torch.Generator().manual_seed(3)
    z_T = torch.randn(64, 2, 2, 2, generator=g, dtype=F64).to(dtype) * denoiser.process.prior_std
    z, _ = sample(denoiser, "ode", 1, x_T=z_T, method="dopri5", rtol=1e-7, atol=1e-7, denoise=False)
    want = scaled.flow(z_T.reshape(64, 8).to(F64), 1.0, t_eps, denoiser.process)
    x = denoiser.to_data(z)
    expected = ae.decode(want.reshape(64, 2, 2, 2).to(dtype) / SCALE)
    assert x.dtype == dtype and x.shape == (64, 1, 4, 4)
    # the solver's error (a discrete process's schedule is piecewise on its grid): ~6e-4 of the largest pixel;
    # a wrong scale or a missing decode is off by tens of percent
    assert (x - expected).abs().max() < 2e-3 * expected.abs().max()


def test_the_space_encodes_and_decodes_with_the_scale():
    ae = LinearAutoencoder()
    space = LatentSpace(ae, SCALE, batch_size=3)  # chunks of 3: the batching must not change anything
    z = torch.randn(10, 2, 2, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    x = space.decode(z)
    assert torch.allclose(x, ae.decode(z / SCALE))
    assert torch.allclose(space.encode(x), z, rtol=1e-10, atol=1e-10 * z.abs().max().item())
    assert space.shape == (2, 2, 2) and space.data_shape == (1, 4, 4)
    with pytest.raises(ValueError, match="the latent scale must be positive"):
        LatentSpace(ae, 0.0)


def test_guidance_keeps_the_space_and_refuses_a_classifier_of_the_other_space():
    denoiser, *_ = latent_model(PROCESSES[0])
    pixels = NoisyClassifier(lambda x, c: torch.zeros(len(x), 3), denoiser.process)
    with pytest.raises(UserError, match="the classifier was trained on images but the model draws latents"):
        ClassifierGuidance(denoiser, pixels)
    latents = NoisyClassifier(lambda x, c: torch.zeros(len(x), 3), denoiser.process)
    latents.space = LatentSpace(LinearAutoencoder(seed=5), SCALE)
    with pytest.raises(UserError, match="the latents of another autoencoder"):
        ClassifierGuidance(denoiser, latents)
    latents.space = denoiser.space
    guided = ClassifierGuidance(denoiser, latents)
    assert guided.space is denoiser.space


def test_inpainting_keeps_the_known_pixels_and_needs_whole_known_blocks():
    denoiser, *_ = latent_model(PROCESSES[0])
    known = denoiser.to_data(torch.randn(3, 2, 2, 2, generator=torch.Generator().manual_seed(0), dtype=F64))
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[:, :, :2] = True  # the left half missing: the right latent column is known
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    x, _ = inpaint(denoiser, "ddim", known, mask, 20, generator=gens)
    assert x.shape == known.shape
    assert torch.equal(x[:, :, :, 2:], known[:, :, :, 2:])
    assert not torch.allclose(x[:, :, :, :2], known[:, :, :, :2])
    speckle = torch.zeros(1, 4, 4, dtype=torch.bool)
    speckle[:, ::2, ::2] = True  # one pixel missing in every 2x2 block
    with pytest.raises(UserError, match="the mask leaves no block of 2x2 pixels fully known"):
        inpaint(denoiser, "ddim", known, speckle, 20)
    with pytest.raises(UserError, match="colorize holds the grey level of each pixel"):
        colorize(denoiser, "ddim", known, 20)


def test_interpolation_runs_between_the_encoded_ends_and_decodes():
    denoiser, *_ = latent_model(PROCESSES[0])
    a, b = denoiser.to_data(torch.randn(2, 2, 2, 2, generator=torch.Generator().manual_seed(0), dtype=F64))
    x, _ = interpolate(denoiser, a, b, 3, rtol=1e-7, atol=1e-7)
    assert x.shape == (3, 1, 4, 4)
    assert torch.allclose(x[0], a, atol=1e-3 * a.abs().max()) and torch.allclose(x[-1], b, atol=1e-3 * b.abs().max())


# --------------------------------------------------------------------------- config


def latent_config(*overrides: str, autoencoder: str = "runs/vae-mnist") -> dict:
    return apply_overrides(load_preset("latent-mnist"), [f"latent.autoencoder={autoencoder}", *overrides])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.clip=[-1, 1]"], "model.clip [-1, 1] clamps x0 to the data's range, but a latent diffusion model"),
        (["model.network.type=vae", "train.loss=vae"], "latent.autoencoder trains a diffusion model or a classifier"),
        (["latent.scale=0"], "bad value for latent.scale: 0; expected a positive number"),
    ],
)
def test_latent_options_are_checked(overrides, message):
    with pytest.raises(UserError, match=re.escape(message)):
        validate(latent_config(*overrides))


def test_latent_keys_without_an_autoencoder_are_refused():
    raw = apply_overrides(load_preset("mnist"), ["latent.scale=0.5"])
    message = "latent.scale is filled from the autoencoder: give latent.autoencoder"
    with pytest.raises(UserError, match=re.escape(message)):
        validate(raw)
    assert "latent" not in validate(load_preset("mnist")).to_dict()  # a pixel model's config has no latent section


# --------------------------------------------------------------------------- runs

AE_TINY = TINY  # the autoencoder tests' tiny VAE on the digits
LATENT_TINY = [
    "data.name=digits",
    "model.network.base_channels=8",
    "model.network.channel_mult=[1]",
    "model.network.attention_resolutions=[]",
    "train.batch_size=16",
    "train.warmup=2",
    "train.log_every=2",
    "sample.num=4",
    "sample.steps=3",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """A tiny VAE on the digits (6 steps, its FID in untrained features) and a latent model on it (4 steps)."""
    root = tmp_path_factory.mktemp("latent-runs")
    with with_untrained_features():
        train(apply_overrides(load_preset("vae-mnist"), AE_TINY), root / "vae", device="cpu", budget={"steps": 6},
              progress=False)  # fmt: skip
        config = latent_config(*LATENT_TINY, autoencoder=str(root / "vae"))
        train(config, root / "latent", device="cpu", budget={"steps": 4}, progress=False)
    return root


def test_a_latent_run_records_the_measured_scale_and_keeps_its_autoencoder(runs):
    denoiser, config = load_model(runs / "latent")
    assert config.latent.scale == latent_scale(runs / "vae") and config.latent.shape == [4, 4, 4]
    assert config.model.network["in_channels"] == 4 and config.model.network["image_size"] == 4
    assert config.data.shape == [1, 8, 8]  # the data's own shape; the model draws latents
    ae_weights, _ = read_weights(runs / "vae" / "model.safetensors")
    kept, _ = read_weights(runs / "latent" / AUTOENCODER_FILE)
    exported, _ = read_weights(runs / "latent" / "model.safetensors")
    for k, v in ae_weights.items():
        assert torch.equal(kept[k], v) and torch.equal(exported[AUTOENCODER_PREFIX + k], v)
    assert denoiser.space.scale == config.latent.scale
    images = torch.rand(5, 1, 8, 8) * 2 - 1
    want = denoiser.space.autoencoder.encode(images) * config.latent.scale
    assert torch.allclose(denoiser.space.encode(images), want, rtol=1e-5, atol=1e-6 * want.abs().max().item())


def test_the_trainer_fits_the_scaled_latents(runs, monkeypatch):
    """What the network is trained on is scale * E(x) of the training images."""
    from fokker.data import dataset_for
    from fokker.train.build import encoded

    _, config = load_model(runs / "latent")
    denoiser, _ = load_model(runs / "latent")
    pixels = dataset_for(config)
    latents = encoded(pixels, denoiser.space)
    assert latents.shape == (4, 4, 4) and latents.levels is None and torch.equal(latents.labels, pixels.labels)
    assert torch.allclose(latents.data.std(), torch.tensor(1.0), rtol=0.2)  # 1 / std of these very latents
    want = denoiser.space.autoencoder.encode(pixels.data[:3]) * config.latent.scale
    assert torch.allclose(latents.data[:3], want, rtol=1e-5, atol=1e-6 * want.abs().max().item())


def test_a_latent_models_weights_file_is_a_whole_model(runs, tmp_path):
    moved = tmp_path / "elsewhere.safetensors"
    shutil.copy(runs / "latent" / "model.safetensors", moved)
    shutil.move(runs / "vae", tmp_path / "vae-moved")  # the autoencoder's run gone from where it was
    try:
        assert main(["sample", "--checkpoint", str(moved), "--num", "3", "--steps", "2", "--out",
                     str(tmp_path / "s.png"), "--no-progress"]) == 0  # fmt: skip
    finally:
        shutil.move(tmp_path / "vae-moved", runs / "vae")
    samples = np.load(tmp_path / "s.npz")["samples"]
    assert samples.shape == (3, 1, 8, 8)


def test_resumed_latent_training_equals_uninterrupted_training_bit_for_bit(runs, tmp_path):
    k = 2
    config = latent_config(*LATENT_TINY, f"train.checkpoint_every={k}", f"train.sample_every={k}",
                           "train.keep_last=5", autoencoder=str(runs / "vae"))  # fmt: skip
    a, b = tmp_path / "a", tmp_path / "b"
    train(config, a, device="cpu", budget={"steps": 2 * k}, progress=False)
    train(config, b, device="cpu", budget={"steps": k}, progress=False)
    train({}, b, resume=True, device="cpu", budget={"steps": 2 * k}, progress=False)
    state_a, state_b = load_checkpoint(a), load_checkpoint(b)
    for part in ("model", "ema", "optimizer"):
        for key, value in state_a[part].items() if part != "optimizer" else []:
            assert torch.equal(value, state_b[part][key]), (part, key)
    assert read_weights(a / "model.safetensors")[0].keys() == read_weights(b / "model.safetensors")[0].keys()
    for key, value in read_weights(a / "model.safetensors")[0].items():
        assert torch.equal(value, read_weights(b / "model.safetensors")[0][key]), key


def test_a_fresh_run_refuses_a_given_scale_and_a_missing_or_mismatched_autoencoder(runs, tmp_path):
    with pytest.raises(UserError, match=r"latent\.scale is measured from the autoencoder when the run starts"):
        train(latent_config(*LATENT_TINY, "latent.scale=0.18215", autoencoder=str(runs / "vae")), tmp_path / "a",
              device="cpu", budget={"steps": 1}, progress=False)  # fmt: skip
    with pytest.raises(UserError, match="does not exist: train the autoencoder first"):
        train(latent_config(*LATENT_TINY, autoencoder=str(tmp_path / "none")), tmp_path / "b", device="cpu",
              budget={"steps": 1}, progress=False)  # fmt: skip
    mnist = latent_config("model.network.base_channels=8", autoencoder=str(runs / "vae"))  # 28x28 data
    with pytest.raises(UserError, match=re.escape("takes images of shape (1, 8, 8), but the data has shape (1, 28")):
        train(mnist, tmp_path / "c", device="cpu", budget={"steps": 1}, progress=False)
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())


def test_commands_on_a_latent_model(runs, tmp_path, capsys):
    run = str(runs / "latent")
    assert main(["inpaint", "--checkpoint", run, "--index", "0", "--mask", "left", "--num", "2", "--steps", "2",
                 "--out", str(tmp_path / "i.png"), "--no-progress"]) == 0  # fmt: skip
    arrays = np.load(tmp_path / "i.npz")
    assert arrays["samples"].shape == (2, 1, 8, 8)
    assert main(["interpolate", "--checkpoint", run, "--a", "0", "--b", "1", "--num", "3", "--method", "ddpm",
                 "--steps", "3", "--out", str(tmp_path / "p.png"), "--no-progress"]) == 0  # fmt: skip
    denoiser, config = load_model(run)
    report = likelihood_report(denoiser, config, "vlb", num=4, steps=5)
    assert report.dim == 64 and report.levels is None and report.latent
    assert "not of the images" in report.lines()[-1] and report.record()["space"] == "latent"
    capsys.readouterr()
    assert main(["eval", "--checkpoint", run, "--num", "8", "--steps", "2", "--out", str(tmp_path / "e"),
                 "--no-progress"]) == 0  # fmt: skip


def test_a_latent_teacher_distils_into_a_latent_student(runs, tmp_path):
    from fokker.distill.progressive import distill_progressive

    distill_progressive(runs / "latent", tmp_path / "student", from_steps=4, to_steps=2, steps_per_round=2,
                        progress=False)  # fmt: skip
    student, config = load_model(tmp_path / "student")
    teacher, _ = load_model(runs / "latent")
    assert config.is_latent and student.space.same_as(teacher.space)
