"""Colorization against the exact answer: a Gaussian over 2x2 RGB "images" whose channels are correlated; in the
colour basis u = M x (first row (1, 1, 1) / sqrt 3) the grey channel u_0 is known, and the other two given it
are Gaussian in closed form (fokker.inpaint.rotated_gaussian, then conditional_gaussian). Also the colour basis,
the colour_mnist data set and `fokker colorize`."""

import math

import numpy as np
import pytest
import torch

import fokker
from fokker.denoiser import Denoiser
from fokker.errors import UserError
from fokker.inpaint import COLOUR_BASIS, colorize, conditional_error, conditional_gaussian, grey_of, rotated_gaussian
from fokker.targets import GaussianTarget, exact_denoiser

pytestmark = pytest.mark.usefixtures("one_thread")
F64 = torch.float64
# the channels' covariance, given in the colour basis (grey, u_1, u_2): the grey level tells much of u_1
IN_BASIS = 0.25 * torch.tensor([[1.0, 0.9, 0.3], [0.9, 1.0, 0.2], [0.3, 0.2, 1.0]], dtype=F64)
CHANNELS = COLOUR_BASIS.T @ IN_BASIS @ COLOUR_BASIS  # R, G, B
PIXELS = torch.tensor([[1.0, 0.5], [0.5, 1.0]], dtype=F64)  # two pixels, 1 x 2
TARGET = GaussianTarget(torch.tensor([0.3, -0.2, 0.1], dtype=F64).repeat_interleave(2), torch.kron(CHANNELS, PIXELS))
SHAPE = (3, 1, 2)


def image_denoiser(process) -> Denoiser:
    """The exact eps of TARGET on (B, 3, 1, 2) images (channel-major, as TARGET's coordinates)."""
    flat = exact_denoiser(TARGET, process).fn
    return Denoiser(lambda x, t: flat(x.flatten(1), t).reshape(x.shape), process)


def exact_colours(grey: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact conditional of u_1, u_2 (4 coordinates) given u_0 = sqrt(3) grey (2 pixels)."""
    mean, cov = rotated_gaussian(TARGET.mean, TARGET.cov, COLOUR_BASIS, 3)
    known = torch.arange(6) < 2
    return conditional_gaussian(mean, cov, known, torch.cat([math.sqrt(3) * grey.flatten(), torch.zeros(4)]))


@pytest.mark.parametrize(
    "sampler,process",
    [("ddpm", fokker.VP(T=1000, schedule="cosine")), ("euler_maruyama", fokker.VE(0.01, 4.0))],
    ids=["ddpm-vp-cosine", "euler_maruyama-ve"],
)
def test_colorization_meets_the_exact_conditional_in_the_colour_basis(sampler, process):
    """2,000 colourings of one grey image (that of a draw of TARGET), 100 steps; KL of the Gaussian fitted to
    (u_1, u_2) of the two pixels from the exact conditional (floor ~0.004: a 4-D fit). Measured (replace,
    repaint): ddpm on vp cosine 0.48 and 0.038, euler_maruyama on ve 0.51 and 0.006; the grey level is the
    input's exactly."""
    g = torch.Generator().manual_seed(0)
    grey = grey_of(TARGET.sample(1, g).reshape(1, *SHAPE))
    mean, cov = exact_colours(grey)
    errors, n = {}, 2000
    for scheme in ("replace", "repaint"):
        x, _ = colorize(image_denoiser(process), sampler, grey.expand(n, 1, 1, 2), 100, scheme=scheme,
                        generator=torch.Generator().manual_seed(1))  # fmt: skip
        torch.testing.assert_close(x.mean(1, keepdim=True), grey.expand(n, 1, 1, 2))
        u = torch.einsum("cd,bdhw->bchw", COLOUR_BASIS, x)
        errors[scheme] = conditional_error(u[:, 1:].flatten(1), mean, cov)["kl"]
    assert errors["repaint"] < 0.06 < 0.15 < errors["replace"], errors


def test_the_colour_basis_is_orthonormal_with_grey_first():
    torch.testing.assert_close(COLOUR_BASIS @ COLOUR_BASIS.T, torch.eye(3, dtype=F64))
    torch.testing.assert_close(COLOUR_BASIS[0], torch.full((3,), 1 / math.sqrt(3), dtype=F64))
    rgb = torch.randn(2, 3, 4, 4)
    assert torch.equal(grey_of(rgb), rgb.mean(1, keepdim=True)) and torch.equal(grey_of(rgb[:, :1]), rgb[:, :1])
    with pytest.raises(UserError, match="colorization takes"):
        grey_of(torch.zeros(2, 2, 4, 4))


def test_colour_mnist_is_mnist_tinted():
    from fokker.data import load_dataset
    from fokker.data.colour import HUES, colour_mnist_hues

    mnist, colour = load_dataset("mnist", split="test"), load_dataset("colour_mnist", split="test")
    assert colour.data.shape == (500, 3, 28, 28) and colour.levels == 256 and colour.num_classes == 10
    assert torch.equal(colour.labels, mnist.labels)
    assert torch.equal(colour.data, load_dataset("colour_mnist", split="test").data)  # deterministic
    hues = colour_mnist_hues("test")
    assert set(hues.tolist()) == set(range(8)) and len(HUES) == 8
    intensity = ((mnist.data[:, 0].double() + 1) * 127.5).round()  # the MNIST grey levels 0..255
    expected = torch.from_numpy(np.rint(intensity.numpy()[:, None] * HUES[hues.numpy()][:, :, None, None]))
    assert torch.equal(((colour.data.double() + 1) * 127.5).round(), expected)
    assert load_dataset("colour_mnist", image_size=14).data.shape[1:] == (3, 14, 14)
    with pytest.raises(UserError, match="colour_mnist is RGB"):
        load_dataset("colour_mnist", channels=1)
    from fokker.config import load_preset

    assert load_preset("colour-mnist")["data"]["name"] == "colour_mnist"


@pytest.fixture(scope="module")
def rgb_run(tmp_path_factory):
    from fokker.config import apply_overrides, load_preset
    from fokker.train import train

    root = tmp_path_factory.mktemp("colorize_cli")
    small = ["train.batch_size=16", "model.network.base_channels=8", "model.network.attention_resolutions=[]"]
    for name, channels in (("rgb", 3), ("grey", 1)):
        config = apply_overrides(load_preset("digits"), [*small, f"data.channels={channels}", "sample.steps=3"])
        train(config, root / name, device="cpu", budget={"steps": 4}, progress=False)
    return root


def test_colorize_from_the_command_line(rgb_run, tmp_path, capsys):
    from PIL import Image

    from fokker.cli import main

    Image.new("L", (8, 8), 90).save(tmp_path / "grey.png")
    out = tmp_path / "c.png"
    args = ["colorize", "--checkpoint", str(rgb_run / "rgb"), "--steps", "5", "--num", "2", "--no-progress"]
    assert main([*args, "--index", "3", "4", "--out", str(out)]) == 0
    assert "colorized 2 inputs x 2 with ddim (5 steps, replace)" in capsys.readouterr().out
    arrays = np.load(tmp_path / "c.npz")
    assert arrays["samples"].shape == (4, 3, 8, 8) and arrays["grey"].shape == (2, 1, 8, 8)
    np.testing.assert_allclose(arrays["samples"].mean(1), np.repeat(arrays["grey"][:, 0], 2, 0), atol=1e-5)
    with Image.open(out) as img:
        assert img.mode == "RGB"
    assert main([*args, "--image", str(tmp_path / "grey.png"), "--scheme", "repaint", "--jump", "2",
                 "--resample", "2", "--out", str(tmp_path / "g.png")]) == 0  # fmt: skip
    np.testing.assert_allclose(np.load(tmp_path / "g.npz")["samples"].mean(1), 90 / 127.5 - 1, atol=1e-5)
    # a model of grey images cannot colour
    assert main(["colorize", "--checkpoint", str(rgb_run / "grey"), "--index", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "colorize needs a model of RGB images (3 channels); this one's data have shape [1, 8, 8]" in err
