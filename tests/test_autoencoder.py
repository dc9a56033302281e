"""Autoencoders (fokker.nets.VAE, VQVAE; fokker.autoencoder): encoder and decoder shapes, the VQ codebook's
straight-through gradient and EMA update, the KL term against its closed form, PSNR, usage and perplexity by
hand, the latent scale factor against a direct computation and as a run stores it, the refused options,
loading, exact resume."""

import copy
import math
import re
from pathlib import Path

import pytest
import torch
from conftest import with_untrained_features
from test_train import assert_same_state

from fokker.autoencoder import (
    codebook_usage,
    latent_scale,
    latent_scale_of,
    latent_statistics,
    load_autoencoder,
    perplexity,
    psnr,
    read_report,
)
from fokker.autoencoder.measure import Measure
from fokker.autoencoder.report import record_report, summary, trim_report
from fokker.checkpoint import load_checkpoint
from fokker.cli.main import main
from fokker.config import apply_overrides, load_preset, validate
from fokker.data import load_dataset
from fokker.errors import UserError
from fokker.losses import VAELoss, VQLoss, gaussian_kl, loss_from_section
from fokker.metrics import Classifier
from fokker.metrics.classifier import FeatureNet
from fokker.model import load_model
from fokker.nets import VQVAE, build_network, network_task
from fokker.train import train
from fokker.weights import read_weights

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

TINY = [
    "data.name=digits",
    "model.network.base_channels=8",
    "model.network.channel_mult=[1, 2]",
    "train.batch_size=16",
    "train.warmup=2",
    "train.log_every=2",
]
TINY_VQ = [*TINY, "model.network.codebook_size=32"]


def tiny(kind: str, **sizes) -> torch.nn.Module:
    torch.manual_seed(0)
    extra = {"codebook_size": 32} if kind == "vqvae" else {}
    return build_network({"type": kind, "base_channels": 8, "channel_mult": [1, 2, 2], **extra, **sizes})


def images(n: int, size: int = 28, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture
def untrained_features(monkeypatch):
    """The FID's feature classifier, an untrained FeatureNet: fokker's own is trained on first use (slow)."""
    torch.manual_seed(0)
    fake = Classifier(FeatureNet(1, 10).eval(), "digits", 0.1, 179)
    monkeypatch.setattr("fokker.train.pictures.feature_classifier", lambda dataset: fake)


# --------------------------------------------------------------------------- networks


@pytest.mark.parametrize("kind", ["vae", "vqvae"])
def test_encoder_and_decoder_map_images_to_the_latent_shape_and_back(kind):
    for size, latent in ((28, (4, 7, 7)), (14, (4, 4, 4)), (9, (4, 3, 3))):  # odd sizes round-trip
        net = tiny(kind, image_size=size).eval()
        x = images(3, size)
        z = net.encode(x)
        assert net.task == network_task(kind) == "autoencoder"
        assert net.latent_shape == latent and z.shape == (3, *latent)
        assert net.decode(z).shape == x.shape and net(x)[0].shape == x.shape
        assert build_network(net.config).config == net.config
    with pytest.raises(ValueError, match=re.escape("expected images of shape (B, 1, 9, 9), got (3, 1, 28, 28)")):
        net.encode(images(3))


def test_the_vae_decodes_a_reparameterised_sample_or_its_mean():
    net = tiny("vae").eval()
    x = images(4)
    mean, logvar = net.moments(x)
    assert torch.equal(net.encode(x), mean)
    assert torch.equal(net(x, sample=False)[0], net.decode(mean))
    eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(3))
    reconstruction, *_ = net(x, True, torch.Generator().manual_seed(3))
    torch.testing.assert_close(reconstruction, net.decode(mean + (0.5 * logvar).exp() * eps))


def test_the_vq_gradient_passes_straight_through_the_quantiser():
    """van den Oord et al. 2017, eq. 3: d z_q / d z_e = I, so d sum(w z_q) / d z_e = w (not the package's
    default rotation trick, whose gradient depends on z_e and z_q)."""
    net = tiny("vqvae").train()
    net.quantize(torch.randn(8, 4, 7, 7))  # k-means initialisation
    codebook = net.codebook.clone()  # as the call below finds it (it moves the codebook after quantising)
    z = torch.randn(2, 4, 7, 7, requires_grad=True)
    z_q, indices = net.quantize(z)
    w = torch.randn_like(z_q)
    (w * z_q).sum().backward()
    assert torch.equal(z.grad, w)
    torch.testing.assert_close(z_q.detach(), codebook[indices].permute(0, 3, 1, 2))  # the values are codes
    nearest = torch.cdist(z.detach().permute(0, 2, 3, 1).reshape(-1, 4), codebook).argmin(-1)
    assert torch.equal(indices.flatten(), nearest)


def test_the_codebook_moves_by_its_ema_update_in_training_mode_only():
    net = tiny("vqvae").train()
    net(images(8))  # the first training batch initialises the codebook by k-means
    trained = net.codebook.clone()
    net(images(8, seed=1))
    assert not torch.equal(net.codebook, trained)
    moved = net.codebook.clone()
    net.eval()
    with torch.no_grad():
        net(images(8, seed=2))
    net.train()
    net.encode(images(8, seed=3)), net.decode(torch.randn(2, 4, 7, 7)), net.indices(images(8, seed=4))
    assert torch.equal(net.codebook, moved)  # eval mode, and encode / decode / indices, leave it alone


def test_the_vq_network_runs_in_float64_in_both_modes():
    net = tiny("vqvae").double().train()
    x = images(4).double()
    reconstruction, commitment, indices = net(x)
    assert reconstruction.dtype == commitment.dtype == torch.float64 and indices.shape == (4, 7, 7)
    net.eval()
    with torch.no_grad():
        assert net.decode(net.encode(x)).dtype == torch.float64


def test_the_commitment_per_example_averages_to_vector_quantizes_own():
    net = tiny("vqvae").train()
    net(images(8))
    own = copy.deepcopy(net.quantizer)
    own.commitment_weight, own.has_commitment_loss = 1.0, True  # the package's own commitment term, weight 1
    z = net.encoder(images(8, seed=1))
    _, _, loss = own(z)
    z_q, _ = net.quantize(z)
    torch.testing.assert_close((z - z_q.detach()).pow(2).flatten(1).mean(1).mean(), loss)


# --------------------------------------------------------------------------- losses


def test_the_kl_term_is_the_closed_form_of_two_gaussians():
    """KL(N(mu, s^2) || N(0, 1)) = (mu^2 + s^2 - 1 - log s^2) / 2 per dimension (Kingma & Welling 2014, app. B)."""
    mean = torch.tensor([[1.0, 0.0], [0.5, -2.0]], dtype=torch.float64)
    logvar = torch.tensor([[1.0, 0.0], [-1.0, math.log(4.0)]], dtype=torch.float64)
    by_hand = [(1 + math.e - 1 - 1) / 2 + 0, (0.25 + math.exp(-1) - 1 + 1) / 2 + (4 + 4 - 1 - math.log(4)) / 2]
    torch.testing.assert_close(gaussian_kl(mean, logvar), torch.tensor(by_hand, dtype=torch.float64))


def test_the_losses_add_their_terms_per_example():
    x = images(2, 4)
    reconstruction, mean, logvar = x + 0.1, torch.ones(2, 3), torch.zeros(2, 3)
    vae = VAELoss(kl_weight=0.5)(lambda x0, sample, generator: (reconstruction, mean, logvar), x)
    torch.testing.assert_close(vae, torch.full((2,), 0.01 + 0.5 * (3 * 0.5) / 16))
    commitment = torch.tensor([1.0, 2.0])
    vq = VQLoss(commitment_weight=0.25)(lambda x0: (reconstruction, commitment, None), x)
    torch.testing.assert_close(vq, 0.01 + 0.25 * commitment)
    with pytest.raises(UserError, match="takes no times or noise"):
        VQLoss()(lambda x0: None, x, t=torch.zeros(2))


# --------------------------------------------------------------------------- metrics


def test_psnr_is_ten_log10_of_four_over_the_mse():
    x = torch.zeros(2, 1, 4, 4)
    assert psnr(x + 0.1, x) == pytest.approx(10 * math.log10(4 / 0.01))
    errors = torch.cat([torch.full((1, 1, 4, 4), 0.1), torch.full((1, 1, 4, 4), 0.3)])
    assert psnr(x + errors, x) == pytest.approx(10 * math.log10(4 / 0.05))  # the MSE of all pixels: (0.01 + 0.09) / 2
    assert psnr(x, x) == math.inf


def test_perplexity_counts_equally_used_codes_and_usage_the_used_fraction():
    uniform = torch.arange(16).repeat(3)
    assert perplexity(uniform, 16) == pytest.approx(16) and codebook_usage(uniform, 16) == 1
    assert (
        perplexity(torch.full((50,), 5), 16) == pytest.approx(1) and codebook_usage(torch.full((50,), 5), 16) == 1 / 16
    )
    half = torch.tensor([0, 0, 0, 1])  # p = (3/4, 1/4): exp(H)
    assert perplexity(half, 4) == pytest.approx(math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))))


@pytest.mark.parametrize("kind", ["vae", "vqvae"])
def test_the_latent_scale_is_one_over_the_std_of_the_latents(kind):
    net = tiny(kind).train()
    net(images(16))  # a VQ codebook is initialised by its first training batch
    net.eval()
    data = images(37, seed=5)
    with torch.no_grad():
        z = net.encode(data).double()
    mean, std = latent_statistics(net, data, batch=10)  # batches that do not divide the data
    assert mean == pytest.approx(z.mean().item()) and std == pytest.approx(z.std().item())
    assert latent_scale_of(net, data, batch=7) == pytest.approx(1 / z.std().item())


def test_without_class_labels_there_is_no_fid():
    net = tiny("vae").eval()
    measure = Measure(images(6), images(9, seed=1), None, net.latent_shape)
    reconstructions, values = measure(net)
    assert reconstructions.shape == (6, 1, 28, 28) and reconstructions.abs().max() <= 1
    assert set(values) == {"psnr", "latent_scale", "latent_mean", "latent_std"}
    assert measure.about == {"split": "test", "examples": 6, "latent_examples": 9, "latent_shape": [4, 7, 7]}


def test_the_report_keeps_the_steps_before_the_one_recorded_or_resumed_from(tmp_path):
    path, about = tmp_path / "autoencoder.json", {"split": "test", "examples": 3, "latent_shape": [4, 2, 2]}
    for step in (2, 4, 6):
        record_report(path, step, {"psnr": 20.0 + step, "latent_scale": 1 / 3}, about)
    record_report(path, 4, {"psnr": 30.0, "latent_scale": 0.5}, about)
    assert [(e["step"], e["psnr"]) for e in read_report(path)["evaluations"]] == [(2, 22.0), (4, 30.0)]
    assert read_report(path)["evaluations"][0]["latent_scale"] == 0.3333333  # 7 significant digits
    trim_report(path, 2)
    assert [e["step"] for e in read_report(path)["evaluations"]] == [2]
    assert latent_scale(path) == 0.3333333
    with pytest.raises(UserError, match="has no autoencoder report"):
        latent_scale(tmp_path / "elsewhere")
    path.write_text("{not json")
    with pytest.raises(UserError, match=re.escape("autoencoder.json is not JSON: the run's autoencoder report is")):
        read_report(tmp_path)


# --------------------------------------------------------------------------- config


def config_for(*overrides: str, preset: str = "vae-mnist") -> dict:
    return apply_overrides(load_preset(preset), list(overrides))


REFUSED = [
    ("vqvae-mnist", ["train.loss_options={kl_weight: 0.1}"], "train.loss vq has no option 'kl_weight'; its options: "),
    ("vae-mnist", ["train.loss_options={commitment_weight: 1}"], "train.loss vae has no option 'commitment_weight'"),
    ("vae-mnist", ["train.loss_options={kl_weight: -1}"], "bad value for train.loss_options.kl_weight: -1; expected"),
    ("vae-mnist", ["model.prediction=x0"], "model.prediction='x0' has no effect on an autoencoder (model.network.type"),
    ("vae-mnist", ["model.conditional=true"], "model.conditional=True has no effect on an autoencoder"),
    ("vae-mnist", ["model.conditioning=sigma"], "model.conditioning='sigma' has no effect on an autoencoder"),
    ("vae-mnist", ["sample.steps=10"], "sample.steps=10 has no effect on an autoencoder (model.network.type vae): it"),
    ("vae-mnist", ["process.T=20"], "process {'type': 'vp', 'T': 20, 'schedule': 'linear'} has no effect on an"),
    ("vae-mnist", ["train.p_uncond=0.1"], "train.p_uncond=0.1 has no effect on an autoencoder"),
    ("vae-mnist", ["train.time_sampler=importance"], "train.time_sampler has no effect with train.loss vae (it draws"),
    ("vae-mnist", ["train.weighting=likelihood"], "train.weighting has no effect with train.loss vae (it draws no"),
    ("toy", ["model.network.type=vae"], "train.loss simple trains a denoiser, but model.network.type vae is an "),
    ("vqvae-mnist", ["model.network.type=vae"], "train.loss vq does not train a vae network: use train.loss vae"),
    ("mnist", ["train.loss=vae"], "train.loss vae trains an autoencoder, but model.network.type unet is a denoiser"),
    ("vae-mnist", ["model.network.codebook_size=8"], None),  # a VAE has no codebook: unknown to its network
]


@pytest.mark.parametrize(
    ("preset", "overrides", "message"), REFUSED, ids=lambda v: " ".join(v) if isinstance(v, list) else None
)
def test_options_an_autoencoder_does_not_read_are_refused(preset, overrides, message):
    if message is None:
        with pytest.raises(UserError, match=re.escape("unknown key(s) 'codebook_size' for network type 'vae'")):
            build_network(validate(config_for(*overrides, preset=preset)).model.network)
        return
    with pytest.raises(UserError) as err:
        validate(config_for(*overrides, preset=preset))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_the_presets_validate_with_their_loss_options():
    for preset, loss in (("vae-mnist", VAELoss(kl_weight=1e-6)), ("vqvae-mnist", VQLoss(commitment_weight=0.25))):
        config = validate(load_preset(preset))
        assert config.model.task == "autoencoder" and loss_from_section(config.train) == loss
        assert config.train.minutes == 3 and config.train.steps is None


# --------------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """A VAE and a VQ-VAE run on the digits, 6 steps each, the FID in untrained features."""
    root = tmp_path_factory.mktemp("autoencoder-runs")
    with with_untrained_features():
        train(config_for(*TINY), root / "vae", device="cpu", budget={"steps": 6}, progress=False)
        train(
            config_for(*TINY_VQ, preset="vqvae-mnist"), root / "vq", device="cpu", budget={"steps": 6}, progress=False
        )
    return root


@pytest.mark.parametrize("kind", ["vae", "vq"])
def test_a_run_stores_the_latent_scale_of_its_exported_network_on_its_training_data(runs, kind):
    network, _ = load_autoencoder(runs / kind)
    assert not network.training and not any(p.requires_grad for p in network.parameters())
    train_data = load_dataset("digits", split="train").data
    scale = latent_scale(runs / kind)
    assert scale == pytest.approx(latent_scale_of(network, train_data), rel=1e-6) and scale != 0.18215
    report = read_report(runs / kind)
    assert report["latent_shape"] == [4, 4, 4] and report["examples"] == 179
    last = report["evaluations"][-1]
    assert last["step"] == 6 and {"psnr", "fid", "latent_scale"} <= set(last)
    assert ("codebook_usage" in last) == ("perplexity" in last) == (kind == "vq")
    assert (runs / kind / "reconstructions" / "step_00000006.png").exists()
    assert summary(runs / kind).startswith("autoencoder at step 6 on 179 test images: PSNR ")


def test_an_autoencoder_is_not_a_diffusion_model(runs):
    with pytest.raises(UserError) as err:
        load_model(runs / "vae")
    assert str(err.value) == (
        f"{runs / 'vae' / 'model.safetensors'} holds a trained autoencoder (model.network.type vae), not a "
        "diffusion model; load it with fokker.autoencoder.load_autoencoder"
    )
    assert isinstance(load_autoencoder(runs / "vq" / "model.safetensors")[0], VQVAE)


def test_fokker_sample_on_an_autoencoder_fails_with_one_line(runs, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["sample", "--checkpoint", str(runs / "vq"), "--out", str(out), "--no-progress"]) == 2
    stdout, stderr = capsys.readouterr()
    assert stdout == "" and len(stderr.splitlines()) == 1 and "holds a trained autoencoder" in stderr


def test_resumed_training_of_a_vq_vae_equals_uninterrupted_training_bit_for_bit(tmp_path, untrained_features):
    """The k-means initialisation and the dead-code replacement draw from torch's global RNG, which the
    checkpoints save: B trained 3 steps and resumed to 6 equals A trained 6 steps."""
    k = 3
    config = config_for(*TINY_VQ, f"train.checkpoint_every={k}", f"train.sample_every={k}", "train.keep_last=5",
                        preset="vqvae-mnist")  # fmt: skip
    a, b = tmp_path / "a", tmp_path / "b"
    train(config, a, device="cpu", budget={"steps": 2 * k}, progress=False)
    train(config, b, device="cpu", budget={"steps": k}, progress=False)
    train({}, b, resume=True, device="cpu", budget={"steps": 2 * k}, progress=False)
    state_a, state_b = load_checkpoint(a), load_checkpoint(b)
    for part in ("model", "ema", "optimizer", "scheduler", "rng"):
        assert_same_state(state_a[part], state_b[part], part)
    assert_same_state(read_weights(a / "model.safetensors")[0], read_weights(b / "model.safetensors")[0])
    assert (a / "autoencoder.json").read_text() == (b / "autoencoder.json").read_text()
    assert [e["step"] for e in read_report(b)["evaluations"]] == [k, 2 * k]
