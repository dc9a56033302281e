"""Run folders and training checkpoints: safetensors for tensors, JSON / YAML for everything else, never pickle.

    RUN/config.yaml                     the resolved config
    RUN/metrics.jsonl                   one JSON line per log interval (fokker.metrics_jsonl)
    RUN/checkpoints/step_00001000/      training state: model, ema, optimizer, rng (.safetensors) + state.json
    RUN/latest                          name of the newest complete checkpoint
    RUN/model.safetensors               EMA weights of `latest`, with the full config and the step in the metadata
                                        (fokker.weights); a latent diffusion model's hold its autoencoder's too
    RUN/autoencoder.safetensors         a latent diffusion run's copy of its autoencoder (fokker.autoencoder.space)
    RUN/.lock                           held (flock) by the one trainer that writes the run (fokker.files.lock_run)

Every write goes to a temporary name first, is flushed to disk and then renamed (fokker.files.atomic_write),
so a kill (or a power cut) during a save leaves the previous checkpoint (and the previous `latest`) intact.
state.json holds a SHA-256 of every file of its checkpoint: a checkpoint damaged later (cut short, bytes
changed) is detected on load, and the newest intact older one is used instead."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from fokker.errors import FokkerWarning, UserError
from fokker.files import atomic_write, atomic_write_text, sha256, sync

# what a killed trainer can leave half-written in a run folder: only these names are ever removed
RUN_TEMPORARIES = (
    ".config.yaml.tmp",
    ".metrics.jsonl.tmp",
    ".latest.tmp",
    ".model.safetensors.*.tmp",
    ".autoencoder.safetensors.*.tmp",  # a latent diffusion run's copy of its autoencoder
    "checkpoints/.tmp_step_*",
    "samples/.step_*.png.tmp",
    ".accuracy.json.tmp",  # a classifier's report (fokker.classifier.report)
    "accuracy/.step_*.png.tmp",
)


def step_name(step: int) -> str:
    """The name of a step's checkpoint folder (and, + .png, of its sample picture): step_00001000."""
    return f"step_{step:08d}"


def latest_name(run: Path) -> str | None:
    """The checkpoint `latest` names, if any."""
    latest = run / "latest"
    return latest.read_bytes().decode("utf-8", "replace").strip() if latest.exists() else None


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
    name = step_name(step)
    atomic_write(root / name, lambda tmp: _write_parts(tmp, step, parts), tmp=root / f".tmp_{name}")
    atomic_write_text(run / "latest", name + "\n")
    _prune(root, name, keep_last)
    return root / name


def _write_parts(folder: Path, step: int, parts: dict[str, Any]) -> None:
    """A checkpoint folder: NAME.safetensors for each part (each flushed to disk) and state.json, which holds
    the parts' skeletons and the SHA-256 of each file."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    skeletons, digests = {}, {}
    for part, state in parts.items():
        tensors: dict[str, torch.Tensor] = {}
        skeletons[part] = flatten_state(state, tensors)
        save_file(tensors, str(folder / f"{part}.safetensors"))
        sync(folder / f"{part}.safetensors")
        digests[part] = sha256(folder / f"{part}.safetensors")
    (folder / "state.json").write_text(json.dumps({"step": step, "parts": skeletons, "sha256": digests}))
    sync(folder / "state.json")


def _prune(root: Path, name: str, keep_last: int) -> None:
    """Keep the `keep_last` checkpoints up to `name`. Prune relative to it: later ones are left over from a run
    resumed from an earlier one (a kill between the rename and `latest`), and must not push this one out."""
    saved = sorted(p for p in root.iterdir() if p.name.startswith("step_"))
    older = [p for p in saved if p.name < name]
    for old in older[: max(len(older) - keep_last + 1, 0)] + [p for p in saved if p.name > name]:
        shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(run: Path) -> dict[str, Any]:
    """The newest intact checkpoint of a run: {"step": N, PART: state, ...}. That is the one `latest`
    names; if it is damaged (a file cut short or changed, state.json missing), the newest intact older one,
    with a warning."""
    name = latest_name(run)
    if name is None:
        raise UserError(f"no checkpoint to resume in {run} (no 'latest' file)")
    root = run / "checkpoints"
    try:
        return _read_checkpoint(root / name)
    except UserError as err:
        damage = str(err)
    older = sorted((p.name for p in root.glob("step_*") if p.name < name), reverse=True) if root.is_dir() else []
    for other in older:
        try:
            state = _read_checkpoint(root / other)
        except UserError:
            continue
        warnings.warn(f"checkpoint {name} is damaged ({damage}); resuming from {other}", FokkerWarning, stacklevel=2)
        return state
    raise UserError(f"cannot read checkpoint {root / name}: {damage}; no intact older checkpoint") from None


def _read_checkpoint(folder: Path) -> dict[str, Any]:
    """One checkpoint folder, every file checked against the SHA-256 in its state.json; a UserError saying
    what is damaged otherwise."""
    try:
        meta = json.loads((folder / "state.json").read_text())
        out = {"step": meta["step"]}
        for part, skeleton in meta["parts"].items():
            path = folder / f"{part}.safetensors"
            if "sha256" in meta and sha256(path) != meta["sha256"][part]:
                raise UserError(f"{path.name} does not match its checksum")
            out[part] = unflatten_state(skeleton, load_file(str(path)))
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as err:
        raise UserError(f"{type(err).__name__}: {err}") from None
    return out


def remove_temporaries(run: Path) -> None:
    """Remove what a killed trainer left half-written in a run folder (only fokker's own temporary names,
    RUN_TEMPORARIES); call it holding the run's lock."""
    for pattern in RUN_TEMPORARIES:
        for path in run.glob(pattern):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
