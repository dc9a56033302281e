"""What the analysis commands compute from a trained model and its run's data, as plain values a script
can use without writing a file: the likelihood report of held-out examples (bits/dim with a confidence
interval and the bound's L_T / L_0 / KL split), the two endpoints of an interpolation, and the time grid
optimized for a sampler on the run's data."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from fokker.data import dataset_for, load_image
from fokker.denoiser import Denoiser
from fokker.errors import UserError
from fokker.likelihood import Likelihood, likelihood_in_batches, method_options
from fokker.samplers import check_options, fit_gaussian, optimize_grid, time_grid
from fokker.samplers.optimized_grid import MAX_EXAMPLES, MIN_VAR

if TYPE_CHECKING:
    from fokker.config import RunConfig

LATENT_NOTE = (
    "a latent diffusion model's likelihood: bits per dimension of the continuous latents z = scale * E(x) under "
    "the diffusion model, not of the images: it leaves out how well the autoencoder reconstructs x, so it is "
    "neither a bound on the images' bits/dim nor comparable with a pixel model's"
)

# the options of fokker.likelihood's two methods a person tunes (`fokker likelihood` has a flag for each);
# a report records their values, defaults included
TUNABLE = ("steps", "t_samples", "variance", "rtol", "atol", "divergence", "probe")


@dataclass
class LikelihoodReport:
    """-log p(x) of `num` examples of a split: the mean bits/dim, its standard error and nats per example;
    `options` are the method's tunable options as used; `times` the grid times of the bound's terms (the
    bound on every step only, Ho et al. 2020, eq. 5: L_T + sum_t L_{t-1} + L_0)."""

    result: Likelihood
    split: str
    levels: int | None
    dim: int
    options: dict
    seconds: float
    times: torch.Tensor | None = None
    latent: bool = False  # of a latent diffusion model: the density of the latents z = scale * E(x)

    @property
    def num(self) -> int:
        return self.result.nll.numel()

    @property
    def nats(self) -> float:
        return self.result.nll.double().mean().item()

    @property
    def kind(self) -> str:
        """What the number is: an upper bound (vlb), or the ODE's density of dequantized or continuous data."""
        return "upper bound" if self.result.method == "vlb" else ("dequantized" if self.levels else "continuous")

    def bits(self, nats: torch.Tensor | float) -> torch.Tensor | float:
        """Nats of one example (summed over its dimensions) in bits per dimension."""
        return nats / (self.dim * math.log(2))

    def parts(self) -> dict[str, float] | None:
        """The bound's split in bits/dim: prior (L_T), decoder (L_0) and the KL terms between; None for the ODE."""
        if "terms" not in self.result.info:
            return None
        mean, _ = self.result.mean_bpd()
        parts = {k: self.bits(self.result.info[k].double().mean().item()) for k in ("prior", "decoder")}
        return {**parts, "kl": mean - parts["prior"] - parts["decoder"]}

    def lines(self) -> list[str]:
        """The summary `fokker likelihood` prints."""
        mean, se = self.result.mean_bpd()
        r = self.result
        out = [
            f"{r.method}: {mean:.4f} +- {1.96 * se:.4f} bits/dim (95% CI, {self.kind}) over {self.num} {self.split} "
            f"examples; {self.nats:.2f} nats per example; NFE {r.nfe} per example; {self.seconds:.1f} s"
        ]
        parts = self.parts()
        if parts is not None:
            out.append(
                f"  L_T {parts['prior']:.4f}, L_0 (decoder) {parts['decoder']:.4f}, KL terms {parts['kl']:.4f} bits/dim"
            )
        if self.latent:
            out.append(f"  {LATENT_NOTE}")
        return out

    def record(self) -> dict:
        """The report as likelihood.json holds it."""
        mean, se = self.result.mean_bpd()
        r = self.result
        return {
            "method": r.method, "bits_per_dim": mean, "standard_error": se, "nats": self.nats, "num": self.num,
            "split": self.split, "nfe": r.nfe, "levels": self.levels, "options": self.options,
            "per_example_bits_per_dim": r.bpd.tolist(),
        } | ({"space": "latent", "note": LATENT_NOTE} if self.latent else {})  # fmt: skip


def likelihood_report(
    denoiser: Denoiser,
    config: RunConfig,
    method: str = "vlb",
    *,
    num: int = 256,
    split: str = "test",
    seed: int = 0,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    progress: bool = False,
    **options,
) -> LikelihoodReport:
    """Score the first `num` examples of the run's `split` by `fokker.likelihood_in_batches` (the bound,
    Ho et al. 2020, eq. 5, or the probability-flow ODE, Song et al. 2021, app. D), example i drawing its
    noise from seed (seed, i). `options` (None: the default) go to the method."""
    options = {k: v for k, v in options.items() if v is not None}
    data = dataset_for(config, split)
    x, levels = data.data[:num], config.model_levels
    if denoiser.space is not None:  # the latents a latent diffusion model was trained on: continuous
        with torch.no_grad():
            x = denoiser.space.encode(x)
    start = time.time()
    result = likelihood_in_batches(
        denoiser, x, method, levels=levels, seed=seed, batch_size=batch_size, device=device,
        progress=progress, **options,
    )  # fmt: skip
    seconds = time.time() - start
    used = {k: v for k, v in {**method_options(method), **options}.items() if k in TUNABLE}
    times = None
    if "terms" in result.info:
        times = time_grid(denoiser.process, options.get("steps") or denoiser.process.T).flip(0)[1:]
    return LikelihoodReport(result, split, levels, x[0].numel(), used, seconds, times, denoiser.space is not None)


def interpolation_pair(config: RunConfig, a: str, b: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The endpoints of an interpolation, each an image file (resized to the model's shape) or the index
    of an example of the run's test split; on the CPU."""
    shape = tuple(config.data.shape)
    test = None
    ends = []
    for given in (a, b):
        if given.isdigit():
            test = dataset_for(config, "test").data if test is None else test
            if int(given) >= len(test):
                raise UserError(f"the test split has {len(test)} examples; index {given} is out of range")
            ends.append(test[int(given)])
        elif len(shape) != 3:
            raise UserError(f"{given!r}: this model's data are vectors; give indices of test examples")
        else:
            ends.append(load_image(given, shape))
    return ends[0], ends[1]


def fitted_grid(
    denoiser: Denoiser,
    config: RunConfig,
    sampler: str,
    steps: int,
    options: dict | None = None,
    *,
    max_examples: int = MAX_EXAMPLES,
    min_var: float = MIN_VAR,
) -> tuple[torch.Tensor, dict]:
    """`fokker grid`: the times of the `steps`-step grid optimized for the deterministic `sampler` (with its
    `options`) on the Gaussian fitted to at most `max_examples` of the run's training data (a latent diffusion
    model's: their latents), eigenvalues floored
    at `min_var` (fokker.samplers.optimized_grid). Returns (times, info): optimize_grid's info with "fit", what
    was fitted (examples, dim, min_var)."""
    if max_examples < 2 or min_var <= 0:
        raise UserError(
            f"max_examples (--max-examples) must be at least 2 and min_var (--min-var) positive, got {max_examples} "
            f"and {min_var}"
        )
    options = options or {}
    check_options(sampler, options, {"steps": steps})
    data = dataset_for(config).data
    if denoiser.space is not None:  # a latent diffusion model's grid fits its latents
        with torch.no_grad():
            data = denoiser.space.encode(data)
    mean, eigvals = fit_gaussian(data, max_examples, min_var)
    times, info = optimize_grid(denoiser.process, mean, eigvals, sampler, steps, **options)
    info["fit"] = {"examples": min(len(data), max_examples), "dim": len(mean), "min_var": min_var}
    return times, info
