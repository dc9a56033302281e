"""Few-step students of the `mnist` preset's 15-minute checkpoint (issue 17's goals): progressive
distillation to 4 steps (v- and eps-prediction students, to show eps fails at few steps), consistency tuning
(ECT) and consistency distillation (CD), each with the same CPU-minute budget, and consistency training from
scratch (the consistency-mnist preset, --ct-minutes, 30 by default); then domain FID and the
recognizable rate (fokker's MNIST classifier) at the students' step counts next to the teacher's DDPM at 100
steps and the teacher itself at the same few steps, sample grids, and the time to draw 64 samples.

    python bench/distill_mnist.py [--teacher RUN] [--minutes 15] [--ct-minutes 30] [--num 500] [--write]

Students are trained once into --out (default runs/bench-distill) and reused; --fresh trains them again."""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch
from _common import footer, invocation, machine, publish

from fokker.cli import main as fokker_cli
from fokker.evaluate import Scorer, reference_data
from fokker.model import load_model
from fokker.samplers import sample_seeded
from fokker.viz import save_picture

DOCS_IMG = Path(__file__).resolve().parents[1] / "docs" / "img"
SECTION = "## Few-step students on MNIST"
ODE_STEPS = (64, 256)  # the teacher's DDIM (its ODE) at the progressive students' first step count, and converged
# name -> (fokker distill flags, or fokker train's for a model trained from scratch; sampler; the step counts to score)
METHODS = {
    "progressive (v)": (["--method", "progressive", "--to-steps", "4", "--from-steps", "64"], "ddim", (4,)),
    "progressive (eps)": (
        ["--method", "progressive", "--to-steps", "4", "--from-steps", "64", "--prediction", "eps"],
        "ddim",
        (4,),
    ),
    "ECT": (["--method", "ect"], "consistency", (1, 2, 4)),
    "CD (edm_heun)": (["--method", "consistency", "--solver", "edm_heun"], "consistency", (1, 2, 4)),
    "CD (edm_heun, uniform pairs)": (
        ["--method", "consistency", "--solver", "edm_heun", "--pairs", "uniform"],
        "consistency",
        (1, 2, 4),
    ),
    "CT (from scratch)": (["train", "--preset", "consistency-mnist"], "consistency", (1, 2, 4)),
}


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def distill(teacher: Path, out: Path, name: str, minutes: float, fresh: bool) -> tuple[Path, float | None]:
    """The student of `name` (trained now unless already in `out`) and the minutes its training took."""
    folder = out / slug(name)
    if fresh and folder.exists():
        shutil.rmtree(folder)
    if (folder / "model.safetensors").exists():
        return folder, None
    flags = METHODS[name][0]
    start = time.time()
    if flags[0] == "train":  # from scratch: no teacher
        args = [*flags, "--minutes", str(minutes), "--out", str(folder)]
    else:
        args = ["distill", "--checkpoint", str(teacher), *flags, "--minutes", str(minutes), "--out", str(folder)]
    if fokker_cli([*args, "--no-progress"]) != 0:
        raise SystemExit(f"fokker {args[0]} failed for {name}")
    return folder, (time.time() - start) / 60


def scores(run: Path, sampler: str, steps: int, num: int, scorer: Scorer, picture: str | None) -> dict:
    """FID and recognizable rate of `num` samples (seed 0) of `run` with `sampler` at `steps` steps."""
    denoiser, config = load_model(run, "cpu")
    samples, info = sample_seeded(denoiser, sampler, steps, config.data.shape, num, seed=0, batch_size=250)
    if picture is not None:
        save_picture(samples[:64], DOCS_IMG / picture)
    s = scorer(samples)
    return {"fid": s["fid"], "recognizable": s["recognizable"], "nfe": info["nfe"]}


def draw_seconds(run: Path, sampler: str, steps: int, repeats: int = 3) -> float:
    """The median seconds to draw 64 samples."""
    denoiser, config = load_model(run, "cpu")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        with torch.no_grad():
            sample_seeded(denoiser, sampler, steps, config.data.shape, 64, seed=1, batch_size=64)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default="runs/bench-samplers/mnist-15min", help="the mnist preset's run")
    p.add_argument("--out", default="runs/bench-distill")
    p.add_argument("--minutes", type=float, default=15.0, help="CPU-minutes per distillation method")
    p.add_argument("--ct-minutes", type=float, default=30.0, help="CPU-minutes of consistency training from scratch")
    p.add_argument("--num", type=int, default=500)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--fresh", action="store_true", help="train the students again")
    p.add_argument("--write", action="store_true", help="write the section into docs/benchmarks.md")
    args = p.parse_args()
    teacher, out = Path(args.teacher), Path(args.out)

    def shown(picture: str) -> str | None:  # sample grids go into docs/img with --write only
        return picture if args.write else None

    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() and not args.fresh else {}
    _, config = load_model(teacher, "cpu")
    reference, held_out = reference_data(config, args.num)
    scorer = Scorer.for_data(reference, config, "cpu", False, None, 0)
    if "teacher" not in results:
        rows = {"ddpm 100": scores(teacher, "ddpm", 100, args.num, scorer, shown("distill_teacher_ddpm100.png"))}
        for n in (1, 2, 4):
            rows[f"ddim {n}"] = scores(teacher, "ddim", n, args.num, scorer, None)
            rows[f"consistency {n}"] = scores(teacher, "consistency", n, args.num, scorer, None)
        results["teacher"] = {"rows": rows, "floor": scorer(held_out.data[: args.num])["fid"]}
    rows = results["teacher"]["rows"]
    for n in ODE_STEPS:  # the teacher's probability-flow ODE, which a progressive student distils
        if f"ddim {n}" not in rows:
            rows[f"ddim {n}"] = scores(teacher, "ddim", n, args.num, scorer, None)
    for name in args.methods:
        budget = args.ct_minutes if METHODS[name][0][0] == "train" else args.minutes
        folder, minutes = distill(teacher, out, name, budget, args.fresh)
        entry = results.get(name, {})
        if minutes is not None or "rows" not in entry:
            _, sampler, steps = METHODS[name]
            entry["rows"] = {
                f"{sampler} {n}": scores(folder, sampler, n, args.num, scorer, shown(f"distill_{slug(name)}_{n}.png"))
                for n in steps
            }
            entry["train"] = _training(folder)
            if minutes is not None:
                entry["minutes"] = minutes
        results[name] = entry
        results_path.write_text(json.dumps(results, indent=1) + "\n")
    timing = {"teacher ddpm 100": draw_seconds(teacher, "ddpm", 100)}  # every student trained so far, in one run
    for name in [m for m in METHODS if m in results]:
        _, sampler, steps = METHODS[name]
        for n in steps:
            timing[f"{name} {sampler} {n}"] = draw_seconds(out / slug(name), sampler, n)
    results["timing"] = timing
    results_path.write_text(json.dumps(results, indent=1) + "\n")
    command, date = invocation("distill_mnist.py")
    publish(SECTION, section(results, args, command, date), args.write)


def _training(folder: Path) -> dict:
    """Updates and the last logged loss of a student (per round for progressive distillation)."""
    rounds = folder / "distill.json"
    if rounds.exists():
        return {"rounds": json.loads(rounds.read_text())["rounds"]}
    log = folder / "metrics.jsonl"  # absent when the run was shorter than its log interval
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.strip()] if log.exists() else []
    logged = [x for x in lines if "loss" in x]
    return {"steps": logged[-1]["step"] if logged else 0, "loss": logged[-1]["loss"] if logged else None}


def goals(results: dict, ref: float) -> list[str]:
    """The issue's goals, each met or missed, from the rows measured."""
    out = []
    pd = results.get("progressive (v)", {}).get("rows", {}).get("ddim 4")
    if pd:
        verdict = "met" if pd["fid"] <= 1.5 * ref else "missed"
        out.append(f"- Progressive distillation to 4 steps: FID {pd['fid']:.1f} = {pd['fid'] / ref:.2f}x the teacher's "
                   f"DDPM-100 (goal <= 1.5x: {verdict}).")  # fmt: skip
        ode = {n: results["teacher"]["rows"].get(f"ddim {n}") for n in ODE_STEPS}
        if all(ode.values()):
            first, last = ode[ODE_STEPS[0]]["fid"], ode[ODE_STEPS[-1]]["fid"]
            out.append(f"  It distils the teacher's ODE (DDIM), whose own FID is {first:.1f} at {ODE_STEPS[0]} "
                       f"steps (the student's source; the student is {pd['fid'] / first:.2f}x it) and {last:.1f} at "
                       f"{ODE_STEPS[-1]} ({last / ref:.2f}x the DDPM-100): a student that matched the ODE exactly "
                       f"would score about that, {'within' if last <= 1.5 * ref else 'above'} the goal.")  # fmt: skip
    for m in ("ECT", "CD (edm_heun)", "CD (edm_heun, uniform pairs)"):
        rows = results.get(m, {}).get("rows", {})
        if "consistency 1" in rows and "consistency 2" in rows:
            one, two = rows["consistency 1"]["recognizable"], rows["consistency 2"]["recognizable"]
            verdict = "met" if one >= 0.5 and two >= 0.7 else "missed"
            out.append(f"- {m}: recognizable {two:.1%} at 2 steps and {one:.1%} at 1 step (goals >= 70% and >= 50%: "
                       f"{verdict}); the teacher's own DDPM-100 samples are "
                       f"{results['teacher']['rows']['ddpm 100']['recognizable']:.1%} recognizable.")  # fmt: skip
    ct, cd = results.get("CT (from scratch)", {}).get("rows", {}), results.get("CD (edm_heun)", {}).get("rows", {})
    if "consistency 1" in ct and "consistency 2" in ct:
        against = (f" (CD: {cd['consistency 1']['fid']:.1f} and {cd['consistency 2']['fid']:.1f})"
                   if "consistency 2" in cd else "")  # fmt: skip
        out.append(f"- Consistency training from scratch: FID {ct['consistency 1']['fid']:.1f} at 1 step and "
                   f"{ct['consistency 2']['fid']:.1f} at 2{against}.")  # fmt: skip
    return out


def section(results: dict, args, command: str, date: str) -> str:
    t = results["teacher"]
    ref = t["rows"]["ddpm 100"]["fid"]
    scratch = (f", and a consistency model trained from scratch for {args.ct_minutes:g} (`fokker train --preset "
               "consistency-mnist`)" if "CT (from scratch)" in results else "")  # fmt: skip
    lines = [
        SECTION,
        "",
        f"Students of the `mnist` preset's 15-minute checkpoint ({args.teacher}), each distilled for {args.minutes:g} "
        f"CPU-minutes (`fokker distill`){scratch}, scored on {args.num} samples (seed 0) by domain FID in "
        "fokker's MNIST "
        f"classifier features against the training digits (held-out digits: {t['floor']:.2f}) and the recognizable "
        "rate (classifier confidence >= 0.9). Every sampler keeps the preset's x0 clip to [-1, 1]. The teacher's "
        "rows are its own samplers at the same step counts. Anchors (CIFAR-10, GPU-days): progressive distillation "
        "FID 3.0 at 4 steps; CD 3.55 at 1 step; iCT 2.51 at 1 step; ECT 2.73 at 2 steps after one GPU-hour.",
        "",
        "| model | sampler | steps | FID | vs teacher DDPM-100 | recognizable |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in [("teacher", t), *[(m, results[m]) for m in METHODS if m in results]]:
        for row, r in entry["rows"].items():
            sampler, steps = row.rsplit(" ", 1)
            lines.append(
                f"| {name} | {sampler} | {steps} | {r['fid']:.1f} | {r['fid'] / ref:.2f}x | {r['recognizable']:.1%} |"
            )
    lines += [
        "",
        *goals(results, ref),
        "",
        f"Samples (64 of the {args.num}, seed 0): the teacher's DDPM-100, then each student:",
        "",
    ]
    lines.append("![teacher ddpm 100](img/distill_teacher_ddpm100.png)")
    for m in METHODS:
        if m in results:
            for row in results[m]["rows"]:
                n = row.rsplit(" ", 1)[1]
                lines.append(f"![{m} {row}](img/distill_{slug(m)}_{n}.png)")
    lines += ["", "Training (updates and last loss):", ""]
    for m in METHODS:
        if m in results:
            tr = results[m]["train"]
            if "rounds" in tr:
                parts = [
                    f"{2 * r['steps']}->{r['steps']}: {r['trained_steps']} updates, loss {r['loss']:.4g}"
                    for r in tr["rounds"]
                ]
                lines.append(f"- {m}: " + "; ".join(parts))
            else:
                loss = "no loss logged" if tr["loss"] is None else f"last loss {tr['loss']:.4g}"
                lines.append(f"- {m}: {tr['steps']} updates, {loss}")
    timing = results.get("timing", {})
    base = timing.get("teacher ddpm 100")
    if base:
        lines += [
            "",
            "Time to draw 64 samples (median of 3, same run):",
            "",
            "| model and sampler | seconds | vs teacher DDPM-100 |",
            "|---|---|---|",
        ]
        for key, sec in timing.items():
            lines.append(
                f"| {key} | {sec:.3f} | {base / sec:.0f}x faster |"
                if key != "teacher ddpm 100"
                else f"| {key} | {sec:.3f} | 1x |"
            )
    lines += ["", *footer(command, date, machine(), "")]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
