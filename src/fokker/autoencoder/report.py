"""An autoencoder run's report: RUN/autoencoder.json holds, for every step it was measured at (with
RUN/reconstructions/step_N.png, written by the trainer with the EMA network), the numbers of
fokker.autoencoder.measure: PSNR, reconstruction FID, codebook usage and perplexity (VQ) and the latent
scale factor; trimmed like the pictures on resume. `latent_scale` reads the scale a latent diffusion model
must multiply the autoencoder's latents by."""

from __future__ import annotations

from pathlib import Path

from fokker.errors import UserError
from fokker.step_reports import read_step_report, record_step, trim_steps
from fokker.weights import exported_step

REPORT = "autoencoder.json"  # in the run folder


def read_report(run: str | Path) -> dict:
    """The report of an autoencoder run (its folder, or the autoencoder.json file): {"split", "examples",
    "latent_shape", ..., "evaluations": [{"step", "psnr", ..., "latent_scale"}, ...] in step order}; an empty
    list of evaluations when there is none yet. A damaged file is a UserError."""
    return read_step_report(run, REPORT, "autoencoder")


def record_report(path: Path, step: int, values: dict, about: dict) -> None:
    """Write the numbers of `step` into the report at `path` (replacing that step's, dropping those after it),
    with `about` (split, examples, latent shape, ...); written atomically."""
    evaluation = {"step": step, **{k: float(f"{v:.7g}") for k, v in values.items()}}  # 7 significant digits
    record_step(path, evaluation, about, "autoencoder")


def trim_report(path: Path, step: int) -> None:
    """On resume, drop the evaluations after the checkpoint's step (fokker.step_reports.trim_steps)."""
    trim_steps(path, step, "autoencoder")


def evaluation_of(run: str | Path) -> dict:
    """The evaluation of the run's exported weights (RUN/model.safetensors: the one of their step), else the
    newest; a run with none, or none of its weights' step, is a UserError."""
    run = Path(run)
    evaluations = read_report(run)["evaluations"]
    if not evaluations:
        raise UserError(f"{run} has no autoencoder report ({REPORT}): is it an autoencoder's run folder?")
    step = exported_step(run / "model.safetensors") if run.is_dir() else None
    if step is None:
        return evaluations[-1]
    found = [e for e in evaluations if e["step"] == step]
    if not found:
        raise UserError(
            f"{run / REPORT} has no evaluation of step {step}, the step of the run's model.safetensors; "
            f"resume the run (fokker train --out {run} --resume) to measure it"
        )
    return found[0]


def latent_scale(run: str | Path) -> float:
    """The latent scale factor of an autoencoder run (its folder, or its autoencoder.json): 1 / std of the
    latents of its training data under its exported weights (fokker.autoencoder.metrics.latent_scale_of), what
    a latent diffusion model multiplies encode(x) by (and divides its samples by before decode)."""
    return float(evaluation_of(run)["latent_scale"])


def summary(run: str | Path) -> str | None:
    """One line with the newest evaluation's numbers, or None when the run has no report."""
    report = read_report(run)
    if not report["evaluations"]:
        return None
    last = report["evaluations"][-1]
    parts = [f"PSNR {last['psnr']:.2f} dB"]
    if "fid" in last:
        parts.append(f"reconstruction FID {last['fid']:.2f}")
    if "codebook_usage" in last:
        parts.append(f"codebook usage {last['codebook_usage']:.1%}, perplexity {last['perplexity']:.1f}")
    shape = "x".join(map(str, report["latent_shape"]))
    parts.append(f"latent scale {last['latent_scale']:.4g} (latents {shape})")
    return f"autoencoder at step {last['step']} on {report['examples']} {report['split']} images: {', '.join(parts)}"
