"""Every contact of the command line with the run config (fokker.config): which flag sets which config
field (one table per command), the (dotted path, value) overrides the flags make, and the config they
give. A flag's value is set as it is, never written into a YAML string and parsed back; the KEY=VALUE
overrides a user types are YAML, as fokker.config.apply_overrides reads them."""

from __future__ import annotations

import argparse
from typing import Any

from fokker.config import RunConfig, apply_overrides, load_preset, sample_options, set_values, to_yaml, validate

# `fokker train`: flag (its argparse dest) -> the config field it sets
TRAIN_FIELDS = {
    "data": "data.name",
    "seed": "train.seed",
    "batch_size": "train.batch_size",
    "process": "process.type",  # a new type replaces the section whole; the preset's own type keeps its settings
    "loss": "train.loss",
    "autoencoder": "latent.autoencoder",
}
# `fokker train`: the budget flags (given to fokker.train.train as its budget) -> their config fields
BUDGET_FIELDS = {"steps": "train.steps", "minutes": "train.minutes"}
# `fokker sample` / `fokker eval`: flag -> the field of the run's config it stands in for when not given
SAMPLE_FIELDS = {"sampler": "sample.sampler", "steps": "sample.steps", "spacing": "sample.spacing"}

Override = tuple[str, Any]


def flag_overrides(args: argparse.Namespace, table: dict[str, str]) -> list[Override]:
    """(config path, value) of each flag of `table` that was given (not None, not empty)."""
    values = ((path, getattr(args, dest)) for dest, path in table.items())
    return [(path, value) for path, value in values if value is not None and value != ""]


def lookup(config: RunConfig, path: str) -> Any:
    """The value of the field at a dotted path of a typed config, e.g. "sample.steps"."""
    node: Any = config
    for key in path.split("."):
        node = getattr(node, key)
    return node


def train_config(args: argparse.Namespace) -> dict:
    """The config `fokker train` asks for: the preset (toy, or images with --data), then the flags of
    TRAIN_FIELDS, then the KEY=VALUE overrides; not yet validated."""
    config = load_preset(args.preset or ("images" if args.data else "toy"))
    config = set_values(config, flag_overrides(args, TRAIN_FIELDS))
    return apply_overrides(config, args.overrides)


def changes_config(args: argparse.Namespace) -> bool:
    """Whether `fokker train` was given a flag that changes the config (a --resume may only change the budget);
    --seed 0 counts."""
    flags = (args.overrides, args.preset, *(getattr(args, dest) for dest in TRAIN_FIELDS))
    return any(value is not None and value != [] for value in flags)


def budget(args: argparse.Namespace) -> dict:
    """fokker.train.train's budget: --steps or --minutes alone is the whole budget (the other one unset);
    both together: whichever comes first; neither: the config's."""
    given = {k: v for k in BUDGET_FIELDS if (v := getattr(args, k)) is not None}
    if len(given) == 1:
        given = {k: given.get(k) for k in BUDGET_FIELDS}
    return given


def dry_run(config: dict, budget: dict) -> str:
    """The resolved config of `fokker train --dry-run` (with its budget), validated, as YAML."""
    return to_yaml(validate(set_values(config, [(BUDGET_FIELDS[k], v) for k, v in budget.items()])))


def sample_settings(args: argparse.Namespace, config: RunConfig) -> tuple[str, int, str, dict]:
    """(sampler, steps, spacing, options) of `fokker sample`: each flag of SAMPLE_FIELDS, or when not given
    the run's sample section; the options are the run's sample.options for that sampler, overridden by
    the sampler flags given."""
    from fokker.cli.flags import sampler_options

    chosen = {}
    for dest, path in SAMPLE_FIELDS.items():
        value = getattr(args, dest)
        chosen[dest] = lookup(config, path) if value is None else value
    sampler = chosen["sampler"]
    options = {**sample_options(config, sampler), **sampler_options(args)}
    return sampler, chosen["steps"], chosen["spacing"], options
