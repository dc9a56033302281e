"""Optimized time grids stored with a run (`fokker grid` writes them, `fokker sample --spacing optimized`
reads them): RUN/grids/<sampler>-<steps>[-<option>=<value>...].json, the grid's times and how they were found
(fokker.samplers.optimized_grid)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from fokker.errors import UserError
from fokker.files import atomic_write_text
from fokker.samplers.registry import sampler_options
from fokker.schedules import F64

GRIDS_FOLDER = "grids"


def run_folder(checkpoint: str | Path) -> Path:
    """The folder a run's grids live in: the run folder itself, or the folder of an exported .safetensors file."""
    path = Path(checkpoint)
    return path if path.is_dir() else path.parent


def grid_options_key(sampler: str, options: dict) -> dict:
    """The options that change the grid: those given that differ from the sampler's defaults, sorted by name."""
    defaults = sampler_options(sampler)
    return {k: options[k] for k in sorted(options) if options[k] is not None and options[k] != defaults.get(k)}


def grid_path(checkpoint: str | Path, sampler: str, steps: int, options: dict | None = None) -> Path:
    """RUN/grids/<sampler>-<steps>.json, with -<key>=<value> for each option that changes the grid."""
    key = grid_options_key(sampler, options or {})
    suffix = "".join(f"-{k}={v}" for k, v in key.items())
    return run_folder(checkpoint) / GRIDS_FOLDER / f"{sampler}-{steps}{suffix}.json"


def save_grid(path: Path, sampler: str, steps: int, options: dict, times: torch.Tensor, info: dict, **extra) -> Path:
    """Write the grid and how it was found as JSON to `path` (its folder made if needed)."""
    record = {
        "sampler": sampler,
        "steps": steps,
        "options": grid_options_key(sampler, options),
        "times": times.tolist(),
        "kl": info["kl"],
        "kl_log_snr": info["kl_log_snr"],
        "evaluations": info["evaluations"],
        "seconds": round(info["seconds"], 3),
        **extra,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    return path


def _flag(key: str, value: object) -> str:
    """An option as its command-line flag: " --order 3", " --no-denoise"."""
    name = key.replace("_", "-")
    if isinstance(value, bool):
        return f" --{'' if value else 'no-'}{name}"
    return f" --{name} {value}"


def load_grid(checkpoint: str | Path, sampler: str, steps: int, options: dict | None = None) -> torch.Tensor:
    """The times of the optimized grid stored with the run for `sampler`, `steps` and `options` (float64), or a
    UserError naming the `fokker grid` command that computes it."""
    path = grid_path(checkpoint, sampler, steps, options)
    if not path.is_file():
        flags = "".join(_flag(k, v) for k, v in grid_options_key(sampler, options or {}).items())
        raise UserError(
            f"no optimized grid for {sampler}, {steps} steps: {path} is missing; compute it with "
            f"`fokker grid --checkpoint {checkpoint} --sampler {sampler} --steps {steps}{flags}`"
        )
    try:
        record = json.loads(path.read_text())
        times = torch.tensor(record["times"], dtype=F64)
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"cannot read the optimized grid {path}: {err}") from None
    if record.get("sampler") != sampler or len(times) != steps + 1:
        raise UserError(f"{path} holds a grid for {record.get('sampler')!r} of {len(times) - 1} steps, not {sampler!r}")
    return times
