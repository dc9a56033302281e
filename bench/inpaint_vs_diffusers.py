"""Inpainting against the exact answer: fokker's replacement and RePaint on every grid sampler and process, and
fokker's RePaint side by side with diffusers' RePaintScheduler on the same exact model and the same grid.

Target: 8 independent pairs (x_i, y_i), correlation 0.9, std 0.5 (fokker.inpaint.correlated_pairs); every y_i
is missing and the x_i are known (-0.6..1.0), so the exact conditional y_i | x_i is N(-0.1 + 0.9 (x_i - 0.2),
0.218^2). The model is the exact eps (fokker.targets.exact_denoiser), so only the scheme's and the sampler's
errors show. Distance: the KL per unknown coordinate of the fitted 1-D Gaussians from the exact ones (floor
~1/N), and the mean error in conditional standard deviations. Run by hand, not in CI:

    python bench/inpaint_vs_diffusers.py                 # print the tables
    python bench/inpaint_vs_diffusers.py --write         # also update docs/benchmarks.md

diffusers (the "bench" extra) runs its RePaintPipeline's loop (scheduler.step / undo_step) with eta = 1 (DDPM
steps, as Lugmayr et al.) on DDPM's linear betas, T = 1000, 250 steps, jump 10, resample 10; its timesteps are
shifted by stride - 1 so that they are fokker's grid times t = 4 (k + 1) / 1000 and its last step lands on x_0
as fokker's does.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from datetime import datetime, timezone

import torch
from _common import load, machine, write_section

import fokker
from fokker.inpaint import conditional_gaussian, coordinate_kl, correlated_pairs, inpaint
from fokker.targets import exact_denoiser

F64 = torch.float64
PAIRS = correlated_pairs(8, rho=0.9)
MISSING = torch.tensor([False, True]).repeat(8)
X0 = torch.stack([torch.linspace(-0.6, 1.0, 8, dtype=F64), torch.zeros(8, dtype=F64)], 1).reshape(-1)
PROCESSES = {
    "vp linear": (fokker.VP(T=1000), 200),
    "vp cosine": (fokker.VP(T=1000, schedule="cosine"), 100),
    "ve (0.01, 4)": (fokker.VE(0.01, 4.0), 100),
}
SAMPLERS = {"ddpm": {}, "ddim": {}, "euler_maruyama": {}, "pc": {"snr": 0.08}, "ode": {"method": "heun"}}
HEADING = "## Inpainting: replacement, RePaint and diffusers' RePaint on an exact Gaussian"


def exact() -> tuple[torch.Tensor, torch.Tensor]:
    mean, cov = conditional_gaussian(PAIRS.mean, PAIRS.cov, ~MISSING, X0)
    return mean, cov.diagonal()


def errors(y: torch.Tensor) -> tuple[float, float]:
    """(KL per unknown coordinate, mean |error| in conditional std) of samples y (N, 8) of the unknowns."""
    mean, var = exact()
    return coordinate_kl(y, mean, var), float(((y.double().mean(0) - mean).abs() / var.sqrt()).mean())


def fokker_run(process, steps, sampler, scheme, n, **options) -> tuple[float, float, float, int]:
    d = exact_denoiser(PAIRS, process)
    start = time.perf_counter()
    x, info = inpaint(d, sampler, X0.expand(n, -1).clone(), MISSING, steps, scheme=scheme,
                      generator=torch.Generator().manual_seed(0), **options)  # fmt: skip
    seconds = time.perf_counter() - start
    return (*errors(x[:, MISSING]), seconds / info["nfe"], info["nfe"])


def diffusers_run(n: int, steps: int = 250, jump: int = 10, resample: int = 10) -> tuple[float, float, float, int]:
    """diffusers' RePaintPipeline loop on the exact eps (a function of (x, timestep))."""
    from diffusers import RePaintScheduler

    process = fokker.VP(T=1000)
    d = exact_denoiser(PAIRS, process)
    scheduler = RePaintScheduler(num_train_timesteps=1000, beta_schedule="linear", eta=1.0)
    scheduler.set_timesteps(steps, jump_length=jump, jump_n_sample=resample)
    stride = 1000 // steps
    scheduler.timesteps = scheduler.timesteps + stride - 1  # timestep i is fokker's t = (i + 1) / T
    g = torch.Generator().manual_seed(0)
    original, mask = X0.expand(n, -1).float(), (~MISSING).float().expand(n, -1)  # diffusers: 1 = known
    image = torch.randn(n, 16, generator=g)
    nfe, t_last, start = 0, scheduler.timesteps[0] + 1, time.perf_counter()
    for t in scheduler.timesteps:
        if t < t_last:
            eps = d.eps(image, (int(t) + 1) / 1000)
            image = scheduler.step(eps, int(t), image, original, mask, generator=g).prev_sample
            nfe += 1
        else:
            image = scheduler.undo_step(image, int(t_last), generator=g)
        t_last = t
    seconds = time.perf_counter() - start
    return (*errors(image[:, MISSING]), seconds / nfe, nfe)


def tables(n: int) -> tuple[list[str], list[str]]:
    head = (
        "| process (steps) | sampler | replace: KL / coord | mean error | RePaint (10, 10): KL / coord | mean error |"
    )
    rows = [head, "|---|---|---|---|---|---|"]
    for pname, (process, steps) in PROCESSES.items():
        for sampler, options in SAMPLERS.items():
            rep = fokker_run(process, steps, sampler, "replace", n, **options)
            rp = fokker_run(process, steps, sampler, "repaint", n, **options)
            shown = sampler + (" (snr 0.08)" if sampler == "pc" else " heun" if sampler == "ode" else "")
            rows.append(f"| {pname} ({steps}) | {shown} | {rep[0]:.3f} | {rep[1]:.2f} | {rp[0]:.3f} | {rp[1]:.2f} |")
            print(rows[-1], flush=True)
    side = ["| implementation | KL / coord | mean error | NFE | ms per step |", "|---|---|---|---|---|"]
    for name, run in (
        ("fokker RePaint (ddpm, beta-tilde)", lambda: fokker_run(fokker.VP(T=1000), 250, "ddpm", "repaint", n)),
        ("diffusers RePaintScheduler (eta 1)", lambda: diffusers_run(n)),
        ("fokker replace (ddpm), for scale", lambda: fokker_run(fokker.VP(T=1000), 250, "ddpm", "replace", n)),
    ):
        kl, mean, per_step, nfe = run()
        side.append(f"| {name} | {kl:.4f} | {mean:.3f} | {nfe} | {1000 * per_step:.2f} |")
        print(side[-1], flush=True)
    return rows, side


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=1000, help="samples per run (default: 1000, as the tests)")
    parser.add_argument("--write", action="store_true", help="record the tables in docs/benchmarks.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    before = load()
    rows, side = tables(args.num)
    command = "python bench/" + " ".join(shlex.quote(a) for a in [sys.argv[0].split("/")[-1], *sys.argv[1:]])
    text = "\n".join([
        HEADING, "",
        f"8 independent pairs (x_i, y_i) with correlation 0.9 (fokker.inpaint.correlated_pairs), every y_i missing, "
        f"exact eps; {args.num} samples; KL per unknown coordinate of the fitted Gaussians from the exact "
        "conditional (floor about 1/N) and the mean error in conditional standard deviations.", "",
        *rows, "",
        "fokker's RePaint and diffusers' RePaintScheduler on the same model and grid (DDPM linear betas, T = 1000, "
        "250 steps, jump 10, resample 10; time per network evaluation, the exact eps included):", "",
        *side, "",
        f"- Command: `{command}`",
        f"- Date: {datetime.now(timezone.utc):%Y-%m-%d}",
        f"- Machine: {machine('diffusers')}; {before} at the start",
    ])  # fmt: skip
    print(text)
    if args.write:
        write_section(HEADING, text)


if __name__ == "__main__":
    main()
