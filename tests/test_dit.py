"""Tests of the diffusion transformer (fokker.nets.DiT): adaLN-Zero init, shapes with padding, batch
independence, conditioning, gradients, the factory, and a training run through fokker's normal path."""

from __future__ import annotations

import json

import pytest
import torch

from fokker.config import DEFAULTS, apply_overrides, load_preset
from fokker.data import Dataset
from fokker.errors import UserError
from fokker.model import load_model, resolve_config
from fokker.nets import DiT, build_network, count_parameters
from fokker.samplers import sample
from fokker.train import train

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py
F64 = torch.float64
TINY = {"hidden_size": 16, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0}


@pytest.fixture(autouse=True)
def seeded() -> None:
    torch.manual_seed(0)  # the networks' init and the inputs drawn from the global RNG


def tiny(**kw) -> DiT:
    """A DiT small enough for fast CPU tests (28x28, patch 4: 49 tokens of width 16)."""
    return DiT(**(TINY | kw))


def randomise(net: torch.nn.Module, std: float = 0.2, seed: int = 0) -> torch.nn.Module:
    """Redraw every parameter from N(0, std^2) (breaks the zero init)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(std * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return net


def test_fresh_dit_outputs_zero_and_adaln_zero_blocks_start_as_the_identity() -> None:
    x, t, y = torch.randn(3, 1, 28, 28), torch.rand(3), torch.tensor([0, 4, 5])
    nets = {b: tiny(num_classes=5, block=b) for b in ("adaln_zero", "adaln")}
    for net in nets.values():
        assert torch.equal(net(x, t, y), torch.zeros_like(x))
    for name, net in nets.items():
        with torch.no_grad():
            torch.nn.init.normal_(net.final.linear.weight)  # a random read-out; its modulation stays 0
            c = torch.nn.functional.silu(net.time_embed(t) + net.label_embed(y, 3))
            no_blocks = net.unpatchify(net.final(net.tokens(x), c))  # the final layer on the embedded patches
            out = net(x, t, y)
        assert no_blocks.abs().mean() > 0.1
        if name == "adaln_zero":  # every gate is exactly 0: the blocks pass the tokens through unchanged
            assert torch.equal(out, no_blocks)
        else:  # plain adaLN: the blocks change the tokens by as much as the tokens themselves
            assert (out - no_blocks).abs().mean() > 0.1 * no_blocks.abs().mean()
            assert all(b.modulation.weight.any() for b in net.blocks)
    zero = nets["adaln_zero"]
    assert all(not b.modulation.weight.any() and not b.modulation.bias.any() for b in zero.blocks)
    assert zero.blocks[0].modulation.out_features == 6 * 16 and nets["adaln"].blocks[0].modulation.out_features == 64


@pytest.mark.parametrize(
    ("cin", "size", "patch", "cout"),
    [(1, 28, 2, None), (1, 28, 4, None), (1, 28, 3, None), (1, 28, 8, None), (3, 14, 4, 6), (4, 7, 1, None)],
)
def test_output_shape_with_and_without_padding(cin: int, size: int, patch: int, cout: int | None) -> None:
    net = randomise(tiny(in_channels=cin, image_size=size, patch_size=patch, out_channels=cout))
    x = torch.randn(2, cin, size, size)
    out = net(x, torch.rand(2))
    assert out.shape == (2, cout or cin, size, size) and torch.isfinite(out).all()
    grid = -(-size // patch)
    assert net.pos_embed.shape == (1, grid * grid, 16)
    assert "pos_embed" in dict(net.named_buffers()) and "pos_embed" not in net.state_dict()
    with pytest.raises(ValueError, match=f"built for {size}x{size}"):
        net(torch.randn(2, cin, size + 1, size + 1), 0.5)


def test_position_embedding_is_mae_sincos() -> None:
    net = tiny(image_size=8, patch_size=4)  # a 2x2 grid; token 3 is row 1, column 1
    pe = net.pos_embed[0].double()
    omega = 1.0 / 10000 ** (torch.arange(4, dtype=F64) / 4)  # dim 16: 8 channels per axis, 4 frequencies
    for token, (row, col) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        want = torch.cat(
            [torch.sin(row * omega), torch.cos(row * omega), torch.sin(col * omega), torch.cos(col * omega)]
        )
        torch.testing.assert_close(pe[token], want, rtol=0, atol=1e-7)


@pytest.mark.parametrize(("size", "patch"), [(28, 4), (28, 3), (14, 4)])
def test_each_patch_is_read_and_written_in_its_own_place(size: int, patch: int) -> None:
    """Without its blocks (adaLN-Zero at init) a DiT maps each patch to the same place, so one pixel changes
    exactly its patch of the output (cropped at the padding); and where the content is the same, the output
    differs by position alone (the position embedding)."""
    net = tiny(image_size=size, patch_size=patch)
    torch.nn.init.normal_(net.final.linear.weight)
    x = torch.randn(1, 1, size, size)
    for i, j in ((0, 0), (5, 9), (size - 1, size - 2)):
        moved = x.clone()
        moved[0, 0, i, j] += 1.0
        with torch.no_grad():
            changed = (net(moved, 0.5) - net(x, 0.5))[0, 0] != 0
        want = torch.zeros(size, size, dtype=torch.bool)
        r, c = i // patch * patch, j // patch * patch
        want[r : r + patch, c : c + patch] = True
        assert torch.equal(changed, want), (i, j)
    with torch.no_grad():
        flat = net(torch.zeros(1, 1, size, size), 0.5)[0, 0]
    assert (flat[:patch, :patch] - flat[patch : 2 * patch, patch : 2 * patch]).abs().mean() > 0.1 * flat.abs().mean()


def test_learned_variance_doubles_out_channels_through_resolve_config() -> None:
    for variance, outputs in (("fixed_small", 1), ("learned", 2)):
        config = json.loads(json.dumps(DEFAULTS))
        config["model"]["variance"], config["model"]["network"] = variance, {"type": "dit", **TINY, "patch_size": 2}
        resolved = resolve_config(config, Dataset(torch.zeros(4, 3, 10, 10), None, None, "zeros"))
        net = build_network(resolved.model.network)
        assert (net.in_channels, net.image_size, net.out_channels) == (3, 10, 3 * outputs)
        assert net(torch.randn(2, 3, 10, 10), 0.5).shape == (2, 3 * outputs, 10, 10)
    config = json.loads(json.dumps(DEFAULTS))
    config["model"]["network"] = {"type": "dit", **TINY}
    with pytest.raises(UserError, match="square"):
        resolve_config(config, Dataset(torch.zeros(4, 1, 10, 12), None, None, "wide"))


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_example_output_does_not_depend_on_the_rest_of_the_batch(dtype: torch.dtype) -> None:
    net = randomise(tiny(num_classes=3, patch_size=3).to(dtype)).eval()  # patch 3: the padded path
    assert net.pos_embed.dtype == dtype
    g = torch.Generator().manual_seed(1)
    x, t, y = (
        torch.randn(5, 1, 28, 28, generator=g, dtype=dtype),
        torch.rand(5, generator=g),
        torch.tensor([0, 1, 2, 3, 1]),
    )
    full = net(x, t, y)
    assert full.dtype == dtype and full.abs().max() > 0.1
    perm = torch.tensor([3, 0, 4, 2, 1])
    alone = torch.cat([net(x[i : i + 1], t[i : i + 1], y[i : i + 1]) for i in range(5)])
    # rounding differs between batch sizes, relative to |out| (measured over 5 seeds: up to 5e-6 at max |out| 4.6
    # in float32, 1.3e-14 in float64); another example's influence would be O(|out|)
    eps = 1e-5 if dtype == torch.float32 else 1e-12
    tol = {"rtol": eps, "atol": eps * full.abs().max().item()}
    torch.testing.assert_close(alone, full, **tol)
    torch.testing.assert_close(net(x[perm], t[perm], y[perm]), full[perm], **tol)
    x2 = x.clone()
    x2[1:] = torch.randn_like(x2[1:])
    torch.testing.assert_close(net(x2, t, y)[0], full[0], **tol)


def test_class_conditioning_and_the_null_class() -> None:
    k = 4
    net = randomise(tiny(num_classes=k)).eval()
    x, t = torch.randn(3, 1, 28, 28), torch.rand(3)
    null = net(x, t)
    assert torch.equal(null, net(x, t, torch.full((3,), k)))
    y0, y1 = torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.long)
    scale = null.abs().mean()
    assert (net(x, t, y0) - net(x, t, y1)).abs().mean() > 0.05 * scale
    assert (net(x, t, y0) - null).abs().mean() > 0.05 * scale
    with pytest.raises(ValueError, match="out of range"):
        net(x, t, torch.tensor([0, 1, k + 1]))
    with pytest.raises(ValueError, match="num_classes=None"):
        tiny()(x, t, y0)


def test_gradients_reach_every_parameter_after_the_zero_init_unfolds() -> None:
    """From adaLN-Zero's init only the final Linear gets a gradient; two SGD steps later every parameter does."""
    net = tiny(num_classes=3, patch_size=3)
    g = torch.Generator().manual_seed(0)
    x, target = torch.randn(4, 1, 28, 28, generator=g), torch.randn(4, 1, 28, 28, generator=g)
    t, y = torch.rand(4, generator=g), torch.tensor([0, 1, 2, 3])
    opt = torch.optim.SGD(net.parameters(), lr=0.5)

    def with_grad() -> set[str]:
        opt.zero_grad()
        (net(x, t, y) - target).square().mean().backward()
        return {n for n, p in net.named_parameters() if p.grad is not None and p.grad.any()}

    assert with_grad() == {"final.linear.weight", "final.linear.bias"}
    opt.step()
    assert "blocks.0.qkv.weight" not in with_grad()  # the gates are still 0
    opt.step()
    assert with_grad() == {n for n, _ in net.named_parameters()}


def test_build_network_round_trip_and_errors() -> None:
    cfg = {"type": "dit", "in_channels": 3, "image_size": 14, "num_classes": 10, "block": "adaln", **TINY}
    net = build_network(cfg)
    assert isinstance(net, DiT) and net.config == {
        "type": "dit", "in_channels": 3, "out_channels": None, "image_size": 14, "patch_size": 4,
        "hidden_size": 16, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0, "num_classes": 10,
        "time_scale": 1000.0, "block": "adaln",
    }  # fmt: skip
    again = build_network(json.loads(json.dumps(net.config)))
    assert again.config == net.config and count_parameters(again) == count_parameters(net) > 0
    again.load_state_dict(randomise(net).state_dict())
    x = torch.randn(2, 3, 14, 14)
    assert torch.equal(again(x, 0.3), net(x, 0.3))
    with pytest.raises(UserError, match="unknown block 'adaln_single'; accepted: adaln_zero, adaln"):
        build_network({"type": "dit", "block": "adaln_single"})
    for key, value in (("patch_size", 0), ("hidden_size", 16.0), ("depth", -1), ("num_heads", True)):
        with pytest.raises(UserError, match=f"model.network.{key}: .*positive integer"):
            build_network({"type": "dit", key: value})
    with pytest.raises(UserError, match="num_heads=3 does not divide hidden_size=16"):
        build_network({"type": "dit", **TINY, "num_heads": 3})


def test_tiny_dit_trains_and_samples(tmp_path) -> None:
    config = apply_overrides(
        load_preset("digits"), ["train.batch_size=16", "train.sample_every=1000", "sample.num=8", "sample.steps=4"]
    )
    config["model"]["network"] = {"type": "dit", "patch_size": 2, **TINY}
    result = train(config, tmp_path / "run", device="cpu", budget={"steps": 3}, progress=False)
    assert result.step == 3 and torch.isfinite(torch.tensor(result.loss))
    denoiser, saved = load_model(tmp_path / "run")
    assert saved.model.network["type"] == "dit" and saved.model.network["image_size"] == 8
    assert isinstance(denoiser.fn, DiT)
    x, info = sample(denoiser, "ddim", 3, shape=(4, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    assert x.shape == (4, 1, 8, 8) and torch.isfinite(x).all() and info["nfe"] == 3
