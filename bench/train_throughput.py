"""Training throughput (samples per second) of fokker's U-Net against diffusers' UNet2DModel and
denoising-diffusion-pytorch's Unet at equal parameter count and resolution: 1 x 28 x 28 (MNIST),
batch 64, one full step each (noising, forward, eps-MSE, backward, optimizer step), measured in one run
with the steps of the three interleaved. Run by hand, not in CI:

    python bench/train_throughput.py                 # print the table
    python bench/train_throughput.py --write         # also update docs/benchmarks.md

Needs the "bench" extra (diffusers, denoising-diffusion-pytorch; see bench/README.md for machines
without a torchvision build).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone

import torch
from _common import footer, load, machine, publish
from _torchvision_shim import install as install_torchvision

from fokker.config import load_preset
from fokker.losses import simple_loss
from fokker.model import build_model, resolve_config

SECTION = "## Training throughput"
SHAPE = (1, 28, 28)
# (fokker base_channels, denoising-diffusion-pytorch dim, diffusers block_out_channels): matched sizes
SIZES = {"small (~0.3M)": (16, 14, (16, 32, 32)), "medium (~1.1M)": (32, 28, (32, 64, 64))}


def fokker_step(base: int, batch: int) -> tuple[Callable, int]:
    """fokker's training step as its trainer takes it: simple_loss through the Denoiser of the mnist preset."""
    from fokker.data import Dataset

    config = load_preset("mnist")
    config["model"]["network"]["base_channels"] = base
    config = resolve_config(config, Dataset(torch.zeros(1, *SHAPE), None, None, "bench"))
    net, denoiser = build_model(config)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x0, gen = torch.rand(batch, *SHAPE) * 2 - 1, torch.Generator().manual_seed(0)

    def step() -> None:
        loss = simple_loss(denoiser, x0, generator=gen).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step, sum(p.numel() for p in net.parameters())


def diffusers_step(channels: tuple[int, ...], batch: int) -> tuple[Callable, int]:
    """diffusers' training recipe: DDPMScheduler.add_noise, UNet2DModel(...).sample, MSE to the noise."""
    from diffusers import DDPMScheduler, UNet2DModel

    net = UNet2DModel(
        sample_size=SHAPE[1], in_channels=1, out_channels=1, block_out_channels=channels, layers_per_block=1,
        norm_num_groups=8, down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    )  # fmt: skip
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x0 = torch.rand(batch, *SHAPE) * 2 - 1

    def step() -> None:
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (batch,))
        loss = torch.nn.functional.mse_loss(net(sched.add_noise(x0, noise, t), t).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step, sum(p.numel() for p in net.parameters())


def ddp_step(dim: int, batch: int) -> tuple[Callable, int]:
    """denoising-diffusion-pytorch's recipe: GaussianDiffusion(Unet)(images) returns the loss."""
    from denoising_diffusion_pytorch import GaussianDiffusion, Unet

    net = Unet(dim=dim, channels=1, dim_mults=(1, 2, 2))
    diffusion = GaussianDiffusion(net, image_size=SHAPE[1], timesteps=1000)
    opt = torch.optim.Adam(diffusion.parameters(), lr=1e-4)
    x0 = torch.rand(batch, *SHAPE)  # it normalizes [0, 1] images itself

    def step() -> None:
        loss = diffusion(x0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step, sum(p.numel() for p in net.parameters())


def measure(steps: dict[str, Callable], repeats: int, warmup: int) -> dict[str, list[float]]:
    for fn in steps.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in steps}
    for _ in range(repeats):  # interleaved: drift in machine speed hits every library alike
        for name, fn in steps.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def collect(batch: int, repeats: int, warmup: int) -> list[dict]:
    rows = []
    for size, (base, dim, channels) in SIZES.items():
        made = {
            "fokker UNet": fokker_step(base, batch),
            "diffusers UNet2DModel": diffusers_step(channels, batch),
            "denoising-diffusion-pytorch Unet": ddp_step(dim, batch),
        }
        times = measure({k: v[0] for k, v in made.items()}, repeats, warmup)
        for name, (_, params) in made.items():
            med = statistics.median(times[name])
            rows.append({"size": size, "library": name, "params": params, "ms": 1000 * med, "per_s": batch / med})
        print(f"  {size} done", file=sys.stderr)
    return rows


def table(rows: list[dict]) -> list[str]:
    lines = [
        "| size | library | parameters | ms per step | samples/s | fokker's speed-up |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        ours = next(x for x in rows if x["size"] == r["size"] and x["library"].startswith("fokker"))
        lines.append(f"| {r['size']} | {r['library']} | {r['params'] / 1e6:.2f}M | {r['ms']:.0f} | {r['per_s']:.0f} | "
                     f"{ours['per_s'] / r['per_s']:.2f}x |")  # fmt: skip
    return lines


def conclusion(rows: list[dict]) -> str:
    parts = []
    for size in SIZES:
        group = [r for r in rows if r["size"] == size]
        ours = next(r for r in group if r["library"].startswith("fokker"))
        peers = ", ".join(
            f"{ours['per_s'] / r['per_s']:.2f}x {r['library'].split()[0]}" for r in group if r is not ours
        )
        parts.append(f"{size}: fokker trains at {peers}")
    return "; ".join(parts) + " (above 1 = fokker faster)."


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python bench/train_throughput.py --repeats 20 --write",
    )
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20, help="timed steps per library (default: 20)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--write", action="store_true", help=f"replace the '{SECTION}' section of docs/benchmarks.md")
    args = parser.parse_args(argv)
    torchvision = install_torchvision()
    torch.manual_seed(0)
    command = "python bench/train_throughput.py" + "".join(" " + shlex.quote(a) for a in (argv or sys.argv[1:]))
    before = load()
    rows = collect(args.batch, args.repeats, args.warmup)
    conditions = f"{before} in the second before the run, {load()} in the second after; torchvision: {torchvision}"
    date = datetime.now(timezone.utc).strftime("%a %b %d %H:%M:%S UTC %Y")
    text = "\n".join(
        [
            SECTION,
            "",
            f"One training step on a batch of {args.batch} MNIST-sized images (1 x 28 x 28, float32, CPU), "
            "each library "
            "with its own recipe: fokker's `simple_loss` through the Denoiser of the `mnist` preset (cosine VP, "
            "eps) with AdamW; diffusers' `DDPMScheduler.add_noise` + `UNet2DModel` + MSE with AdamW; "
            "denoising-diffusion-pytorch's `GaussianDiffusion(Unet)` loss with Adam. Networks of three levels "
            "(channel multipliers 1, 2, 2), sized to match in parameters: fokker base_channels 16 / 32, "
            "diffusers block_out_channels (16, 32, 32) / (32, 64, 64) with attention at the lowest level, "
            "denoising-diffusion-pytorch dim 14 / 28 (its own linear attention at every level and full "
            f"attention in the middle). Medians of {args.repeats} steps after {args.warmup} warm-up steps, "
            "the libraries' steps interleaved.",
            "",
            *table(rows),
            "",
            f"**Conclusion.** {conclusion(rows)} Throughput decides how many steps a wall-clock budget buys; "
            "what each step is worth is measured in the quality-per-CPU-minute section.",
            "",
            *footer(command, date, machine("diffusers", "denoising-diffusion-pytorch"), conditions),
        ]
    )
    publish(SECTION, text, args.write)


if __name__ == "__main__":
    main()
