"""Negative log-likelihood per example, in nats and bits per dimension, two ways on the same model:

- "vlb": the variational bound (fokker.vlb), an upper bound on -log p(x); for data on `levels` values the
  discretized decoder makes it a bound on the probability of the discrete data itself.
- "ode": the exact log-density of the probability-flow ODE's model (Song et al. 2021, eq. 39; Chen et al.
  2018): log p_eps(x) = log p_1(x(1)) + int_eps^1 div f(x(t), t) dt, solved adaptively for the augmented
  state [x, int div f], div f exact (small D) or by Hutchinson's estimator with one probe per datum
  fixed over the solve (Grathwohl et al. 2019). The solve starts at t_eps > 0 (sigma(0) = 0 makes the
  drift singular), 1 / T for a discrete process.

Bits per dimension. Data on `levels` values in [-1, 1] (8-bit: levels = 256, spacing 2/255) are
discrete, so a density must be turned into probabilities. The ODE uses uniform dequantization: x + u,
u ~ U(-1/255, 1/255)^D, filling each value's bin of width delta = 2/255; then -log P(x) <= E_u[-log p(x + u)]
- D log delta, so

    bits/dim = nll / (D ln 2) + log2(1 / delta) = nll / (D ln 2) + log2((levels - 1) / 2),

an offset of log2(127.5) = 6.994 bits for 8-bit data in [-1, 1] (it would be 8 for data in [0, 1]
with delta = 1/256). The bound's discretized decoder already gives probabilities: no offset. For
continuous data (levels None) bits/dim is nll / (D ln 2), a differential entropy rate."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from fokker.denoiser import Denoiser
from fokker.divergence import MAX_EXACT_DIM, check_probe, divergence, draw_probe
from fokker.errors import UserError
from fokker.flow import Drift, solve
from fokker.noise import Generators, rand
from fokker.vlb import vlb

METHODS = ("vlb", "ode")
DIVERGENCES = ("auto", "exact", "hutchinson")
EXACT_AUTO_DIM = 16  # "auto" takes the exact divergence up to this dimension


@dataclass
class Likelihood:
    """Per-example negative log-likelihoods (nats and bits/dim), network evaluations per example, and
    what the method reports besides (the bound's terms, the ODE's latent z and step counts)."""

    nll: torch.Tensor
    bpd: torch.Tensor
    nfe: int
    method: str
    info: dict = field(default_factory=dict)

    def mean_bpd(self) -> tuple[float, float]:
        """(mean bits/dim, its standard error over the examples)."""
        n = self.bpd.numel()
        se = self.bpd.std().item() / math.sqrt(n) if n > 1 else float("nan")
        return self.bpd.mean().item(), se


def bits_offset(levels: int | None, dequantized: bool) -> float:
    """log2((levels - 1) / 2) for a density on dequantized `levels`-level data in [-1, 1], else 0."""
    return math.log2((levels - 1) / 2) if dequantized and levels is not None else 0.0


class AugmentedDrift:
    """d/dt [x, int div f] = [f(x, t), div f(x, t)] for torchdiffeq, f the probability-flow drift."""

    def __init__(self, drift: Drift, probe: torch.Tensor | None):
        self.drift, self.probe = drift, probe

    def __call__(self, t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            x = state[0].detach().requires_grad_(True)
            f = self.drift(t, x)
            div = divergence(f, x, self.probe)
        return f.detach(), div.detach().to(state[1].dtype)

    def callback_accept_step(self, t0, y0, dt) -> None:
        self.drift.callback_accept_step(t0, y0, dt)

    def callback_reject_step(self, t0, y0, dt) -> None:
        self.drift.callback_reject_step(t0, y0, dt)


def _probe(
    x: torch.Tensor, dim: int, divergence_kind: str, probe: str | None, generator: Generators
) -> torch.Tensor | None:
    """The Hutchinson probe for each datum (Rademacher, the default, or Gaussian), or None for the exact
    divergence, where a probe given explicitly has no effect and is refused."""
    if divergence_kind not in DIVERGENCES:
        raise UserError(f"unknown divergence {divergence_kind!r}; expected one of {DIVERGENCES}")
    if probe is not None:
        check_probe(probe)
    if divergence_kind == "auto":
        divergence_kind = "exact" if dim <= EXACT_AUTO_DIM else "hutchinson"
    if divergence_kind == "exact":
        if dim > MAX_EXACT_DIM:
            raise UserError(f"exact divergence: D = {dim} backward passes, over {MAX_EXACT_DIM}; use hutchinson")
        if probe is not None:
            raise UserError(
                f"probe {probe!r} has no effect with the exact divergence (D = {dim}; auto is exact up to "
                f"D = {EXACT_AUTO_DIM}); a probe applies only to divergence hutchinson"
            )
        return None
    return draw_probe(x, probe, generator)


def ode_nll(
    denoiser: Denoiser,
    x: torch.Tensor,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    divergence: str = "auto",
    probe: str | None = None,
    t_eps: float | None = None,
    generator: Generators = None,
    model_kwargs: dict | None = None,
) -> dict:
    """-log p_eps(x) per example in nats by the probability-flow ODE from t_eps to 1 (see the module):
    {"nll", "z" (x at t = 1), "nfe", "accepted", "rejected", "t_eps"}. `divergence` "auto" is exact up to
    D = 16, Hutchinson above; `probe` (Hutchinson's: rademacher, the default, or gaussian) only with it."""
    if rtol <= 0 or atol <= 0:
        raise UserError(f"rtol and atol must be positive, got {rtol} and {atol}")
    process = denoiser.process
    t_eps = process.first_time if t_eps is None else float(t_eps)
    if not 0 < t_eps < 1:
        raise UserError(f"t_eps must be in (0, 1), got {t_eps}")
    z = _probe(x, x[0].numel(), divergence, probe, generator)
    drift, nfe0 = Drift(denoiser, model_kwargs or {}), denoiser.nfe
    start = (x, torch.zeros(x.shape[0], dtype=x.dtype, device=x.device))
    x1, integral = solve(AugmentedDrift(drift, z), start, t_eps, 1.0, rtol, atol)
    logp = process.prior_logp(x1) + integral.double()
    info = {"z": x1, "nfe": denoiser.nfe - nfe0, "accepted": drift.accepted, "rejected": drift.rejected}
    return {"nll": -logp, **info, "t_eps": t_eps}


def method_options(method: str) -> dict[str, object]:
    """The options of likelihood method "vlb" (fokker.vlb.vlb) or "ode" (`ode_nll`) and their defaults."""
    if method not in METHODS:
        raise UserError(f"unknown likelihood method {method!r}; expected one of {METHODS}")
    params = inspect.signature(vlb if method == "vlb" else ode_nll).parameters.values()
    given_by_likelihood = {"levels", "generator"}
    return {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY and p.name not in given_by_likelihood}


def check_method_options(method: str, options: dict, spell: Callable[[str], str] = repr) -> None:
    """A UserError for an option (given, not None) that the likelihood method does not take: the other
    method's options have no effect on it. `spell` writes an option's name (the CLI: as its flag)."""
    known = method_options(method)
    for key, value in options.items():
        if value is not None and key not in known:
            other = next((m for m in METHODS if m != method and key in method_options(m)), None)
            where = f"it applies only to method {other}" if other else "no method takes it"
            shown = ", ".join(spell(k) for k in sorted(set(known) - {"model_kwargs", "progress"}))
            raise UserError(f"likelihood method {method} has no option {spell(key)} ({where}); its options: {shown}")


def likelihood(
    denoiser: Denoiser,
    x: torch.Tensor,
    method: str = "vlb",
    *,
    levels: int | None = None,
    generator: Generators = None,
    **options,
) -> Likelihood:
    """-log p(x) of each example by the variational bound ("vlb", options of fokker.vlb.vlb: steps,
    spacing, t_samples, variance) or the probability-flow ODE ("ode", options of `ode_nll`: rtol, atol,
    divergence, probe, t_eps). `levels`: the number of values the data takes in [-1, 1] (256 for 8-bit
    images), None for continuous data; with levels, "ode" dequantizes uniformly and adds the bits/dim
    offset of the module docstring."""
    check_method_options(method, options)
    options = {k: v for k, v in options.items() if v is not None}
    if levels is not None and levels < 2:
        raise UserError(f"levels must be at least 2 (256 for 8-bit data), got {levels}")
    dim = x[0].numel()
    if method == "vlb":
        info = vlb(denoiser, x, levels=levels, generator=generator, **options)
        offset = 0.0
    else:
        if levels is not None:  # uniform dequantization over each value's bin of width 2 / (levels - 1)
            u = rand(x.shape, generator, device=x.device, dtype=x.dtype)
            x = x + (u - 0.5) * (2.0 / (levels - 1))
        info = ode_nll(denoiser, x, generator=generator, **options)
        offset = bits_offset(levels, dequantized=True)
    nll = info.pop("nll")
    bpd = nll / (dim * math.log(2)) + offset
    return Likelihood(nll, bpd, info.pop("nfe"), method, info)


def likelihood_in_batches(
    denoiser: Denoiser,
    x: torch.Tensor,
    method: str = "vlb",
    *,
    levels: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    progress: bool = False,
    **options,
) -> Likelihood:
    """`likelihood` over a data set in batches, example i drawing its noise from its own generator
    seeded with seed_for(seed, i) (the bound's results do not depend on batch_size; the ODE's do only
    within its tolerance, its steps being shared by a batch). Tensors come back on the CPU."""
    from tqdm.auto import tqdm

    from fokker.noise import seeded_batches

    if batch_size < 1:
        raise UserError(f"batch_size must be positive, got {batch_size}")
    parts: list[Likelihood] = []
    batches = list(seeded_batches(range(len(x)), batch_size, seed, device))
    for lo, hi, gens in tqdm(batches, desc=f"likelihood ({method})", unit="batch", disable=not progress):
        extra = {"progress": progress} if method == "vlb" else {}
        batch = x[lo:hi].to(device)
        parts.append(likelihood(denoiser, batch, method, levels=levels, generator=gens, **options, **extra))
    info: dict = {}
    for key, value in parts[0].info.items():
        if isinstance(value, torch.Tensor) and value.dim() >= 1 and key != "z":
            info[key] = torch.cat([p.info[key].cpu() for p in parts])
        elif isinstance(value, int):
            info[key] = sum(p.info[key] for p in parts)
    nll, bpd = (torch.cat([getattr(p, k).cpu() for p in parts]) for k in ("nll", "bpd"))
    return Likelihood(nll, bpd, max(p.nfe for p in parts), method, info)
