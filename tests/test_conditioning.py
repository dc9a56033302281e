"""The noise conditioning reaches the network's sinusoidal embedding in the range it is built for."""

import copy

import pytest
import torch

from fokker.config import DEFAULTS, RunConfig, apply_overrides, load_preset
from fokker.data import Dataset
from fokker.denoiser import CONDITIONINGS
from fokker.model import build_model, load_model, resolve_config
from fokker.train import train

F64 = torch.float64
PROCESSES = {  # every kind a preset uses, with the settings of the presets and of Song et al. 2021
    "vp-linear-1000": {"type": "vp", "T": 1000, "schedule": "linear"},
    "vp-cosine-1000": {"type": "vp", "T": 1000, "schedule": "cosine"},
    "vp-continuous": {"type": "vp", "T": None, "schedule": "linear"},
    "ve-10": {"type": "ve", "T": 10, "sigma_min": 0.011988, "sigma_max": 2.0},  # the ncsn preset
    "ve-continuous": {"type": "ve", "sigma_min": 0.01, "sigma_max": 4.0},  # the ve-toy preset
    "ve-378": {"type": "ve", "sigma_min": 0.01, "sigma_max": 378.0},  # Song et al. 2021 on 256^2 images
    "subvp": {"type": "subvp"},
}
CASES = [(p, c) for p in PROCESSES for c in CONDITIONINGS if c != "index" or PROCESSES[p].get("T") is not None]


def resolved(process: dict, conditioning: str, **network) -> RunConfig:
    config = copy.deepcopy(DEFAULTS)
    config["process"], config["model"]["conditioning"] = dict(process), conditioning
    config["model"]["network"].update(network)
    return resolve_config(config, Dataset(torch.zeros(4, 2), None, None, "zeros"))


def training_times(process) -> torch.Tensor:
    """Every training time of a discrete process (i / T, i = 1..T), else a fine grid of [t_min, 1]."""
    return process.grid[1:] if process.T is not None else torch.linspace(process.t_min, 1, 1001, dtype=F64)


@pytest.mark.parametrize(("process", "conditioning"), CASES, ids=[f"{p}-{c}" for p, c in CASES])
def test_embedding_arguments_span_what_time_conditioning_gives(process, conditioning):
    """time_scale * c over the training times stays within [-2000, 2000] and spans at least 500, as 1000 t
    does for t in [0, 1] (Ho et al. 2020: DDPM embeds the index 0..999). Before: 1000 for every
    conditioning, so 'index' reached 1e6 (T = 1000), 'sigma' 3.8e5 (sigma_max = 378), 'log_sigma' -9.1e3
    (sub-VP)."""
    network, denoiser = build_model(resolved(PROCESSES[process], conditioning))
    args = network.time_embed.scale * denoiser.condition(training_times(denoiser.process))
    assert args.abs().max() <= 2000, args.abs().max()
    assert (args.max() - args.min()) >= 500, (args.min(), args.max())


@pytest.mark.parametrize(("given", "kept"), [(7.0, 7.0), (None, 1.0)])
def test_a_given_time_scale_is_kept(given, kept):
    """The user's model.network.time_scale wins; null means "fill it" (1000 / T for 'index')."""
    config = resolved(PROCESSES["vp-linear-1000"], "index", time_scale=given)
    assert config.model.network["time_scale"] == kept


def test_a_run_resolved_before_time_scale_was_filled_keeps_the_scale_it_was_built_with():
    """Resuming a run whose saved config has no time_scale (written before it was filled) must not change
    its network: it was built with the networks' default, 1000."""
    config = resolved(PROCESSES["vp-linear-1000"], "index")
    del config.model.network["time_scale"]
    again = resolve_config(config, Dataset(torch.zeros(4, 2), None, None, "zeros"))
    assert build_model(again)[0].time_embed.scale == 1000.0


def test_the_filled_time_scale_is_saved_and_reloaded(tmp_path, one_thread):
    """A run with 'index' conditioning saves time_scale = 1000 / T in its config; its weights reload to a
    network with that scale, giving the same outputs as the trained one."""
    tiny = ["model.network.hidden=16", "model.network.depth=1", "data.num_points=256", "train.batch_size=32"]
    config = apply_overrides(load_preset("toy"), [*tiny, "model.conditioning=index", "process.T=100"])
    train(config, tmp_path / "run", device="cpu", budget={"steps": 2}, progress=False)
    denoiser, saved = load_model(tmp_path / "run")
    assert saved.model.network["time_scale"] == 10.0 and denoiser.fn.time_embed.scale == 10.0
    x, t = torch.randn(5, 2, generator=torch.Generator().manual_seed(0)), torch.tensor([0.01, 0.2, 0.5, 0.7, 1.0])
    assert not torch.allclose(denoiser.predict(x, t)[1], denoiser.predict(x, t.flip(0))[1])  # t reaches the net
