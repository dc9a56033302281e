"""DiT (Peebles & Xie 2023) against the U-Net on MNIST at (nearly) equal parameters and equal CPU-minutes, on pixels
and on latents, and the adaLN-Zero / plain adaLN ablation (issue 18's goals). The U-Nets are the runs of
bench/latent_cascade_mnist.py (the `mnist` preset for --minutes, `latent-mnist` on its autoencoder): each DiT
here is that preset with only model.network replaced, trained for the same minutes, and scored the same way
(--num samples, seed 0, domain FID in fokker's MNIST classifier features and the recognizable rate, the
preset's sampler: dpmpp_2m_sde at 10 steps).

    python bench/dit_mnist.py [--runs runs/bench-latent] [--num 500] [--write]

DiT runs are trained once into --runs (dit-pixel, dit-pixel-adaln, dit-latent) and reused; --fresh trains
them again."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _common import footer, invocation, machine, publish
from latent_cascade_mnist import draw, train, trained

from fokker.evaluate import Scorer, reference_data
from fokker.model import load_model
from fokker.viz import save_picture

DOCS_IMG = Path(__file__).resolve().parents[1] / "docs" / "img"
SECTION = "## DiT against the U-Net on MNIST"
PIXEL_DIT = "{type: dit, patch_size: 2, hidden_size: 64, depth: 4, num_heads: 4"  # 0.33M: the U-Net's 0.30M
LATENT_DIT = "{type: dit, patch_size: 1, hidden_size: 96, depth: 4, num_heads: 4"  # 0.72M: the U-Net's 0.76M


def parameters(run: Path) -> int:
    denoiser, _ = load_model(run, "cpu")
    return sum(p.numel() for p in denoiser.fn.parameters())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default="runs/bench-latent", help="bench/latent_cascade_mnist.py's runs")
    p.add_argument("--num", type=int, default=500)
    p.add_argument("--fresh", action="store_true", help="train the DiTs again")
    p.add_argument("--write", action="store_true", help="write the section into docs/benchmarks.md")
    args = p.parse_args()
    out = Path(args.runs)
    unet_pixel, unet_latent = out / "pixel", out / "latent"
    pixel_minutes, latent_minutes = trained(unet_pixel)["minutes"], trained(unet_latent)["minutes"]
    _, latent_config = load_model(unet_latent, "cpu")
    ae = ["--autoencoder", latent_config.latent.autoencoder]
    plan = {  # name -> (fokker train flags, minutes)
        "dit-pixel": (["--preset", "mnist", f"model.network={PIXEL_DIT}}}"], pixel_minutes),
        "dit-pixel-adaln": (["--preset", "mnist", f"model.network={PIXEL_DIT}, block: adaln}}"], pixel_minutes),
        "dit-latent": (["--preset", "latent-mnist", *ae, f"model.network={LATENT_DIT}}}"], latent_minutes),
    }
    runs = {name: train(out, name, flags, round(m, 2), args.fresh) for name, (flags, m) in plan.items()}
    runs |= {"unet-pixel": unet_pixel, "unet-latent": unet_latent}
    _, config = load_model(unet_pixel, "cpu")
    reference, held_out = reference_data(config, args.num)
    scorer = Scorer.for_data(reference, config, "cpu", False, None, 0)
    results = {"floor": scorer(held_out.data[: args.num])["fid"], "rows": {}}
    for name, run in runs.items():
        x, _ = draw(run, args.num, 0)
        if args.write:
            save_picture(x[:64].clamp(-1, 1), DOCS_IMG / f"dit_{name}.png", title=name)
        results["rows"][name] = {
            **{k: scorer(x)[k] for k in ("fid", "recognizable")}, "parameters": parameters(run), **trained(run)
        }  # fmt: skip
        print(name, results["rows"][name], flush=True)
    (out / "dit.json").write_text(json.dumps(results, indent=1) + "\n")
    command, date = invocation("dit_mnist.py")
    publish(SECTION, section(results, args, command, date), args.write)


def section(results: dict, args, command: str, date: str) -> str:
    rows = results["rows"]
    pix, lat = rows["unet-pixel"]["fid"], rows["unet-latent"]["fid"]
    lines = [
        SECTION,
        "",
        "Each DiT is its U-Net's preset with only `model.network` replaced (same process, loss, learning rate, batch, "
        f"EMA and sampler), trained for the same CPU-minutes on 2 cores, scored on {args.num} samples (seed 0) by "
        "domain FID in fokker's MNIST classifier features against the training digits (held-out digits: "
        f"{results['floor']:.2f}) and the recognizable rate. Pixels: patch 2 on 28 x 28 (196 tokens); latents: "
        "patch 1 on the 4 x 7 x 7 latents of the vae-mnist autoencoder (49 tokens).",
        "",
        "| model | parameters | minutes | updates | FID | vs its U-Net | recognizable |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        ref = lat if "latent" in name else pix
        lines.append(
            f"| {name} | {r['parameters'] / 1e6:.2f}M | {r['minutes']:.1f} | {r['steps']} | {r['fid']:.1f} | "
            f"{r['fid'] / ref:.2f}x | {r['recognizable']:.1%} |"
        )
    zero, plain = rows["dit-pixel"]["fid"], rows["dit-pixel-adaln"]["fid"]
    ratios = rows["dit-pixel"]["fid"] / pix, rows["dit-latent"]["fid"] / lat
    lines += [
        "",
        f"- DiT / U-Net FID: pixels {ratios[0]:.2f}x, latents {ratios[1]:.2f}x (goal <= 1.5x: "
        f"{'met' if max(ratios) <= 1.5 else 'missed'}).",
        f"- adaLN-Zero {zero:.1f} against plain adaLN {plain:.1f}: "
        + (
            "adaLN-Zero is better, the sign of the paper's result (its Figure 5)."
            if zero < plain
            else "plain adaLN is as good or better here: the paper's result does not hold at this size and budget."
        ),
        "",
        *[f"![{name}](img/dit_{name}.png)" for name in rows],
        "",
        *footer(command, date, machine(), "nothing else running"),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
