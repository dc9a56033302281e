"""Run folders and checkpoints: safetensors for tensors, JSON / YAML for everything else, never pickle.

    RUN/config.yaml                     the resolved config
    RUN/metrics.jsonl                   one JSON line per log interval
    RUN/checkpoints/step_00001000/      training state: model, ema, optimizer, rng (.safetensors) + state.json
    RUN/latest                          name of the newest complete checkpoint
    RUN/model.safetensors               EMA weights of `latest`, with the full config and the step in the metadata
    RUN/.lock                           held (flock) by the one trainer that writes the run

Every write goes to a temporary name first, is flushed to disk and then renamed, so a kill (or a power
cut) during a save leaves the previous checkpoint (and the previous `latest`) intact. state.json holds a
SHA-256 of every file of its checkpoint: a checkpoint damaged later (cut short, bytes changed) is
detected on load, and the newest intact older one is used instead. Outputs made of several files (a
picture and its .npz, a report and its metrics) are written as a `FileSet`: all new or all old."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import IO, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from fokker.errors import FokkerWarning, UserError

try:
    import fcntl
except ImportError:  # Windows: no flock, and run folders are not locked
    fcntl = None

CONFIG_KEY = "fokker_config"
STEP_KEY = "fokker_step"
# what a killed trainer can leave half-written in a run folder: only these names are ever removed
RUN_TEMPORARIES = (
    ".config.yaml.tmp",
    ".metrics.jsonl.tmp",
    ".latest.tmp",
    ".model.safetensors.*.tmp",
    "checkpoints/.tmp_step_*",
    "samples/.step_*.png.tmp",
)


def sync(path: Path) -> None:
    """Flush a file (or a folder's entries) to disk, so that a rename after it survives a power cut."""
    if path.is_dir() and os.name != "posix":
        return  # folders cannot be opened for fsync on Windows
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to a hidden temporary file beside `path`, flush it, then rename it over `path` (atomic)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    sync(tmp)
    os.replace(tmp, path)
    sync(path.parent)


def sha256(path: Path) -> str:
    """The SHA-256 of a file, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    skeletons, digests = {}, {}
    for part, state in parts.items():
        tensors: dict[str, torch.Tensor] = {}
        skeletons[part] = flatten_state(state, tensors)
        save_file(tensors, str(tmp / f"{part}.safetensors"))
        sync(tmp / f"{part}.safetensors")
        digests[part] = sha256(tmp / f"{part}.safetensors")
    (tmp / "state.json").write_text(json.dumps({"step": step, "parts": skeletons, "sha256": digests}))
    sync(tmp / "state.json")
    sync(tmp)
    final = root / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    sync(root)
    atomic_write_text(run / "latest", name + "\n")
    # prune relative to this checkpoint: later ones are left over from a run resumed from an earlier one
    # (a kill between the rename and `latest`), and must not push this one out
    saved = sorted(p for p in root.iterdir() if p.name.startswith("step_"))
    older = [p for p in saved if p.name < name]
    for old in older[: max(len(older) - keep_last + 1, 0)] + [p for p in saved if p.name > name]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(run: Path) -> dict[str, Any]:
    """The newest intact checkpoint of a run: {"step": N, PART: state, ...}. That is the one `latest`
    names; if it is damaged (a file cut short or changed, state.json missing), the newest intact older one,
    with a warning."""
    pointer = run / "latest"
    if not pointer.exists():
        raise UserError(f"no checkpoint to resume in {run} (no 'latest' file)")
    root = run / "checkpoints"
    name = pointer.read_bytes().decode("utf-8", "replace").strip()
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


def export_weights(path: Path, state_dict: dict[str, torch.Tensor], config: dict, step: int | None = None) -> None:
    """Weights as safetensors with the full config (process, prediction, network, data shape) as JSON metadata,
    and the training step they are from (see `exported_step`)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # unique: two processes may write one cache file
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
    plain = config.to_dict() if hasattr(config, "to_dict") else config
    metadata = {CONFIG_KEY: json.dumps(plain)} | ({STEP_KEY: str(step)} if step is not None else {})
    save_file(tensors, str(tmp), metadata=metadata)
    sync(tmp)
    os.replace(tmp, path)
    sync(path.parent)


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


def read_metrics(path: Path) -> list[dict]:
    """The records of a run's metrics.jsonl. A line that is not a JSON record (the last one, cut short by a
    kill) is dropped with a warning."""
    return [record for _, record in metric_lines(path)]


def metric_lines(path: Path) -> list[tuple[str, dict]]:
    """(line, record) for every line of metrics.jsonl that is a JSON record with a step; see `read_metrics`."""
    out = []
    for i, line in enumerate(path.read_bytes().decode("utf-8", "replace").splitlines(), 1):
        try:
            record = json.loads(line) if line.strip() else None
        except ValueError:
            record = None
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            out.append((line, record))
        elif line.strip():
            warnings.warn(f"{path}: line {i} is not a JSON record (cut short?); dropped", FokkerWarning, stacklevel=3)
    return out


def lock_run(run: Path) -> IO | None:
    """Take the run folder's lock, RUN/.lock (created with the folder if need be), for this process; a
    UserError naming the holder if another process has it. The lock is an flock, which the OS drops when
    its holder dies, however it dies: a stale lock never blocks. Taking it changes no file (`sign_lock`
    writes the holder's pid once it starts writing the run). Close the returned file to release it (None
    where there is no flock: Windows)."""
    run.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        return None
    f = os.fdopen(os.open(run / ".lock", os.O_RDWR | os.O_CREAT, 0o644), "r+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = f.read().strip() or "unknown"
        f.close()
        raise UserError(f"{run} is in use by another fokker train (pid {holder}); wait for it or stop it") from None
    return f


def sign_lock(lock: IO | None) -> None:
    """Write this process's pid into the lock file it holds (for the message of a refused second writer)."""
    if lock is not None:
        lock.seek(0)
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()


def remove_temporaries(run: Path) -> None:
    """Remove what a killed trainer left half-written in a run folder (only fokker's own temporary names,
    RUN_TEMPORARIES); call it holding the run's lock."""
    for pattern in RUN_TEMPORARIES:
        for path in run.glob(pattern):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def check_writable(path: Path, folder: bool, flag: str = "--out") -> None:
    """A UserError unless `path` can be written as a folder (folder=True) or a file, creating nothing: it
    must not be a file where a folder is meant (or the reverse), and its nearest existing part must be a
    folder this process may write in."""
    path = Path(path)
    if path.exists() and folder != path.is_dir():
        problem = "it is a file, not a folder" if folder else "it is a folder"
    else:
        existing = path if folder and path.exists() else next(p for p in path.parents if p.exists())
        if not existing.is_dir():
            problem = f"{existing} is a file, not a folder"
        elif not os.access(existing, os.W_OK | os.X_OK):
            problem = f"{existing} is not writable"
        else:
            return
    raise UserError(f"cannot write {flag} {path}: {problem}")


class FileSet:
    """Files written as one set, all new or all old: a picture and its .npz, a report and its metrics.

    Each file is written to a temporary beside its target (`path(name)`). On leaving the `with` block,
    `commit` removes the old marker (the file that says the set is complete: the .npz, metrics.json),
    renames the other files into place, then the marker. A kill before the commit leaves the old set
    whole; a kill within it (renames only: microseconds) leaves the set without its marker. So a marker
    only ever sits beside files of its own set. An exception discards the temporaries; temporaries a kill
    left behind are removed by the next set that writes the same names."""

    def __init__(self, folder: Path, marker: str) -> None:
        self.folder, self.marker = Path(folder), marker
        self.temporaries: dict[str, Path] = {}

    def __enter__(self) -> FileSet:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self

    def path(self, name: str) -> Path:
        """Where to write the file `name` of the set (a temporary with the same suffix)."""
        stem, suffix = Path(name).stem, Path(name).suffix
        for stale in self.folder.glob(f".{glob.escape(stem)}.*.tmp{glob.escape(suffix)}"):
            stale.unlink(missing_ok=True)
        self.temporaries[name] = self.folder / f".{stem}.{os.getpid()}.tmp{suffix}"
        return self.temporaries[name]

    def commit(self) -> None:
        """Put the set in place: the old marker out, the other files in, the new marker last."""
        (self.folder / self.marker).unlink(missing_ok=True)
        for name in sorted(self.temporaries, key=lambda n: n == self.marker):
            if self.temporaries[name].exists():  # a file asked for but not written (no loss curve) is no part
                os.replace(self.temporaries[name], self.folder / name)

    def discard(self) -> None:
        for tmp in self.temporaries.values():
            tmp.unlink(missing_ok=True)

    def __exit__(self, kind, error, trace) -> None:
        try:
            if kind is None:
                self.commit()
        finally:
            self.discard()
