"""The `fokker` command: train, sample, eval, likelihood, interpolate."""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from fokker.errors import FokkerWarning, UserError

if TYPE_CHECKING:
    import torch

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
  fokker likelihood --checkpoint runs/moons --method vlb --num 500  (bits/dim; --method ode for the ODE)
  fokker train --help                                       (every option of a command)"""

SAMPLE_EXAMPLE = """examples:
  fokker sample --checkpoint runs/mnist --sampler ddim --steps 50 --num 64 --seed 0 --out grid.png
  fokker sample --checkpoint runs/mnist --sampler ddpm --steps 1000 --variance beta --out ddpm.png
  fokker sample --checkpoint runs/mnist --sampler pc --predictor reverse_diffusion --corrector langevin --snr 0.16
  fokker sample --checkpoint runs/mnist --sampler ode --method dopri5 --rtol 1e-5 --out ode.png
  fokker sample --checkpoint runs/ncsn --sampler annealed_langevin --steps 10 --steps-per-level 100
  fokker sample --checkpoint runs/moons/model.safetensors --num 2000 --out moons.png
  fokker sample --checkpoint runs/digits-cond --class 3 --num 16 --out threes.png   (a conditional model)
  fokker sample --checkpoint runs/digits-cond --class all --num 8 --out grid.png    (one row per class)"""

LIKELIHOOD_EXAMPLE = """examples:
  fokker likelihood --checkpoint runs/mnist --method vlb --num 500              (the bound on every step)
  fokker likelihood --checkpoint runs/mnist --method vlb --steps 100 --num 500  (a respaced 100-step model)
  fokker likelihood --checkpoint runs/mnist --method vlb --t-samples 10         (10 sampled terms per image)
  fokker likelihood --checkpoint runs/mnist --method ode --num 100 --rtol 1e-5 --atol 1e-5
  fokker likelihood --checkpoint runs/moons --method ode --divergence exact --out runs/moons/nll
  (bits/dim with a 95% confidence interval; --out writes likelihood.json and, for the bound, terms.png)"""

INTERPOLATE_EXAMPLE = """examples:
  fokker interpolate --checkpoint runs/mnist --a 0 --b 7 --num 10                (test images 0 and 7)
  fokker interpolate --checkpoint runs/cats --a tom.png --b felix.jpg --out cats.png
  fokker interpolate --checkpoint runs/mnist --a 0 --b 7 --method ddpm --t 0.5   (Ho et al.: diffuse, mix, denoise)"""

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
    s.add_argument("--num", type=int, default=64, help="number of samples, per class with --class (default: 64)")
    s.add_argument(
        "--class",
        dest="classes",
        nargs="+",
        metavar="K",
        help="a conditional model's class K, a list of classes, or all: --num samples of each, one row (one "
        "colour) per class, sample j of every class from the same noise (default: no class, the null class)",
    )
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
    _likelihood_parser(sub, fmt)
    _interpolate_parser(sub, fmt)
    return parser


def _likelihood_parser(sub, fmt) -> None:
    lk = sub.add_parser(
        "likelihood",
        help="negative log-likelihood in bits/dim, by the variational bound or the probability-flow ODE",
        epilog=LIKELIHOOD_EXAMPLE,
        formatter_class=fmt,
        description="Score held-out data (the run's test split) by -log p(x) in bits per dimension: 'vlb' is "
        "the variational bound with the discretized decoder (an upper bound on the NLL of the 8-bit data), "
        "'ode' the exact likelihood of the probability-flow ODE's model of uniformly dequantized data.",
    )
    lk.add_argument("--checkpoint", required=True, help="a run folder or an exported .safetensors file")
    lk.add_argument("--method", default="vlb", choices=["vlb", "ode"], help="vlb (default) or ode")
    lk.add_argument("--num", type=int, default=256, help="examples of the test split to score (default: 256)")
    lk.add_argument("--split", default="test", choices=["test", "train"], help="which split (default: test)")
    lk.add_argument("--steps", type=int, help="vlb: steps of the bound's grid (default: the process's own T)")
    lk.add_argument("--t-samples", type=int, help="vlb: this many sampled terms per example instead of all")
    lk.add_argument("--variance", help="vlb: beta_tilde, beta or learned (default: learned if the model has it)")
    lk.add_argument("--rtol", type=float, help="ode: relative tolerance (default: 1e-5)")
    lk.add_argument("--atol", type=float, help="ode: absolute tolerance (default: 1e-5)")
    lk.add_argument("--divergence", help="ode: auto (default; exact up to 16 dimensions), exact or hutchinson")
    lk.add_argument("--probe", help="ode with the Hutchinson divergence: rademacher (default) or gaussian")
    lk.add_argument("--seed", type=int, default=0, help="example i draws its noise from seed (seed, i) (default: 0)")
    lk.add_argument("--batch-size", type=int, default=64, help="examples per batch (default: 64)")
    lk.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")
    lk.add_argument("--out", help="folder for likelihood.json (and terms.png for the bound on every step)")
    lk.add_argument("--no-progress", action="store_true", help="no progress bar")


# the options of fokker.likelihood's two methods (fokker.likelihood.method_options) that have flags
LIKELIHOOD_FLAGS = ("steps", "t_samples", "variance", "rtol", "atol", "divergence", "probe")


def _interpolate_parser(sub, fmt) -> None:
    ip = sub.add_parser(
        "interpolate",
        help="interpolate between two images through the model",
        epilog=INTERPOLATE_EXAMPLE,
        formatter_class=fmt,
        description="Encode two images along the probability-flow ODE, interpolate their encodings "
        "spherically and decode (slerp), or diffuse both to time t, mix and denoise (ddpm).",
    )
    ip.add_argument("--checkpoint", required=True, help="a run folder or an exported .safetensors file")
    ip.add_argument("--a", required=True, help="an image file, or the index of an example of the run's test split")
    ip.add_argument("--b", required=True, help="an image file, or the index of an example of the run's test split")
    ip.add_argument("--num", type=int, default=8, help="pictures from a to b, both included (default: 8)")
    ip.add_argument("--method", default="slerp", choices=["slerp", "ddpm"], help="slerp (default) or ddpm")
    ip.add_argument("--t", type=float, help="ddpm: the time both are diffused to (default: 0.5)")
    ip.add_argument("--steps", type=int, help="ddpm: reverse steps over [0, 1] (default: the process's T)")
    ip.add_argument("--rtol", type=float, help="slerp: ODE relative tolerance (default: 1e-5)")
    ip.add_argument("--atol", type=float, help="slerp: ODE absolute tolerance (default: 1e-5)")
    ip.add_argument("--seed", type=int, help="ddpm: seed of the noise (default: 0)")
    ip.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")
    ip.add_argument("--out", default="interpolation.png", help="picture to write (default: interpolation.png)")
    ip.add_argument("--no-progress", action="store_true", help="no progress bar")


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
    "variance": (
        str,
        "ddpm, and pc with --predictor ancestral: beta_tilde, beta or learned (default: learned if the model has it)",
    ),
    "predictor": (str, "pc: reverse_diffusion (default), euler_maruyama or ancestral"),
    "corrector": (str, "pc: langevin (default) or none"),
    "snr": (float, "pc with the langevin corrector: its signal-to-noise ratio (default: 0.16)"),
    "corrector_steps": (int, "pc with the langevin corrector: its updates per step (default: 1)"),
    "method": (str, "ode: euler, heun (default) or dopri5 (adaptive: picks its own steps; no --steps / --spacing)"),
    "rtol": (float, "ode with --method dopri5: relative tolerance (default: 1e-5)"),
    "atol": (float, "ode with --method dopri5: absolute tolerance (default: 1e-5)"),
    "epsilon": (float, "annealed_langevin: NCSN's step size epsilon (default: 0.2 sigma_min^2 of the ladder)"),
    "steps_per_level": (int, "annealed_langevin: Langevin updates per noise level (default: 100)"),
    "denoise": (bool, "euler_maruyama, pc, ode, annealed_langevin: end on Tweedie's x0_hat (default: yes)"),
}


def _sampler_options(args: argparse.Namespace) -> dict:
    """The sampler-specific options given on the command line."""
    return {k: getattr(args, k) for k in SAMPLER_FLAGS if getattr(args, k) is not None}


def _grid_options(args: argparse.Namespace) -> dict:
    """--steps and --spacing when given on the command line (an adaptive sampler refuses them)."""
    return {k: getattr(args, k) for k in ("steps", "spacing") if getattr(args, k) is not None}


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
    out = Path(args.out)
    try:
        result = train(
            config, out, resume=args.resume, device=args.device, budget=budget, progress=not args.no_progress, log=print
        )
    except KeyboardInterrupt:
        print(f"fokker train: interrupted; {_what_is_kept(out)}", file=sys.stderr)
        return 130
    print(
        f"trained {result.step} steps in {result.elapsed / 60:.1f} min (last loss {result.loss:.4f}); "
        f"weights: {result.run / 'model.safetensors'}"
    )
    return 0


def _what_is_kept(out: Path) -> str:
    """What an interrupted run folder holds, and how to go on."""
    latest = out / "latest"
    if latest.exists():
        name = latest.read_text(errors="replace").strip()
        return f"{out} keeps checkpoint {name} (resume: fokker train --out {out} --resume)"
    return f"{out} has no checkpoint yet (run the same command again, or --resume to start from step 0)"


def cmd_sample(args: argparse.Namespace) -> int:
    """`fokker sample`: load a run's EMA weights, sample with per-image seeds, write a grid and .npz."""

    from fokker.config import sample_options
    from fokker.files import check_writable
    from fokker.labels import class_grid, parse_classes
    from fokker.model import load_model
    from fokker.samplers import check_options, sample_seeded, uses_grid
    from fokker.train import make_accelerator

    if args.num < 1 or args.batch_size < 1:
        raise UserError(f"--num and --batch-size must be positive, got {args.num} and {args.batch_size}")
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise UserError(f"--out must name a .png file, got {out}")
    check_writable(out, folder=False)
    options, grid = _sampler_options(args), _grid_options(args)
    if args.sampler is not None:
        check_options(args.sampler, options, grid)
    device = make_accelerator(args.device, "no").device
    denoiser, config = load_model(args.checkpoint, device)
    classes = parse_classes(args.classes, config)
    num, labels, kw = args.num, None, {}
    if classes is not None:  # --num of each class, class by class, with the noise of unconditional sample j
        labels, ids = class_grid(classes, args.num)
        num, kw = len(labels), {"model_kwargs": {"y": labels}, "noise_ids": ids}
    for key in ("sampler", "steps", "spacing"):
        if getattr(args, key) is None:
            setattr(args, key, config["sample"][key])
    options = {**sample_options(config, args.sampler), **options}
    check_options(args.sampler, options, grid)
    start = time.time()
    samples, info = sample_seeded(
        denoiser, args.sampler, args.steps, config["data"]["shape"], num, seed=args.seed, spacing=args.spacing,
        batch_size=args.batch_size, device=device, progress=not args.no_progress, **kw, **options,
    )  # fmt: skip
    nfe = info["nfe"]
    write_samples(out, samples, labels, config, title=f"{args.sampler}, {args.steps} steps")
    grid_used = uses_grid(args.sampler, options)
    how = f"{args.steps} steps, {args.spacing} spacing" if grid_used else f"{info['steps']} adaptive steps"
    print(
        f"sampled {num}{'' if classes is None else f' ({args.num} of each of classes {classes})'} with "
        f"{args.sampler} ({how}) in "
        f"{time.time() - start:.1f} s; NFE {nfe} per sample; wrote {out} and {out.with_suffix('.npz')}"
    )
    return 0


def write_samples(out: Path, samples: torch.Tensor, labels: torch.Tensor | None, config: dict, title: str) -> None:
    """The picture `out` and the raw samples beside it (.npz: samples, labels, uint8 images), written as one set:
    both new or both old (fokker.files.FileSet, the .npz marks it whole)."""
    import numpy as np

    from fokker.data import load_dataset, to_uint8_images
    from fokker.files import FileSet
    from fokker.viz import save_picture

    reference = None
    if samples.dim() == 2:
        reference = load_dataset(config["data"]["name"], num_points=5000, seed=config["train"]["seed"]).data
    arrays = {"samples": samples.numpy()}
    if labels is not None:
        arrays["labels"] = labels.numpy()
    if samples.dim() == 4:
        arrays["images"] = to_uint8_images(samples)
    npz = out.with_suffix(".npz").name
    with FileSet(out.parent, marker=npz) as files:
        save_picture(samples, files.path(out.name), reference=reference, title=title, labels=labels)
        np.savez_compressed(files.path(npz), **arrays)


def cmd_eval(args: argparse.Namespace) -> int:
    """`fokker eval`: sample with each sampler and step count, score, write metrics.json and report.md."""
    from fokker.evaluate import evaluate
    from fokker.files import check_writable
    from fokker.model import weights_path
    from fokker.train import make_accelerator

    if args.num < 2 or args.batch_size < 1:
        raise UserError(f"--num must be at least 2 and --batch-size positive, got {args.num} and {args.batch_size}")
    device = make_accelerator(args.device, "no").device
    out = Path(args.out) if args.out else weights_path(args.checkpoint).parent / "eval"
    check_writable(out, folder=True)
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


def cmd_likelihood(args: argparse.Namespace) -> int:
    """`fokker likelihood`: bits/dim of the run's held-out data with a 95% confidence interval."""
    import json

    from fokker.data import dataset_for
    from fokker.likelihood import check_method_options, likelihood_in_batches, method_options
    from fokker.model import load_model
    from fokker.samplers import time_grid
    from fokker.train import make_accelerator
    from fokker.viz import bound_terms

    if args.num < 2 or args.batch_size < 1:
        raise UserError(f"--num must be at least 2 and --batch-size positive, got {args.num} and {args.batch_size}")
    # the flags given: one of the other method's has no effect and is refused (--steps with --method ode)
    options = {k: getattr(args, k) for k in LIKELIHOOD_FLAGS if getattr(args, k) is not None}
    check_method_options(args.method, options, spell=lambda key: "--" + key.replace("_", "-"))
    device = make_accelerator(args.device, "no").device
    denoiser, config = load_model(args.checkpoint, device)
    data = dataset_for(config, args.split)
    x = data.data[: args.num]
    start = time.time()
    result = likelihood_in_batches(
        denoiser, x, args.method, levels=data.levels, seed=args.seed, batch_size=args.batch_size, device=device,
        progress=not args.no_progress, **options,
    )  # fmt: skip
    mean, se = result.mean_bpd()
    nats = result.nll.double().mean().item()
    what = "upper bound" if args.method == "vlb" else ("dequantized" if data.levels else "continuous")
    print(
        f"{args.method}: {mean:.4f} +- {1.96 * se:.4f} bits/dim (95% CI, {what}) over {len(x)} {args.split} "
        f"examples; {nats:.2f} nats per example; NFE {result.nfe} per example; {time.time() - start:.1f} s"
    )
    dim = x[0].numel()
    if "terms" in result.info:
        parts = {k: result.info[k].double().mean().item() / (dim * math.log(2)) for k in ("prior", "decoder")}
        middle = mean - parts["prior"] - parts["decoder"]
        print(f"  L_T {parts['prior']:.4f}, L_0 (decoder) {parts['decoder']:.4f}, KL terms {middle:.4f} bits/dim")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        used = {k: v for k, v in {**method_options(args.method), **options}.items() if k in LIKELIHOOD_FLAGS}
        record = {
            "method": args.method, "bits_per_dim": mean, "standard_error": se, "nats": nats, "num": len(x),
            "split": args.split, "nfe": result.nfe, "levels": data.levels, "options": used,
            "per_example_bits_per_dim": result.bpd.tolist(),
        }  # fmt: skip
        (out / "likelihood.json").write_text(json.dumps(record, indent=1))
        if "terms" in result.info:
            times = time_grid(denoiser.process, args.steps or denoiser.process.T).flip(0)[1:]
            bound_terms(result.info["terms"] / (dim * math.log(2)), times, out / "terms.png", f"{mean:.3f} bits/dim")
        print(f"wrote {out / 'likelihood.json'}")
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    """`fokker interpolate`: a row of pictures from --a to --b through the model."""
    import torch

    from fokker.data import dataset_for, load_image
    from fokker.files import atomic_write
    from fokker.latents import interpolate
    from fokker.model import load_model
    from fokker.train import make_accelerator
    from fokker.viz import image_grid, save_picture

    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise UserError(f"--out must name a .png file, got {out}")
    device = make_accelerator(args.device, "no").device
    denoiser, config = load_model(args.checkpoint, device)
    shape = tuple(config["data"]["shape"])
    ends = []
    for given in (args.a, args.b):
        if given.isdigit():
            data = dataset_for(config, "test").data
            if int(given) >= len(data):
                raise UserError(f"the test split has {len(data)} examples; index {given} is out of range")
            ends.append(data[int(given)])
        elif len(shape) != 3:
            raise UserError(f"{given!r}: this model's data are vectors; give indices of test examples")
        else:
            ends.append(load_image(given, shape))
    a, b = (e.to(device) for e in ends)
    start = time.time()
    if args.seed is not None and args.method != "ddpm":
        raise UserError(f"interpolation {args.method!r} takes no --seed (it draws no noise; only 'ddpm' does)")
    gen = torch.Generator(device).manual_seed(args.seed or 0) if args.method == "ddpm" else None
    x, info = interpolate(
        denoiser, a, b, args.num, method=args.method, t=args.t, steps=args.steps, rtol=args.rtol, atol=args.atol,
        generator=gen, progress=not args.no_progress,
    )  # fmt: skip
    x = x.float().cpu()
    out.parent.mkdir(parents=True, exist_ok=True)
    if x.dim() == 4:
        picture = torch.cat([a[None].cpu(), x, b[None].cpu()])  # the inputs at both ends, framing the path
        atomic_write(out, lambda tmp: image_grid(picture, nrow=len(picture)).save(tmp, format="PNG"))
    else:
        save_picture(x, out, reference=torch.stack([a, b]).cpu(), title=f"{args.method} interpolation")
    seconds = time.time() - start
    print(f"interpolated {args.num} pictures ({args.method}) in {seconds:.1f} s; NFE {info['nfe']}; wrote {out}")
    return 0


COMMANDS = {
    "train": cmd_train,
    "sample": cmd_sample,
    "eval": cmd_eval,
    "likelihood": cmd_likelihood,
    "interpolate": cmd_interpolate,
}


def main(argv: list[str] | None = None) -> int:
    """Run one command; a user's mistake (or the OS refusing a file) prints one line and exits with status 2;
    fokker's warnings (something damaged and repaired) print one line each."""
    parser = build_parser()
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        default = warnings.showwarning

        def show(message, category, *rest, **kwargs) -> None:
            if issubclass(category, FokkerWarning):
                print(f"fokker {args.command}: warning: {message}", file=sys.stderr)
            else:
                default(message, category, *rest, **kwargs)

        warnings.showwarning = show
        try:
            return COMMANDS[args.command](args)
        except (UserError, OSError) as err:  # OSError: a full disk, a folder made read-only meanwhile
            print(f"fokker {args.command}: error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"fokker {args.command}: interrupted", file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(main())
