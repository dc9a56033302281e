"""`fokker grid`: the time grid that minimises a deterministic sampler's KL on the Gaussian fitted to the run's
training data (fokker.samplers.optimized_grid), written to RUN/grids/ for `fokker sample --spacing optimized`."""

from __future__ import annotations

import argparse

from fokker.cli.flags import SAMPLER_FLAGS, add_checkpoint, command_parser, flag, sampler_options

EXAMPLE = """examples:
  fokker grid --checkpoint runs/mnist --sampler dpmpp_2m --steps 10      (writes runs/mnist/grids/dpmpp_2m-10.json)
  fokker sample --checkpoint runs/mnist --sampler dpmpp_2m --steps 10 --spacing optimized --out grid.png
  fokker grid --checkpoint runs/mnist --sampler unipc --steps 5 --order 3 (a grid for these options)"""


def add_parser(sub) -> None:
    from fokker.samplers.optimized_grid import MAX_EXAMPLES, MIN_VAR

    g = command_parser(
        sub, "grid", "optimize a deterministic sampler's time grid for a run",
        "Fit a Gaussian to the run's training data (its mean and covariance spectrum), find the grid of --steps "
        "steps on which the sampler's output is closest to it in KL (a closed form for a deterministic sampler), "
        "and write it to RUN/grids/<sampler>-<steps>.json, where `fokker sample --spacing optimized` finds it.",
        EXAMPLE,
    )  # fmt: skip
    add_checkpoint(g)
    g.add_argument("--sampler", help="a deterministic sampler, e.g. dpmpp_2m (default: the run's config)")
    g.add_argument("--steps", type=int, help="number of steps (default: the run's config)")
    g.add_argument(
        "--max-examples", type=int, default=MAX_EXAMPLES, help=f"training examples fitted (default: {MAX_EXAMPLES})"
    )
    g.add_argument(
        "--min-var",
        type=float,
        default=MIN_VAR,
        help=f"the fit's smallest covariance eigenvalue (default: {MIN_VAR})",
    )
    for name, (kind, text) in SAMPLER_FLAGS.items():
        if kind is bool:
            g.add_argument(flag(name), action=argparse.BooleanOptionalAction, help=text)
        else:
            g.add_argument(flag(name), type=kind, help=text)


def run(args: argparse.Namespace) -> int:
    """Fit, optimize, write RUN/grids/<sampler>-<steps>.json and print the KL before and after."""
    from fokker.config import sample_options
    from fokker.model import load_model
    from fokker.reports import fitted_grid
    from fokker.samplers.grid_files import grid_path, save_grid

    denoiser, config = load_model(args.checkpoint, "cpu")
    sampler = args.sampler or config.sample.sampler
    steps = args.steps if args.steps is not None else config.sample.steps
    options = {**sample_options(config, sampler), **sampler_options(args)}
    times, info = fitted_grid(denoiser, config, sampler, steps, options, max_examples=args.max_examples,
                              min_var=args.min_var)  # fmt: skip
    path = grid_path(args.checkpoint, sampler, steps, options)
    save_grid(path, sampler, steps, options, times, info, fit=info["fit"])
    print(
        f"{sampler}, {steps} steps: KL to the fitted Gaussian {info['kl']:.4g} on the optimized grid, "
        f"{info['kl_log_snr']:.4g} on the log_snr grid ({info['evaluations']} sampler runs, {info['seconds']:.1f} s); "
        f"wrote {path}"
    )
    return 0
