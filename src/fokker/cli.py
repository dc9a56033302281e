"""The `fokker` command: train, sample, eval."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fokker.errors import UserError

TRAIN_EXAMPLE = """examples:
  fokker train --preset mnist --minutes 10 --out runs/mnist
  fokker train --preset toy --steps 2000 --out runs/moons data.name=swiss_roll train.lr=2e-3
  fokker train --preset toy --process ve --loss ssm --steps 2000 --out runs/moons-ssm
  fokker train --preset ncsn --minutes 10 --out runs/ncsn      (NCSN: VE sigma ladder, annealed Langevin)
  fokker train --data ~/pictures/cats --minutes 30 --out runs/cats data.image_size=32
  fokker train --out runs/mnist --resume --minutes 20      (continue a run, up to 20 minutes in all)
  fokker train --preset digits --dry-run                    (print the resolved config)"""

MAIN_EXAMPLE = """examples:
  fokker train --preset toy --steps 2000 --out runs/moons
  fokker sample --checkpoint runs/moons --num 2000 --out moons.png
  fokker eval --checkpoint runs/moons --steps 10 50 --num 2000     (metrics and a report)
  fokker train --help                                       (every option of a command)"""

SAMPLE_EXAMPLE = """examples:
  fokker sample --checkpoint runs/mnist --sampler ddim --steps 50 --num 64 --seed 0 --out grid.png
  fokker sample --checkpoint runs/mnist --sampler ddpm --steps 1000 --variance beta --out ddpm.png
  fokker sample --checkpoint runs/mnist --sampler pc --predictor reverse_diffusion --corrector langevin --snr 0.16
  fokker sample --checkpoint runs/mnist --sampler ode --method dopri5 --rtol 1e-5 --out ode.png
  fokker sample --checkpoint runs/ncsn --sampler annealed_langevin --steps 10 --steps-per-level 100
  fokker sample --checkpoint runs/moons/model.safetensors --num 2000 --out moons.png"""

EVAL_EXAMPLE = """examples:
  fokker eval --checkpoint runs/mnist --sampler ddpm ddim --steps 10 20 50 100 --num 1000
  fokker eval --checkpoint runs/moons --steps 5 10 20 50 --num 4000 --out runs/moons/eval
  (open OUT/report.md: sample grids, the training-loss curve and every metric against NFE)"""


def build_parser() -> argparse.ArgumentParser:
    """The `fokker` argument parser, one subcommand per job."""
    from fokker.config import preset_names
    from fokker.samplers import SAMPLERS, SPACINGS

    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="fokker", description="Diffusion models, correct to the formula.", epilog=MAIN_EXAMPLE, formatter_class=fmt
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser(
        "train",
        help="train a model into a run folder",
        epilog=TRAIN_EXAMPLE,
        formatter_class=fmt,
        description="Train a diffusion model. Any config key can be set as section.key=value.",
    )
    t.add_argument(
        "--preset", help=f"a shipped config: {', '.join(preset_names())} (default: toy, or images with --data)"
    )
    t.add_argument("--data", help="a folder of PNG/JPEG images (subfolders = classes) instead of the preset's data")
    t.add_argument("--out", default="runs/latest", help="run folder (default: runs/latest)")
    t.add_argument("--steps", type=int, help="training budget in optimizer steps")
    t.add_argument("--minutes", type=float, help="training budget in wall-clock minutes")
    t.add_argument("--seed", type=int, help="random seed (train.seed)")
    t.add_argument("--batch-size", type=int, help="batch size per process (train.batch_size)")
    t.add_argument("--process", choices=["vp", "ve", "subvp"], help="the diffusion, with its default settings")
    t.add_argument("--loss", help="simple (default), dsm, ssm (sliced) or ism (implicit, small dimension)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    t.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    t.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.lr=1e-3")

    s = sub.add_parser(
        "sample",
        help="draw samples from a trained model",
        epilog=SAMPLE_EXAMPLE,
        formatter_class=fmt,
        description="Sample a grid (images) or a scatter plot (2-D data).",
    )
    s.add_argument("--checkpoint", required=True, help="a run folder or an exported .safetensors file")
    _sampling_options(s, SAMPLERS, SPACINGS, several=False)
    s.add_argument("--num", type=int, default=64, help="number of samples (default: 64)")
    s.add_argument("--out", default="samples.png", help="picture to write; the raw samples go to the same name .npz")

    e = sub.add_parser(
        "eval",
        help="score samples with offline metrics and write a report",
        epilog=EVAL_EXAMPLE,
        formatter_class=fmt,
        description="Sample with each sampler and step count, score the samples against the training data "
        "(FID / KID / IS / recognizable rate in fokker's own classifier features for images; sliced W2, MMD "
        "and, for analytic targets, the cross-entropy for vectors) and write OUT/metrics.json and OUT/report.md.",
    )
    e.add_argument("--checkpoint", required=True, help="a run folder or an exported .safetensors file")
    _sampling_options(e, SAMPLERS, SPACINGS, several=True)
    e.add_argument("--num", type=int, default=1000, help="samples per sampler and step count (default: 1000)")
    e.add_argument("--out", help="report folder (default: eval/ in the run folder)")
    e.add_argument(
        "--inception-weights",
        help="also Inception FID / KID / IS, from this local torch-fidelity weights file (needs fokker[inception])",
    )
    return parser


def _sampling_options(p: argparse.ArgumentParser, samplers: dict, spacings: tuple, several: bool) -> None:
    """The options `fokker sample` and `fokker eval` share; with several=True, --sampler and --steps take lists."""
    run_default = "(default: the run's config, sample section)"
    many = {"nargs": "+"} if several else {}
    s_help = "one or more of" if several else "one of"
    p.add_argument("--sampler", **many, help=f"{s_help} {', '.join(sorted(samplers))} {run_default}")
    p.add_argument("--steps", type=int, **many, help=f"number{'s' if several else ''} of sampler steps {run_default}")
    p.add_argument("--spacing", help=f"time grid: {', '.join(spacings)} {run_default}")
    p.add_argument("--seed", type=int, default=0, help="sample i is drawn from its own seed (seed, i) (default: 0)")
    p.add_argument("--batch-size", type=int, default=256, help="samples per batch; does not change the result")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")
    for name, (kind, text) in SAMPLER_FLAGS.items():
        flag = "--" + name.replace("_", "-")
        if kind is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, help=text)
        else:
            p.add_argument(flag, type=kind, help=text)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


# every sampler's own options (fokker.samplers.sampler_options), as command-line flags
SAMPLER_FLAGS: dict[str, tuple[type, str]] = {
    "eta": (float, "ddim: noise scale in [0, 1] (0 = deterministic)"),
    "variance": (str, "ddpm, and pc's ancestral predictor: beta_tilde (default) or beta"),
    "predictor": (str, "pc: reverse_diffusion (default), euler_maruyama or ancestral"),
    "corrector": (str, "pc: langevin (default) or none"),
    "snr": (float, "pc: signal-to-noise ratio of the Langevin corrector (default: 0.16)"),
    "corrector_steps": (int, "pc: Langevin corrector updates per step (default: 1)"),
    "method": (str, "ode: euler, heun (default) or dopri5 (adaptive; --steps is then ignored)"),
    "rtol": (float, "ode with dopri5: relative tolerance (default: 1e-5)"),
    "atol": (float, "ode with dopri5: absolute tolerance (default: 1e-5)"),
    "epsilon": (float, "annealed_langevin: NCSN's step size epsilon (default: 0.2 sigma_min^2 of the ladder)"),
    "steps_per_level": (int, "annealed_langevin: Langevin updates per noise level (default: 100)"),
    "denoise": (bool, "euler_maruyama, pc, ode, annealed_langevin: end on Tweedie's x0_hat (default: yes)"),
}


def _sampler_options(args: argparse.Namespace) -> dict:
    """The sampler-specific options given on the command line."""
    return {k: getattr(args, k) for k in SAMPLER_FLAGS if getattr(args, k) is not None}


def cmd_train(args: argparse.Namespace) -> int:
    """`fokker train`: resolve the config, then train (or print it with --dry-run)."""
    from fokker.config import apply_overrides, load_preset, to_yaml, validate
    from fokker.train import train

    config = load_preset(args.preset or ("images" if args.data else "toy"))
    extra = [f"data.name={args.data}"] if args.data else []
    extra += [f"train.seed={args.seed}"] if args.seed is not None else []
    extra += [f"train.batch_size={args.batch_size}"] if args.batch_size is not None else []
    extra += [f"process={{type: {args.process}}}"] if args.process else []
    extra += [f"train.loss={args.loss}"] if args.loss else []
    config = apply_overrides(config, extra + args.overrides)
    # --steps or --minutes alone is the whole budget; both together: whichever comes first
    budget = {k: v for k, v in {"steps": args.steps, "minutes": args.minutes}.items() if v is not None}
    if len(budget) == 1:
        budget.setdefault("steps", None)
        budget.setdefault("minutes", None)
    if args.dry_run:
        config["train"].update(budget)
        validate(config)
        print(to_yaml(config), end="")
        return 0
    given = (args.overrides, args.preset, args.data, args.process, args.loss, args.seed, args.batch_size)
    config_args = [a for a in given if a is not None and a != []]  # --seed 0 counts
    if args.resume and config_args:
        raise UserError("--resume continues a run with its own config; only --steps / --minutes may change")
    result = train(
        config, Path(args.out), resume=args.resume, device=args.device, budget=budget, progress=not args.no_progress
    )
    print(
        f"trained {result.step} steps in {result.elapsed / 60:.1f} min (last loss {result.loss:.4f}); "
        f"weights: {result.run / 'model.safetensors'}"
    )
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    """`fokker sample`: load a run's EMA weights, sample with per-image seeds, write a grid and .npz."""
    import numpy as np

    from fokker.config import sample_options
    from fokker.data import load_dataset, to_uint8_images
    from fokker.model import load_model
    from fokker.samplers import check_options, sample_seeded
    from fokker.train import make_accelerator
    from fokker.viz import save_picture

    if args.num < 1 or args.batch_size < 1:
        raise UserError(f"--num and --batch-size must be positive, got {args.num} and {args.batch_size}")
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise UserError(f"--out must name a .png file, got {out}")
    options = _sampler_options(args)
    if args.sampler is not None:
        check_options(args.sampler, options)
    device = make_accelerator(args.device, "no").device
    denoiser, config = load_model(args.checkpoint, device)
    for key in ("sampler", "steps", "spacing"):
        if getattr(args, key) is None:
            setattr(args, key, config["sample"][key])
    options = {**sample_options(config, args.sampler), **options}
    start = time.time()
    samples, info = sample_seeded(
        denoiser, args.sampler, args.steps, config["data"]["shape"], args.num, seed=args.seed, spacing=args.spacing,
        batch_size=args.batch_size, device=device, progress=not args.no_progress, **options,
    )  # fmt: skip
    nfe = info["nfe"]
    reference = None
    if samples.dim() == 2:
        reference = load_dataset(config["data"]["name"], num_points=5000, seed=config["train"]["seed"]).data
    out.parent.mkdir(parents=True, exist_ok=True)
    save_picture(samples, out, reference=reference, title=f"{args.sampler}, {args.steps} steps")
    arrays = {"samples": samples.numpy()}
    if samples.dim() == 4:
        arrays["images"] = to_uint8_images(samples)
    tmp = out.with_name(f".{out.stem}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(out.with_suffix(".npz"))
    print(
        f"sampled {args.num} with {args.sampler} ({args.steps} steps, {args.spacing} spacing) in "
        f"{time.time() - start:.1f} s; NFE {nfe} per sample; wrote {out} and {out.with_suffix('.npz')}"
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """`fokker eval`: sample with each sampler and step count, score, write metrics.json and report.md."""
    from fokker.evaluate import evaluate
    from fokker.model import weights_path
    from fokker.train import make_accelerator

    if args.num < 2 or args.batch_size < 1:
        raise UserError(f"--num must be at least 2 and --batch-size positive, got {args.num} and {args.batch_size}")
    device = make_accelerator(args.device, "no").device
    out = Path(args.out) if args.out else weights_path(args.checkpoint).parent / "eval"
    record = evaluate(
        args.checkpoint, args.sampler, args.steps, args.num, out, seed=args.seed, spacing=args.spacing,
        batch_size=args.batch_size, device=device, progress=not args.no_progress, options=_sampler_options(args),
        inception_weights=args.inception_weights,
    )  # fmt: skip
    keys = [k for k in ("fid", "inception_fid", "recognizable", "sliced_w2", "cross_entropy") if k in record["floor"]]
    for r in record["runs"]:
        shown = ", ".join(f"{k} {r[k]:.4g}" for k in keys)
        print(f"{r['sampler']:>10} {r['steps']:>5} steps  NFE {r['nfe']:>5}  {shown}  ({r['seconds']:.1f} s)")
    print(f"{'held-out':>10} {'':>18}  " + ", ".join(f"{k} {record['floor'][k]:.4g}" for k in keys))
    print(f"wrote {out / 'metrics.json'} and {out / 'report.md'}")
    return 0


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "eval": cmd_eval}


def main(argv: list[str] | None = None) -> int:
    """Run one command; a user's mistake prints one line and exits with status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UserError as err:
        print(f"fokker {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the latest checkpoint is intact", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
