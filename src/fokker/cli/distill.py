"""`fokker distill`: a few-step student of a trained diffusion run: progressive distillation's rounds
(fokker.distill.progressive), consistency distillation or consistency tuning (ECT) into one run folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fokker.cli.flags import add_checkpoint, add_device, add_progress, command_parser
from fokker.errors import UserError

EXAMPLE = """examples:
  fokker distill --checkpoint runs/mnist --method progressive --to-steps 4 --minutes 15 --out runs/mnist-pd4
  fokker sample --checkpoint runs/mnist-pd4 --sampler ddim --steps 4         (its own step count)
  fokker distill --checkpoint runs/mnist --method ect --minutes 15 --out runs/mnist-ect
  fokker distill --checkpoint runs/mnist --method consistency --solver edm_heun --minutes 15 --out runs/mnist-cd
  fokker sample --checkpoint runs/mnist-ect --steps 1                        (one network evaluation)
  fokker train --preset consistency-mnist --minutes 30 --out runs/ct        (consistency training from scratch)"""


def add_parser(sub) -> None:
    from fokker.distill.student import METHODS

    d = command_parser(
        sub, "distill", "distill a diffusion run into a 1-4 step model",
        "Progressive distillation (Salimans & Ho 2022): rounds that halve the DDIM steps, each an ordinary run "
        "folder OUT/steps-N (OUT holds the last). Consistency distillation (Song et al. 2023) with any fokker "
        "sampler as the ODE step, or consistency tuning (ECT, Geng et al. 2024) from the teacher's weights: one "
        "run folder, sampled with the `consistency` sampler at 1-4 steps.", EXAMPLE,
    )  # fmt: skip
    add_checkpoint(d)
    d.add_argument("--method", required=True, choices=list(METHODS), help="how to distill")
    d.add_argument("--out", required=True, help="the student's run folder")
    d.add_argument("--minutes", type=float, help="training budget in minutes (progressive: over all its rounds)")
    d.add_argument("--steps", type=int, help="training budget in optimizer steps (progressive: per round)")
    d.add_argument("--to-steps", type=int, help="progressive: the last student's sampling steps (default: 4)")
    d.add_argument("--from-steps", type=int, help="progressive: the teacher's DDIM steps (default: 128)")
    d.add_argument(
        "--weighting", help="progressive: truncated_snr (default, max(SNR, 1)) or snr_plus_one, on the x0 error"
    )
    d.add_argument("--solver", help="consistency: the sampler taking the teacher's ODE step (default: edm_heun)")
    d.add_argument(
        "--pairs", choices=["lognormal", "uniform"],
        help="consistency: how the pair of adjacent levels is drawn: lognormal in r (default, iCT's) or uniform "
        "(Song et al. 2023's Alg. 2)",
    )  # fmt: skip
    d.add_argument(
        "--prediction", choices=["eps", "x0", "v"],
        help="what the student's network predicts (default: the teacher's if x0 or v, else v)",
    )  # fmt: skip
    d.add_argument("--resume", action="store_true", help="continue a distillation in --out")
    add_device(d)
    add_progress(d)


def check_method_flags(args: argparse.Namespace) -> None:
    """A flag of another method has no effect: one clear error."""
    own = {"progressive": ("to_steps", "from_steps", "weighting"), "consistency": ("solver", "pairs"), "ect": ()}
    for method, keys in own.items():
        for key in keys:
            if method != args.method and getattr(args, key) is not None:
                raise UserError(f"--{key.replace('_', '-')} applies only to --method {method}")


def run(args: argparse.Namespace) -> int:
    """Distill; Ctrl-C says what is kept."""
    check_method_flags(args)
    out = Path(args.out)
    try:
        if args.method == "progressive":
            return _progressive(args, out)
        return _consistency(args, out)
    except KeyboardInterrupt:
        print(f"fokker distill: interrupted; {out} keeps what was saved (go on with --resume)", file=sys.stderr)
        return 130


def _progressive(args: argparse.Namespace, out: Path) -> int:
    from fokker.distill.progressive import distill_progressive

    rounds = distill_progressive(
        args.checkpoint, out, from_steps=args.from_steps or 128, to_steps=args.to_steps or 4, minutes=args.minutes,
        steps_per_round=args.steps, prediction=args.prediction, weighting=args.weighting or "truncated_snr",
        resume=args.resume, device=args.device, progress=not args.no_progress, log=print,
    )  # fmt: skip
    for r in rounds:
        print(f"{2 * r.steps} -> {r.steps} steps: {r.trained_steps} updates in {r.minutes:.1f} min, loss {r.loss:.4g}")
    print(f"student: {out} (fokker sample --checkpoint {out} --sampler ddim --steps {rounds[-1].steps})")
    return 0


def _consistency(args: argparse.Namespace, out: Path) -> int:
    from fokker.distill.consistency import distill_consistency

    result = distill_consistency(
        args.checkpoint, out, args.method, minutes=args.minutes, steps=args.steps, solver=args.solver,
        pairs=args.pairs, prediction=args.prediction, resume=args.resume, device=args.device,
        progress=not args.no_progress, log=print,
    )  # fmt: skip
    print(f"trained {result.step} steps in {result.elapsed / 60:.1f} min (last loss {result.loss:.4f}); student: {out}")
    print(f"sample: fokker sample --checkpoint {out} --sampler consistency --steps 1")
    return 0
