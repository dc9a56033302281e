"""A run's whole config, parsed once into typed sections (fokker.config.sections) and checked across
sections: the objective against the model and the process, the sampler against the process, labels."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fokker.config.sections import (
    SECTIONS,
    DataSection,
    LatentSection,
    ModelSection,
    SampleSection,
    Section,
    TrainSection,
    deprecated_mapping,
    require,
)
from fokker.errors import UserError

ORDER = ("data", "latent", "process", "model", "train", "sample")  # the sections, as a config file lists them


def default_process() -> dict:
    """DDPM's process: 1000 steps of the linear schedule (Ho et al. 2020, sec. 4)."""
    return {"type": "vp", "T": 1000, "schedule": "linear"}


@dataclass
class RunConfig:
    """The config of a run: typed sections, and the free-form `process` (fokker.processes.process_from_config)."""

    data: DataSection = field(default_factory=DataSection)
    latent: LatentSection = field(default_factory=LatentSection)
    process: dict = field(default_factory=default_process)
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainSection = field(default_factory=TrainSection)
    sample: SampleSection = field(default_factory=SampleSection)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], where: str = "") -> RunConfig:
        """The typed config of nested mappings (a preset with overrides, a run's config.yaml): keys left out
        take their defaults, an unknown key is a UserError; the process is kept as written."""
        from fokker.config.presets import defaults as all_defaults
        from fokker.config.presets import merge

        defaults = all_defaults()
        unknown = sorted(set(raw) - set(ORDER))
        if unknown:
            raise UserError(f"{where}unknown config section {unknown[0]!r}; known sections: {list(ORDER)}")
        sections = {}
        for name, kind in SECTIONS.items():
            values = merge(defaults[name], dict(raw.get(name) or {}), f"{name}.")
            sections[name] = kind(**values)
        if sections["sample"].options is None:
            sections["sample"].options = {}
        return cls(process=dict(raw.get("process") or defaults["process"]), **sections)

    def __getitem__(self, key: str) -> Any:  # deprecated: see Section.__getitem__
        deprecated_mapping(f"[{key!r}]", key)
        return getattr(self, key)

    def keys(self) -> tuple[str, ...]:
        """The sections, in their natural order."""
        return ORDER

    def to_dict(self) -> dict:
        """The config as plain nested data, sections in their natural order; the latent section only on a
        latent diffusion model (it is all unset on any other)."""
        return {
            name: (dict(self.process) if name == "process" else getattr(self, name).to_dict())
            for name in ORDER
            if name != "latent" or self.is_latent
        }

    @property
    def is_latent(self) -> bool:
        """Whether the model diffuses an autoencoder's latents (latent diffusion: the latent section)."""
        return self.latent.autoencoder is not None

    @property
    def model_shape(self) -> list[int] | None:
        """The shape of one example the model draws: the latent shape of a latent diffusion model, else the
        data's."""
        return self.latent.shape if self.is_latent else self.data.shape

    @property
    def model_levels(self) -> int | None:
        """The number of levels of what the model draws (its discrete decoder and dequantization:
        fokker.data.Dataset.levels): the data's, None for continuous latents."""
        return None if self.is_latent else self.data.levels

    def replace(self, section: str, **values: Any) -> RunConfig:
        """A copy with some keys of one section set."""
        return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **values)})

    def validate(self) -> RunConfig:
        """Check the values a user is most likely to get wrong, with one clear message each; returns self."""
        for path, value in _numbers(self.to_dict()):
            if not math.isfinite(value):
                raise UserError(f"bad value for {path}: {value}; expected a finite number")
        self.train.validate()
        self.model.validate()
        self.latent.validate()
        self._validate_latent()
        self._validate_task()
        self._validate_objective()
        if self.model.task == "denoiser":  # the others draw no samples; a classifier's labels are its targets
            from fokker.labels import check_conditional

            self.sample.validate_on(self.process)
            check_conditional(self)
        return self

    def _validate_task(self) -> None:
        """The loss trains what the network is (fokker.losses.Loss.task: a denoiser, a classifier or an
        autoencoder), and a classifier's or an autoencoder's config sets nothing that only a diffusion model
        reads (fokker.classifier.check_classifier, fokker.autoencoder.check_autoencoder)."""
        from fokker.losses import LOSS_TYPES, loss_names

        task, loss = self.model.task, LOSS_TYPES[self.train.loss]
        if loss.task != task:
            fitting = " or ".join(loss_names(task=task))
            raise UserError(
                f"train.loss {loss.name} trains {_a(loss.task)}, but model.network.type "
                f"{self.model.network.get('type')} is {_a(task)} network: use train.loss {fitting}"
            )
        if task == "classifier":
            from fokker.classifier.config import check_classifier

            check_classifier(self)
        elif task == "autoencoder":
            from fokker.autoencoder.config import check_autoencoder

            check_autoencoder(self)

    def _validate_latent(self) -> None:
        """Latent diffusion trains a diffusion model (or a noisy classifier, to guide one) on unbounded latents,
        not an autoencoder; a clip to the data's range would cut them."""
        if not self.is_latent:
            return
        if self.model.task == "autoencoder":
            raise UserError(
                f"latent.autoencoder trains a diffusion model or a classifier on an autoencoder's latents; "
                f"model.network.type {self.model.network.get('type')} is an autoencoder itself"
            )
        if self.model.clip is not None:
            raise UserError(
                f"model.clip {self.model.clip} clamps x0 to the data's range, but a latent diffusion model "
                "predicts latents, which have no fixed range: leave model.clip unset"
            )

    def _validate_objective(self) -> None:
        """The loss and its time sampler against the model's variance and the process."""
        from fokker.losses import loss_names

        bound = loss_names(trains_variance=True)
        loss, variance, T = self.train.loss, self.model.variance, self.process.get("T")
        self._validate_parameterisation()
        if loss == "hybrid" and variance != "learned":
            raise UserError("train.loss hybrid trains a learned variance: set model.variance=learned")
        if variance == "learned" and loss not in bound:
            raise UserError(
                f"model.variance learned needs a loss that trains the variance ({' or '.join(bound)}); "
                f"train.loss {loss} does not train v, the network's variance output: use model.variance=fixed"
            )
        if T is not None:
            require(T, int, "process.T", lambda v: v >= 1, "a positive integer, or null for continuous time")
        if (loss in bound or self.train.time_sampler == "importance") and T is None:
            raise UserError(f"train.loss {loss} / time_sampler {self.train.time_sampler} need a discrete process.T")
        if loss in bound:
            from fokker.processes import process_from_config
            from fokker.vlb import check_bound_grid

            others = ", ".join(loss_names(task="denoiser", trains_variance=False))
            check_bound_grid(process_from_config(self.process), f"train.loss {loss}", f"use {others}")

    def _validate_parameterisation(self) -> None:
        """A distillation loss trains the parameterisation it is written for (fokker.distill.losses)."""
        from fokker.losses import LOSS_TYPES

        loss = LOSS_TYPES[self.train.loss]
        if not loss.takes_loss_options or loss.task != "denoiser":
            return
        want = "consistency" if loss.consistency else "diffusion"
        if self.model.parameterisation != want:
            raise UserError(f"train.loss {self.train.loss} trains a {want} model: set model.parameterisation {want}")


def _a(noun: str) -> str:
    """The noun with its indefinite article."""
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


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


def as_run_config(config: Mapping[str, Any] | RunConfig) -> RunConfig:
    """A RunConfig as it is, or the typed config of raw nested mappings (unchecked: see `validate`)."""
    return config if isinstance(config, RunConfig) else RunConfig.from_dict(config)


def validate(config: Mapping[str, Any] | RunConfig) -> RunConfig:
    """The typed, checked config of a raw one (or of a RunConfig): the one place a config is parsed."""
    return as_run_config(config).validate()


def to_yaml(config: Mapping[str, Any] | RunConfig) -> str:
    """The config as YAML, keys in their natural order."""
    data = config.to_dict() if isinstance(config, RunConfig) else dict(config)
    return yaml.safe_dump(data, sort_keys=False)


def read_run_config(path: Path) -> RunConfig:
    """A run's config.yaml as a RunConfig, keys a newer fokker added filled from the defaults; a damaged
    file (not UTF-8, empty, not YAML, not a mapping of the sections) is one clear UserError."""
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
    for section in ORDER:
        if section == "latent" and "latent" not in config:  # only a latent diffusion model's config has one
            continue
        if not isinstance(config.get(section), dict):
            raise UserError(f"{path}: section {section!r} is missing or not a mapping: the run's config is damaged")
    try:
        return RunConfig.from_dict(config)
    except UserError as err:
        raise UserError(f"{path}: {err}") from None


def sample_options(config: RunConfig, sampler: str) -> dict:
    """The run's sampler options (sample.options) when `sampler` is the run's own sampler, else none."""
    return config.sample.options_for(sampler)


__all__ = ["ORDER", "RunConfig", "Section", "as_run_config", "read_run_config", "sample_options", "to_yaml", "validate"]
