"""Latent diffusion and a two-stage cascade on MNIST against the one-stage pixel `mnist` preset at the same total
CPU-minutes (issue 18's goals): the pixel model trained for --minutes; a latent model (latent-mnist) trained for
--minutes less the autoencoder's own training time (--autoencoder, a vae-mnist run); a cascade of a 14x14 base
(mnist-14) and a 14 -> 28 super-resolution model (sr-mnist), --base-minutes plus the rest; and the same
super-resolution model trained without conditioning augmentation (aug_max 0), the ablation. Every model is
scored on --num samples (seed 0) by domain FID in fokker's MNIST classifier features against the training
digits and the recognizable rate, with its preset's sampler (dpmpp_2m_sde, 10 steps, every stage); the time to
draw 64 samples (decoding and both stages included); and each super-resolution model's fidelity: its output
downsampled back to 14x14 against its input, in PSNR, on held-out digits and on the base model's samples.

    python bench/latent_cascade_mnist.py [--minutes 12] [--base-minutes 5] [--autoencoder runs/ae/vae-mnist]
                                         [--num 500] [--write]

Runs are trained once into --out (default runs/bench-latent) and reused; --fresh trains them again."""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch
from _common import footer, invocation, machine, publish

from fokker.autoencoder import psnr
from fokker.cascade import downsample, sample_cascade, upsample
from fokker.checkpoint import load_checkpoint
from fokker.cli import main as fokker_cli
from fokker.data import dataset_for
from fokker.evaluate import Scorer, reference_data
from fokker.model import load_model
from fokker.samplers import sample_seeded
from fokker.viz import save_picture

DOCS_IMG = Path(__file__).resolve().parents[1] / "docs" / "img"
SECTION = "## Latent diffusion and cascades on MNIST"
SR_LEVELS = (0.0, 0.1)  # the augmentation levels the cascade is sampled at (the ablation's model: 0 only)


def train(out: Path, name: str, args: list[str], minutes: float, fresh: bool) -> Path:
    """The run `name` in `out`, trained now for `minutes` unless it is there already."""
    folder = out / name
    if fresh and folder.exists():
        shutil.rmtree(folder)
    flags = ["train", *args, "--minutes", f"{minutes:g}", "--out", str(folder), "--no-progress"]
    if not (folder / "model.safetensors").exists() and fokker_cli(flags) != 0:
        raise SystemExit(f"fokker train failed for {name}")
    return folder


def trained(run: Path) -> dict:
    """Minutes and updates of a run (its newest checkpoint)."""
    state = load_checkpoint(run)
    return {"minutes": state["trainer"]["elapsed"] / 60, "steps": state["step"]}


def draw(run: Path, num: int, seed: int, upsampler: Path | None = None, level: float = 0.0) -> tuple:
    """(`num` samples of the run as data, seconds): a latent model's decoded, a cascade's through both stages."""
    denoiser, config = load_model(run, "cpu")
    start = time.perf_counter()
    with torch.no_grad():
        if upsampler is None:
            z, _ = sample_seeded(denoiser, config.sample.sampler, config.sample.steps, config.model_shape, num,
                                 seed=seed, batch_size=250)  # fmt: skip
            x = denoiser.to_data(z)
        else:
            up, up_config = load_model(upsampler, "cpu")
            x, _ = sample_cascade(denoiser, config, up, up_config, num, seed=seed, aug_level=level, batch_size=250)
    return x, time.perf_counter() - start


def draw_seconds(run: Path, upsampler: Path | None = None, repeats: int = 3) -> float:
    """The median seconds to draw 64 samples."""
    return sorted(draw(run, 64, 1, upsampler)[1] for _ in range(repeats))[repeats // 2]


def fidelity(sr: Path, low: torch.Tensor, level: float = 0.0) -> float:
    """PSNR (dB) of the super-resolution model's output downsampled to its input's size against that input."""
    denoiser, config = load_model(sr, "cpu")
    with torch.no_grad():
        high, _ = upsample(low, denoiser, config, seed=0, aug_level=level, batch_size=250)
    return psnr(downsample(high.clamp(-1, 1), low.shape[-1]), low.clamp(-1, 1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench-latent")
    p.add_argument("--autoencoder", default="runs/ae/vae-mnist", help="a vae-mnist run (its minutes count)")
    p.add_argument("--minutes", type=float, default=12.0, help="CPU-minutes of each model in all")
    p.add_argument("--base-minutes", type=float, default=5.0, help="of the cascade's, its base model's")
    p.add_argument("--num", type=int, default=500)
    p.add_argument("--fresh", action="store_true", help="train the runs again")
    p.add_argument("--write", action="store_true", help="write the section into docs/benchmarks.md")
    args = p.parse_args()
    out, ae = Path(args.out), Path(args.autoencoder)
    out.mkdir(parents=True, exist_ok=True)
    ae_minutes = trained(ae)["minutes"]
    sr_minutes = args.minutes - args.base_minutes
    plan = {  # name -> (fokker train flags, minutes)
        "pixel": (["--preset", "mnist"], args.minutes),
        "latent": (["--preset", "latent-mnist", "--autoencoder", str(ae)], args.minutes - ae_minutes),
        "base": (["--preset", "mnist-14"], args.base_minutes),
        "sr": (["--preset", "sr-mnist"], sr_minutes),
        "sr-noaug": (["--preset", "sr-mnist", "model.network.aug_max=0"], sr_minutes),
    }
    runs = {name: train(out, name, flags, minutes, args.fresh) for name, (flags, minutes) in plan.items()}
    _, config = load_model(runs["pixel"], "cpu")
    reference, held_out = reference_data(config, args.num)
    scorer = Scorer.for_data(reference, config, "cpu", False, None, 0)
    results = {"floor": scorer(held_out.data[: args.num])["fid"], "train": {k: trained(v) for k, v in runs.items()}}
    results["train"]["autoencoder"] = trained(ae)
    models = {  # name -> (run, upsampler, augmentation level)
        "pixel (mnist)": (runs["pixel"], None, 0.0),
        "latent (vae-mnist + latent-mnist)": (runs["latent"], None, 0.0),
        **{f"cascade (mnist-14 + sr-mnist), aug {s:g}": (runs["base"], runs["sr"], s) for s in SR_LEVELS},
        "cascade, SR without augmentation": (runs["base"], runs["sr-noaug"], 0.0),
    }
    rows = {}
    for i, (name, (run, up, level)) in enumerate(models.items()):
        x, _ = draw(run, args.num, 0, up, level)
        if args.write:
            save_picture(x[:64].clamp(-1, 1), DOCS_IMG / f"latent_cascade_{i}.png", title=name)
        rows[name] = {k: scorer(x)[k] for k in ("fid", "recognizable")}
        print(name, rows[name], flush=True)
    results["rows"] = rows
    base_samples, _ = draw(runs["base"], args.num, 0)
    low_test = downsample(dataset_for(config, "test").data[: args.num], 14)
    results["fidelity"] = {
        name: {"held-out": fidelity(runs[name], low_test), "base samples": fidelity(runs[name], base_samples)}
        for name in ("sr", "sr-noaug")
    }
    results["timing"] = {name: draw_seconds(runs[name]) for name in ("pixel", "latent")}
    results["timing"]["cascade"] = draw_seconds(runs["base"], runs["sr"])
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    command, date = invocation("latent_cascade_mnist.py")
    publish(SECTION, section(results, args, ae_minutes, command, date), args.write)


def section(results: dict, args, ae_minutes: float, command: str, date: str) -> str:
    rows, tr, timing, fid = results["rows"], results["train"], results["timing"], results["fidelity"]
    pixel = rows["pixel (mnist)"]["fid"]
    lines = [
        SECTION,
        "",
        f"Each model trained for {args.minutes:g} CPU-minutes in all on 2 cores, scored on {args.num} samples (seed "
        "0) by domain FID in fokker's MNIST classifier features against the training digits (held-out digits: "
        f"{results['floor']:.2f}) and the recognizable rate (classifier confidence >= 0.9); every stage samples "
        "with its preset's dpmpp_2m_sde at 10 steps. The latent model's minutes include its autoencoder's "
        f"({ae_minutes:.1f}, `--preset vae-mnist`); the cascade's are its 14x14 base's ({args.base_minutes:g}) and "
        f"its super-resolution model's ({args.minutes - args.base_minutes:g}).",
        "",
        "| model | FID | vs pixel | recognizable |",
        "|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['fid']:.1f} | {r['fid'] / pixel:.2f}x | {r['recognizable']:.1%} |")
    lines += [
        "",
        "Training (minutes, updates): "
        + "; ".join(f"{k} {v['minutes']:.1f} min, {v['steps']} updates" for k, v in tr.items())
        + ".",
        "",
        "Time to draw 64 samples (median of 3, same run; the latent model's decoding and both stages of the cascade "
        "included): "
        + ", ".join(f"{k} {v:.2f} s" for k, v in timing.items())
        + f"; the latent model takes {timing['latent'] / timing['pixel']:.2f} of the pixel model's time.",
        "",
        "Super-resolution fidelity, the output downsampled to 14x14 against the input (PSNR, dB; augmentation level "
        "0): "
        + "; ".join(
            f"{k}: {v['held-out']:.1f} on held-out digits, {v['base samples']:.1f} on the base model's samples"
            for k, v in fid.items()
        )
        + ".",
        "",
    ]
    lines += [f"![{name}](img/latent_cascade_{i}.png)" for i, name in enumerate(rows)]
    lines += ["", *footer(command, date, machine(), "nothing else running")]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
