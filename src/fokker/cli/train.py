"""`fokker train`: resolve the config, then train (or print it with --dry-run). The only command that
imports the trainer, and only when it runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fokker.cli.flags import add_device, add_progress, command_parser
from fokker.cli.settings import budget, changes_config, dry_run, train_config
from fokker.errors import UserError

EXAMPLE = """examples:
  fokker train --preset mnist --minutes 10 --out runs/mnist
  fokker train --preset toy --steps 2000 --out runs/moons data.name=swiss_roll train.lr=2e-3
  fokker train --preset toy --process ve --loss ssm --steps 2000 --out runs/moons-ssm
  fokker train --preset ncsn --minutes 10 --out runs/ncsn      (NCSN: VE sigma ladder, annealed Langevin)
  fokker train --preset classifier-mnist --minutes 5 --out runs/clf   (a noisy classifier, for guidance)
  fokker train --preset vae-mnist --out runs/vae           (an autoencoder, for latent diffusion; or vqvae-mnist)
  fokker train --preset latent-mnist --autoencoder runs/vae --out runs/latent   (latent diffusion on it)
  fokker train --data ~/pictures/cats --minutes 30 --out runs/cats data.image_size=32
  fokker train --out runs/mnist --resume --minutes 20      (continue a run, up to 20 minutes in all)
  fokker train --preset digits --dry-run                    (print the resolved config)"""


def add_parser(sub) -> None:
    from fokker.config import preset_names
    from fokker.data import dataset_names
    from fokker.losses import loss_names
    from fokker.nets import NETWORKS
    from fokker.processes import PROCESSES

    t = command_parser(
        sub, "train", "train a model into a run folder",
        "Train a diffusion model, a noise-conditional classifier for guidance (--preset classifier-mnist, "
        "classifier-toy) or an autoencoder (--preset vae-mnist, vqvae-mnist). Any config key can be set as "
        "section.key=value.", EXAMPLE,
    )  # fmt: skip
    t.add_argument(
        "--preset", help=f"a shipped config: {', '.join(preset_names())} (default: toy, or images with --data)"
    )
    t.add_argument(
        "--data",
        help="a folder of PNG/JPEG images (subfolders = classes) instead of the preset's data "
        f"(the built-in sets, data.name=...: {', '.join(dataset_names())})",
    )
    t.add_argument("--out", default="runs/latest", help="run folder (default: runs/latest)")
    t.add_argument("--steps", type=int, help="training budget in optimizer steps")
    t.add_argument("--minutes", type=float, help="training budget in wall-clock minutes")
    t.add_argument("--seed", type=int, help="random seed (train.seed)")
    t.add_argument("--batch-size", type=int, help="batch size per process (train.batch_size)")
    t.add_argument("--process", choices=list(PROCESSES), help="the diffusion, with its default settings")
    t.add_argument("--loss", help=f"the training loss (train.loss): {', '.join(loss_names())} (default: simple)")
    t.add_argument(
        "--autoencoder",
        metavar="RUN",
        help="latent diffusion: train on the latents of this autoencoder run (latent.autoencoder; fokker train "
        "--preset vae-mnist or vqvae-mnist makes one); the run keeps a copy of it",
    )
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    t.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    add_device(t)
    add_progress(t)
    t.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE",
        help=f"config overrides, e.g. train.lr=1e-3 or model.network.type=mlp (networks: {', '.join(NETWORKS)})",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Train, or with --dry-run print the resolved config; Ctrl-C says what the run folder keeps."""
    from fokker.autoencoder.report import summary as autoencoder_summary
    from fokker.classifier.report import summary as accuracy_summary
    from fokker.train import train

    config, limits = train_config(args), budget(args)
    if args.dry_run:
        print(dry_run(config, limits), end="")
        return 0
    if args.resume and changes_config(args):
        raise UserError("--resume continues a run with its own config; only --steps / --minutes may change")
    out = Path(args.out)
    try:
        result = train(
            config, out, resume=args.resume, device=args.device, budget=limits, progress=not args.no_progress, log=print
        )
    except KeyboardInterrupt:
        print(f"fokker train: interrupted; {what_is_kept(out)}", file=sys.stderr)
        return 130
    print(
        f"trained {result.step} steps in {result.elapsed / 60:.1f} min (last loss {result.loss:.4f}); "
        f"weights: {result.run / 'model.safetensors'}"
    )
    for summary in (accuracy_summary, autoencoder_summary):  # a classifier's or an autoencoder's report
        report = summary(result.run)
        if report is not None:
            print(report)
    return 0


def what_is_kept(out: Path) -> str:
    """What an interrupted run folder holds, and how to go on."""
    latest = out / "latest"
    if latest.exists():
        name = latest.read_text(errors="replace").strip()
        return f"{out} keeps checkpoint {name} (resume: fokker train --out {out} --resume)"
    return f"{out} has no checkpoint yet (run the same command again, or --resume to start from step 0)"
