"""The typed sections of a run's config. Each is a dataclass whose fields, defaults and `validate` are
the one description of its keys; `process`, `model.network` and `sample.options` stay free-form
mappings, whose keys belong to the object they configure (a process, a network, a sampler)."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar

from fokker.errors import UserError

MIXED_PRECISION = ("no", "fp16", "bf16")  # accelerate's mixed_precision values
PARAMETERISATIONS = ("diffusion", "consistency")  # what model.parameterisation may be


def require(value: Any, kind: type | tuple[type, ...], name: str, check: Any = None, expected: str = "") -> None:
    """Raise a UserError naming `name` when `value` is not of `kind` or fails `check`."""
    ok = isinstance(value, kind) and not isinstance(value, bool) if kind is not bool else isinstance(value, bool)
    if not ok or (check is not None and not check(value)):
        raise UserError(f"bad value for {name}: {value!r}; expected {expected or getattr(kind, '__name__', kind)}")


@dataclass
class Section:
    """A config section: its fields are its keys."""

    section: ClassVar[str] = ""
    free_form: ClassVar[tuple[str, ...]] = ()  # keys that hold a mapping of another object's options

    @classmethod
    def keys(cls) -> list[str]:
        """The section's keys, in their natural order (with the deprecated __getitem__, dict(section) works)."""
        return [f.name for f in dataclasses.fields(cls)]

    def to_dict(self) -> dict:
        """The section as plain data (for YAML and the weights' metadata)."""
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """Check the section's own values (checks across sections live in RunConfig.validate)."""

    # deprecated: a loaded config was nested dicts before fokker 0.2 (fokker.config.deprecated_mapping)
    def __getitem__(self, key: str) -> Any:
        deprecated_mapping(f"{self.section}[{key!r}]", f"{self.section}.{key}")
        return getattr(self, key)

    def __setitem__(self, key: str, value: Any) -> None:
        deprecated_mapping(f"{self.section}[{key!r}] = ...", f"{self.section}.{key} = ...")
        setattr(self, key, value)

    def get(self, key: str, default: Any = None) -> Any:
        deprecated_mapping(f"{self.section}.get({key!r})", f"{self.section}.{key}")
        return getattr(self, key, default)


def deprecated_mapping(old: str, new: str) -> None:
    """Warn that config[...] mapping access is deprecated in favour of the typed fields."""
    warnings.warn(
        f"config.{old} is deprecated: the config is typed (fokker.config.RunConfig); use config.{new}",
        DeprecationWarning,
        stacklevel=3,
    )


@dataclass
class DataSection(Section):
    """Which data set; shape, classes and levels are what the data decides (fokker.model.resolve_config)."""

    section: ClassVar[str] = "data"
    name: str = "moons"
    image_size: int | None = None
    channels: int | None = None
    num_points: int = 20000
    shape: list[int] | None = None
    num_classes: int | None = None
    levels: int | None = None


@dataclass
class LatentSection(Section):
    """Latent diffusion (Rombach et al. 2022): the model diffuses z = scale * E(x), the latents of a frozen
    autoencoder fokker trained, and its samples are decoded as D(z / scale) (fokker.autoencoder.space).
    `autoencoder` is the autoencoder's run folder as given (`fokker train --autoencoder RUN`); the rest is
    filled from it when the run starts: the scale (1 / std of its training latents, measured, never a
    constant), the latent shape and the autoencoder's network, whose weights the run keeps
    (RUN/autoencoder.safetensors, and inside RUN/model.safetensors)."""

    section: ClassVar[str] = "latent"
    free_form: ClassVar[tuple[str, ...]] = ("network",)
    autoencoder: str | None = None
    scale: float | None = None
    shape: list[int] | None = None
    network: dict | None = None

    def validate(self) -> None:
        if self.autoencoder is None:
            given = [k for k in ("scale", "shape", "network") if getattr(self, k) is not None]
            if given:
                raise UserError(
                    f"latent.{given[0]} is filled from the autoencoder: give latent.autoencoder "
                    "(fokker train --autoencoder RUN), or leave the latent section out"
                )
            return
        require(self.autoencoder, str, "latent.autoencoder", None, "the path of an autoencoder's run folder")
        if self.scale is not None:
            require(self.scale, (int, float), "latent.scale", lambda v: v > 0, "a positive number")


@dataclass
class ModelSection(Section):
    """What the network predicts and how it is conditioned (fokker.denoiser.Denoiser), and the network."""

    section: ClassVar[str] = "model"
    free_form: ClassVar[tuple[str, ...]] = ("network",)
    prediction: str = "eps"
    conditioning: str = "time"
    variance: str = "fixed"
    conditional: bool = False
    clip: list[float] | None = None
    parameterisation: str = "diffusion"  # or "consistency": f = c_skip x + c_out F (fokker.distill)
    sigma_data: float | None = None  # a consistency model's sigma_data in c_skip (default 0.5)
    network: dict = field(default_factory=lambda: {"type": "mlp"})

    @property
    def task(self) -> str:
        """What the model is, from its network's type (fokker.nets.network_task): a "denoiser" (every key
        here configures its Denoiser), a noise-conditional "classifier" (fokker.classifier) or an
        "autoencoder" (fokker.autoencoder)."""
        from fokker.nets import network_task

        return network_task(self.network.get("type"))

    def validate(self) -> None:
        from fokker.denoiser import VARIANCES

        if self.variance not in VARIANCES:
            raise UserError(f"bad value for model.variance: {self.variance!r}; expected {' or '.join(VARIANCES)}")
        if not isinstance(self.conditional, bool):
            raise UserError(f"bad value for model.conditional: {self.conditional!r}; expected true or false")
        self._validate_parameterisation()

    def _validate_parameterisation(self) -> None:
        from fokker.distill.consistency_model import INNER_PREDICTIONS

        if self.parameterisation not in PARAMETERISATIONS:
            expected = " or ".join(PARAMETERISATIONS)
            raise UserError(f"bad value for model.parameterisation: {self.parameterisation!r}; expected {expected}")
        if self.parameterisation == "diffusion":
            if self.sigma_data is not None:
                raise UserError("model.sigma_data applies only to model.parameterisation consistency")
            return
        if self.sigma_data is not None:
            require(self.sigma_data, (int, float), "model.sigma_data", lambda v: v > 0, "a positive number")
        if self.prediction not in INNER_PREDICTIONS or self.variance != "fixed":
            raise UserError(
                f"a consistency model's network predicts {', '.join(INNER_PREDICTIONS)} with a fixed variance "
                f"(here model.prediction {self.prediction}, model.variance {self.variance})"
            )


@dataclass
class TrainSection(Section):
    """The optimiser, the objective, the budget and the run folder's rhythm (fokker.train)."""

    section: ClassVar[str] = "train"
    free_form: ClassVar[tuple[str, ...]] = ("loss_options",)
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup: int = 100
    grad_clip: float | None = 1.0  # the largest gradient norm, or None: no clipping
    ema_decay: float = 0.999
    loss: str = "simple"
    weighting: str = "sigma2"
    hybrid_weight: float = 0.001
    p_uncond: float | None = None
    time_sampler: str = "uniform"
    loss_target: str | None = None
    loss_options: dict = field(default_factory=dict)  # the fields of a distillation loss (fokker.distill.losses)
    init: str | None = None  # a run folder (or .safetensors) whose weights a fresh run starts from
    steps: int | None = 2000
    minutes: float | None = None
    seed: int = 0
    log_every: int = 50
    sample_every: int = 1000
    checkpoint_every: int = 1000
    keep_last: int = 2
    mixed_precision: str = "no"

    def validate(self) -> None:
        self._validate_optimizer()
        self._validate_budget()
        self._validate_objective()

    def _validate_optimizer(self) -> None:
        require(self.batch_size, int, "train.batch_size", lambda v: v > 0, "a positive integer")
        require(self.lr, (int, float), "train.lr", lambda v: v > 0, "a positive number")
        require(self.weight_decay, (int, float), "train.weight_decay", lambda v: v >= 0, "a non-negative number")
        if self.grad_clip is not None:
            positive = "a positive number, or null for no clipping"
            require(self.grad_clip, (int, float), "train.grad_clip", lambda v: v > 0, positive)
        require(self.warmup, int, "train.warmup", lambda v: v >= 0, "a non-negative integer")
        require(self.ema_decay, (int, float), "train.ema_decay", lambda v: 0 <= v < 1, "a number in [0, 1)")
        if self.mixed_precision not in MIXED_PRECISION:
            raise UserError(f"bad value for train.mixed_precision: {self.mixed_precision!r}; expected no, fp16 or bf16")

    def _validate_budget(self) -> None:
        require(self.keep_last, int, "train.keep_last", lambda v: v >= 1, "an integer >= 1")
        if self.steps is None and self.minutes is None:
            raise UserError("give a training budget: train.steps or train.minutes (or --steps / --minutes)")
        if self.steps is not None:
            require(self.steps, int, "train.steps", lambda v: v > 0, "a positive integer")
        if self.minutes is not None:
            require(self.minutes, (int, float), "train.minutes", lambda v: v > 0, "a positive number")
        for key in ("log_every", "sample_every", "checkpoint_every"):
            require(getattr(self, key), int, f"train.{key}", lambda v: v > 0, "a positive integer")

    def _validate_objective(self) -> None:
        from fokker.losses import LOSS_TYPES, check_weighting, loss_names
        from fokker.timesteps import TIME_SAMPLERS

        if self.loss not in LOSS_TYPES:
            raise UserError(f"bad value for train.loss: {self.loss!r}; expected one of {', '.join(loss_names())}")
        check_weighting(self.weighting)
        if self.time_sampler not in TIME_SAMPLERS:
            raise UserError(f"bad value for train.time_sampler: {self.time_sampler!r}; expected one of {TIME_SAMPLERS}")
        self._validate_loss_options()

    def _validate_loss_options(self) -> None:
        from fokker.losses import LOSS_TYPES, loss_from_section, loss_names

        if not isinstance(self.loss_options, dict):
            raise UserError(f"bad value for train.loss_options: {self.loss_options!r}; expected a mapping")
        if not LOSS_TYPES[self.loss].takes_loss_options:
            if self.loss_options:
                raise UserError(
                    f"train.loss_options apply only to train.loss {' or '.join(loss_names(takes_loss_options=True))}"
                )
            return
        defaults = TrainSection()
        denoiser = LOSS_TYPES[self.loss].task == "denoiser"
        draws = "it draws its own times and weights" if denoiser else "it draws no times"
        for key in ("weighting", "loss_target", "hybrid_weight", "time_sampler"):
            if getattr(self, key) != getattr(defaults, key):
                raise UserError(
                    f"train.{key} has no effect with train.loss {self.loss} ({draws}; "
                    "its options are train.loss_options)"
                )
        loss_from_section(self)


@dataclass
class SampleSection(Section):
    """The sampler of the pictures drawn during training, and the default of `fokker sample` / `eval`."""

    section: ClassVar[str] = "sample"
    free_form: ClassVar[tuple[str, ...]] = ("options",)
    sampler: str = "ddim"
    steps: int = 50
    num: int = 64
    spacing: str = "uniform"
    options: dict = field(default_factory=dict)

    def validate_on(self, process_config: dict) -> None:
        """The sampler, its options, and the time grid of its steps and spacing on the run's process."""
        from fokker.processes import process_from_config
        from fokker.samplers import check_options, get_sampler, time_grid

        require(self.num, int, "sample.num", lambda v: v > 0, "a positive integer")
        require(self.steps, int, "sample.steps", None, "an integer")
        if not isinstance(self.options, dict):
            raise UserError(
                f"bad value for sample.options: {self.options!r}; expected a mapping of the sampler's options"
            )
        process = process_from_config(process_config)
        for key, check in (
            ("sampler", lambda: get_sampler(self.sampler)),
            ("options", lambda: check_options(self.sampler, self.options)),
            ("spacing", lambda: time_grid(process, 1, self.spacing)),
            ("steps", lambda: time_grid(process, self.steps, self.spacing)),
        ):
            try:
                check()
            except UserError as err:
                raise UserError(f"sample.{key}: {err}") from None

    def options_for(self, sampler: str) -> dict:
        """The section's sampler options when `sampler` is its own sampler, else none."""
        return dict(self.options or {}) if sampler == self.sampler else {}


SECTIONS: dict[str, type[Section]] = {
    s.section: s for s in (DataSection, LatentSection, ModelSection, TrainSection, SampleSection)
}
