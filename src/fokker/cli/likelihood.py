"""`fokker likelihood`: bits/dim of the run's held-out data with a 95% confidence interval
(fokker.reports.likelihood_report computes it, fokker.outputs.write_likelihood writes it)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fokker.cli.flags import add_checkpoint, add_device, add_progress, command_parser, flag, given
from fokker.errors import UserError

EXAMPLE = """examples:
  fokker likelihood --checkpoint runs/mnist --method vlb --num 500              (the bound on every step)
  fokker likelihood --checkpoint runs/mnist --method vlb --steps 100 --num 500  (a respaced 100-step model)
  fokker likelihood --checkpoint runs/mnist --method vlb --t-samples 10         (10 sampled terms per image)
  fokker likelihood --checkpoint runs/mnist --method ode --num 100 --rtol 1e-5 --atol 1e-5
  fokker likelihood --checkpoint runs/moons --method ode --divergence exact --out runs/moons/nll
  (bits/dim with a 95% confidence interval; --out writes likelihood.json and, for the bound, terms.png)"""


def add_parser(sub) -> None:
    from fokker.denoiser import REVERSE_VARIANCES
    from fokker.divergence import PROBES
    from fokker.likelihood import DIVERGENCES, EXACT_AUTO_DIM, METHODS

    lk = command_parser(
        sub, "likelihood", "negative log-likelihood in bits/dim, by the variational bound or the probability-flow ODE",
        "Score held-out data (the run's test split) by -log p(x) in bits per dimension: 'vlb' is "
        "the variational bound with the discretized decoder (an upper bound on the NLL of the 8-bit data), "
        "'ode' the exact likelihood of the probability-flow ODE's model of uniformly dequantized data.",
        EXAMPLE,
    )  # fmt: skip
    add_checkpoint(lk)
    lk.add_argument("--method", default="vlb", choices=list(METHODS), help="vlb (default) or ode")
    lk.add_argument("--num", type=int, default=256, help="examples of the test split to score (default: 256)")
    lk.add_argument("--split", default="test", choices=["test", "train"], help="which split (default: test)")
    lk.add_argument("--steps", type=int, help="vlb: steps of the bound's grid (default: the process's own T)")
    lk.add_argument("--t-samples", type=int, help="vlb: this many sampled terms per example instead of all")
    variances = ", ".join(REVERSE_VARIANCES)
    lk.add_argument("--variance", help=f"vlb: {variances} (default: learned if the model has it)")
    lk.add_argument("--rtol", type=float, help="ode: relative tolerance (default: 1e-5)")
    lk.add_argument("--atol", type=float, help="ode: absolute tolerance (default: 1e-5)")
    exact = f"auto (default; exact up to {EXACT_AUTO_DIM} dimensions)"
    lk.add_argument("--divergence", help=f"ode: {exact}, {', '.join(d for d in DIVERGENCES if d != 'auto')}")
    lk.add_argument("--probe", help=f"ode with the Hutchinson divergence: {', '.join(PROBES)} (default: {PROBES[0]})")
    lk.add_argument("--seed", type=int, default=0, help="example i draws its noise from seed (seed, i) (default: 0)")
    lk.add_argument("--batch-size", type=int, default=64, help="examples per batch (default: 64)")
    add_device(lk)
    lk.add_argument("--out", help="folder for likelihood.json (and terms.png for the bound on every step)")
    add_progress(lk)


def run(args: argparse.Namespace) -> int:
    """Score --num examples of --split; print the summary, and with --out write likelihood.json (terms.png)."""
    from fokker.devices import inference_device
    from fokker.likelihood import check_method_options
    from fokker.model import load_model
    from fokker.outputs import write_likelihood
    from fokker.reports import TUNABLE, likelihood_report

    if args.num < 2 or args.batch_size < 1:
        raise UserError(f"--num must be at least 2 and --batch-size positive, got {args.num} and {args.batch_size}")
    options = given(args, TUNABLE)  # one of the other method's has no effect and is refused (--steps with ode)
    check_method_options(args.method, options, spell=flag)
    device = inference_device(args.device)
    denoiser, config = load_model(args.checkpoint, device)
    report = likelihood_report(
        denoiser, config, args.method, num=args.num, split=args.split, seed=args.seed, batch_size=args.batch_size,
        device=device, progress=not args.no_progress, **options,
    )  # fmt: skip
    print("\n".join(report.lines()))
    if args.out:
        print(f"wrote {write_likelihood(Path(args.out), report)}")
    return 0
