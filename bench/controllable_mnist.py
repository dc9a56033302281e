"""Inpainting and colorization on MNIST at a CPU budget, scored by what a person would check: is the completed
digit the right digit, is the colorized digit the right colour.

- Inpainting: the unconditional `mnist` preset of bench/guidance_mnist.py (15 minutes; trained here if that run
  is missing) completes the 500 test digits (50 per class) with the right half masked, by replacement and by
  RePaint (DDPM on 100 steps, jump 10, resample 10); fokker's MNIST metrics classifier labels the completions.
  Baselines: the same classifier on the whole digits, and on the left halves alone (the right half blank).
- Colorization: the `colour-mnist` preset (10 minutes) colours the grey levels of the 500 tinted test digits.
  The hue of an image is the hue of its mean RGB over the stroke pixels (largest channel above the middle);
  for a tinted digit that is its palette hue (within the rounding to 8 bits, under 1 degree). Score: the mean
  circular hue error in degrees against the true hue, and the fraction whose nearest palette hue is the true
  one; the baseline, a palette hue drawn at random, has a mean error of exactly 90 degrees
  (8 hues 45 degrees apart) and 1/8 right.

Run by hand on an idle machine, about 30 minutes (45 without guidance_mnist.py's unconditional run):

    python bench/controllable_mnist.py --write

Runs are kept in --runs (default runs/bench-guidance, shared with guidance_mnist.py) and reused."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from _common import footer, invocation, load, machine, publish
from guidance_mnist import parser, trained

from fokker.data import load_dataset
from fokker.data.colour import HUES, colour_mnist_hues
from fokker.inpaint import colorize, complete_seeded, inpaint, make_mask
from fokker.metrics.classifier import load_classifier
from fokker.model import load_model
from fokker.samplers import sample_seeded
from fokker.viz import image_grid

SECTION = "## Inpainting and colorization on MNIST"
IMG = Path(__file__).resolve().parent.parent / "docs" / "img"
PALETTE_DEGREES = torch.arange(len(HUES), dtype=torch.float64) * 360 / len(HUES)


def hue_degrees(images: torch.Tensor) -> torch.Tensor:
    """The hue (degrees) of the mean RGB of images (B, 3, H, W in [-1, 1]) over their stroke pixels, those whose
    largest channel (HSV's value) is above the middle."""
    rgb = (images.double().clamp(-1, 1) + 1) / 2
    strokes = (rgb.amax(1, keepdim=True) > 0.5).double()
    mean = (rgb * strokes).sum((2, 3)) / strokes.sum((2, 3)).clamp_min(1)  # (B, 3)
    r, g, b = mean.unbind(1)  # the hexagonal hue of colorsys.rgb_to_hsv, vectorised
    hi, lo = mean.max(1).values, mean.min(1).values
    span = (hi - lo).clamp_min(1e-12)
    h = torch.where(hi == r, ((g - b) / span) % 6, torch.where(hi == g, (b - r) / span + 2, (r - g) / span + 4))
    return (60 * h) % 360


def circular_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a - b| in degrees on the circle, in [0, 180]."""
    d = (a - b).abs() % 360
    return torch.minimum(d, 360 - d)


def fits_grey(images: torch.Tensor) -> torch.Tensor:
    """Whether each image's nearest palette hue has the mean colour that its grey level shows: the brightest
    grey pixel of a digit tinted with colour c is about max(intensity) * mean(c), and the 8 palette colours
    have 5 distinct means (1/3 to 2/3), so the grey level tells a hue apart up to pairs like 90 and 270."""
    means = torch.from_numpy(HUES).mean(1)  # (8,)
    peak = ((images.double().clamp(-1, 1) + 1) / 2).mean(1).amax((1, 2))
    shown = means[(peak[:, None] - means[None, :]).abs().argmin(1)]
    nearest = circular_error(hue_degrees(images)[:, None], PALETTE_DEGREES[None, :]).argmin(1)
    return (means[nearest] - shown).abs() < 1e-9


def posterior_draw_scores(images: torch.Tensor, hues: torch.Tensor) -> tuple[float, float]:
    """(mean hue error in degrees, fraction right) of a draw from the exact posterior of the hue given the grey
    image, for tinted digits (B, 3, H, W): the hue is uniform over the palette, and the grey image (the channel
    sum of round(intensity * colour), intensity the largest channel) rules out every hue that renders another
    one, so the posterior is uniform over the hues that render it."""
    levels = ((images.double() + 1) * 127.5).round()  # the 8-bit pixels
    intensity, grey = levels.amax(1), levels.sum(1)
    rendered = (intensity[:, None, None] * torch.from_numpy(HUES)[None, :, :, None, None]).round().sum(2)
    consistent = (rendered == grey[:, None]).flatten(2).all(2).double()  # (B, 8)
    error = circular_error(PALETTE_DEGREES[None, :], hues[:, None])
    mean_error = (consistent * error).sum(1) / consistent.sum(1)
    right = consistent.gather(1, (hues * len(HUES) / 360).round().long()[:, None]).squeeze(1) / consistent.sum(1)
    return float(mean_error.mean()), float(right.mean())


def completions(denoiser, rows: torch.Tensor, method, batch: int, **kw) -> tuple[torch.Tensor, dict, float]:
    """One completion of each row by `method` (inpaint or colorize) with DDPM, seeded per row; and seconds."""
    start = time.time()
    x, info = complete_seeded(lambda r, g: method(denoiser, "ddpm", r, generator=g, **kw), rows, 1, batch_size=batch)
    return x, info, time.time() - start


def inpainting(args, runs: Path) -> tuple[list[str], float, dict]:
    """Table rows of the inpainting benchmark, the minutes it took, and {scheme: fraction classified right}."""
    start = time.time()
    run = trained(runs, "uncond", "mnist", args.minutes, [])
    denoiser, _ = load_model(run)
    test = load_dataset("mnist", split="test")
    digits, labels = test.data[: args.num], test.labels[: args.num]
    judge = load_classifier("mnist", progress=False)
    mask = make_mask("right", tuple(digits.shape[1:]))
    left_only = digits.masked_fill(mask, -1.0)

    def correct(x: torch.Tensor) -> float:
        return float((judge(x)[1].argmax(-1) == labels).double().mean())

    out = [f"| whole digits (the classifier's own accuracy) | - | {correct(digits):.3f} | - |",
           f"| left half only, right half blank | - | {correct(left_only):.3f} | - |"]  # fmt: skip
    shown, right = [left_only[:8]], {}
    for scheme, extra in (("replace", {}), ("repaint", {"jump": args.jump, "resample": args.resample})):
        x, info, seconds = completions(
            denoiser, digits, inpaint, args.batch, mask=mask, steps=args.steps, scheme=scheme, **extra
        )
        name = "replacement" if scheme == "replace" else f"RePaint (jump {args.jump}, resample {args.resample})"
        right[scheme] = correct(x)
        out.append(f"| {name} | {info['nfe']} | {right[scheme]:.3f} | {seconds / len(x):.2f} |")
        shown.append(x[:8])
    shown.append(digits[:8])
    image_grid(torch.cat(shown), nrow=8).save(IMG / "inpaint_mnist.png")
    return out, (time.time() - start) / 60, right


def colorization(args, runs: Path) -> tuple[list[str], float, dict]:
    """Table rows of the colorization benchmark, the minutes it took, and {"floor": the largest hue error
    (degrees) of `hue_degrees` on the tinted digits themselves, "best": the exact posterior's mean error,
    "chance" / "own": the fraction that fits the grey level at random / of the model's own samples, and each
    scheme's mean hue error}."""
    start = time.time()
    run = trained(runs, "colour", "colour-mnist", args.colour_minutes, [])
    denoiser, _ = load_model(run)
    test = load_dataset("colour_mnist", split="test")
    images, hues = test.data[: args.num], PALETTE_DEGREES[colour_mnist_hues("test")[: args.num]]
    oracle = circular_error(hue_degrees(images), hues)
    if oracle.max() > 1.0:
        raise RuntimeError(f"the hue of a tinted digit is not its palette hue (off by {oracle.max():.2g} degrees)")
    best_error, best_right = posterior_draw_scores(images, hues)
    chance = float(sum(n * n for n in torch.from_numpy(HUES).mean(1).unique(return_counts=True)[1])) / len(HUES) ** 2
    free, _ = sample_seeded(denoiser, "ddpm", args.steps, tuple(images.shape[1:]), args.num, batch_size=args.batch)
    stats = {"floor": float(oracle.max()), "best": best_error, "chance": chance,
             "own": float(fits_grey(free).double().mean())}  # fmt: skip
    out = [f"| a palette hue at random (baseline) | - | 90.0 | 0.125 | {chance:.3f} | - |",
           f"| a draw from the exact posterior given the grey image (the best) | - | {best_error:.1f} | "
           f"{best_right:.3f} | {float(fits_grey(images).double().mean()):.3f} | - |",
           f"| the model's own samples, no grey image given | - | - | - | "
           f"{stats['own']:.3f} | - |"]  # fmt: skip
    shown = [images[:8].mean(1, keepdim=True).expand(-1, 3, -1, -1)]
    for scheme, extra in (("replace", {}), ("repaint", {"jump": args.jump, "resample": args.resample})):
        x, info, seconds = completions(denoiser, images, colorize, args.batch, steps=args.steps, scheme=scheme, **extra)
        hue = hue_degrees(x)
        nearest = circular_error(hue[:, None], PALETTE_DEGREES[None, :]).argmin(1) * 360 / len(HUES)
        error = circular_error(hue, hues)
        stats[scheme] = float(error.mean())
        name = "replacement" if scheme == "replace" else f"RePaint (jump {args.jump}, resample {args.resample})"
        out.append(
            f"| {name} | {info['nfe']} | {float(error.mean()):.1f} | {float((nearest == hues).double().mean()):.3f} "
            f"| {float(fits_grey(x).double().mean()):.3f} | {seconds / len(x):.2f} |"
        )
        shown.append(x[:8])
    shown.append(images[:8])
    image_grid(torch.cat(shown), nrow=8).save(IMG / "colorize_mnist.png")
    return out, (time.time() - start) / 60, stats


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__, "budget of the unconditional mnist model", "test digits (the first N of the 500)")
    p.add_argument("--colour-minutes", type=float, default=10.0, help="budget of the colour-mnist model")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--jump", type=int, default=10)
    p.add_argument("--resample", type=int, default=10)
    p.add_argument("--batch", type=int, default=250)
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    command, date = invocation("controllable_mnist.py")
    before = load()
    inpaint_rows, inpaint_minutes, right = inpainting(args, args.runs)
    colour_rows, colour_minutes, hue = colorization(args, args.runs)
    print(f"  inpainting {inpaint_minutes:.1f} min, colorization {colour_minutes:.1f} min", file=sys.stderr)
    text = "\n".join([
        SECTION, "",
        f"**Inpainting.** The unconditional `mnist` preset trained {args.minutes:g} minutes (the run of the guidance "
        f"benchmark) completes the first {args.num} test digits (of 500, 50 per class) with the right half "
        f"missing, DDPM on {args.steps} steps, one completion each; fokker's MNIST metrics classifier "
        "(the one behind domain FID) labels them.", "",
        "| input | NFE | classified as the true digit | seconds per digit |", "|---|---:|---:|---:|", *inpaint_rows, "",
        f"Goal: RePaint's completions classified as the true digit in >= 80% and more often than replacement's: "
        f"RePaint {right['repaint']:.3f}, replacement {right['replace']:.3f}.", "",
        "![left halves, replacement, RePaint, originals](img/inpaint_mnist.png)", "",
        f"**Colorization.** The `colour-mnist` preset trained {args.colour_minutes:g} minutes colours the grey levels "
        f"of the first {args.num} tinted test digits (8 hues 45 degrees apart), DDPM on {args.steps} steps. An "
        "image's hue: the hue of its mean RGB over the stroke pixels, the palette hue for a tinted digit (within "
        f"{hue['floor']:.2f} degrees).", "",
        "| method | NFE | mean hue error (degrees) | nearest palette hue right | hue fits the grey level | "
        "seconds per digit |", "|---|---:|---:|---:|---:|---:|", *colour_rows, "",
        "'Hue fits the grey level': the nearest palette hue has the mean colour that the brightest grey pixel "
        "shows (the 8 colours have 5 distinct means, so a fitting hue is right or its twin of equal mean); a "
        "model that has learned how brightness and hue go together fits on its own samples too.", "",
        f"Goal: a mean hue error below the random palette hue's 90 degrees, towards the exact posterior's "
        f"{hue['best']:.1f}: replacement {hue['replace']:.1f}, RePaint {hue['repaint']:.1f}. How far a colorizer "
        "can get depends on whether the model has learned how a digit's brightness goes with its hue: its own "
        f"samples fit their grey level in {hue['own']:.3f} (at random {hue['chance']:.3f}, the data 1.000).", "",
        "![grey input, replacement, RePaint, originals](img/colorize_mnist.png)", "",
        *footer(command, date, machine(), f"{before} before the run, {load()} after"),
    ])  # fmt: skip
    publish(SECTION, text, args.write)


if __name__ == "__main__":
    main()
