"""The sampler registry: name -> sampler function, each with the shared signature

    sampler(denoiser, x, times, *, generator=None, callback=None, model_kwargs=None,
            progress=False, constraint=None, **options) -> (samples, info)

where x is the starting state at times[0] (1 for a whole grid) and times descends (to 0 for a whole
grid; a grid that ends above 0 ends on a state at that time, with no final denoising). info holds at least
"nfe" (network evaluations used) and "steps". A sampler is written as fn(denoiser, x, times, call, *,
**own options) and registered with `register`, which gathers the shared keyword arguments into
`call` (a `SamplerCall`: the shared arguments of one call) and gives the registered function the signature above.

An option that has no effect with the other options as given is an error, not a no-op: a sampler
registers, for each option that applies only in some configurations, a `Rule` saying when it applies,
and every call (through `fokker.sample` or directly) checks the options it was given explicitly."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import NamedTuple

import torch

from fokker.errors import UserError
from fokker.noise import Generators

SAMPLERS: dict[str, Callable] = {}
GRID = ("steps", "spacing")  # the time grid's options (of fokker.sample), which a Rule may also name


class Rule(NamedTuple):
    """When an option has an effect: `applies(options)` on the sampler's options resolved to their
    defaults; `condition` says it in words, `depends` names the options it looks at (for the message)."""

    condition: str
    applies: Callable[[dict], bool]
    depends: tuple[str, ...]


def when(option: str, *values: object) -> Rule:
    """The Rule "`option` is one of `values`"."""
    shown = " or ".join(str(v) for v in values)
    return Rule(f"{option} is {shown}", lambda o: o[option] in values, (option,))


RULES: dict[str, dict[str, Rule]] = {}


class SamplerCall(NamedTuple):
    """What every sampler takes besides its own options, filled by the registry from the shared keyword
    arguments: the generator(s) of its noise, callback(k, x, x0_hat) after each step k, the network's extra
    keyword arguments (e.g. {"y": labels}), whether to show a progress bar, and a constraint: after each step
    that lands at a time s > 0, and after each Langevin update at a noise level s (annealed Langevin, the
    corrector of pc), x = constraint(x, s) (e.g. inpainting's replacement of the known part, fokker.inpaint).
    A step onto t = 0 is not constrained: there x is the data (x0_hat), whose known part the caller pastes in.
    A sampler that cannot apply it after its steps (an adaptive solver) refuses it."""

    generator: Generators = None
    callback: Callable | None = None
    model_kwargs: dict = {}  # noqa: RUF012  (never mutated)
    progress: bool = False
    constraint: Callable[[torch.Tensor, float], torch.Tensor] | None = None


def _public_signature(fn: Callable) -> inspect.Signature:
    """fn's signature with its `call` argument replaced by the shared keyword arguments it stands for."""
    own = inspect.signature(fn)
    params = [p for p in own.parameters.values() if p.name != "call"]
    kind = inspect.Parameter.KEYWORD_ONLY
    shared = [inspect.Parameter(k, kind, default=False if k == "progress" else None) for k in SamplerCall._fields]
    return inspect.Signature([*params, *shared], return_annotation=own.return_annotation)


def register(
    name: str, only_when: dict[str, Rule] | None = None, shifts_mean: bool = False
) -> Callable[[Callable], Callable]:
    """Register a sampler fn(denoiser, x, times, call, **options) under `name` (the name `fokker.sample` and the
    CLI use), callable with the shared signature of the module docstring. `only_when` maps each option that
    has an effect only in some configurations to its Rule; the registered function refuses such an option,
    given explicitly, where it has none. An option given as None is not given: it takes its default.
    `shifts_mean`: the sampler applies a guide's shift of the mean of its Gaussian steps (Denoiser.mean_shift);
    the others refuse such a guide."""

    def add(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def checked(denoiser, x, times, **options):
            if denoiser.shifts_mean and not shifts_mean:
                raise UserError(
                    f"sampler {name!r} cannot take the mean-shift form of classifier guidance (Dhariwal & Nichol "
                    "2021, Algorithm 1: ancestral sampling only); use sampler 'ddpm', or the score form"
                )
            options = {k: v for k, v in options.items() if v is not None}
            shared = {k: options.pop(k) for k in SamplerCall._fields if k in options}
            check_options(name, options)
            call = SamplerCall(**{**shared, "model_kwargs": shared.get("model_kwargs") or {}})
            return fn(denoiser, x, times, call, **options)

        checked.__signature__ = _public_signature(fn)
        RULES[name] = dict(only_when or {})
        SAMPLERS[name] = checked
        return checked

    return add


def get_sampler(name: str) -> Callable:
    """The sampler registered as `name`, or a UserError listing the names."""
    if name not in SAMPLERS:
        raise UserError(f"unknown sampler {name!r}; expected one of {sorted(SAMPLERS)}")
    return SAMPLERS[name]


def sampler_options(name: str) -> dict[str, object]:
    """The sampler's own keyword options and their defaults."""
    params = inspect.signature(get_sampler(name)).parameters.values()
    return {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY and p.name not in SamplerCall._fields}


def ineffective(name: str, options: dict) -> dict[str, str]:
    """The options in `options` (those not None) that have no effect on sampler `name` with the others as
    given, each with the reason: the condition under which it would, and the values it depends on."""
    rules = RULES.get(name, {})
    values = {**sampler_options(name), **{k: v for k, v in options.items() if v is not None}}
    out = {}
    for key, value in options.items():
        rule = rules.get(key)
        if value is not None and rule is not None and not rule.applies(values):
            here = ", ".join(f"{d}={values[d]!r}" for d in rule.depends)
            out[key] = f"it applies only when {rule.condition} (here {here})"
    return out


def check_options(name: str, options: dict, grid: dict | None = None) -> None:
    """Raise a UserError naming any option the sampler does not take, or one given where it has no effect;
    `grid` holds the time grid's "steps" / "spacing" where the caller chose them explicitly."""
    known = sampler_options(name)
    for key in options:
        if key not in known:
            raise UserError(f"sampler {name!r} has no option {key!r}; its options: {sorted(known) or 'none'}")
    chosen = {k: v for k, v in (grid or {}).items() if k in GRID}
    for key, reason in ineffective(name, {**options, **chosen}).items():
        raise UserError(f"sampler {name!r}: option {key!r} has no effect here; {reason}")


def uses_grid(name: str, options: dict) -> bool:
    """Whether sampler `name` with `options` steps on the time grid (an adaptive solver does not)."""
    return "steps" not in ineffective(name, {**options, "steps": 1})
