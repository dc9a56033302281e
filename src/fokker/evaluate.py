"""`fokker eval`: sample a trained model with several samplers and step counts, score every sample set
against data the model was trained on, and write metrics.json with a Markdown report a person can open:
the sample grids, the training-loss curve and each metric against NFE. The report and its metrics are
one `FileSet`: metrics.json, written last, only ever sits beside the report and pictures of its own run."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from fokker.config import sample_options
from fokker.data import Dataset, analytic_target, dataset_for
from fokker.denoiser import Denoiser
from fokker.errors import UserError
from fokker.files import FileSet
from fokker.metrics import Classifier, image_metrics, load_classifier, vector_metrics
from fokker.metrics.inception import inception_metrics, load_inception
from fokker.model import load_model, weights_path
from fokker.samplers import GRID, get_sampler, ineffective, sample_seeded, sampler_options, time_grid
from fokker.viz import metric_curves, save_picture, training_curve

if TYPE_CHECKING:
    from fokker.config import RunConfig

# the metrics plotted against NFE, and whether lower is better
PLOTTED = {
    "fid": True,
    "inception_fid": True,
    "kid": True,
    "inception_score": False,
    "recognizable": False,
    "sliced_w2": True,
    "mmd": True,
    "cross_entropy": True,
}


def reference_data(config: RunConfig, num: int) -> tuple[Dataset, Dataset]:
    """(reference, held-out) data: for image sets every training image and the test split; for vector
    data two fresh draws of `num` points (train and test seeds)."""
    config = config.replace("data", num_points=num)
    return dataset_for(config, "train"), dataset_for(config, "test")


def score(
    samples: torch.Tensor,
    reference: Dataset,
    config: RunConfig,
    classifier: Classifier | None,
    generator: torch.Generator,
    inception: torch.nn.Module | None = None,
) -> dict:
    """The metrics of one sample set: for images FID (Heusel et al. 2017), KID (Binkowski et al. 2018) and
    the Inception Score (Salimans et al. 2016) in the classifier's features (and Inception's when given);
    for vectors the sliced Wasserstein-2 distance (Bonneel et al. 2015), MMD^2 (Gretton et al. 2012) and,
    for an analytic target, the cross-entropy -E log p(samples)."""
    if samples.dim() == 4:
        out = image_metrics(samples, reference.data, classifier, generator=generator)
        if inception is not None:
            out |= inception_metrics(samples, reference.data, inception, generator=generator)
        return out
    target = analytic_target(config.data.name)
    return vector_metrics(samples, reference.data, log_prob=target.log_prob if target else None, generator=generator)


def evaluate(
    checkpoint: str | Path,
    samplers: list[str] | None,
    steps: list[int] | None,
    num: int,
    out: str | Path,
    *,
    seed: int = 0,
    spacing: str | None = None,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    progress: bool = True,
    options: dict | None = None,
    inception_weights: str | Path | None = None,
) -> dict:
    """Sample `num` per (sampler, steps), score each set, write OUT/metrics.json and OUT/report.md with
    pictures; samplers, steps or spacing left as None come from the run's sample config. Returns the metrics
    record (also in metrics.json)."""
    options = options or {}
    grid = {k: v for k, v in (("steps", steps), ("spacing", spacing)) if v is not None}  # chosen explicitly
    denoiser, config = load_model(checkpoint, device)
    samplers = samplers or [config.sample.sampler]
    steps = steps or [config.sample.steps]
    spacing = spacing or config.sample.spacing
    check_request(denoiser, config, samplers, steps, spacing, options, grid)
    reference, held_out = reference_data(config, num)
    scorer = Scorer.for_data(reference, config, device, progress, inception_weights, seed)
    floor = scorer(held_out.data)
    runs, shown = [], {}
    for name in samplers:
        for n in steps:
            run, samples = _sample_and_score(
                denoiser, config, scorer, name, n, num, seed=seed, spacing=spacing, batch_size=batch_size,
                device=device, progress=progress, options=options,
            )  # fmt: skip
            runs.append(run)
            shown[run["picture"]] = (samples[:64] if samples.dim() == 4 else samples, f"{name}, {n} steps")
    record = {
        "checkpoint": str(checkpoint),
        "data": config.data.name,
        "num": num,
        "seed": seed,
        "spacing": spacing,
        "options": options,
        "reference": {"split": "train", "size": len(reference)},
        "floor": {"split": "test", "size": len(held_out), **floor},
        "classifier": scorer.description(),
        "runs": runs,
    }
    _write(Path(out), record, shown, reference, checkpoint)
    return record


def check_request(
    denoiser: Denoiser,
    config: RunConfig,
    samplers: list[str],
    steps: list[int],
    spacing: str,
    options: dict,
    grid: dict,
) -> None:
    """A UserError, before any work, for an unknown sampler, an option no sampler takes or none feels
    (`_check_effect`), or a step count or spacing the time grid refuses."""
    for name in samplers:
        get_sampler(name)
    for key in options:
        if not any(key in sampler_options(name) for name in samplers):
            raise UserError(f"option {key!r} is taken by none of the samplers {samplers}")
    _check_effect(samplers, options, grid, config)
    for n in steps:
        time_grid(denoiser.process, n, spacing)


@dataclass
class Scorer:
    """Scores sample sets against `reference` the same way: the classifier (and Inception) features for
    images, distances for vectors; every set draws its subsets from the same seed."""

    reference: Dataset
    config: RunConfig
    classifier: Classifier | None
    inception: torch.nn.Module | None
    seed: int

    @classmethod
    def for_data(
        cls,
        reference: Dataset,
        config: RunConfig,
        device,
        progress: bool,
        inception_weights: str | Path | None,
        seed: int,
    ) -> Scorer:
        """The feature networks `reference` needs: fokker's classifier of the data set, and Inception when
        its weights are given (images only)."""
        classifier = None
        if reference.is_image:
            d = config.data
            classifier = load_classifier(d.name, image_size=d.image_size, channels=d.channels, progress=progress)
        inception = load_inception(inception_weights, device) if inception_weights and reference.is_image else None
        return cls(reference, config, classifier, inception, seed)

    def __call__(self, samples: torch.Tensor) -> dict:
        generator = torch.Generator().manual_seed(self.seed)  # the same subsets for every sample set
        return score(samples, self.reference, self.config, self.classifier, generator, self.inception)

    def description(self) -> dict | None:
        """The classifier's data set and held-out accuracy, as metrics.json records it."""
        c = self.classifier
        return None if c is None else {"dataset": c.dataset, "accuracy": c.accuracy, "num_test": c.num_test}


def _sample_and_score(
    denoiser: Denoiser, config: RunConfig, scorer: Scorer, name: str, n: int, num: int, *, options: dict, **kwargs
) -> tuple[dict, torch.Tensor]:
    """One row of the record (sampler, steps, NFE, seconds, picture and the metrics) and its samples."""
    start = time.time()
    samples, info = sample_seeded(denoiser, name, n, config.data.shape, num, **kwargs, **_own(name, options, config))
    seconds = time.time() - start
    picture = f"samples_{name}_{n}.png"
    run = {"sampler": name, "steps": n, "nfe": info["nfe"], "seconds": seconds, "picture": picture}
    return {**run, **scorer(samples)}, samples


def _write(out: Path, record: dict, shown: dict, reference: Dataset, checkpoint: str | Path) -> None:
    """The pictures, report.md and metrics.json as one FileSet: only now, so a failure before leaves nothing."""
    with FileSet(out, marker="metrics.json") as files:
        for picture, (samples, title) in shown.items():
            save_picture(samples, files.path(picture), reference=reference.data, title=title)
        _write_report(record, checkpoint, files)
        files.path("metrics.json").write_text(json.dumps(record, indent=2) + "\n")


def _own(name: str, options: dict, config: RunConfig) -> dict:
    """Sampler `name`'s options: the run's own (sample.options) if it is the run's sampler, and those of
    `options` that it takes and that have an effect on it."""
    taken = {**sample_options(config, name), **{k: v for k, v in options.items() if k in sampler_options(name)}}
    ignored = ineffective(name, taken).keys() & options.keys()  # given for the other samplers
    return {k: v for k, v in taken.items() if k not in ignored}


def _check_effect(samplers: list[str], options: dict, grid: dict, config: RunConfig) -> None:
    """A UserError for an option given, or a grid chosen (steps, spacing), that has an effect on none of the
    samplers: the reason each sampler ignores it."""
    for key, value in {**options, **grid}.items():
        reasons = {}
        for name in samplers:
            if key in GRID or key in sampler_options(name):
                reasons[name] = ineffective(name, {**_own(name, options, config), key: value}).get(key)
        if all(reasons.values()):
            why = "; ".join(f"{name}: {reason}" for name, reason in reasons.items())
            raise UserError(f"option {key!r} has no effect on any of the samplers {samplers} ({why})")


def _write_report(record: dict, checkpoint: str | Path, files: FileSet) -> None:
    """report.md beside metrics.json, with loss.png and metrics_vs_nfe.png (into the set `files`)."""
    lines = [f"# Evaluation of `{checkpoint}`", ""]
    lines += [f"{record['num']} samples per setting (seed {record['seed']}, {record['spacing']} spacing) on "
              f"`{record['data']}`, scored against {record['reference']['size']} training examples."]  # fmt: skip
    if record["classifier"]:
        c = record["classifier"]
        lines += [f"Features: fokker's classifier for `{c['dataset']}`, held-out accuracy "
                  f"{100 * c['accuracy']:.1f}% on {c['num_test']} test images."]  # fmt: skip
    lines += ["", "## Metrics", ""]
    keys = [k for k in PLOTTED if k in record["floor"]]
    extra = ["classes_present"] if "classes_present" in record["floor"] else []
    head = ["sampler", "steps", "NFE", "seconds", *keys, *extra]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in record["runs"]:
        cells = [r["sampler"], str(r["steps"]), str(r["nfe"]), f"{r['seconds']:.1f}"]
        lines.append("| " + " | ".join(cells + [_fmt(r[k]) for k in keys + extra]) + " |")
    f = record["floor"]
    floor_cells = [f"held-out data ({f['size']})", "", "", "", *[_fmt(f[k]) for k in keys + extra]]
    lines.append("| " + " | ".join(floor_cells) + " |")
    lines += ["", "Lower is better for " + ", ".join(k for k in keys if PLOTTED[k]) + "; higher for "
              + (", ".join(k for k in keys if not PLOTTED[k]) or "none") + ". The last row scores held-out"
              " data the same way: the floor that finite samples alone allow.", ""]  # fmt: skip
    metric_curves(record["runs"], keys, files.path("metrics_vs_nfe.png"), floor=record["floor"])
    lines += ["![metrics against NFE](metrics_vs_nfe.png)", "", "## Samples", ""]
    for r in record["runs"]:
        lines += [
            f"**{r['sampler']}, {r['steps']} steps** (NFE {r['nfe']})",
            "",
            f"![{r['sampler']}]({r['picture']})",
            "",
        ]
    lines += ["## Training loss", ""]
    log = _metrics_log(checkpoint)
    if log is not None and training_curve(log, files.path("loss.png")):
        lines += ["![training loss](loss.png)", ""]
    else:
        lines += ["No metrics.jsonl beside the weights: give the run folder to see the training curve.", ""]
    files.path("report.md").write_text("\n".join(lines))


def _metrics_log(checkpoint: str | Path) -> Path | None:
    """The run's metrics.jsonl, when the checkpoint is (or lies in) a run folder."""
    path = weights_path(checkpoint).parent / "metrics.jsonl"
    return path if path.exists() else None


def _fmt(value: float | int | list) -> str:
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and (value == 0 or 1e-3 <= abs(value) < 1e4 or math.isnan(value)):
        return f"{value:.4g}"
    return f"{value:.3e}" if isinstance(value, float) else str(value)
