"""Networks: they know nothing of processes; they map (x, noise level, labels) to an output. Each one's
`task` says what that output is: "denoiser" (the prediction of a Denoiser: UNet, DiT, MLP), "classifier"
(the logits of p_t(y | x_t): EncoderClassifier, MLPClassifier) or "autoencoder" (a reconstruction through a
latent, for latent diffusion: VAE, VQVAE)."""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from fokker.errors import UserError

from .autoencoder import VAE, VQVAE
from .classifier import EncoderClassifier, MLPClassifier
from .dit import DiT
from .embedding import TimeEmbedding, sinusoidal_embedding
from .mlp import MLP
from .registry import NETWORKS, register_network
from .unet import UNet

__all__ = [
    "MLP",
    "NETWORKS",
    "TASKS",
    "VAE",
    "VQVAE",
    "DiT",
    "EncoderClassifier",
    "MLPClassifier",
    "TimeEmbedding",
    "UNet",
    "build_network",
    "count_parameters",
    "network_class",
    "network_task",
    "register_network",
    "sinusoidal_embedding",
]

TASKS = ("denoiser", "classifier", "autoencoder")  # what a network's output is (its class's `task`)
_TUPLE_KEYS = {"channel_mult", "attention_resolutions"}


def build_network(config: dict[str, Any]) -> nn.Module:
    """Build a network from a JSON-able dict ``{"type": "unet" | "dit" | "mlp" | ..., **constructor kwargs}``.

    Lists are accepted where tuples are expected; ``build_network(net.config)`` rebuilds ``net``'s
    architecture. Raises UserError naming the bad type, key or value and what is accepted.
    """
    if not isinstance(config, dict):
        raise UserError(f"network config must be a dict, got {type(config).__name__}")
    kwargs = dict(config)
    kind = kwargs.pop("type", None)
    cls = network_class(kind)
    accepted = [p for p in inspect.signature(cls).parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise UserError(
            f"unknown key(s) {', '.join(map(repr, unknown))} for network type {kind!r}; "
            f"accepted: type, {', '.join(accepted)}"
        )
    _check_sizes(cls, kwargs)
    for key in _TUPLE_KEYS & set(kwargs):
        if isinstance(kwargs[key], list):
            kwargs[key] = tuple(kwargs[key])
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise UserError(f"bad {kind!r} network config: {e}") from e


def network_class(kind: str | None) -> type[nn.Module]:
    """The network class of a type name; an unknown one is a UserError listing NETWORKS."""
    if kind not in NETWORKS:
        raise UserError(f"unknown network type {kind!r}; accepted: {', '.join(sorted(NETWORKS))}")
    return NETWORKS[kind]


def network_task(kind: str | None) -> str:
    """What a network type outputs (one of TASKS): "denoiser", "classifier" or "autoencoder"."""
    return network_class(kind).task


def _check_sizes(cls: type[nn.Module], kwargs: dict[str, Any]) -> None:
    """Every size (an argument annotated int, or a tuple of ints) must be a positive integer: a width of -4
    would otherwise fail deep inside torch. A size whose default is 0 (off: low_res_channels) may be 0."""
    for p in inspect.signature(cls).parameters.values():
        if p.name not in kwargs or kwargs[p.name] is None or "int" not in str(p.annotation):
            continue
        value, lowest = kwargs[p.name], 0 if p.default == 0 else 1
        items = value if isinstance(value, list | tuple) and "tuple" in str(p.annotation) else [value]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= lowest for v in items):
            what = "a list of positive integers" if items is value else "a positive integer"
            what = "a non-negative integer" if lowest == 0 else what
            raise UserError(f"bad value for model.network.{p.name}: {value!r}; expected {what}")


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters in ``module`` (only those with requires_grad if asked)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
