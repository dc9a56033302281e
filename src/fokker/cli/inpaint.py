"""`fokker inpaint`: fill in the masked part of images (or coordinates of vectors) with a trained model."""

from __future__ import annotations

import argparse

from fokker.cli.completion import add_completion_flags, run_completion
from fokker.cli.flags import command_parser
from fokker.errors import UserError

EXAMPLE = """examples:
  fokker inpaint --checkpoint runs/mnist --index 7 --mask center --num 4 --out inpaint.png
  fokker inpaint --checkpoint runs/mnist --index 7 8 9 --mask left --scheme repaint --jump 10 --resample 10
  fokker inpaint --checkpoint runs/mnist --image digit.png --mask hole.png --sampler ddim --steps 50
  fokker inpaint --checkpoint runs/mnist --index 0 --mask random-0.8 --seed 3      (80% of the pixels missing)
  fokker inpaint --checkpoint runs/moons --index 0 1 2 --mask y --num 200           (2-D data: y given x)"""

MASK_HELP = (
    "what is missing, to be sampled: for images left, right, top, bottom (that half), center (the centre square of "
    "half the side), random-P (a fraction P of the pixels, drawn from --seed) or a .png of the image's size (white "
    "= missing, black = known); for vectors x, y, a list of coordinates like 1,3, or random-P "
    "(default: center for images)"
)


def add_parser(sub) -> None:
    p = command_parser(
        sub, "inpaint", "fill in the masked part of images with a model",
        "Sample the missing part of each input given the rest (the known part replaced after every sampler step, "
        "Song et al. 2021; or RePaint, Lugmayr et al. 2022). The picture: one row per input, masked input | "
        "completions | input.", EXAMPLE,
    )  # fmt: skip
    p.add_argument("--mask", help=MASK_HELP)
    add_completion_flags(p, "inpaint.png")


def run(args: argparse.Namespace) -> int:
    """Inpaint --num completions of each input; write --out and its .npz (samples, inputs, mask)."""
    return run_completion(args, "inpainted", lambda config, inputs: _prepare(args, config, inputs))


def _prepare(args: argparse.Namespace, config, inputs):
    from fokker.inpaint import inpaint, make_mask

    shape = tuple(config.data.shape)  # the data's: a latent model's inputs are images too
    if args.mask is None and len(shape) != 3:
        raise UserError("this model's data are vectors: give --mask, the missing coordinates (x, y, 1,3, random-P)")
    mask = make_mask(args.mask or "center", shape, seed=args.seed)

    def complete(denoiser, sampler, rows, steps, **options):
        return inpaint(denoiser, sampler, rows, mask.to(rows.device), steps, **options)

    shown = inputs.masked_fill(mask, 0.0)  # the missing part shown mid-grey
    return complete, shown, {"mask": mask.numpy()}
