"""Building a training run, `build_run`: its config (fresh, or the run's own on resume), the Accelerator,
the data, the network with its EMA, AdamW with linear warm-up, the loss and the sampler of training times,
all loaded from the newest checkpoint on resume. Every seed is drawn here, in a fixed order."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import torch
from accelerate import Accelerator

from fokker.autoencoder.space import (
    LatentSpace,
    attach_autoencoder,
    check_data,
    prefixed,
    reattach_autoencoder,
    split_weights,
)
from fokker.config import RunConfig, TrainSection, as_run_config, read_run_config
from fokker.data import Dataset, dataset_for
from fokker.devices import make_accelerator
from fokker.ema import EMA
from fokker.errors import UserError
from fokker.files import check_writable
from fokker.labels import uses_labels
from fokker.losses import loss_from_section
from fokker.model import Model, model_for, resolve_config, weights_path
from fokker.nets import build_network
from fokker.processes import process_from_config
from fokker.timesteps import LossAwareSampler
from fokker.train.collective import run_lock
from fokker.train.state import TrainState
from fokker.weights import load_strict, read_weights

# what makes a folder a run that a fresh start must not overwrite: a checkpoint, exported weights (a folder
# with only config.yaml, logs and pictures was stopped before its first checkpoint: it may start again)
RUN_WORK = ("latest", "model.safetensors")


@dataclass
class Run:
    """A training run, built: its resolved config, its folder (and lock), the Accelerator, the data (on the
    device), the state being trained, the model around the prepared network (the Denoiser; a classifier's
    NoisyClassifier; an autoencoder's network itself: fokker.model.model_for) that the loss takes, and the loss.
    A latent diffusion run's data are the latents of its autoencoder (`space`), encoded once at the start."""

    config: RunConfig
    out: Path
    acc: Accelerator
    dataset: Dataset
    data: torch.Tensor
    labels: torch.Tensor | None
    state: TrainState
    denoiser: Model
    loss_fn: Callable
    lock: IO | None
    resumed: bool
    space: LatentSpace | None = None  # a latent diffusion model's: `dataset` holds the scaled latents

    @property
    def tc(self) -> TrainSection:
        """The config's train section."""
        return self.config.train


def prepare_run(config: dict | RunConfig, out: Path, resume: bool, budget: dict) -> RunConfig:
    """The config to train with: a fresh one (refusing to overwrite a run) or the run's own on resume,
    with the budget keys (steps, minutes) in `budget` replacing the config's."""
    check_writable(out, folder=True)
    if resume:
        if not (out / "config.yaml").exists():
            raise UserError(f"cannot resume: {out} holds no run (no config.yaml)")
        config = read_run_config(out / "config.yaml")
    else:
        check_fresh(out)
    return as_run_config(config).replace("train", **budget).validate()


def check_fresh(out: Path) -> None:
    """A fresh run must not overwrite one that holds work (RUN_WORK)."""
    if any((out / f).exists() for f in RUN_WORK):
        raise UserError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")


def build_run(config: dict | RunConfig, out: Path, resume: bool, device: str, budget: dict, held: ExitStack) -> Run:
    """The run `train` trains: its lock taken (and held by `held`), its state loaded on resume (a run stopped
    before its first checkpoint starts from step 0), its network and optimiser prepared by Accelerate."""
    config = prepare_run(config, out, resume, budget)
    dataset = dataset_for(config)
    space = latent_space(config, out, resume, dataset) if config.is_latent else None
    config = resolve_config(config, dataset)
    if space is not None:
        dataset = encoded(dataset, space)
    acc = make_accelerator(device, config.train.mixed_precision)
    state = new_state(config, acc)
    lock = held.enter_context(run_lock(out, acc))
    if not resume:
        check_fresh(out)  # again, under the lock: another trainer may have saved in the meantime
    resume = resume and (out / "latest").exists()
    if resume:
        state.load(out, acc.process_index, acc.num_processes)
    state.ema.model.to(acc.device)
    state.model, state.optimizer = acc.prepare(state.model, state.optimizer)
    data = dataset.data.to(acc.device)
    labels = dataset.labels.to(acc.device) if uses_labels(config) else None
    loss_fn = loss_from_section(config.train, config.model_levels)
    denoiser = model_for(state.model, config, space)
    if space is not None:
        space.to(acc.device)
        state.extra = prefixed(space)
    return Run(config, out, acc, dataset, data, labels, state, denoiser, loss_fn, lock, resume, space)


def latent_space(config: RunConfig, out: Path, resume: bool, dataset: Dataset) -> LatentSpace:
    """The latent space of a latent diffusion run: from latent.autoencoder on a fresh start (recorded in the
    config's latent section; one filled in already, a distillation student's copy of its teacher's, must be
    what the autoencoder gives), from the run's own copy on resume."""
    if resume and (out / "config.yaml").exists():
        space = reattach_autoencoder(config, out)
    else:
        given = {k: getattr(config.latent, k) for k in ("scale", "shape", "network")}
        space = attach_autoencoder(config, config.latent.autoencoder)
        for key, value in given.items():
            if value is not None and value != getattr(config.latent, key):
                raise UserError(
                    f"latent.{key} is measured from the autoencoder when the run starts: leave it unset (here "
                    f"{value!r}, the autoencoder's {getattr(config.latent, key)!r}; the scale is 1 / std of its "
                    "training latents, never a constant)"
                )
    check_data(space, dataset.shape, config.latent.autoencoder)
    return space


def encoded(dataset: Dataset, space: LatentSpace) -> Dataset:
    """The data set of latents scale * E(x) of `dataset`'s images, with their labels; continuous (no levels)."""
    with torch.no_grad():
        latents = space.encode(dataset.data)
    return Dataset(latents, dataset.labels, dataset.num_classes, dataset.name, levels=None)


def initialise(network: torch.nn.Module, source: str) -> None:
    """Load the exported weights of the run (or .safetensors file) `source` into `network`: a distillation
    student starts as its teacher. The networks must match (same model.network)."""
    path = weights_path(source)
    state, config = read_weights(path)
    if as_run_config(config).is_latent:  # the teacher's autoencoder, which the student's run keeps on its own
        state, _ = split_weights(state)
    load_strict(network, state, path)


def new_state(config: RunConfig, acc: Accelerator) -> TrainState:
    """A fresh TrainState: the initial weights from train.seed (the same on every process), then the global
    RNG at seed + rank (dropout) and the generator of batches, times and noise at seed + 7919 rank."""
    tc = config.train
    torch.manual_seed(tc.seed)
    network = build_network(config.model.network)
    if tc.init is not None:
        initialise(network, tc.init)
    optimizer = torch.optim.AdamW(network.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    warmup = max(tc.warmup, 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))
    ema = EMA(network, tc.ema_decay)
    rank = acc.process_index
    torch.manual_seed(tc.seed + rank)
    gen = torch.Generator(device=acc.device).manual_seed(tc.seed + 7919 * rank)
    times = LossAwareSampler(process_from_config(config.process).T) if tc.time_sampler == "importance" else None
    return TrainState(network, ema, optimizer, scheduler, gen, times)
