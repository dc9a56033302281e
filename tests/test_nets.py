"""Tests of the networks: shapes, zero init, conditioning, attention placement, factory."""

from __future__ import annotations

import json
import math

import pytest
import torch

from fokker.errors import UserError
from fokker.nets import MLP, UNet, build_network, count_parameters, sinusoidal_embedding
from fokker.nets.unet import AttentionBlock

torch.set_num_threads(2)


def small_unet(**kw) -> UNet:
    """A UNet small enough for fast CPU tests."""
    args = {"base_channels": 8, "attention_resolutions": (7,), "image_size": 28} | kw
    return UNet(**args)


def perturb(net: torch.nn.Module, std: float = 0.1, seed: int = 0) -> torch.nn.Module:
    """Add Gaussian noise to every parameter (breaks the zero init)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(std * torch.randn(p.shape, generator=g))
    return net


@pytest.mark.parametrize(
    ("size", "cin", "cout", "kw"),
    [
        (8, 1, None, {"channel_mult": (1, 2), "attention_resolutions": (4,), "image_size": 8}),
        (8, 3, 6, {"channel_mult": (1, 2), "attention_resolutions": (), "image_size": None}),
        (28, 1, None, {}),
        (28, 3, 6, {"num_res_blocks": 2}),
        (32, 1, 2, {"attention_resolutions": (16, 8), "image_size": 32}),
        (32, 3, None, {"image_size": None}),
    ],
)
def test_unet_output_shape(size: int, cin: int, cout: int | None, kw: dict) -> None:
    net = perturb(small_unet(in_channels=cin, out_channels=cout, **kw))
    x = torch.randn(3, cin, size, size)
    out = net(x, torch.rand(3))
    assert out.shape == (3, cout or cin, size, size)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("make", [lambda: small_unet(num_classes=3), lambda: MLP(2, hidden=16)])
def test_zero_at_init_then_nonzero_and_t_dependent(make) -> None:
    net = make()
    x = torch.randn(4, 1, 28, 28) if isinstance(net, UNet) else torch.randn(4, 2)
    assert torch.equal(net(x, torch.rand(4)), torch.zeros_like(x))
    perturb(net)
    a, b = net(x, torch.full((4,), 0.1)), net(x, 0.9)
    assert a.abs().max() > 1e-3
    assert (a - b).abs().max() > 1e-3
    assert torch.allclose(net(x, torch.tensor(0.9)), b)  # 0-dim t broadcasts like a float


@pytest.mark.parametrize("kind", ["unet", "mlp"])
def test_class_conditioning(kind: str) -> None:
    k = 5
    net = small_unet(num_classes=k) if kind == "unet" else MLP(3, hidden=16, num_classes=k)
    perturb(net).eval()
    x = torch.randn(4, 1, 28, 28) if kind == "unet" else torch.randn(4, 3)
    t = torch.rand(4)
    null = net(x, t)
    assert torch.equal(null, net(x, t, torch.full((4,), k)))
    y0, y1 = torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)
    assert (net(x, t, y0) - net(x, t, y1)).abs().max() > 1e-3
    assert (net(x, t, y0) - null).abs().max() > 1e-3
    for bad in (torch.tensor([0, 1, 2, k + 1]), torch.tensor([-1, 0, 0, 0])):
        with pytest.raises(ValueError, match="out of range"):
            net(x, t, bad)
    with pytest.raises(ValueError, match="integers"):
        net(x, t, torch.zeros(4))


def test_unconditional_rejects_labels() -> None:
    with pytest.raises(ValueError, match="num_classes=None"):
        MLP(2)(torch.randn(2, 2), 0.5, torch.zeros(2, dtype=torch.long))


def _attention_sizes(net: UNet, size: int) -> tuple[list[int], list[int]]:
    """(declared resolution, spatial size actually seen) of every attention block."""
    blocks = [m for m in net.modules() if isinstance(m, AttentionBlock)]
    seen: list[int] = []
    hooks = [b.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[-1])) for b in blocks]
    net(torch.randn(1, 1, size, size), 0.5)
    for h in hooks:
        h.remove()
    return [b.resolution for b in blocks], seen


@pytest.mark.parametrize(
    ("res", "n", "expected"),
    [((7,), 1, [7] * 4), ((14,), 1, [14] * 3), ((14, 7), 2, [14] * 5 + [7] * 6), ((), 1, [])],
)
def test_attention_placement(res: tuple[int, ...], n: int, expected: list[int]) -> None:
    # down: n per listed level; up: n + 1 per listed level; middle: 1 if the deepest is listed
    net = small_unet(attention_resolutions=res, num_res_blocks=n)
    declared, seen = _attention_sizes(net, 28)
    assert sorted(declared) == sorted(expected)
    assert sorted(seen) == sorted(expected)


def test_attention_placement_without_image_size_uses_deepest_level() -> None:
    net = UNet(base_channels=8, attention_resolutions=(14, 7), image_size=None)
    declared, seen = _attention_sizes(net, 28)
    assert declared == seen and sorted(set(seen)) == [7, 14]


def test_bad_attention_resolution_names_valid_sizes() -> None:
    with pytest.raises(ValueError, match=r"valid sizes: \[28, 14, 7\]"):
        small_unet(attention_resolutions=(16,))
    with pytest.raises(ValueError, match=r"valid sizes: \[32, 16, 8, 4\]"):
        small_unet(attention_resolutions=(7,), image_size=32, channel_mult=(1, 1, 2, 2))


@pytest.mark.parametrize("kind", ["unet", "mlp"])
def test_gradients_reach_every_parameter(kind: str) -> None:
    if kind == "unet":
        net, x = small_unet(num_classes=3, attention_resolutions=(14, 7)), torch.randn(3, 1, 28, 28)
    else:
        net, x = MLP(2, hidden=16, num_classes=3), torch.randn(3, 2)
    perturb(net)
    net(x, torch.rand(3), torch.tensor([0, 2, 3])).square().sum().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []


@pytest.mark.parametrize("kind", ["unet", "mlp"])
def test_batch_independence(kind: str) -> None:
    if kind == "unet":
        net, x = small_unet(num_classes=3, dropout=0.5), torch.randn(4, 1, 28, 28)
    else:
        net, x = MLP(2, hidden=16, num_classes=3), torch.randn(4, 2)
    perturb(net).eval()
    t, y = torch.rand(4), torch.tensor([0, 1, 2, 3])
    full = net(x, t, y)
    single = torch.cat([net(x[i : i + 1], t[i : i + 1], y[i : i + 1]) for i in range(4)])
    # float32 rounding, which other batch sizes block differently, is relative to the outputs' magnitude
    # (measured: U-Net max |out| 3.7, max difference 3.3e-6); another example's influence would be O(|out|)
    tol = {"rtol": 1e-4, "atol": 1e-5 * full.abs().max().item()}
    torch.testing.assert_close(full, single, **tol)
    x2 = x.clone()
    x2[1:] = torch.randn_like(x2[1:])
    torch.testing.assert_close(net(x2, t, y)[0], full[0], **tol)


def test_build_network_round_trip() -> None:
    cfg = {"type": "unet", "in_channels": 3, "base_channels": 8, "channel_mult": [1, 2],
           "attention_resolutions": [4], "image_size": 8, "num_classes": 10}  # fmt: skip
    net = build_network(cfg)
    assert isinstance(net, UNet) and net.config["channel_mult"] == [1, 2]
    again = build_network(json.loads(json.dumps(net.config)))
    assert again.config == net.config
    assert count_parameters(again) == count_parameters(net) > 0
    again.load_state_dict(perturb(net).state_dict())
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(again(x, 0.3), net(x, 0.3))
    mlp = build_network({"type": "mlp", "dim": 2, "hidden": 32})
    assert isinstance(mlp, MLP) and build_network(mlp.config).config == mlp.config


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        ({"type": "resnet"}, "unknown network type 'resnet'; accepted: dit, mlp, mlp_classifier, unet, unet_encoder"),
        ({"in_channels": 1}, "unknown network type None"),
        ({"type": "unet", "chanels": 3}, "unknown key.*'chanels'.*accepted: .*in_channels"),
        ({"type": "mlp", "dim": 2, "width": 3}, "'width'.*accepted: .*hidden"),
        ({"type": "unet", "attention_resolutions": [5], "image_size": 28}, "valid sizes"),
    ],
)
def test_build_network_rejects_bad_config(cfg: dict, match: str) -> None:
    with pytest.raises(UserError, match=match):
        build_network(cfg)


def test_count_parameters() -> None:
    net = MLP(2, hidden=4, depth=1, time_embed_dim=2)
    # time embed 2*2+2 + 2*2+2, emb_proj 2*4+4, layer 2*4+4, head 4*2+2
    assert count_parameters(net) == 6 + 6 + 12 + 12 + 10
    net.head.requires_grad_(False)
    assert count_parameters(net, trainable_only=True) == 36


def test_sinusoidal_embedding_closed_form() -> None:
    t = torch.tensor([0.0, 0.25, 1.0])
    emb = sinusoidal_embedding(t, 6, scale=1000.0, max_period=10000.0)
    for i, ti in enumerate(t.tolist()):
        freqs = [10000.0 ** (-k / 3) for k in range(3)]
        want = [math.sin(1000 * ti * w) for w in freqs] + [math.cos(1000 * ti * w) for w in freqs]
        torch.testing.assert_close(emb[i], torch.tensor(want), atol=1e-4, rtol=0)
    odd = sinusoidal_embedding(t, 7)
    assert odd.shape == (3, 7) and torch.equal(odd[:, :6], emb) and not odd[:, 6].any()
