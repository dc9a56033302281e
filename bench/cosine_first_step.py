"""The first sampling step on the discrete cosine schedule: the toy preset (two moons, MLP, eps, no clipping)
trained on the linear schedule, on Nichol & Dhariwal's clipped cosine (beta_T clipped at 0.999, alpha-bar(1)
= 2.4e-9: `min_alpha_bar=0`) and on fokker's cosine, which ends at Ho et al.'s alpha-bar(1) = 4e-5. Samples of
ddpm, ddim, Euler-Maruyama and the probability-flow ODE (Euler, Heun) at 20 / 50 / 200 uniform steps are scored
by sliced W2 to held-out data. Run by hand, not in CI (about 5 minutes on 2 cores):

    python bench/cosine_first_step.py --write
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from _common import footer, invocation, load, machine, publish

import fokker
from fokker.config import apply_overrides, load_preset
from fokker.data import load_dataset
from fokker.metrics import sliced_wasserstein
from fokker.model import load_model
from fokker.train import train

SECTION = "## The first step on the cosine schedule"
SCHEDULES = {
    "linear": ["process.schedule=linear"],
    "cosine, beta_T clipped at 0.999 (Nichol & Dhariwal)": ["process.schedule=cosine", "process.min_alpha_bar=0.0"],
    "cosine to alpha-bar(1) = 4e-5 (fokker)": ["process.schedule=cosine"],
}
SAMPLERS = [
    ("ddpm", {}),
    ("ddim", {}),
    ("euler_maruyama", {}),
    ("ode", {"method": "euler"}),
    ("ode", {"method": "heun"}),
]
STEPS = (20, 50, 200)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1500, help="training steps of every model")
    parser.add_argument("--num", type=int, default=4000, help="samples and held-out points")
    parser.add_argument("--write", action="store_true", help="write the section into docs/benchmarks.md")
    args = parser.parse_args()
    conditions = f"{load()} at the start"
    reference = load_dataset("moons", split="test", num_points=args.num, seed=0).data.double()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, (name, overrides) in enumerate(SCHEDULES.items()):
            run = Path(tmp) / str(k)
            train(apply_overrides(load_preset("toy"), overrides), run, budget={"steps": args.steps}, progress=False)
            denoiser, _ = load_model(run)
            for sampler, options in SAMPLERS:
                w2 = []
                for steps in STEPS:
                    gen = torch.Generator().manual_seed(0)
                    x, _ = fokker.sample(denoiser, sampler, steps, shape=(args.num, 2), generator=gen, **options)
                    w2.append(sliced_wasserstein(x.double(), reference) if torch.isfinite(x).all() else float("nan"))
                label = sampler + "".join(f" {v}" for v in options.values())
                rows.append((name, label, w2))
                print(f"  {name}, {label}: {w2}", file=sys.stderr)
    lines = [
        SECTION,
        "",
        f"The toy preset (two moons, MLP 128 x 3, eps, {args.steps} steps, no clipping) trained on three VP "
        "schedules with T = 1,000, sampled on uniform grids; sliced W2 of "
        f"{args.num} samples to held-out data (lower is better).",
        "",
        "| schedule | sampler | " + " | ".join(f"{s} steps" for s in STEPS) + " |",
        "|---|---|" + "---|" * len(STEPS),
    ]
    lines += [f"| {n} | {s} | " + " | ".join(f"{v:.3f}" for v in w2) + " |" for n, s, w2 in rows]
    command, date = invocation("cosine_first_step.py")
    lines += ["", *footer(command, date, machine(), conditions)]
    publish(SECTION, "\n".join(lines), args.write)


if __name__ == "__main__":
    main()
