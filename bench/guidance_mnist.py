"""Guidance on MNIST at a CPU budget: a conditional `mnist` preset (p_uncond 0.1) trained for 15 minutes and
sampled with classifier-free guidance over w; the unconditional preset trained as long, guided by a
noise-conditional classifier (`classifier-mnist`, 5 minutes) over the classifier scale s. Every setting:
500 samples (50 of each class) with DDPM at 100 steps, scored like the other MNIST benchmarks (domain FID in
fokker's MNIST classifier features against the 4,500 training images) and by label agreement (that
classifier's label against the class asked for). Run by hand on an idle machine, about 50 minutes:

    python bench/guidance_mnist.py --write

Runs are kept in --runs (default runs/bench-guidance) and reused when they are there: delete one to train it
again (its budget is part of its name); so are their evaluations (RUN/eval*/metrics.json)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch
from _common import footer, invocation, load, machine, publish

from fokker.config import apply_overrides, load_preset
from fokker.evaluate import evaluate
from fokker.guidance.options import Guidance
from fokker.train import train

SECTION = "## Guidance on MNIST"
IMG = Path(__file__).resolve().parent.parent / "docs" / "img"
WS = (1.0, 1.5, 2.0, 3.0, 4.0)
SS = (1.0, 2.0, 4.0, 8.0)


def trained(runs: Path, name: str, preset: str, minutes: float, overrides: list[str]) -> Path:
    """The run `name`, trained now for `minutes` (no pictures on the clock) unless it is there."""
    out = runs / f"{name}-{minutes:g}min"
    if not (out / "model.safetensors").exists():
        config = apply_overrides(load_preset(preset), [*overrides, "train.sample_every=1000000000"])
        start = time.time()
        result = train(config, out, device="cpu", budget={"minutes": minutes, "steps": None}, progress=False)
        print(f"  {name}: {result.step} steps in {time.time() - start:.0f} s", file=sys.stderr)
    return out


def evaluated(run: Path, name: str, guides: dict | None, common: dict) -> dict:
    """The record of evaluate(run, out=run/name, ...), or the saved one (its metrics.json) when it has the same
    number of samples and guides: delete it to evaluate again."""
    out, saved = run / name, run / name / "metrics.json"
    if saved.exists():
        record = json.loads(saved.read_text())
        if record["num"] == common["num"] and [r.get("guide") for r in record["runs"]] == list(guides or [None]):
            return record
    return evaluate(run, out=out, guides=guides, **common)


def rows(record: dict, scale: str) -> list[str]:
    """Table rows of a guided evaluation: guide, NFE, FID, KID, agreement, worst and best per-class FID."""
    out = []
    for r in record["runs"]:
        per_class = [v for v in r["per_class"] if v == v]
        out.append(
            f"| {r['guide'].replace('s=', scale + '=').replace('w=', scale + '=')} | {r['nfe']} | {r['fid']:.1f} | "
            f"{r['kid']:.2f} | {r['agreement']:.3f} | {min(per_class):.1f} to {max(per_class):.1f} |"
        )
    return out


def parser(doc: str, minutes: str, num: str) -> argparse.ArgumentParser:
    """The options the MNIST guidance benchmarks share: where the runs are, the diffusion models' budget, how
    many samples or test digits, and --write."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=Path, default=Path("runs/bench-guidance"), help="kept runs, reused")
    p.add_argument("--minutes", type=float, default=15.0, help=minutes)
    p.add_argument("--num", type=int, default=500, help=num)
    p.add_argument("--write", action="store_true", help="write the section into docs/benchmarks.md")
    return p


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__, "budget of each diffusion model", "samples per setting")
    p.add_argument("--classifier-minutes", type=float, default=5.0)
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    command, date = invocation("guidance_mnist.py")
    before = load()
    cond = trained(args.runs, "cond", "mnist", args.minutes, ["model.conditional=true"])
    uncond = trained(args.runs, "uncond", "mnist", args.minutes, [])
    clf = trained(args.runs, "classifier", "classifier-mnist", args.classifier_minutes, [])
    from fokker.classifier import load_classifier

    classifier = load_classifier(clf)[0]
    common = {"samplers": ["ddpm"], "steps": [100], "num": args.num, "device": "cpu", "progress": False}
    free = evaluated(cond, "eval-guidance", {f"w={w:g}": Guidance(scale=w) for w in WS}, common)
    by_classifier = {f"s={s:g}": Guidance(classifier=classifier, classifier_scale=s) for s in SS}
    guided = evaluated(uncond, "eval-guidance", by_classifier, common)
    unguided = evaluated(uncond, "eval", None, common)["runs"][0]
    shutil.copyfile(cond / "eval-guidance" / "guidance_tradeoff.png", IMG / "guidance_tradeoff_mnist.png")
    best = max(free["runs"], key=lambda r: (r["agreement"] >= 0.95, -r["fid"]))
    head = "| guide | NFE | domain FID | KID | label agreement | per-class FID |\n|---|---:|---:|---:|---:|---|"
    text = "\n".join([
        SECTION, "",
        f"Both diffusion models: the `mnist` preset, {args.minutes:g} minutes each on this machine (the conditional "
        f"one with `model.conditional=true`, label dropout 0.1); the classifier: `classifier-mnist`, "
        f"{args.classifier_minutes:g} minutes. {args.num} samples per setting, {args.num // 10} of each class, "
        "DDPM 100 steps, "
        "scored against the 4,500 training images in the features of fokker's MNIST classifier; label agreement "
        "is that classifier's label against the class asked for. The unguided unconditional model: domain FID "
        f"{unguided['fid']:.1f}; {free['floor']['size']} held-out images scored the same way (the floor of finite "
        f"samples): {free['floor']['fid']:.1f}. Per-class FID compares {args.num // 10} samples with 450 training "
        "images of the class, biased upward by the small sample: compare it across rows only.", "",
        "**Classifier-free guidance** (w = 1: the conditional model; NFE counts both halves)", "", head,
        *rows(free, "w"), "",
        "**Classifier guidance** of the unconditional model (score form, scale s)", "", head, *rows(guided, "s"), "",
        f"**Conclusion.** Goals: label agreement >= 0.95 with a domain FID no worse than the unconditional "
        f"model's ({unguided['fid']:.1f} here) at the best w: at {best['guide']} agreement {best['agreement']:.3f}, "
        f"FID {best['fid']:.1f}; the classifier guides the unconditional model to agreement >= 0.90: best "
        f"{max(r['agreement'] for r in guided['runs']):.3f}. Over w, agreement goes from "
        f"{free['runs'][0]['agreement']:.3f} to {free['runs'][-1]['agreement']:.3f} and FID from "
        f"{free['runs'][0]['fid']:.1f} to {free['runs'][-1]['fid']:.1f}: precision bought with diversity, the "
        "trade-off of Ho & Salimans (2022, fig. 4).", "",
        "![FID against label agreement over w](img/guidance_tradeoff_mnist.png)", "",
        *footer(command, date, machine(), f"{before} before the run, {load()} after"),
    ])  # fmt: skip
    publish(SECTION, text, args.write)


if __name__ == "__main__":
    main()
