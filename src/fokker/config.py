"""Run configuration: nested dicts loaded from the YAML presets shipped in fokker/presets,
overridden by `section.key=value` strings, and turned into a network, a process and a Denoiser."""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from fokker.errors import UserError

DEFAULTS: dict[str, Any] = {
    "data": {
        "name": "moons",
        "image_size": None,
        "channels": None,
        "num_points": 20000,
        "shape": None,
        "num_classes": None,
        "levels": None,
    },
    "process": {"type": "vp", "T": 1000, "schedule": "linear"},
    "model": {
        "prediction": "eps",
        "conditioning": "time",
        "variance": "fixed",
        "conditional": False,
        "clip": None,
        "network": {"type": "mlp"},
    },
    "train": {
        "batch_size": 128,
        "lr": 1e-3,
        "weight_decay": 0.0,
        "warmup": 100,
        "grad_clip": 1.0,  # the largest gradient norm, or null: no clipping
        "ema_decay": 0.999,
        "loss": "simple",
        "weighting": "sigma2",
        "hybrid_weight": 0.001,
        "p_uncond": None,
        "time_sampler": "uniform",
        "loss_target": None,
        "steps": 2000,
        "minutes": None,
        "seed": 0,
        "log_every": 50,
        "sample_every": 1000,
        "checkpoint_every": 1000,
        "keep_last": 2,
        "mixed_precision": "no",
    },
    "sample": {"sampler": "ddim", "steps": 50, "num": 64, "spacing": "uniform", "options": {}},
}

# sections whose keys belong to the object they configure
FREE_FORM = {"process", "model.network", "sample.options"}


def preset_names() -> list[str]:
    """Names of the presets shipped with fokker."""
    return sorted(p.name[:-5] for p in resources.files("fokker.presets").iterdir() if p.name.endswith(".yaml"))


def merge(base: dict, update: dict, prefix: str = "") -> dict:
    """Deep-merge `update` into a copy of `base`. Unknown keys are errors, except inside the free-form
    sections (process, model.network), which a new "type" replaces whole."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        path = f"{prefix}{key}"
        if path in FREE_FORM and isinstance(value, dict):
            same_type = value.get("type", out[key].get("type")) == out[key].get("type")
            out[key] = {**out[key], **value} if same_type else copy.deepcopy(value)
        elif prefix.rstrip(".") in FREE_FORM:
            out[key] = copy.deepcopy(value)
        elif key not in out:
            raise UserError(f"unknown config key {path!r}; known keys here: {sorted(out)}")
        elif isinstance(out[key], dict):
            if not isinstance(value, dict):
                raise UserError(f"config key {path!r} is a section; set one of its keys: {sorted(out[key])}")
            out[key] = merge(out[key], value, path + ".")
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_preset(name: str) -> dict:
    """DEFAULTS merged with the named preset."""
    if name not in preset_names():
        raise UserError(f"unknown preset {name!r}; expected one of {preset_names()}")
    text = resources.files("fokker.presets").joinpath(f"{name}.yaml").read_text()
    return merge(DEFAULTS, yaml.safe_load(text) or {})


_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def apply_overrides(config: dict, overrides: list[str]) -> dict:
    """Apply `a.b.c=value` strings (value parsed as YAML, so 1e-3, true, [1, 2] and null work)."""
    for item in overrides:
        if "=" not in item:
            raise UserError(f"bad override {item!r}; expected section.key=value, e.g. train.lr=1e-3")
        path, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise UserError(f"bad value in override {item!r}: not valid YAML") from None
        if isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value):
            value = float(value)  # YAML 1.1 (PyYAML) reads 1e-3, without a dot, as a string
        update: dict = {}
        node = update
        keys = path.strip().split(".")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
        config = merge(config, update)
    return config


def to_yaml(config: dict) -> str:
    """The config as YAML, keys in their natural order."""
    return yaml.safe_dump(config, sort_keys=False)


def require(value: Any, kind: type | tuple[type, ...], name: str, check: Any = None, expected: str = "") -> None:
    """Raise a UserError naming `name` when `value` is not of `kind` or fails `check`."""
    ok = isinstance(value, kind) and not isinstance(value, bool) if kind is not bool else isinstance(value, bool)
    if not ok or (check is not None and not check(value)):
        raise UserError(f"bad value for {name}: {value!r}; expected {expected or getattr(kind, '__name__', kind)}")


def _numbers(node: Any, path: str = "") -> Iterator[tuple[str, float]]:
    """Every float in a nested config, with its dotted path."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _numbers(value, f"{path}{key}.")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _numbers(value, f"{path[:-1]}[{i}].")
    elif isinstance(node, float):
        yield path[:-1], node


def validate(config: dict) -> None:
    """Check the values a user is most likely to get wrong, with one clear message each."""
    for path, value in _numbers(config):
        if not math.isfinite(value):
            raise UserError(f"bad value for {path}: {value}; expected a finite number")
    _validate_training(config["train"])
    _validate_objective(config)
    validate_sample(config)
    from fokker.labels import check_conditional

    check_conditional(config)


def _validate_training(t: dict) -> None:
    """The train section's numbers: optimizer, budget, intervals, precision."""
    require(t["batch_size"], int, "train.batch_size", lambda v: v > 0, "a positive integer")
    require(t["lr"], (int, float), "train.lr", lambda v: v > 0, "a positive number")
    require(t["weight_decay"], (int, float), "train.weight_decay", lambda v: v >= 0, "a non-negative number")
    if t["grad_clip"] is not None:
        positive = "a positive number, or null for no clipping"
        require(t["grad_clip"], (int, float), "train.grad_clip", lambda v: v > 0, positive)
    require(t["warmup"], int, "train.warmup", lambda v: v >= 0, "a non-negative integer")
    require(t["ema_decay"], (int, float), "train.ema_decay", lambda v: 0 <= v < 1, "a number in [0, 1)")
    require(t["keep_last"], int, "train.keep_last", lambda v: v >= 1, "an integer >= 1")
    if t["steps"] is None and t["minutes"] is None:
        raise UserError("give a training budget: train.steps or train.minutes (or --steps / --minutes)")
    if t["steps"] is not None:
        require(t["steps"], int, "train.steps", lambda v: v > 0, "a positive integer")
    if t["minutes"] is not None:
        require(t["minutes"], (int, float), "train.minutes", lambda v: v > 0, "a positive number")
    for key in ("log_every", "sample_every", "checkpoint_every"):
        require(t[key], int, f"train.{key}", lambda v: v > 0, "a positive integer")
    if t["mixed_precision"] not in ("no", "fp16", "bf16"):
        raise UserError(f"bad value for train.mixed_precision: {t['mixed_precision']!r}; expected no, fp16 or bf16")


def _validate_objective(config: dict) -> None:
    """The loss, its weighting and time sampler against the model's variance and the process."""
    from fokker.losses import BOUND_LOSSES, LOSSES, check_weighting
    from fokker.timesteps import TIME_SAMPLERS

    t = config["train"]
    if t["loss"] not in LOSSES:
        raise UserError(f"bad value for train.loss: {t['loss']!r}; expected one of {', '.join(LOSSES)}")
    check_weighting(t["weighting"])
    if t["time_sampler"] not in TIME_SAMPLERS:
        raise UserError(f"bad value for train.time_sampler: {t['time_sampler']!r}; expected one of {TIME_SAMPLERS}")
    variance = config["model"]["variance"]
    if variance not in ("fixed", "learned"):
        raise UserError(f"bad value for model.variance: {variance!r}; expected fixed or learned")
    if t["loss"] == "hybrid" and variance != "learned":
        raise UserError("train.loss hybrid trains a learned variance: set model.variance=learned")
    if variance == "learned" and t["loss"] not in BOUND_LOSSES:
        raise UserError(
            f"model.variance learned needs a loss that trains the variance ({' or '.join(BOUND_LOSSES)}); "
            f"train.loss {t['loss']} does not train v, the network's variance output: use model.variance=fixed"
        )
    if config["process"].get("T") is not None:
        T = config["process"]["T"]
        require(T, int, "process.T", lambda v: v >= 1, "a positive integer, or null for continuous time")
    needs_grid = t["loss"] in BOUND_LOSSES or t["time_sampler"] == "importance"
    if needs_grid and config["process"].get("T") is None:
        raise UserError(f"train.loss {t['loss']} / time_sampler {t['time_sampler']} need a discrete process.T")
    if t["loss"] in BOUND_LOSSES:
        _check_bound_loss(config["process"], t["loss"], [name for name in LOSSES if name not in BOUND_LOSSES])


def _check_bound_loss(process: dict, loss: str, others: list[str]) -> None:
    """The bound's losses need a process with sigma(0) = 0 (fokker.vlb.check_bound_grid: not VE)."""
    from fokker.processes import process_from_config
    from fokker.vlb import check_bound_grid

    check_bound_grid(process_from_config(process), f"train.loss {loss}", f"use {', '.join(others)}")


def validate_sample(config: dict) -> None:
    """The sample section (the pictures drawn during training), checked before training starts: the sampler,
    its options, and the time grid of its steps and spacing on the config's process."""
    from fokker.processes import process_from_config
    from fokker.samplers import check_options, get_sampler, time_grid

    s = config["sample"]
    require(s["num"], int, "sample.num", lambda v: v > 0, "a positive integer")
    require(s["steps"], int, "sample.steps", None, "an integer")
    options = s.get("options") or {}
    if not isinstance(options, dict):
        raise UserError(f"bad value for sample.options: {options!r}; expected a mapping of the sampler's options")
    process = process_from_config(config["process"])
    for key, check in (
        ("sampler", lambda: get_sampler(s["sampler"])),
        ("options", lambda: check_options(s["sampler"], options)),
        ("spacing", lambda: time_grid(process, 1, s["spacing"])),
        ("steps", lambda: time_grid(process, s["steps"], s["spacing"])),
    ):
        try:
            check()
        except UserError as err:
            raise UserError(f"sample.{key}: {err}") from None


def read_run_config(path: Path) -> dict:
    """A run's config.yaml, every section checked and keys a newer fokker added filled from DEFAULTS;
    a damaged file (not UTF-8, empty, not YAML, not a mapping of the sections) is one clear UserError."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text: the run's config is damaged") from None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        raise UserError(f"{path} is not valid YAML{at}: the run's config is damaged") from None
    if config is None:
        raise UserError(f"{path} is empty: the run's config is damaged")
    if not isinstance(config, dict):
        raise UserError(f"{path} does not hold a config (a YAML mapping): the run's config is damaged")
    for section in DEFAULTS:
        if not isinstance(config.get(section), dict):
            raise UserError(f"{path}: section {section!r} is missing or not a mapping: the run's config is damaged")
    try:  # the process is kept as written: its keys depend on its type
        merged = {s: merge(DEFAULTS[s], config[s], f"{s}.") for s in DEFAULTS if s != "process"}
    except UserError as err:
        raise UserError(f"{path}: {err}") from None
    return {**config, **merged, "process": config["process"]}


def sample_options(config: dict, sampler: str) -> dict:
    """The run's sampler options (sample.options) when `sampler` is the run's own sampler, else none."""
    s = config["sample"]
    return dict(s.get("options") or {}) if sampler == s["sampler"] else {}
