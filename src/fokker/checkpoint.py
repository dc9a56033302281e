"""Run folders and checkpoints: safetensors for tensors, JSON / YAML for everything else, never pickle.

    RUN/config.yaml                     the resolved config
    RUN/metrics.jsonl                   one JSON line per log interval
    RUN/checkpoints/step_00001000/      training state: model, ema, optimizer, rng (.safetensors) + state.json
    RUN/latest                          name of the newest complete checkpoint
    RUN/model.safetensors               EMA weights with the full config in the metadata (for sampling)

Every write goes to a temporary name first and is then renamed, so a kill during a save leaves the
previous checkpoint (and the previous `latest`) intact."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from fokker.errors import UserError

CONFIG_KEY = "fokker_config"


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to a hidden temporary file beside `path`, then rename it over `path` (atomic)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def flatten_state(obj: Any, tensors: dict[str, torch.Tensor], prefix: str = "t") -> Any:
    """Split a nested state (dicts, lists, tensors, numbers) into JSON plus a flat dict of tensors.
    Dict keys keep their type (an optimizer's int keys come back as ints)."""
    if isinstance(obj, torch.Tensor):
        key = f"{prefix}"
        tensors[key] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {"__dict__": [[k, flatten_state(v, tensors, f"{prefix}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, list | tuple):
        return [flatten_state(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
    return obj


def unflatten_state(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of `flatten_state`."""
    if isinstance(obj, dict) and "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if isinstance(obj, dict) and "__dict__" in obj:
        return {k: unflatten_state(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [unflatten_state(v, tensors) for v in obj]
    return obj


def save_checkpoint(run: Path, step: int, parts: dict[str, Any], keep_last: int) -> Path:
    """Write checkpoints/step_N atomically (tmp folder, then rename), point `latest` at it, prune old ones.
    `parts` maps a name to a nested state; each becomes NAME.safetensors plus its skeleton in state.json."""
    root = run / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:08d}"
    tmp = root / f".tmp_{name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    skeletons = {}
    for part, state in parts.items():
        tensors: dict[str, torch.Tensor] = {}
        skeletons[part] = flatten_state(state, tensors)
        save_file(tensors, str(tmp / f"{part}.safetensors"))
    (tmp / "state.json").write_text(json.dumps({"step": step, "parts": skeletons}))
    final = root / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    atomic_write_text(run / "latest", name + "\n")
    # prune relative to this checkpoint: later ones are left over from a run resumed from an earlier one
    # (a kill between the rename and `latest`), and must not push this one out
    saved = sorted(p for p in root.iterdir() if p.name.startswith("step_"))
    older = [p for p in saved if p.name < name]
    for old in older[: max(len(older) - keep_last + 1, 0)] + [p for p in saved if p.name > name]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(run: Path) -> dict[str, Any]:
    """The newest complete checkpoint of a run: {"step": N, PART: state, ...}."""
    pointer = run / "latest"
    if not pointer.exists():
        raise UserError(f"no checkpoint to resume in {run} (no 'latest' file)")
    folder = run / "checkpoints" / pointer.read_text().strip()
    try:
        meta = json.loads((folder / "state.json").read_text())
        out = {"step": meta["step"]}
        for part, skeleton in meta["parts"].items():
            out[part] = unflatten_state(skeleton, load_file(str(folder / f"{part}.safetensors")))
    except (OSError, ValueError, KeyError, SafetensorError) as err:
        raise UserError(f"cannot read checkpoint {folder}: {err}") from None
    return out


def export_weights(path: Path, state_dict: dict[str, torch.Tensor], config: dict) -> None:
    """Weights as safetensors with the full config (process, prediction, network, data shape) as JSON metadata."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # unique: two processes may write one cache file
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
    save_file(tensors, str(tmp), metadata={CONFIG_KEY: json.dumps(config)})
    os.replace(tmp, path)


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
    return tensors, json.loads(meta[CONFIG_KEY])


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
