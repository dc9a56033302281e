"""Raw configs: the YAML presets shipped in fokker/presets, deep-merged onto the defaults and overridden by
`section.key=value` strings, before they are parsed into a RunConfig (fokker.config.run)."""

from __future__ import annotations

import copy
import re
from importlib import resources
from typing import Any

import yaml

from fokker.config.sections import SECTIONS
from fokker.errors import UserError

# sections whose keys belong to the object they configure
FREE_FORM = {"process"} | {f"{s.section}.{key}" for s in SECTIONS.values() for key in s.free_form}
_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def defaults() -> dict:
    """The default config as nested dicts, every section in it (RunConfig.to_dict leaves out an unset latent
    section)."""
    from fokker.config.run import ORDER, RunConfig

    written = RunConfig().to_dict()
    return {name: written[name] if name in written else SECTIONS[name]().to_dict() for name in ORDER}


def preset_names() -> list[str]:
    """Names of the presets shipped with fokker."""
    return sorted(p.name[:-5] for p in resources.files("fokker.presets").iterdir() if p.name.endswith(".yaml"))


def merge(base: dict, update: dict, prefix: str = "") -> dict:
    """Deep-merge `update` into a copy of `base`. Unknown keys are errors, except inside the free-form
    sections (process, model.network, sample.options), which a new "type" replaces whole."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        path = f"{prefix}{key}"
        if path in FREE_FORM and isinstance(value, dict):
            same_type = value.get("type", (out[key] or {}).get("type")) == (out[key] or {}).get("type")
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
    """The defaults merged with the named preset, as nested dicts (parse them with fokker.config.validate)."""
    if name not in preset_names():
        raise UserError(f"unknown preset {name!r}; expected one of {preset_names()}")
    text = resources.files("fokker.presets").joinpath(f"{name}.yaml").read_text()
    return merge(defaults(), yaml.safe_load(text) or {})


def parse_value(item: str, raw: str) -> Any:
    """An override's value parsed as YAML (so 1e-3, true, [1, 2] and null work)."""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise UserError(f"bad value in override {item!r}: not valid YAML") from None
    if isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value):
        value = float(value)  # YAML 1.1 (PyYAML) reads 1e-3, without a dot, as a string
    return value


def apply_overrides(config: dict, overrides: list[str]) -> dict:
    """Apply `a.b.c=value` strings, each value parsed as YAML."""
    pairs = []
    for item in overrides:
        if "=" not in item:
            raise UserError(f"bad override {item!r}; expected section.key=value, e.g. train.lr=1e-3")
        path, raw = item.split("=", 1)
        pairs.append((path.strip(), parse_value(item, raw)))
    return set_values(config, pairs)


def set_values(config: dict, pairs: list[tuple[str, Any]]) -> dict:
    """Set (dotted path, value) pairs in a copy of a raw config, merged as a preset would be."""
    if not isinstance(config, dict):
        config = config.to_dict()
    for path, value in pairs:
        update: dict = {}
        node = update
        keys = path.split(".")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
        config = merge(config, update)
    return config
