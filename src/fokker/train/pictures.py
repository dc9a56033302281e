"""The pictures written during training, one kind per task (PICTURES), each drawn by the main process
with the EMA network at every step from the same noise: a diffusion model's samples, RUN/samples/step_N.png
(on a conditional model, of the same classes); a classifier's accuracy against t on the held-out split,
RUN/accuracy/step_N.png, its numbers in RUN/accuracy.json (fokker.classifier.report); an autoencoder's
held-out images above their reconstructions, RUN/reconstructions/step_N.png, its numbers in
RUN/autoencoder.json (fokker.autoencoder.report)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import torch

from fokker.autoencoder.measure import Measure, feature_classifier
from fokker.autoencoder.report import REPORT as AUTOENCODER_REPORT
from fokker.autoencoder.report import record_report, trim_report
from fokker.checkpoint import step_name
from fokker.classifier.report import REPORT, REPORT_EXAMPLES, record_accuracy, report_times, trim_accuracy
from fokker.config import RunConfig, sample_options
from fokker.data import dataset_for
from fokker.denoiser import Denoiser
from fokker.labels import picture_labels
from fokker.model import classifier_for, denoiser_for
from fokker.samplers import sample
from fokker.train.collective import main_decides
from fokker.viz import accuracy_curve, save_picture

if TYPE_CHECKING:
    from fokker.train.build import Run


class Pictures:
    """The pictures of a run, RUN/<folder>/step_N.png, one per `draw` of the step reached; a task's kind of
    picture is a subclass that says how to `make` one."""

    folder: ClassVar[str]

    def __init__(self, run: Run) -> None:
        self.run = run

    def path(self, step: int) -> Path:
        """The picture of a step."""
        return self.run.out / self.folder / f"{step_name(step)}.png"

    def draw(self) -> None:
        """The picture of the step reached (main process; the others wait for it)."""
        if self.run.acc.is_main_process:
            self.make(self.run.state.step)
        self.run.acc.wait_for_everyone()

    def make(self, step: int) -> None:
        """Write the picture of `step` (and what goes with it)."""
        raise NotImplementedError  # abstract

    def missing(self) -> bool:
        """Whether the picture of the step reached is missing (process 0's answer, on every process)."""
        return main_decides(not self.path(self.run.state.step).exists(), self.run.acc)

    def trim(self) -> None:
        """Main process, on start: drop what belongs to steps after the one resumed from (`trim_pictures`)."""
        trim_pictures(self.run.out, self.run.state.step, self.folder)


class SamplePictures(Pictures):
    """A diffusion model's samples from fixed noise (from train.seed), with the config's sampler."""

    folder: ClassVar[str] = "samples"

    def __init__(self, run: Run) -> None:
        super().__init__(run)
        self.noise = torch.randn(
            (run.config.sample.num, *run.dataset.shape), generator=torch.Generator().manual_seed(run.tc.seed)
        )
        self.labels = picture_labels(run.config, len(self.noise))

    def make(self, step: int) -> None:
        run = self.run
        denoiser = denoiser_for(run.state.ema.model, run.config, run.space)
        samples = denoiser.to_data(sample_pictures(denoiser, run.config, self.noise.to(run.acc.device)))
        save_picture(
            samples.cpu(),
            self.path(step),
            reference=run.dataset.data[:5000] if not run.dataset.is_image else None,
            title=f"step {step}",
            labels=self.labels,
        )


class AccuracyPictures(Pictures):
    """A classifier's accuracy against t (fokker.classifier.NoisyClassifier.accuracy_by_time) on the first
    REPORT_EXAMPLES of the held-out split at the report's times, from the same noise (from train.seed)
    at every step: the plot, and the numbers recorded in RUN/accuracy.json."""

    folder: ClassVar[str] = "accuracy"

    def __init__(self, run: Run) -> None:
        super().__init__(run)
        held_out = dataset_for(run.config, "test")
        n = min(len(held_out), REPORT_EXAMPLES)
        self.data, self.labels = held_out.data[:n].to(run.acc.device), held_out.labels[:n].to(run.acc.device)
        self.times, self.chance = report_times(), 1 / held_out.num_classes
        self.about = {"split": "test", "examples": n, "chance": self.chance}

    def make(self, step: int) -> None:
        run = self.run
        classifier = classifier_for(run.state.ema.model, run.config)
        gen = torch.Generator(run.acc.device).manual_seed(run.tc.seed)  # not the global RNG, saved for resume
        accuracy = classifier.accuracy_by_time(self.data, self.labels, self.times, gen)
        record_accuracy(run.out / REPORT, step, accuracy, self.times, self.about)
        accuracy_curve(self.times, accuracy, self.path(step), self.chance, title=f"step {step}")

    def trim(self) -> None:
        super().trim()
        trim_accuracy(self.run.out / REPORT, self.run.state.step)


class ReconstructionPictures(Pictures):
    """An autoencoder's first `shown` held-out images above their reconstructions decode(encode(x)),
    and its numbers (fokker.autoencoder.measure.Measure: PSNR, reconstruction FID, codebook use, the latent
    scale on the training split) recorded in RUN/autoencoder.json. The FID's feature classifier is loaded (or
    trained once and cached) here, before the run's clock starts."""

    folder: ClassVar[str] = "reconstructions"
    shown: ClassVar[int] = 16

    def __init__(self, run: Run) -> None:
        super().__init__(run)
        held_out = dataset_for(run.config, "test")
        self.measure = Measure(
            held_out.data.to(run.acc.device), run.data, feature_classifier(held_out), run.state.ema.model.latent_shape
        )

    def make(self, step: int) -> None:
        reconstructions, values = self.measure(self.run.state.ema.model)
        record_report(self.run.out / AUTOENCODER_REPORT, step, values, self.measure.about)
        n = min(self.shown, len(reconstructions))
        pair = torch.cat([self.measure.held_out[:n], reconstructions[:n]]).cpu()
        save_picture(pair, self.path(step), title=f"step {step}", nrow=n)

    def trim(self) -> None:
        super().trim()
        trim_report(self.run.out / AUTOENCODER_REPORT, self.run.state.step)


PICTURES: dict[str, type[Pictures]] = {
    "denoiser": SamplePictures,
    "classifier": AccuracyPictures,
    "autoencoder": ReconstructionPictures,
}  # by task


def pictures_for(run: Run) -> Pictures:
    """The pictures of the run's task (fokker.nets.TASKS); a super-resolution model's show its inputs too."""
    from fokker.cascade import is_super_resolution

    if is_super_resolution(run.config):
        from fokker.train.cascade_pictures import SuperResolutionPictures

        return SuperResolutionPictures(run)
    return PICTURES[run.config.model.task](run)


@torch.no_grad()
def sample_pictures(
    denoiser: Denoiser, config: RunConfig, x_T: torch.Tensor, model_kwargs: dict | None = None
) -> torch.Tensor:
    """Samples from fixed noise with the config's sampler, for the pictures written during training; on a
    conditional model picture i is of class i % K (fokker.labels.picture_labels). `model_kwargs`: more inputs
    of the network, one row per picture (a super-resolution model's low_res and aug_level)."""
    s = config.sample
    # a stochastic sampler's noise comes from its own generator: fixed from picture to picture, and the
    # global RNG (dropout), saved in checkpoints for exact resume, is left alone
    gen = torch.Generator(x_T.device).manual_seed(config.train.seed)
    x_T = x_T * denoiser.process.prior_std
    options = sample_options(config, s.sampler)
    y = picture_labels(config, len(x_T), x_T.device)
    kw = {**(model_kwargs or {}), **({} if y is None else {"y": y})} or None
    x, _ = sample(denoiser, s.sampler, s.steps, x_T=x_T, spacing=s.spacing, generator=gen, model_kwargs=kw, **options)
    return x


def picture_path(out: Path, step: int) -> Path:
    """The sample picture of a step (of a diffusion model's run)."""
    return out / SamplePictures.folder / f"{step_name(step)}.png"


def picture_due(step: int, tc: dict) -> bool:
    """Whether the checkpoint of `step` has a picture: every sample_every steps, and where a run ended
    (the only checkpoints off the checkpoint_every grid; an end on the grid cannot be told apart)."""
    return step % tc.sample_every == 0 or step % tc.checkpoint_every != 0


def trim_pictures(out: Path, step: int, folder: str = SamplePictures.folder) -> None:
    """On resume, drop the pictures (in RUN/`folder`) of steps after the checkpoint being resumed from: they
    belong to the lost stretch and are drawn again (and on a fresh start, step 0, those of a stopped attempt)."""
    for picture in (out / folder).glob("step_*.png"):
        if picture.stem[5:].isdigit() and int(picture.stem[5:]) > step:
            picture.unlink()
