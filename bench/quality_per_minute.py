"""Quality per CPU-minute: fokker's `mnist` preset against denoising-diffusion-pytorch's Trainer on the same
4,500 MNIST training images, the same machine and the same wall-clock budgets (5 and 15 minutes, the
second continuing the first), then the same number of samples at 100 sampler steps, scored by the same
domain FID (fokker's MNIST classifier features, against the training images). Run by hand, not in CI;
it takes about 45 minutes and must have the machine to itself:

    python bench/quality_per_minute.py --write

Needs the "bench" extra (denoising-diffusion-pytorch; see bench/README.md for machines without torchvision).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from _common import footer, load, machine, publish
from _torchvision_shim import install as install_torchvision
from PIL import Image

from fokker.config import apply_overrides, load_preset
from fokker.data import load_dataset, to_uint8_images
from fokker.metrics import image_metrics, load_classifier
from fokker.model import load_model
from fokker.samplers import sample_seeded
from fokker.train import train
from fokker.viz import save_picture

SECTION = "## Quality per CPU-minute"
SAMPLER_STEPS = 100


def fokker_runs(out: Path, budgets: list[float], num: int) -> dict[float, torch.Tensor]:
    """Train the mnist preset for the first budget, sample, then resume to each later budget and sample."""
    config = apply_overrides(load_preset("mnist"), ["train.sample_every=1000000000"])  # no pictures on the clock
    s = config["sample"]
    samples = {}
    for i, minutes in enumerate(budgets):
        result = train(config, out, resume=i > 0, device="cpu", budget={"minutes": minutes, "steps": None},
                       progress=False)  # fmt: skip
        denoiser, _ = load_model(out)
        x, _ = sample_seeded(denoiser, s["sampler"], SAMPLER_STEPS, (1, 28, 28), num, seed=0)
        samples[minutes] = (x, result.step, f"{s['sampler']} {SAMPLER_STEPS} steps")
        print(f"  fokker {minutes} min: {result.step} steps", file=sys.stderr)
    return samples


def ddp_runs(folder: Path, out: Path, budgets: list[float], num: int) -> dict[float, torch.Tensor]:
    """denoising-diffusion-pytorch's Trainer with its defaults (Unet dim 16 x (1, 2, 2), v-prediction,
    sigmoid schedule, Adam 1e-4, EMA) at batch 64, stopped by the clock; its default strided sampler
    (DDIM, eta 0) at 100 steps."""
    from denoising_diffusion_pytorch import GaussianDiffusion, Trainer, Unet

    class TimedTrainer(Trainer):
        """Trainer.train runs while step < train_num_steps: the property turns that into a clock."""

        deadline = 0.0

        @property
        def train_num_steps(self) -> int:
            return 10**9 if time.time() < self.deadline else 0

        @train_num_steps.setter
        def train_num_steps(self, value: int) -> None:
            pass

    torch.manual_seed(0)
    unet = Unet(dim=16, channels=1, dim_mults=(1, 2, 2))
    diffusion = GaussianDiffusion(unet, image_size=28, timesteps=1000, sampling_timesteps=SAMPLER_STEPS)
    trainer = TimedTrainer(
        diffusion, str(folder), train_batch_size=64, augment_horizontal_flip=False, calculate_fid=False,
        save_and_sample_every=10**9, results_folder=str(out), amp=False,
    )  # fmt: skip
    samples, spent = {}, 0.0
    for minutes in budgets:
        trainer.deadline = time.time() + (minutes - spent) * 60
        trainer.train()
        spent = minutes
        model = trainer.ema.ema_model.eval()
        with torch.inference_mode():
            torch.manual_seed(0)
            x = torch.cat([model.sample(batch_size=n) for n in [128] * (num // 128) + [num % 128] if n])
        samples[minutes] = (x * 2 - 1, trainer.step, f"DDIM (eta 0) {SAMPLER_STEPS} steps")
        print(f"  ddp {minutes} min: {trainer.step} steps", file=sys.stderr)
    return samples


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python bench/quality_per_minute.py --minutes 5 15 --num 500 --write",
    )
    parser.add_argument("--minutes", type=float, nargs="+", default=[5.0, 15.0], help="cumulative budgets")
    parser.add_argument("--num", type=int, default=500, help="samples per model (default: 500)")
    parser.add_argument("--write", action="store_true", help=f"replace the '{SECTION}' section of docs/benchmarks.md")
    args = parser.parse_args(argv)
    torchvision = install_torchvision()
    command = "python bench/quality_per_minute.py" + "".join(" " + shlex.quote(a) for a in (argv or sys.argv[1:]))
    torch.set_num_threads(2)
    classifier = load_classifier("mnist")
    reference = load_dataset("mnist", split="train")
    held_out = load_dataset("mnist", split="test").data
    before = load()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = tmp / "mnist_png"
        folder.mkdir()
        for i, img in enumerate(to_uint8_images(reference.data)):
            Image.fromarray(img[..., 0]).save(folder / f"{i:05d}.png")
        results = {
            "fokker (mnist preset)": fokker_runs(tmp / "fokker", args.minutes, args.num),
            "denoising-diffusion-pytorch Trainer": ddp_runs(folder, tmp / "ddp", args.minutes, args.num),
        }
    conditions = f"{before} in the second before the run, {load()} in the second after; torchvision: {torchvision}"
    pictures = Path(__file__).resolve().parent.parent / "docs" / "img"
    pictures.mkdir(parents=True, exist_ok=True)
    rows = []
    floor = image_metrics(held_out, reference.data, classifier, generator=torch.Generator().manual_seed(0))
    for lib, runs in results.items():
        for minutes, (x, steps, sampler) in runs.items():
            m = image_metrics(x, reference.data, classifier, generator=torch.Generator().manual_seed(0))
            name = f"quality_{'fokker' if lib.startswith('fokker') else 'ddp'}_{minutes:g}min.png"
            save_picture(x[:64], pictures / name)
            rows.append((lib, minutes, steps, sampler, m, name))
    table = ["| library | minutes | training steps | sampler | domain FID | KID | recognizable | classes | samples |",
             "|---|---:|---:|---|---:|---:|---:|---:|---|"]  # fmt: skip
    for lib, minutes, steps, sampler, m, name in rows:
        table.append(f"| {lib} | {minutes:g} | {steps} | {sampler} | {m['fid']:.1f} | {m['kid']:.1f} | "
                     f"{m['recognizable']:.2f} | {m['classes_present']} | ![](img/{name}) |")  # fmt: skip
    table.append(f"| held-out digits ({len(held_out)}) | | | | {floor['fid']:.1f} | {floor['kid']:.1f} | "
                 f"{floor['recognizable']:.2f} | {floor['classes_present']} | |")  # fmt: skip
    verdicts = []
    for minutes in args.minutes:
        ours = next(r[4]["fid"] for r in rows if r[0].startswith("fokker") and r[1] == minutes)
        peer = next(r[4]["fid"] for r in rows if not r[0].startswith("fokker") and r[1] == minutes)
        verdicts.append(f"at {minutes:g} minutes fokker's FID is {ours:.1f} against {peer:.1f} "
                        f"({'better' if ours < peer else 'worse'})")  # fmt: skip
    date = datetime.now(timezone.utc).strftime("%a %b %d %H:%M:%S UTC %Y")
    text = "\n".join(
        [
            SECTION,
            "",
            f"Both libraries train on the same 4,500 MNIST training images (fokker from memory; "
            "denoising-diffusion-pytorch from the same images written as PNG files, its Trainer's data path) on "
            "this machine, one after the other, each for the same wall-clock budgets (the longer budget "
            "continues the shorter run), with no sample pictures on the clock. fokker: the `mnist` preset as "
            "shipped. denoising-diffusion-pytorch: its Trainer and GaussianDiffusion defaults (v-prediction, "
            "sigmoid schedule, Adam 1e-4, EMA) with `Unet(dim=16, dim_mults=(1, 2, 2))` (0.40M parameters, "
            "the nearest to fokker's 0.30M), batch 64, no horizontal flips (digits), FID off. Then "
            f"{args.num} samples each, at {SAMPLER_STEPS} sampler steps with each library's own strided sampler, "
            "scored against the 4,500 training images in the features of fokker's MNIST classifier (the same "
            "for both; its held-out accuracy is in the eval report). Lower FID / KID is better.",
            "",
            *table,
            "",
            "**Conclusion.** Goal: a better domain FID than denoising-diffusion-pytorch at equal wall-clock; "
            + "; ".join(verdicts)
            + ".",
            "",
            *footer(command, date, machine("denoising-diffusion-pytorch"), conditions),
        ]
    )
    publish(SECTION, text, args.write)


if __name__ == "__main__":
    main()
