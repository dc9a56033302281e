"""`fokker colorize`: colour samples of grey images from a model of RGB images."""

from __future__ import annotations

import argparse

from fokker.cli.completion import add_completion_flags, run_completion
from fokker.cli.flags import command_parser
from fokker.errors import UserError

EXAMPLE = """examples:
  fokker colorize --checkpoint runs/colour-mnist --index 7 --num 4 --out colour.png
  fokker colorize --checkpoint runs/colour-mnist --image grey.png --num 8 --scheme repaint
  fokker colorize --checkpoint runs/colour-mnist --index 0 1 2 3 --sampler ddim --steps 50"""


def add_parser(sub) -> None:
    p = command_parser(
        sub, "colorize", "colour samples of grey images from an RGB model",
        "Sample colour images whose grey level (the mean of R, G and B) is the input's, in the orthogonal colour "
        "basis whose first channel is the grey level (Song et al. 2021, app. I.3). A colour input is first made "
        "grey. The picture: one row per input, grey input | colourings | input.", EXAMPLE,
    )  # fmt: skip
    add_completion_flags(p, "colour.png")


def run(args: argparse.Namespace) -> int:
    """Colorize --num samples of each input; write --out and its .npz (samples, inputs, grey)."""
    return run_completion(args, "colorized", _prepare)


def _prepare(config, inputs):
    from fokker.inpaint import colorize, grey_of

    shape = tuple(config.data.shape)
    if len(shape) != 3 or shape[0] != 3:
        raise UserError(f"colorize needs a model of RGB images (3 channels); this one's data have shape {list(shape)}")
    grey = grey_of(inputs)
    return colorize, grey.expand(-1, 3, -1, -1), {"grey": grey.numpy()}
