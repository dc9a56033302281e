"""Improved DDPM's learned reverse variance against the fixed ones, on two moons (2-D), at one training
budget: the toy preset's recipe (MLP 128 x 3, 3,000 steps of batch 256, VP linear T = 1,000) trained with
L_simple (fixed variance), with L_hybrid (learned variance, lambda = 0.001) and with L_vlb alone (learned
variance, importance-sampled t), for two seeds each. Every model is scored by the variational bound on
2,000 held-out points (all 1,000 terms; continuous data, so the Gaussian decoder: bits/dim of a density)
and by the sliced W2 distance of 2,000 `ddpm` samples at 50 and 20 respaced steps to held-out data.
Run by hand, not in CI (about 10 minutes on 2 cores):

    python bench/learned_variance.py --write
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _common import footer, invocation, load, machine, publish

from fokker.config import apply_overrides, as_run_config, load_preset
from fokker.data import dataset_for
from fokker.evaluate import evaluate
from fokker.likelihood import likelihood_in_batches
from fokker.model import load_model
from fokker.train import train

SECTION = "## Learned variance (Improved DDPM) on two moons"
ARMS = {
    "fixed, L_simple": ([], ["beta_tilde", "beta"]),
    "learned, L_hybrid": (["model.variance=learned", "train.loss=hybrid"], ["learned"]),
    "learned, L_vlb + importance t": (
        ["model.variance=learned", "train.loss=vlb", "train.time_sampler=importance"],
        ["learned"],
    ),
}
STEPS = [50, 20]


def measure(run: Path, variance: str, num: int) -> dict:
    """The bound (bits/dim, its standard error) and the sliced W2 of ddpm samples at each of STEPS."""
    denoiser, config = load_model(run)
    test = dataset_for(as_run_config(config).replace("data", num_points=num), "test")
    result = likelihood_in_batches(denoiser, test.data, "vlb", variance=variance, batch_size=num)
    bpd, se = result.mean_bpd()
    out = run / f"eval_{variance}"
    record = evaluate(run, ["ddpm"], STEPS, num, out, progress=False, options={"variance": variance})
    w2 = {r["steps"]: r["sliced_w2"] for r in record["runs"]}
    return {"bpd": bpd, "se": se, "w2": w2, "floor": record["floor"]["sliced_w2"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=3000, help="training steps of every model")
    parser.add_argument("--num", type=int, default=2000, help="held-out points and samples")
    parser.add_argument("--write", action="store_true", help="write the section into docs/benchmarks.md")
    args = parser.parse_args()
    conditions = f"{load()} at the start"
    rows, floor = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for name, (overrides, variances) in ARMS.items():
            for seed in args.seeds:
                run = Path(tmp) / f"{name.replace(' ', '_').replace(',', '')}_{seed}"
                config = apply_overrides(load_preset("toy"), [*overrides, f"train.seed={seed}"])
                train(config, run, budget={"steps": args.steps}, progress=False)
                for variance in variances:
                    m = measure(run, variance, args.num)
                    floor = m["floor"]
                    rows.append((name, variance, seed, m))
                    print(f"  {name}, {variance}, seed {seed}: {m}", file=sys.stderr)
    lines = [
        SECTION,
        "",
        f"The toy preset's recipe ({args.steps} steps, batch 256) trained three ways at one budget, two seeds "
        "each. Every model is scored by the variational bound on held-out points (all 1,000 terms, in bits/dim; the "
        f"data are continuous, so this is a density bound, lower is better, ± one standard error over {args.num} "
        f"points). Its `ddpm` samples at {' and '.join(map(str, STEPS))} respaced steps are scored by sliced W2 "
        f"to held-out data ({args.num} samples; held-out data against held-out data scores {floor:.3f}).",
        "",
        "| model | reverse variance | seed | bound (bits/dim) | "
        + " | ".join(f"sliced W2, {s} steps" for s in STEPS)
        + " |",
        "|---|---|---|---|" + "---|" * len(STEPS),
    ]
    for name, variance, seed, m in rows:
        w2 = " | ".join(f"{m['w2'][s]:.4f}" for s in STEPS)
        lines.append(f"| {name} | {variance} | {seed} | {m['bpd']:.4f} ± {m['se']:.4f} | {w2} |")
    command, date = invocation("learned_variance.py")
    lines += ["", *footer(command, date, machine(), conditions)]
    publish(SECTION, "\n".join(lines), args.write)


if __name__ == "__main__":
    main()
