"""Exported weights: one safetensors file with the full config (process, prediction, network, data shape)
and the training step as JSON metadata, so that `fokker sample --checkpoint X` needs no other flag; and
loading them into a network with strict key and shape matching. Never pickle."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import safe_open, save_file

from fokker.errors import UserError
from fokker.files import atomic_write

CONFIG_KEY = "fokker_config"
STEP_KEY = "fokker_step"


def export_weights(path: Path, state_dict: dict[str, torch.Tensor], config: dict, step: int | None = None) -> None:
    """Weights as safetensors with the full config (process, prediction, network, data shape) as JSON metadata,
    and the training step they are from (see `exported_step`); written atomically."""
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
    metadata = {CONFIG_KEY: json.dumps(config)} | ({STEP_KEY: str(step)} if step is not None else {})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # unique: two processes may write one cache file
    atomic_write(path, lambda file: save_file(tensors, str(file), metadata=metadata), tmp)


def exported_step(path: Path) -> int | None:
    """The training step of the weights `export_weights` wrote to `path`; None if unknown (no file, a damaged
    one, or one written before fokker recorded the step)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return int((f.metadata() or {})[STEP_KEY])
    except (OSError, SafetensorError, KeyError, ValueError):
        return None


def non_finite(tensors: dict[str, torch.Tensor]) -> list[str]:
    """The names of the floating-point tensors that hold a NaN or an infinity."""
    return [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state_dict, config) from a file written by `export_weights`."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (OSError, SafetensorError) as err:
        raise UserError(f"cannot read weights {path}: {err}") from None
    if CONFIG_KEY not in meta:
        raise UserError(f"{path} has no fokker config in its metadata; was it written by fokker?")
    try:
        config = json.loads(meta[CONFIG_KEY])
    except ValueError:
        raise UserError(f"{path}: its fokker config metadata is not JSON; the file is damaged") from None
    if not isinstance(config, dict):
        raise UserError(f"{path}: its fokker config metadata is not a JSON mapping; the file is damaged")
    bad = non_finite(tensors)
    if bad:
        raise UserError(
            f"{path} holds non-finite weights (NaN or infinity in {bad[0]}{' and more' if len(bad) > 1 else ''}): "
            "its training diverged; train it again with a lower train.lr"
        )
    return tensors, config


def load_strict(module: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: str | Path) -> None:
    """load_state_dict with strict key and shape matching, reported as one clear UserError."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = [k for k in own if k in state_dict and own[k].shape != state_dict[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}")
        if shapes:
            k = shapes[0]
            parts.append(f"shape of {k}: checkpoint {tuple(state_dict[k].shape)} vs config {tuple(own[k].shape)}")
        raise UserError(f"checkpoint {source} does not match the config: {'; '.join(parts)}")
    module.load_state_dict(state_dict, strict=True)
