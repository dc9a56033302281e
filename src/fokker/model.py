"""From a config to a network and the model around it (a Denoiser, a classifier's NoisyClassifier, or an
autoencoder itself), and back from exported weights."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from fokker.classifier.noisy import NoisyClassifier
from fokker.config import RunConfig, as_run_config
from fokker.data import Dataset
from fokker.denoiser import Denoiser
from fokker.errors import UserError
from fokker.labels import resolve_classes
from fokker.nets import build_network
from fokker.processes import Process, process_from_config
from fokker.weights import load_strict, read_weights

if TYPE_CHECKING:
    from fokker.autoencoder.space import LatentSpace

EMBEDDING_RANGE = 1000.0  # the largest |time_scale * c| over the training times: 1000 t, t in [0, 1]


def resolve_config(config: RunConfig | dict, dataset: Dataset) -> RunConfig:
    """Fill in what the data decides: its shape, its classes (and, for a conditional model or a classifier,
    the network's num_classes, and a conditional model's train.p_uncond: fokker.labels), the network's sizes
    and the x0 range; and the network's time_scale for the conditioning (`embedding_time_scale`)."""
    config = copy.deepcopy(as_run_config(config))
    _fill_time_scale(config)  # first: it tells a fresh config from a resolved one by data.shape
    config.data.shape = list(dataset.shape)
    config.data.num_classes = dataset.num_classes
    config.data.levels = dataset.levels
    resolve_classes(config, dataset.num_classes, dataset.name)
    _fill_sizes(config, tuple(config.model_shape), dataset.name)
    return config


IMAGE_NETWORKS = ("unet", "dit", "unet_encoder", "vae", "vqvae")  # they take in_channels and image_size from the data
SQUARE_NETWORKS = ("dit", "vae", "vqvae")  # they take square images only
VECTOR_NETWORKS = ("mlp", "mlp_classifier")  # they take dim from the data


def _fill_sizes(config: RunConfig, shape: tuple[int, ...], name: str) -> None:
    """The network's input size from the shape of what it models (the data's, a latent diffusion model's latent
    shape), and a denoiser's output size (the prediction, and v when the variance is learned); a classifier's
    output size is its num_classes (`resolve_classes`)."""
    net, kind = config.model.network, config.model.network.get("type")
    outputs = 2 if config.model.variance == "learned" else 1  # the prediction, and v
    if kind in IMAGE_NETWORKS:
        if len(shape) != 3:
            raise UserError(f"a {kind} network needs image data; {name} has shape {shape}")
        net.setdefault("in_channels", shape[0])
        if shape[0] != net["in_channels"]:
            raise UserError(f"model.network.in_channels = {net['in_channels']} but the data has {shape[0]}")
        if kind in SQUARE_NETWORKS and shape[-1] != shape[-2]:
            raise UserError(f"a {kind} network takes square images; {name} has shape {shape}")
        net.setdefault("image_size", shape[-1])
        if kind in ("unet", "dit"):
            net.setdefault("out_channels", outputs * net["in_channels"])
    elif kind in VECTOR_NETWORKS:
        if len(shape) != 1:
            raise UserError(f"an {kind} network needs vector data; {name} has shape {shape}")
        net.setdefault("dim", shape[0])
        if kind == "mlp":
            net.setdefault("out_dim", outputs * net["dim"])


def embedding_time_scale(conditioning: str, process: Process) -> float:
    """The network's time_scale for a conditioning c: EMBEDDING_RANGE / max |c| over the process's training
    times (4 significant digits), so that the sinusoidal embedding of time_scale * c spans what 1000 t gives
    for t in [0, 1], and what DDPM's step index 0..999 at scale 1 gives (Ho et al. 2020): "time" 1000,
    "index" 1000 / T, "sigma" 1000 / sigma(1), "log_sigma" 1000 / max |log sigma(t)|. c is monotone in t,
    so the maximum is at the first training time or at t = 1."""
    denoiser = Denoiser(lambda x, c: x, process, conditioning=conditioning)
    ends = torch.tensor([process.first_time, 1.0], dtype=torch.float64)
    return float(f"{EMBEDDING_RANGE / denoiser.condition(ends).abs().max().item():.4g}")


def _fill_time_scale(config: RunConfig) -> None:
    """Set model.network.time_scale from the conditioning and the process unless it is given, so the saved
    config says what the network was built with. A run's own config from before it was filled (resolved
    already: data.shape is set) is left as it is: its network keeps the default it was built with. An
    autoencoder has no time input."""
    net = config.model.network
    if net.get("time_scale") is None and config.data.shape is None and config.model.task != "autoencoder":
        process = process_from_config(config.process)
        net["time_scale"] = embedding_time_scale(config.model.conditioning, process)


Model = Denoiser | NoisyClassifier | nn.Module  # what a loss takes: fokker.losses.Loss.task


def build_model(config: RunConfig, space: LatentSpace | None = None) -> tuple[nn.Module, Model]:
    """The network described by a resolved config, and the model around it (`model_for`)."""
    network = build_network(config.model.network)
    return network, model_for(network, config, space)


def model_for(network: nn.Module, config: RunConfig, space: LatentSpace | None = None) -> Model:
    """What the config's model is around `network`: its Denoiser (over the latent `space` of a latent
    diffusion model), for a classifier its NoisyClassifier, and for an autoencoder the network itself (it has
    no process)."""
    if config.model.task == "classifier":
        return classifier_for(network, config, space)
    if config.model.task == "autoencoder":
        return network
    return denoiser_for(network, config, space)


def denoiser_for(network: nn.Module, config: RunConfig, space: LatentSpace | None = None) -> Denoiser:
    """The Denoiser the config's model section describes, around `network`; a latent diffusion model's
    (config.is_latent) draws latents of `space`, which its `to_data` decodes."""
    if config.is_latent and space is None:
        raise ValueError("a latent diffusion model's Denoiser needs its LatentSpace")
    denoiser = _denoiser(network, config)
    denoiser.space = space
    return denoiser


def _denoiser(network: nn.Module, config: RunConfig) -> Denoiser:
    m = config.model
    clip = tuple(m.clip) if m.clip is not None else None
    process = process_from_config(config.process)
    classes = m.network.get("num_classes") if m.conditional else None
    if m.parameterisation == "consistency":
        from fokker.distill.consistency_model import SIGMA_DATA, ConsistencyDenoiser

        sigma_data = SIGMA_DATA if m.sigma_data is None else m.sigma_data
        return ConsistencyDenoiser(network, process, m.prediction, clip, m.conditioning, classes, sigma_data)
    return Denoiser(network, process, m.prediction, clip, m.conditioning, m.variance, classes)


def classifier_for(network: nn.Module, config: RunConfig, space: LatentSpace | None = None) -> NoisyClassifier:
    """The NoisyClassifier of a classifier's config around `network`: its process and its conditioning; one
    trained on an autoencoder's latents classifies latents of `space`."""
    if config.is_latent and space is None:
        raise ValueError("a classifier of latents needs its LatentSpace")
    classifier = NoisyClassifier(network, process_from_config(config.process), config.model.conditioning)
    classifier.space = space
    return classifier


def weights_path(checkpoint: str | Path) -> Path:
    """A run folder means its exported model.safetensors; a file is taken as it is."""
    path = Path(checkpoint)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.exists():
        raise UserError(f"no weights at {path}; give a run folder (with model.safetensors) or a .safetensors file")
    return path


# what a run of each task holds, and what loads it
HOLDS = {
    "denoiser": "diffusion model",
    "classifier": "noise-conditional classifier",
    "autoencoder": "trained autoencoder",
}
LOADERS = {
    "denoiser": "fokker.model.load_model",
    "classifier": "fokker.classifier.load_classifier",
    "autoencoder": "fokker.autoencoder.load_autoencoder",
}


def load_model(checkpoint: str | Path, device: torch.device | str = "cpu") -> tuple[Denoiser, RunConfig]:
    """(Denoiser in eval mode, config) from a run folder or an exported .safetensors file; a latent diffusion
    model's Denoiser has its autoencoder (the weights hold it) as its `space`."""
    network, config, space = load_with_space(checkpoint, "denoiser", device)
    return denoiser_for(network, config, space), config


def load_network(checkpoint: str | Path, task: str, device: torch.device | str = "cpu") -> tuple[nn.Module, RunConfig]:
    """(network in eval mode, without gradients, config) of a run folder or an exported .safetensors file that
    holds a model of `task` (fokker.nets.TASKS); one of another task is a UserError naming its loader."""
    network, config, _ = load_with_space(checkpoint, task, device)
    return network, config


def load_with_space(
    checkpoint: str | Path, task: str, device: torch.device | str = "cpu"
) -> tuple[nn.Module, RunConfig, LatentSpace | None]:
    """`load_network`, and the latent space of a model trained on an autoencoder's latents (its weights hold
    the autoencoder: fokker.autoencoder.space.space_from_weights), else None."""
    path, state, config = _read_task(checkpoint, task)
    space = None
    if config.is_latent:
        from fokker.autoencoder.space import space_from_weights

        state, space = space_from_weights(state, config, path)
        space.to(device)
    return _network(path, state, config, device), config, space


def _read_task(checkpoint: str | Path, task: str) -> tuple[Path, dict[str, torch.Tensor], RunConfig]:
    """(path, tensors, config) of the weights of a model of `task`, or a UserError naming the loader of the
    task they hold."""
    path = weights_path(checkpoint)
    state, raw = read_weights(path)
    try:
        config = as_run_config(raw)
        found = config.model.task
    except UserError as err:
        raise UserError(f"{path}: {err}") from None
    if found != task:
        raise UserError(
            f"{path} holds a {HOLDS[found]} (model.network.type {config.model.network['type']}), not a "
            f"{HOLDS[task]}; load it with {LOADERS[found]}"
        )
    return path, state, config


def _network(path: Path, state: dict[str, torch.Tensor], config: RunConfig, device: torch.device | str) -> nn.Module:
    """The config's network with the tensors `state`, in eval mode and without gradients, on `device`."""
    try:
        network = build_network(config.model.network)
    except (KeyError, TypeError) as err:
        raise UserError(f"{path}: its config does not describe a network ({err})") from None
    load_strict(network, state, path)
    return network.to(device).eval().requires_grad_(False)
