"""The Langevin corrector of `pc` against NFE, by step rule, on exact scores: does pc converge to the data?

Targets: the 16-D anisotropic Gaussian (error: KL of the fitted Gaussian) and an 11-mode ring mixture in 2-D
(error: the total variation of the mode weights), under the continuous VP process (log-SNR grid) and VE
(sigma_min 0.01, sigma_max 50; its uniform grid is uniform in log-SNR). Step rules: "sigma" (fokker's
default, sigma_t^2 min(rate h, 1)), "snr" (Song et al. 2021 per example), "snr_batch" (score_sde / diffusers,
batch-averaged norms); the predictor alone and the probability-flow ODE (Heun) as references. Run by hand:

    python bench/corrector_convergence.py            # print the table
    python bench/corrector_convergence.py --write    # also update docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from _common import footer, invocation, load, machine, publish

import fokker
from fokker.metrics import gaussian_fit, gaussian_kl
from fokker.targets import GaussianMixture, GaussianTarget, exact_denoiser

SECTION = "## The Langevin corrector against NFE"
F64 = torch.float64
GAUSS, RING = GaussianTarget.anisotropic(16, seed=0), GaussianMixture.ring(11)
PROCESSES = {"vp": (fokker.VP(T=None), "log_snr"), "ve": (fokker.VE(0.01, 50.0), "uniform")}
# label: (sampler, options)
METHODS = {
    "predictor alone": ("pc", {"corrector": "none"}),
    "sigma (fokker)": ("pc", {}),
    "snr 0.16 per example": ("pc", {"step_rule": "snr"}),
    "snr 0.16 batch-averaged": ("pc", {"step_rule": "snr_batch"}),
    "ODE heun": ("ode", {"method": "heun"}),
}


def kl(x: torch.Tensor) -> float:
    return gaussian_kl(*gaussian_fit(x), GAUSS.mean, GAUSS.cov)


def mode_tv(x: torch.Tensor) -> float:
    weights = torch.bincount(RING.assign(x), minlength=len(RING.weights)).to(F64) / len(x)
    return 0.5 * (weights - RING.weights).abs().sum().item()


def floors(n_gauss: int, n_ring: int) -> dict[str, float]:
    """The expected error of exact samples: d (d + 3) / 4n for the fitted KL, sum sqrt(2 w (1 - w) / pi n) / 2
    for the mode TV."""
    ring = 0.5 * sum(math.sqrt(2 * w * (1 - w) / (math.pi * n_ring)) for w in RING.weights.tolist())
    return {"gaussian16": GAUSS.dim * (GAUSS.dim + 3) / (4 * n_gauss), "ring11": ring}


def nfe_steps(sampler: str, options: dict, nfe: int) -> int:
    """Grid steps that spend `nfe` evaluations: pc with the corrector 2 per step, Heun 2 per step but the last."""
    if sampler == "ode":
        return (nfe + 1) // 2
    return nfe // 2 if options.get("corrector") != "none" else nfe


def collect(nfes: list[int], n_gauss: int, n_ring: int) -> list[str]:
    rows = []
    for pname, (process, spacing) in PROCESSES.items():
        for tname, target, metric, n in (("gaussian16", GAUSS, kl, n_gauss), ("ring11", RING, mode_tv, n_ring)):
            d = exact_denoiser(target, process)
            for label, (sampler, options) in METHODS.items():
                cells = []
                for nfe in nfes:
                    g = torch.Generator().manual_seed(1)
                    x_T = process.prior_std * torch.randn(n, target.dim, generator=g, dtype=F64)
                    steps = nfe_steps(sampler, options, nfe)
                    x, _ = fokker.sample(d, sampler, steps, x_T=x_T, generator=g, spacing=spacing, **options)
                    cells.append(f"{metric(x):.4f}" if torch.isfinite(x).all() else "diverged")
                rows.append(f"| {pname} | {tname} | {label} | " + " | ".join(cells) + " |")
                print(rows[-1], flush=True)
    return rows


def section(rows: list[str], nfes: list[int], n: tuple[int, int], command: str, date: str, conditions: str) -> str:
    floor = floors(*n)
    return "\n".join(
        [
            SECTION,
            "",
            f"pc (reverse-diffusion predictor, one Langevin corrector update per step) on exact scores, float64, "
            f"the same x_T and noise seed for every row: KL of the fitted Gaussian on gaussian16 ({n[0]:,} samples, "
            f"floor {floor['gaussian16']:.4f}) and the mode-weight total variation on ring11 "
            f"(GaussianMixture.ring(11), {n[1]:,} samples, floor {floor['ring11']:.4f}; the floors are the "
            "expected errors of as many exact samples). Columns: NFE (a pc step with the corrector costs 2).",
            "",
            "| process | target | corrector step | " + " | ".join(f"NFE {k}" for k in nfes) + " |",
            "|---|---|---|" + "---:|" * len(nfes),
            *rows,
            "",
            "The sigma rule's step, sigma_t^2 min(h, 1) for a step of h in log-SNR, is the same for every sample "
            "and shrinks with the grid, so ULA's bias vanishes and pc reaches the floor; Song et al.'s snr rule "
            "fixes the step per level, so its bias stays as the NFE grows (per example it is also noisy in low "
            "dimension); averaged over the batch it is steadier but still stops improving, and a sample then "
            "depends on its batch.",
            "",
            *footer(command, date, machine(), conditions),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nfe", type=int, nargs="+", default=[20, 60, 200, 600], help="NFE budgets")
    parser.add_argument("--n-gauss", type=int, default=20_000, help="samples of the 16-D Gaussian")
    parser.add_argument("--n-ring", type=int, default=40_000, help="samples of the ring mixture")
    parser.add_argument("--write", action="store_true", help=f"replace the '{SECTION}' section of docs/benchmarks.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    command, date = invocation("corrector_convergence.py")
    before, start = load(), time.time()
    rows = collect(args.nfe, args.n_gauss, args.n_ring)
    conditions = f"{before} in the second before the run, {load()} in the second after; {time.time() - start:.0f} s"
    publish(SECTION, section(rows, args.nfe, (args.n_gauss, args.n_ring), command, date, conditions), args.write)


if __name__ == "__main__":
    main()
