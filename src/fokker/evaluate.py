"""`fokker eval`: sample a trained model with several samplers and step counts, score every sample set
against data the model was trained on, and write metrics.json with a Markdown report a person can open:
the sample grids, the training-loss curve and each metric against NFE. The report and its metrics are
one `FileSet`: metrics.json, written last, only ever sits beside the report and pictures of its own run."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from fokker.config import sample_options
from fokker.data import Dataset, analytic_target, dataset_for
from fokker.denoiser import Denoiser
from fokker.errors import UserError
from fokker.eval_report import write_report
from fokker.files import FileSet
from fokker.guidance.options import Guidance, guide
from fokker.metrics import Classifier, image_metrics, load_classifier, vector_metrics
from fokker.metrics.classes import class_metrics
from fokker.metrics.inception import inception_metrics, load_inception
from fokker.model import load_model
from fokker.samplers import GRID, get_sampler, ineffective, sample_seeded, sampler_options, time_grid
from fokker.viz import save_picture

if TYPE_CHECKING:
    from fokker.config import RunConfig


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
    guides: dict[str, Guidance] | None = None,
    teacher: Teacher | None = None,
) -> dict:
    """Sample `num` per (sampler, steps), score each set, write OUT/metrics.json and OUT/report.md with pictures;
    samplers, steps or spacing left as None come from the run's sample config. `guides` (name -> Guidance): each
    setting once per guide, sample i of class i % K, also scored by label agreement and per-class quality. With
    `teacher` (`Teacher`), the teacher's rows beside the checkpoint's, each row naming its "model". Returns
    the record (also in metrics.json)."""
    options = options or {}
    grid = {k: v for k, v in (("steps", steps), ("spacing", spacing)) if v is not None}  # chosen explicitly
    denoiser, config = load_model(checkpoint, device)
    samplers, steps = samplers or [config.sample.sampler], steps or [config.sample.steps]
    spacing = spacing or config.sample.spacing
    check_request(denoiser, config, samplers, steps, spacing, options, grid)
    labels = class_labels(config, num) if guides else None
    models = {name: guide(denoiser, g) for name, g in guides.items()} if guides else {None: denoiser}
    reference, held_out = reference_data(config, num)
    scorer = Scorer.for_data(reference, config, device, progress, inception_weights, seed)
    floor = scorer(held_out.data)
    runs, shown = [], {}
    for name in samplers:
        for n in steps:
            for label, model in models.items():
                run, samples = _sample_and_score(
                    model, config, scorer, name, n, num, labels, label, seed=seed, spacing=spacing,
                    batch_size=batch_size, device=device, progress=progress, options=options,
                )  # fmt: skip
                runs.append(run)
                title = f"{name}, {n} steps" + (f", {label}" if label else "")
                picture = (
                    (samples[:64], None if labels is None else labels[:64]) if samples.dim() == 4 else (samples, labels)
                )
                shown[run["picture"]] = (*picture, title)
    if teacher is not None:
        teacher.add_rows(runs, shown, bool(guides), config, scorer, num, seed, batch_size, device, progress)
    record = {
        "checkpoint": str(checkpoint), "data": config.data.name, "num": num, "seed": seed, "spacing": spacing,
        "options": options, "reference": {"split": "train", "size": len(reference)},
        "floor": {"split": "test", "size": len(held_out), **floor}, "classifier": scorer.description(), "runs": runs,
    }  # fmt: skip
    _write(Path(out), record, shown, reference, checkpoint)
    return record


@dataclass
class Teacher:
    """The teacher of a distilled checkpoint, evaluated beside it with its own sampler (default: its run's) at
    each of `steps` (default: its run's sample.steps)."""

    checkpoint: str | Path
    sampler: str | None = None
    steps: list[int] | None = None

    def add_rows(self, runs: list, shown: dict, guided: bool, student: RunConfig, *scoring) -> None:
        """Mark the checkpoint's `runs` as the student's and append the teacher's rows and pictures (`rows`)."""
        if guided:
            raise UserError("--teacher compares unguided samples; leave out the guidance flags")
        for run in runs:
            run["model"] = "student"
        for run, samples, title in self.rows(student, *scoring):
            runs.append(run)
            shown[run["picture"]] = (samples[:64] if samples.dim() == 4 else samples, None, title)

    def rows(self, student: RunConfig, scorer: Scorer, num: int, seed: int, batch_size: int, device, progress: bool):
        """(row, samples, title) for each of the teacher's step counts, scored by the student's scorer."""
        denoiser, config = load_model(self.checkpoint, device)
        if config.data.name != student.data.name or config.data.shape != student.data.shape:
            raise UserError(f"the teacher {self.checkpoint} was trained on other data ({config.data.name})")
        name = self.sampler or config.sample.sampler
        for n in self.steps or [config.sample.steps]:
            check_request(denoiser, config, [name], [n], config.sample.spacing, {}, {})
            run, samples = _sample_and_score(
                denoiser, config, scorer, name, n, num, None, None, seed=seed, spacing=config.sample.spacing,
                batch_size=batch_size, device=device, progress=progress, options={},
            )  # fmt: skip
            run |= {"model": "teacher", "picture": "teacher_" + run["picture"]}
            yield run, samples, f"teacher: {name}, {n} steps"


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


def class_labels(config: RunConfig, num: int) -> torch.Tensor:
    """The classes of a guided evaluation's samples: i % K for sample i, K the data's classes."""
    if config.data.num_classes is None:
        raise UserError(f"a guided evaluation needs class labels, but {config.data.name!r} has none")
    return torch.arange(num) % config.data.num_classes


def _sample_and_score(
    denoiser: Denoiser,
    config: RunConfig,
    scorer: Scorer,
    name: str,
    n: int,
    num: int,
    labels: torch.Tensor | None,
    guide_name: str | None,
    *,
    options: dict,
    **kwargs,
) -> tuple[dict, torch.Tensor]:
    """One row of the record (sampler, steps, guide, NFE, seconds, picture and the metrics) and its samples;
    with labels, sample i is of class labels[i], and the row also holds label agreement and per-class quality."""
    start = time.time()
    kw = {} if labels is None else {"model_kwargs": {"y": labels}}
    samples, info = sample_seeded(
        denoiser, name, n, config.model_shape, num, **kwargs, **kw, **_own(name, options, config)
    )
    samples = denoiser.to_data(samples)  # a latent diffusion model's latents, decoded (timed with the sampling)
    seconds = time.time() - start
    suffix = "" if guide_name is None else "_" + guide_name.replace(" ", "").replace("=", "")
    run = {
        "sampler": name,
        "steps": n,
        "nfe": info["nfe"],
        "seconds": seconds,
        "picture": f"samples_{name}_{n}{suffix}.png",
    }
    run |= scorer(samples)
    if labels is not None:
        run |= {"guide": guide_name, **class_metrics(samples, labels, scorer.reference, scorer.classifier)}
    return run, samples


def _write(out: Path, record: dict, shown: dict, reference: Dataset, checkpoint: str | Path) -> None:
    """The pictures, report.md and metrics.json as one FileSet: only now, so a failure before leaves nothing."""
    with FileSet(out, marker="metrics.json") as files:
        for picture, (samples, labels, title) in shown.items():
            save_picture(samples, files.path(picture), reference=reference.data, title=title, labels=labels)
        write_report(record, checkpoint, files)
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
