"""The `fokker` command: its parser (one subcommand per module of fokker.cli) and `main`, which runs one
command and turns a user's mistake into one line and exit status 2."""

from __future__ import annotations

import argparse
import sys
import warnings

from fokker.cli import colorize, distill, grid, inpaint, interpolate, likelihood, sample, train
from fokker.cli import eval as eval_command
from fokker.cli.flags import FORMATTER
from fokker.errors import FokkerWarning, UserError

MAIN_EXAMPLE = """examples:
  fokker train --preset toy --steps 2000 --out runs/moons
  fokker sample --checkpoint runs/moons --num 2000 --out moons.png
  fokker eval --checkpoint runs/moons --steps 10 50 --num 2000     (metrics and a report)
  fokker distill --checkpoint runs/mnist --method progressive --to-steps 4 --minutes 15 --out runs/pd4
  fokker grid --checkpoint runs/mnist --sampler dpmpp_2m --steps 10   (then sample with --spacing optimized)
  fokker likelihood --checkpoint runs/moons --method vlb --num 500  (bits/dim; --method ode for the ODE)
  fokker inpaint --checkpoint runs/mnist --index 7 --mask center --scheme repaint   (fill in a hole)
  fokker train --help                                       (every option of a command)"""

# each command's module: add_parser(subparsers) and run(args) -> exit status
COMMANDS = {
    "train": train,
    "distill": distill,
    "sample": sample,
    "grid": grid,
    "eval": eval_command,
    "likelihood": likelihood,
    "interpolate": interpolate,
    "inpaint": inpaint,
    "colorize": colorize,
}


def build_parser() -> argparse.ArgumentParser:
    """The `fokker` argument parser, one subcommand per job."""
    parser = argparse.ArgumentParser(
        prog="fokker",
        description="Diffusion models, correct to the formula.",
        epilog=MAIN_EXAMPLE,
        formatter_class=FORMATTER,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS.values():
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; a user's mistake (or the OS refusing a file) prints one line and exits with status 2;
    fokker's warnings (something damaged and repaired) print one line each."""
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        default = warnings.showwarning

        def show(message, category, *rest, **kwargs) -> None:
            if issubclass(category, FokkerWarning):
                print(f"fokker {args.command}: warning: {message}", file=sys.stderr)
            else:
                default(message, category, *rest, **kwargs)

        warnings.showwarning = show
        try:
            return COMMANDS[args.command].run(args)
        except (UserError, OSError) as err:  # OSError: a full disk, a folder made read-only meanwhile
            print(f"fokker {args.command}: error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"fokker {args.command}: interrupted", file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(main())
