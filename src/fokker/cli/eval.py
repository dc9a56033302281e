"""`fokker eval`: sample with each sampler and step count, score, write metrics.json and report.md
(fokker.evaluate.evaluate does the work)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fokker.cli.flags import add_checkpoint, add_guidance, add_sampling, command_parser, guides_from, sampler_options
from fokker.errors import UserError

EXAMPLE = """examples:
  fokker eval --checkpoint runs/mnist --sampler ddpm ddim --steps 10 20 50 100 --num 1000
  fokker eval --checkpoint runs/moons --steps 5 10 20 50 --num 4000 --out runs/moons/eval
  fokker eval --checkpoint runs/mnist-cond --sampler ddim --steps 50 --guidance 1 2 3 5 --num 2000
  fokker eval --checkpoint runs/mnist --classifier runs/clf --classifier-scale 1 3 10 --num 2000
  fokker eval --checkpoint runs/mnist-ect --sampler consistency --steps 1 2 4 --teacher runs/mnist --num 500
  (open OUT/report.md: sample grids, the training-loss curve and every metric against NFE)"""

# the metrics printed, those of the samples' kind (images or vectors) that the record has
SHOWN = ("fid", "inception_fid", "recognizable", "sliced_w2", "cross_entropy")


def add_parser(sub) -> None:
    e = command_parser(
        sub, "eval", "score samples with offline metrics and write a report",
        "Sample with each sampler and step count, score the samples against the training data "
        "(FID / KID / IS / recognizable rate in fokker's own classifier features for images; sliced W2, MMD "
        "and, for analytic targets, the cross-entropy for vectors) and write OUT/metrics.json and OUT/report.md.",
        EXAMPLE,
    )  # fmt: skip
    add_checkpoint(e)
    add_sampling(e, several=True)
    e.add_argument("--num", type=int, default=1000, help="samples per sampler and step count (default: 1000)")
    e.add_argument("--out", help="report folder (default: eval/ in the run folder)")
    add_guidance(
        e, several=True, group="guided evaluation (sample i of class i %% K; adds label agreement, per-class FID)"
    )
    t = e.add_argument_group("a distilled student against its teacher (rows of both, the same scorer)")
    t.add_argument("--teacher", metavar="RUN", help="also evaluate this run (the teacher) with its own sampler")
    t.add_argument("--teacher-sampler", help="the teacher's sampler (default: its run's)")
    t.add_argument("--teacher-steps", type=int, nargs="+", help="the teacher's step counts (default: its run's)")
    e.add_argument(
        "--inception-weights",
        help="also Inception FID / KID / IS, from this local torch-fidelity weights file (needs fokker[inception])",
    )


def run(args: argparse.Namespace) -> int:
    """Evaluate, then print one line per sample set and the held-out floor."""
    from fokker.devices import inference_device
    from fokker.evaluate import Teacher, evaluate
    from fokker.files import check_writable
    from fokker.model import weights_path

    if args.num < 2 or args.batch_size < 1:
        raise UserError(f"--num must be at least 2 and --batch-size positive, got {args.num} and {args.batch_size}")
    device = inference_device(args.device)
    out = Path(args.out) if args.out else weights_path(args.checkpoint).parent / "eval"
    check_writable(out, folder=True)
    guides, _ = guides_from(args, device)
    teacher = None
    if args.teacher is not None:
        teacher = Teacher(args.teacher, args.teacher_sampler, args.teacher_steps)
    elif args.teacher_sampler is not None or args.teacher_steps is not None:
        raise UserError("--teacher-sampler and --teacher-steps apply only with --teacher")
    record = evaluate(
        args.checkpoint, args.sampler, args.steps, args.num, out, seed=args.seed, spacing=args.spacing,
        batch_size=args.batch_size, device=device, progress=not args.no_progress, options=sampler_options(args),
        inception_weights=args.inception_weights, guides=guides, teacher=teacher,
    )  # fmt: skip
    keys = [k for k in SHOWN if k in record["floor"]]
    for r in record["runs"]:
        shown = ", ".join(f"{k} {r[k]:.4g}" for k in (*keys, "agreement") if k in r)
        guide = f"  {r['guide']:>9}" if r.get("guide") else ""
        model = f"{r['model']:>8} " if r.get("model") else ""
        head = f"{model}{r['sampler']:>10} {r['steps']:>5} steps{guide}  NFE {r['nfe']:>5}"
        print(f"{head}  {shown}  ({r['seconds']:.1f} s)")
    print(f"{'held-out':>10} {'':>18}  " + ", ".join(f"{k} {record['floor'][k]:.4g}" for k in keys))
    print(f"wrote {out / 'metrics.json'} and {out / 'report.md'}")
    return 0
