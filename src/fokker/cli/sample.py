"""`fokker sample`: load a run's EMA weights, sample with per-image seeds, write a grid and .npz."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fokker.cli.flags import (
    add_checkpoint,
    add_guidance,
    add_sampling,
    command_parser,
    grid_options,
    guides_from,
    sampler_options,
)
from fokker.cli.settings import sample_settings
from fokker.errors import UserError

EXAMPLE = """examples:
  fokker sample --checkpoint runs/mnist --sampler ddim --steps 50 --num 64 --seed 0 --out grid.png
  fokker sample --checkpoint runs/mnist --sampler ddpm --steps 1000 --variance beta --out ddpm.png
  fokker sample --checkpoint runs/mnist --sampler pc --predictor reverse_diffusion --corrector langevin --snr 0.16
  fokker sample --checkpoint runs/mnist --sampler dpmpp_2m --steps 10 --spacing optimized   (after `fokker grid`)
  fokker sample --checkpoint runs/mnist --sampler ode --method dopri5 --rtol 1e-5 --out ode.png
  fokker sample --checkpoint runs/ncsn --sampler annealed_langevin --steps 10 --steps-per-level 100
  fokker sample --checkpoint runs/moons/model.safetensors --num 2000 --out moons.png
  fokker sample --checkpoint runs/digits-cond --class 3 --num 16 --out threes.png   (a conditional model)
  fokker sample --checkpoint runs/digits-cond --class all --num 8 --out grid.png    (one row per class)
  fokker sample --checkpoint runs/mnist-cond --class all --num 8 --guidance 3 --out guided.png
  fokker sample --checkpoint runs/mnist --classifier runs/clf --classifier-scale 3 --class 7 --out sevens.png
  fokker sample --checkpoint runs/latent --num 64 --out latent.png   (a latent model: its latents, decoded)
  fokker sample --checkpoint runs/mnist-14 --upsampler runs/sr-mnist --aug-level 0.1   (14x14, then 28x28)"""


def add_parser(sub) -> None:
    s = command_parser(
        sub, "sample", "draw samples from a trained model",
        "Sample a grid (images) or a scatter plot (2-D data).", EXAMPLE,
    )  # fmt: skip
    add_checkpoint(s)
    add_sampling(s, several=False)
    s.add_argument("--num", type=int, default=64, help="number of samples, per class with --class (default: 64)")
    s.add_argument(
        "--class",
        dest="classes",
        nargs="+",
        metavar="K",
        help="a conditional model's class K, a list of classes, or all: --num samples of each, one row (one "
        "colour) per class, sample j of every class from the same noise (default: no class, the null class)",
    )
    add_guidance(s, several=False, group="guidance (with --class)")
    s.add_argument(
        "--upsampler",
        metavar="RUN",
        help="a cascade: a super-resolution run (e.g. of the sr-mnist preset) that upsamples the samples, with "
        "its own sampler and steps (the sampler flags set the base model's); NFE counts both stages",
    )
    s.add_argument(
        "--aug-level",
        type=float,
        metavar="S",
        help="with --upsampler: the Gaussian conditioning augmentation of its inputs, in [0, its aug_max] "
        "(Ho et al. 2021, sec. 4.1; default: 0, the samples as they are)",
    )
    s.add_argument("--out", default="samples.png", help="picture to write; the raw samples go to the same name .npz")


def run(args: argparse.Namespace) -> int:
    """Sample --num (of each --class) with the flags' sampler, or the run's own; write OUT and OUT.npz."""
    from fokker.cascade import upsampler_for
    from fokker.devices import inference_device
    from fokker.guidance.options import guide
    from fokker.labels import class_grid, parse_classes
    from fokker.model import load_model
    from fokker.outputs import write_samples
    from fokker.samplers import check_options, sample_seeded, uses_grid

    out = _check_out(args)
    options, grid = sampler_options(args), grid_options(args)
    if args.sampler is not None:
        check_options(args.sampler, options, grid)
    device = inference_device(args.device)
    denoiser, config = load_model(args.checkpoint, device)
    upsampler = upsampler_for(config, args.upsampler, args.aug_level, device)  # a cascade's second stage, or None
    guides, classifier_classes = guides_from(args, device)
    classes = parse_classes(args.classes, config, classifier_classes)
    if guides and classes is None:
        raise UserError("--guidance and --classifier steer to a class: give --class K (or --class all)")
    for guidance in guides.values():  # one at most: sample's flags take one value each
        denoiser = guide(denoiser, guidance)
    num, labels, kw = args.num, None, {}
    if classes is not None:  # --num of each class, class by class, with the noise of unconditional sample j
        labels, ids = class_grid(classes, args.num)
        num, kw = len(labels), {"model_kwargs": {"y": labels}, "noise_ids": ids}
    sampler, steps, spacing, options = sample_settings(args, config)
    check_options(sampler, options, grid)
    times = None
    if spacing == "optimized":  # the grid `fokker grid` stored with the run
        from fokker.samplers import load_grid

        times = load_grid(args.checkpoint, sampler, steps, options)
    start = time.time()
    samples, info = sample_seeded(
        denoiser, sampler, steps, config.model_shape, num, seed=args.seed, times=times,
        spacing="uniform" if times is not None else spacing,
        batch_size=args.batch_size, device=device, progress=not args.no_progress, **kw, **options,
    )  # fmt: skip
    samples = denoiser.to_data(samples)  # a latent diffusion model's latents, decoded
    if upsampler is not None:  # the samples are its low-resolution inputs; info["nfe"] counts both stages
        samples, info = upsampler.upsample(
            samples, info, labels, seed=args.seed, batch_size=args.batch_size, device=device,
            progress=not args.no_progress,
        )  # fmt: skip
    write_samples(out, samples, labels, config, title=f"{sampler}, {steps} steps")
    how = f"{steps} steps, {spacing} spacing" if uses_grid(sampler, options) else f"{info['steps']} adaptive steps"
    print(
        f"sampled {num}{'' if classes is None else f' ({args.num} of each of classes {classes})'} with "
        f"{sampler} ({how}) in "
        f"{time.time() - start:.1f} s; NFE {info['nfe']} per sample; wrote {out} and {out.with_suffix('.npz')}"
    )
    return 0


def _check_out(args: argparse.Namespace) -> Path:
    """--out as a writable .png path, with --num and --batch-size positive."""
    from fokker.files import check_writable

    if args.num < 1 or args.batch_size < 1:
        raise UserError(f"--num and --batch-size must be positive, got {args.num} and {args.batch_size}")
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise UserError(f"--out must name a .png file, got {out}")
    check_writable(out, folder=False)
    return out
