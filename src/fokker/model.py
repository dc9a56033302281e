"""From a config to a network and a Denoiser, and back from exported weights."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from fokker.checkpoint import load_strict, read_weights
from fokker.data import Dataset
from fokker.denoiser import Denoiser
from fokker.errors import UserError
from fokker.labels import resolve_classes
from fokker.nets import build_network
from fokker.processes import process_from_config


def resolve_config(config: dict, dataset: Dataset) -> dict:
    """Fill in what the data decides: its shape, its classes (and, for a conditional model, the network's
    num_classes and train.p_uncond: fokker.labels), the network's input size and the x0 range."""
    config = copy.deepcopy(config)
    config["data"]["shape"] = list(dataset.shape)
    config["data"]["num_classes"] = dataset.num_classes
    config["data"]["levels"] = dataset.levels
    resolve_classes(config, dataset.num_classes, dataset.name)
    net = config["model"]["network"]
    outputs = 2 if config["model"].get("variance") == "learned" else 1  # the prediction, and v
    if net.get("type") == "unet":
        net.setdefault("in_channels", dataset.shape[0])
        if dataset.shape[0] != net["in_channels"]:
            raise UserError(f"model.network.in_channels = {net['in_channels']} but the data has {dataset.shape[0]}")
        net.setdefault("image_size", dataset.shape[-1])
        net.setdefault("out_channels", outputs * net["in_channels"])
    elif net.get("type") == "mlp":
        if len(dataset.shape) != 1:
            raise UserError(f"an mlp network needs vector data; {dataset.name} has shape {dataset.shape}")
        net.setdefault("dim", dataset.shape[0])
        net.setdefault("out_dim", outputs * net["dim"])
    return config


def build_model(config: dict) -> tuple[nn.Module, Denoiser]:
    """The network and the Denoiser described by a resolved config."""
    network = build_network(config["model"]["network"])
    return network, denoiser_for(network, config)


def denoiser_for(network: nn.Module, config: dict) -> Denoiser:
    """The Denoiser the config's model section describes, around `network`."""
    m = config["model"]
    clip = tuple(m["clip"]) if m.get("clip") is not None else None
    process = process_from_config(config["process"])
    return Denoiser(network, process, m["prediction"], clip, m["conditioning"], m.get("variance", "fixed"))


def weights_path(checkpoint: str | Path) -> Path:
    """A run folder means its exported model.safetensors; a file is taken as it is."""
    path = Path(checkpoint)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.exists():
        raise UserError(f"no weights at {path}; give a run folder (with model.safetensors) or a .safetensors file")
    return path


def load_model(checkpoint: str | Path, device: torch.device | str = "cpu") -> tuple[Denoiser, dict]:
    """(Denoiser in eval mode, config) from a run folder or an exported .safetensors file."""
    path = weights_path(checkpoint)
    state, config = read_weights(path)
    try:
        network = build_network(config["model"]["network"])
    except (KeyError, TypeError) as err:
        raise UserError(f"{path}: its config does not describe a network ({err})") from None
    load_strict(network, state, path)
    network.to(device).eval().requires_grad_(False)
    return denoiser_for(network, config), config
