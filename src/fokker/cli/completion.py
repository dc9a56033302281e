"""What `fokker inpaint` and `fokker colorize` share (each command is its own module): the flags of their inputs
and of the inpainting scheme, and the run: load the model and the inputs, complete each input --num times
with one seed per completion (fokker.inpaint.complete_seeded), write the picture and its .npz."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from fokker.cli.flags import add_checkpoint, add_sampling, grid_options, sampler_options
from fokker.errors import UserError

# (config, inputs) -> (complete(denoiser, sampler, rows, steps, **options), what the model is shown, arrays)
Prepare = Callable[..., tuple[Callable, object, dict]]


def add_completion_flags(p: argparse.ArgumentParser, out: str) -> None:
    """The checkpoint, the inputs, --num, the scheme (replace / repaint), --out and the sampling flags."""
    from fokker.inpaint import SCHEMES

    add_checkpoint(p)
    p.add_argument("--image", nargs="+", metavar="FILE", help="image files (resized and cropped to the model's size)")
    p.add_argument("--index", nargs="+", type=int, metavar="I", help="examples of the run's test split, by index")
    p.add_argument("--num", type=int, default=4, help="completions of each input (default: 4)")
    p.add_argument(
        "--scheme", default="replace", choices=SCHEMES,
        help="replace: the known part replaced after every step (Song et al. 2021; fast, biased); repaint: with "
        "RePaint's resampling (Lugmayr et al. 2022; about jump x resample times the steps) (default: replace)",
    )  # fmt: skip
    p.add_argument("--jump", type=int, help="repaint: grid steps re-noised at each jump (default: 10)")
    p.add_argument("--resample", type=int, help="repaint: passes over each stretch of jump steps (default: 10)")
    p.add_argument(
        "--out", default=out, help=f"picture to write; the raw samples go to the same name .npz (default: {out})"
    )
    add_sampling(p, several=False)


def check_out(out: str) -> Path:
    """--out as a writable .png path."""
    from fokker.files import check_writable

    path = Path(out)
    if path.suffix.lower() != ".png":
        raise UserError(f"--out must name a .png file, got {path}")
    check_writable(path, folder=False)
    return path


def run_completion(args: argparse.Namespace, verb: str, prepare: Prepare) -> int:
    """Complete --num times each input of --image / --index with the function `prepare` gives; write --out."""
    from fokker.cli.settings import sample_settings
    from fokker.devices import inference_device
    from fokker.inpaint import complete_seeded, load_inputs
    from fokker.inpaint.complete import check_scheme
    from fokker.labels import parse_classes
    from fokker.model import load_model
    from fokker.outputs import write_completions
    from fokker.samplers import check_options

    out = check_out(args.out)
    options, grid = sampler_options(args), grid_options(args)
    if args.sampler is not None:
        check_options(args.sampler, options, grid)
    device = inference_device(args.device)
    denoiser, config = load_model(args.checkpoint, device)
    parse_classes(None, config)  # a conditional model completes with its null class, which must be trained
    sampler, steps, spacing, options = sample_settings(args, config)
    check_options(sampler, options, grid)
    check_scheme(args.scheme, args.jump, args.resample, steps)
    inputs = load_inputs(config, args.image, args.index)
    complete, shown, arrays = prepare(config, inputs)
    scheme = {"scheme": args.scheme, "jump": args.jump, "resample": args.resample, "spacing": spacing}
    progress = not args.no_progress

    def run(rows, generators):
        return complete(denoiser, sampler, rows, steps, generator=generators, progress=progress, **scheme, **options)

    start = time.time()
    samples, info = complete_seeded(
        run, inputs, args.num, seed=args.seed, batch_size=args.batch_size, device=device, progress=progress
    )
    write_completions(out, samples, inputs, shown, config, arrays)
    print(
        f"{verb} {len(inputs)} input{'s' if len(inputs) > 1 else ''} x {args.num} with {sampler} ({steps} steps, "
        f"{args.scheme}) in {time.time() - start:.1f} s; NFE {info['nfe']} per sample; wrote {out} and "
        f"{out.with_suffix('.npz')}"
    )
    return 0
