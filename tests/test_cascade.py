"""Cascaded super-resolution (Ho et al. 2021; SR3): the U-Net's low-resolution conditioning (and the plain U-Net
left exactly as it was), downsampling and Gaussian conditioning augmentation against their formulas, the
training batch's model_kwargs, a tiny super-resolution run through the trainer with exact resume, and the
cascade sampled end to end through `fokker sample --upsampler`."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train import assert_same_state

import fokker.cascade.conditioning as conditioning
from fokker.cascade import (
    SuperResolution,
    augment,
    augmentation_process,
    check_cascade,
    downsample,
    sample_cascade,
    training_kwargs,
    upsample,
)
from fokker.checkpoint import load_checkpoint
from fokker.cli.main import main
from fokker.config import apply_overrides, load_preset, validate
from fokker.data import load_dataset
from fokker.errors import UserError
from fokker.model import load_model, resolve_config
from fokker.nets import UNet, build_network
from fokker.train import train

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

SR = {"low_res_channels": 1, "low_res_size": 7, "aug_max": 0.5}


def tiny_unet(**kw) -> UNet:
    return UNet(**{"base_channels": 8, "channel_mult": (1, 2), "attention_resolutions": (7,), "image_size": 14} | kw)


def perturb(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Noise on every parameter, so the zero-initialised output convolution does not hide the inputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return net.eval()


# --------------------------------------------------------------------------- the network


def test_the_plain_unet_is_the_one_checkpoints_were_saved_from():
    """low_res_channels 0 (the default) adds nothing: the mnist preset's U-Net has the keys and shapes it had
    before the option (fingerprint of the state_dict taken from the U-Net before it), and building it with
    low_res_channels=0 given explicitly initialises every parameter identically."""
    kw = {"base_channels": 16, "channel_mult": (1, 2, 2), "attention_resolutions": (7,), "image_size": 28}
    torch.manual_seed(0)
    plain = UNet(**kw).state_dict()
    layout = " ".join(f"{k}:{tuple(v.shape)}" for k, v in plain.items())
    assert len(plain) == 166 and sum(v.numel() for v in plain.values()) == 299937
    assert hashlib.sha256(layout.encode()).hexdigest()[:16] == "c15a8eff96a00b7a"
    torch.manual_seed(0)
    explicit = build_network({"type": "unet", **kw, "low_res_channels": 0}).state_dict()
    assert_same_state(plain, explicit)


def test_a_super_resolution_unet_depends_on_its_low_res_input_and_level():
    torch.manual_seed(0)
    net = perturb(tiny_unet(**SR))
    assert net.conv_in.in_channels == 2  # x and the upsampled low-resolution image
    assert next(k for k in net.state_dict() if "low_res" in k) == "low_res_conditioning.aug_embed.mlp.0.weight"
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(3, 1, 14, 14, generator=g), torch.rand(3, generator=g)
    low, other = torch.randn(2, 3, 1, 7, 7, generator=g)
    level = torch.tensor([0.0, 0.2, 0.5])
    out = net(x, t, low_res=low, aug_level=level)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert ((out - net(x, t, low_res=other, aug_level=level)).abs().flatten(1).amax(1) > 1e-4).all()
    changed = (out - net(x, t, low_res=low, aug_level=level.flip(0))).abs().flatten(1).amax(1) > 1e-4
    assert changed.tolist() == [True, False, True]  # only the first and last levels changed
    assert torch.equal(net(x, t, low_res=low, aug_level=0.2)[1], out[1])  # a scalar level broadcasts


def test_without_conditioning_augmentation_there_is_no_level_to_embed():
    """aug_max 0 (the ablation of conditioning augmentation): no level embedding, level 0 only, and a training
    batch's low-resolution input is the downsampled batch itself."""
    torch.manual_seed(0)
    net = perturb(tiny_unet(**(SR | {"aug_max": 0.0})))
    assert not any("aug_embed" in k for k in net.state_dict())
    x, low = torch.randn(2, 1, 14, 14), torch.randn(2, 1, 7, 7)
    assert torch.isfinite(net(x, 0.5, low_res=low, aug_level=0.0)).all()
    with pytest.raises(ValueError, match="trained without conditioning augmentation"):
        net(x, 0.5, low_res=low, aug_level=0.1)
    config = resolve_config(validate(sr_config("model.network.aug_max=0")), load_dataset("digits"))
    x0 = load_dataset("digits").data[:6]
    kw = training_kwargs(x0, config, torch.Generator().manual_seed(0))
    assert torch.equal(kw["aug_level"], torch.zeros(6)) and torch.equal(kw["low_res"], downsample(x0, 4))


def test_the_low_res_input_is_upsampled_bilinearly():
    """conv_in sees [x, interpolate(low, bilinear, align_corners=False)]: a hook on it compares."""
    net = tiny_unet(**SR)
    seen = []
    net.conv_in.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    x, low = torch.randn(2, 1, 14, 14), torch.randn(2, 1, 7, 7)
    net(x, 0.5, low_res=low, aug_level=0.1)
    up = torch.nn.functional.interpolate(low, size=(14, 14), mode="bilinear", align_corners=False)
    assert torch.equal(seen[0], torch.cat([x, up], dim=1))


def test_the_conditioning_is_checked():
    net, plain = tiny_unet(**SR), tiny_unet()
    x, low = torch.randn(2, 1, 14, 14), torch.randn(2, 1, 7, 7)
    for kw in ({}, {"low_res": low}, {"aug_level": 0.1}):
        with pytest.raises(UserError, match=r"super-resolution network .* needs model_kwargs low_res and aug_level"):
            net(x, 0.5, **kw)
    with pytest.raises(ValueError, match=r"low_res must have shape \(2, 1, 7, 7\)"):
        net(x, 0.5, low_res=torch.randn(2, 1, 14, 14), aug_level=0.1)
    with pytest.raises(ValueError, match="the network has low_res_channels=0"):
        plain(x, 0.5, low_res=low, aug_level=0.1)
    bad = [
        ({"low_res_channels": 1}, "needs low_res_size and aug_max"),
        ({"low_res_size": 7}, "apply only to a super-resolution network"),
        ({**SR, "aug_max": 1.5}, r"aug_max must be a number in \[0, 1\] \(0: no augmentation\)"),
        ({**SR, "low_res_channels": -1}, "low_res_channels: -1; expected a non-negative integer"),
    ]
    for kw, message in bad:
        with pytest.raises(UserError, match=message):
            build_network({"type": "unet", "base_channels": 8, **kw})


# --------------------------------------------------------------------------- downsampling and augmentation


def test_downsample_keeps_a_constant_and_is_how_the_data_is_made():
    assert torch.allclose(downsample(torch.full((2, 1, 28, 28), 0.37), 14), torch.full((2, 1, 14, 14), 0.37))
    full, small = load_dataset("digits").data, load_dataset("digits", image_size=4).data
    assert torch.equal(downsample(full, 4), small)


def test_augment_at_level_zero_is_the_input_exactly():
    low = torch.randn(5, 1, 7, 7)
    assert torch.equal(augment(low, 0.0, torch.Generator().manual_seed(0)), low)
    level = torch.tensor([0.0, 1.0, 0.0, 0.3, 0.0])
    out = augment(low, level, torch.Generator().manual_seed(0))
    assert torch.equal(out[level == 0], low[level == 0]) and not torch.equal(out[1], low[1])


def test_augment_is_the_forward_process_of_the_cosine_schedule():
    """z_s = sqrt(abar(s)) z + sqrt(1 - abar(s)) eps, eps the generator's next normal draws (Ho et al. 2021, 4.1);
    one generator per image draws that image's noise."""
    process = augmentation_process()
    assert process.config() == {"type": "vp", "T": 1000, "schedule": "cosine"}
    low, level = torch.randn(4, 1, 3, 3), torch.tensor([0.05, 0.25, 0.5, 0.9])
    eps = torch.randn(low.shape, generator=torch.Generator().manual_seed(3))
    abar = process.alpha_bar(level.double()).float()[:, None, None, None]
    want = abar.sqrt() * low + (1 - abar).sqrt() * eps
    got = augment(low, level, torch.Generator().manual_seed(3))
    assert torch.allclose(got, want, atol=1e-6)
    gens = [torch.Generator().manual_seed(i) for i in range(4)]
    alone = [augment(low[i : i + 1], level[i : i + 1], torch.Generator().manual_seed(i)) for i in range(4)]
    assert torch.equal(augment(low, level, gens), torch.cat(alone))
    with pytest.raises(UserError, match=r"augmentation level must be in \[0, 1\], got 1.5"):
        augment(low, 1.5, gens)


def test_augment_at_level_one_is_nearly_pure_noise():
    """200,000 draws of each of 4 pixels: the mean is sqrt(abar(1)) z = 0.0064 z (abar(1) = 4.04e-5, the
    schedule's end) and the variance 1 - abar(1); bounds 7 standard errors wide (of the mean: 0.0022)."""
    process = augmentation_process()
    abar = process.alpha_bar(torch.tensor(1.0, dtype=torch.float64)).item()
    assert abar == pytest.approx(4.04e-5, rel=1e-2)
    z = torch.tensor([[[[-1.0, 1.0], [0.5, 0.0]]]])
    out = augment(z.expand(200_000, 1, 2, 2), 1.0, torch.Generator().manual_seed(0)).double()
    assert torch.allclose(out.mean(0), abar**0.5 * z.double()[0], atol=7 * 2.3e-3)
    assert torch.allclose(out.var(0), torch.full((1, 2, 2), 1 - abar, dtype=torch.float64), rtol=7 * 3.2e-3)


# --------------------------------------------------------------------------- training


def sr_config(*overrides: str) -> dict:
    """sr-mnist shrunk to digits: 8x8 images from their 4x4 versions, a tiny U-Net."""
    return apply_overrides(load_preset("sr-mnist"), [
        "data.name=digits", "model.network.low_res_size=4", "model.network.base_channels=8",
        "model.network.channel_mult=[1, 2]", "model.network.attention_resolutions=[4]", "model.network.dropout=0.1",
        "train.batch_size=16", "train.log_every=1", "sample.sampler=ddim", "sample.steps=2", "sample.num=4",
        *overrides,
    ])  # fmt: skip


def base_config(*overrides: str) -> dict:
    """mnist-14 shrunk to digits at 4x4: the base model of `sr_config`'s upsampler."""
    return apply_overrides(load_preset("mnist-14"), [
        "data.name=digits", "data.image_size=4", "model.network.base_channels=8",
        "model.network.attention_resolutions=[2]", "train.batch_size=16", "sample.sampler=ddim", "sample.steps=3",
        "sample.num=4", *overrides,
    ])  # fmt: skip


def test_training_kwargs_draw_levels_then_augment_the_downsampled_batch(monkeypatch):
    config = resolve_config(validate(sr_config()), load_dataset("digits"))
    x0 = load_dataset("digits").data[:6]
    gen = torch.Generator().manual_seed(5)
    replay = torch.Generator().manual_seed(5)
    kw = training_kwargs(x0, config, gen)
    s = 0.5 * torch.rand(6, generator=replay)
    assert torch.equal(kw["aug_level"], s)
    assert torch.equal(kw["low_res"], augment(downsample(x0, 4), s, replay))
    assert torch.equal(gen.get_state(), replay.get_state())
    # with the level drawn as 0 the input is the downsampled batch itself
    monkeypatch.setattr(conditioning, "rand", lambda shape, generator, device=None: torch.zeros(shape))
    assert torch.equal(training_kwargs(x0, config, gen)["low_res"], downsample(x0, 4))
    # a model that is not a super-resolution one gets nothing, and nothing is drawn
    plain = resolve_config(validate(base_config()), load_dataset("digits", image_size=4))
    state = gen.get_state()
    assert training_kwargs(x0, plain, gen) == {} and torch.equal(gen.get_state(), state)
    small = resolve_config(validate(sr_config("model.network.low_res_size=8")), load_dataset("digits"))
    with pytest.raises(UserError, match="needs larger images of as many channels; the data's are"):
        training_kwargs(x0, small, gen)


def test_the_presets_make_a_cascade():
    """mnist-14 samples 1x14x14 digits, which sr-mnist upsamples to 28x28; 4 + 6 minutes."""
    base, sr = validate(load_preset("mnist-14")), validate(load_preset("sr-mnist"))
    base = resolve_config(base, load_dataset("mnist", image_size=14))
    sr = resolve_config(sr, load_dataset("mnist"))
    assert check_cascade(base, sr) == SuperResolution(channels=1, size=14, aug_max=0.5)
    assert base.data.shape == [1, 14, 14] and sr.data.shape == [1, 28, 28]
    assert base.train.minutes + sr.train.minutes == 10 == validate(load_preset("mnist")).train.minutes
    assert build_network(base.model.network).config["channel_mult"] == [1, 2]
    assert build_network(sr.model.network).conv_in.in_channels == 2


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """A tiny base model of 4x4 digits and a tiny upsampler 4x4 -> 8x8, a few steps each."""
    root = tmp_path_factory.mktemp("cascade")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    train(base_config(), root / "base", device="cpu", budget={"steps": 2}, progress=False)
    train(sr_config(), root / "sr", device="cpu", budget={"steps": 3}, progress=False)
    torch.set_num_threads(n)
    return root


def test_a_super_resolution_run_resumes_exactly(tmp_path):
    """The levels and the augmentation noise come from the trainer's generator, saved in checkpoints: 3 + 3
    steps equal 6 bit for bit (weights, EMA, AdamW, RNG states), pictures at each checkpoint."""
    config = sr_config("train.checkpoint_every=3", "train.sample_every=3")
    a, b = tmp_path / "a", tmp_path / "b"
    train(config, a, device="cpu", budget={"steps": 6}, progress=False)
    train(config, b, device="cpu", budget={"steps": 3}, progress=False)
    train({}, b, resume=True, device="cpu", budget={"steps": 6}, progress=False)
    state_a, state_b = load_checkpoint(a), load_checkpoint(b)
    for part in ("model", "ema", "optimizer", "scheduler", "rng"):
        assert_same_state(state_a[part], state_b[part], part)
    assert sorted(p.name for p in (b / "samples").iterdir()) == ["step_00000003.png", "step_00000006.png"]
    from PIL import Image

    picture = Image.open(b / "samples" / "step_00000006.png")  # 2 rows of 2 triples (input, sample, truth)
    assert picture.size == (4 * (2 + 6 * (8 + 2)), 4 * (2 + 2 * (8 + 2)))  # upscaled 4x to be seen


# --------------------------------------------------------------------------- sampling


def test_the_cascade_samples_do_not_depend_on_the_batch(runs):
    base, base_cfg = load_model(runs / "base")
    up, up_cfg = load_model(runs / "sr")
    x, info = sample_cascade(base, base_cfg, up, up_cfg, 5, seed=3, aug_level=0.2, batch_size=2)
    again, _ = sample_cascade(base, base_cfg, up, up_cfg, 5, seed=3, aug_level=0.2, batch_size=5)
    assert x.shape == (5, 1, 8, 8) and torch.equal(x, again)
    assert info["nfe"] == info["base"]["nfe"] + info["upsampler"]["nfe"] == 3 + 2
    other, _ = sample_cascade(base, base_cfg, up, up_cfg, 5, seed=3, aug_level=0.4, batch_size=5)
    assert not torch.equal(x, other)
    with pytest.raises(UserError, match=r"must be in \[0, 0.5\] \(the model's aug_max\), got 0.6"):
        sample_cascade(base, base_cfg, up, up_cfg, 5, aug_level=0.6)
    with pytest.raises(UserError, match=r"have shape \[1, 8, 8\], but this super-resolution model upsamples"):
        upsample(torch.zeros(2, 1, 8, 8), up, up_cfg)
    with pytest.raises(UserError, match="the upsampler is not a super-resolution model"):
        sample_cascade(base, base_cfg, base, base_cfg, 2)


def test_the_upsampler_clips_its_inputs_to_the_data_range(runs):
    up, up_cfg = load_model(runs / "sr")
    low = torch.linspace(-3, 3, 4 * 16).reshape(4, 1, 4, 4)
    x, _ = upsample(low, up, up_cfg, seed=1)
    assert torch.equal(x, upsample(low.clamp(-1, 1), up, up_cfg, seed=1)[0])


def test_fokker_sample_with_an_upsampler(runs, capsys):
    out = runs / "cascade.png"
    argv = ["sample", "--checkpoint", str(runs / "base"), "--upsampler", str(runs / "sr"), "--num", "3"]
    assert main([*argv, "--aug-level", "0.1", "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    stdout = capsys.readouterr().out
    assert "NFE 5 per sample" in stdout  # ddim 3 steps, then the upsampler's own ddim 2 steps
    samples = np.load(out.with_suffix(".npz"))["samples"]
    assert samples.shape == (3, 1, 8, 8)
    base, base_cfg = load_model(runs / "base")
    up, up_cfg = load_model(runs / "sr")
    x, _ = sample_cascade(base, base_cfg, up, up_cfg, 3, aug_level=0.1)
    assert np.array_equal(samples, x.numpy())  # the CLI draws what the library does


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--checkpoint", "sr"], "a super-resolution model needs --upsampler"),
        (["--checkpoint", "base", "--aug-level", "0.1"], "--aug-level augments the upsampler's inputs: give"),
        (["--checkpoint", "base", "--upsampler", "base"], "the upsampler is not a super-resolution model"),
        (["--checkpoint", "sr", "--upsampler", "sr"], "the base model of a cascade is itself a super-resolution"),
        (["--checkpoint", "base", "--upsampler", "sr", "--aug-level", "0.7"], r"--aug-level must be in \[0, 0.5\]"),
    ],
)
def test_fokker_sample_refuses_a_cascade_that_cannot_work(runs, capsys, argv, message):
    argv = [a if a not in ("base", "sr") else str(runs / a) for a in argv]
    out = runs / "refused.png"
    assert main(["sample", *argv, "--out", str(out), "--no-progress"]) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("fokker sample: error: ") and len(stderr.splitlines()) == 1
    assert re.search(message, stderr), stderr
    assert not out.exists()
