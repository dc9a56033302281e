"""`fokker interpolate`: a row of pictures from --a to --b through the model (fokker.latents.interpolate
between the ends of fokker.reports.interpolation_pair, drawn by fokker.outputs.write_interpolation)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fokker.cli.flags import add_checkpoint, add_device, add_progress, command_parser
from fokker.errors import UserError

EXAMPLE = """examples:
  fokker interpolate --checkpoint runs/mnist --a 0 --b 7 --num 10                (test images 0 and 7)
  fokker interpolate --checkpoint runs/cats --a tom.png --b felix.jpg --out cats.png
  fokker interpolate --checkpoint runs/mnist --a 0 --b 7 --method ddpm --t 0.5   (Ho et al.: diffuse, mix, denoise)"""


def add_parser(sub) -> None:
    from fokker.latents import INTERPOLATIONS

    ip = command_parser(
        sub, "interpolate", "interpolate between two images through the model",
        "Encode two images along the probability-flow ODE, interpolate their encodings "
        "spherically and decode (slerp), or diffuse both to time t, mix and denoise (ddpm).",
        EXAMPLE,
    )  # fmt: skip
    add_checkpoint(ip)
    end = "an image file, or the index of an example of the run's test split"
    ip.add_argument("--a", required=True, help=end)
    ip.add_argument("--b", required=True, help=end)
    ip.add_argument("--num", type=int, default=8, help="pictures from a to b, both included (default: 8)")
    ip.add_argument("--method", default="slerp", choices=list(INTERPOLATIONS), help="slerp (default) or ddpm")
    ip.add_argument("--t", type=float, help="ddpm: the time both are diffused to (default: 0.5)")
    ip.add_argument("--steps", type=int, help="ddpm: reverse steps over [0, 1] (default: the process's T)")
    ip.add_argument("--rtol", type=float, help="slerp: ODE relative tolerance (default: 1e-5)")
    ip.add_argument("--atol", type=float, help="slerp: ODE absolute tolerance (default: 1e-5)")
    ip.add_argument("--seed", type=int, help="ddpm: seed of the noise (default: 0)")
    add_device(ip)
    ip.add_argument("--out", default="interpolation.png", help="picture to write (default: interpolation.png)")
    add_progress(ip)


def run(args: argparse.Namespace) -> int:
    """Interpolate --num pictures from --a to --b and write them to --out."""
    import torch

    from fokker.devices import inference_device
    from fokker.latents import interpolate
    from fokker.model import load_model
    from fokker.outputs import write_interpolation
    from fokker.reports import interpolation_pair

    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise UserError(f"--out must name a .png file, got {out}")
    device = inference_device(args.device)
    denoiser, config = load_model(args.checkpoint, device)
    a, b = (end.to(device) for end in interpolation_pair(config, args.a, args.b))
    start = time.time()
    if args.seed is not None and args.method != "ddpm":
        raise UserError(f"interpolation {args.method!r} takes no --seed (it draws no noise; only 'ddpm' does)")
    gen = torch.Generator(device).manual_seed(args.seed or 0) if args.method == "ddpm" else None
    path, info = interpolate(
        denoiser, a, b, args.num, method=args.method, t=args.t, steps=args.steps, rtol=args.rtol, atol=args.atol,
        generator=gen, progress=not args.no_progress,
    )  # fmt: skip
    write_interpolation(out, path, a, b, title=f"{args.method} interpolation")
    seconds = time.time() - start
    print(f"interpolated {args.num} pictures ({args.method}) in {seconds:.1f} s; NFE {info['nfe']}; wrote {out}")
    return 0
