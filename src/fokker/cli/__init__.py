"""The `fokker` command line: train, sample, eval, likelihood, interpolate, one module each (fokker.cli.train,
...), each a thin layer over a library function; fokker.cli.flags holds the parser pieces they share and
fokker.cli.settings every contact with the run config. Only `fokker train` imports the trainer."""

from fokker.cli.flags import SAMPLER_FLAGS
from fokker.cli.main import COMMANDS, build_parser, main

__all__ = ["COMMANDS", "SAMPLER_FLAGS", "build_parser", "main"]
