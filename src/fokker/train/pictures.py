"""The sample pictures written during training: RUN/samples/step_N.png, drawn by the main process with
the EMA network from the same noise (and, on a conditional model, the same classes) at every step."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from fokker.checkpoint import step_name
from fokker.config import RunConfig, sample_options
from fokker.denoiser import Denoiser
from fokker.labels import picture_labels
from fokker.model import denoiser_for
from fokker.samplers import sample
from fokker.train.collective import main_decides
from fokker.viz import save_picture

if TYPE_CHECKING:
    from fokker.train.build import Run


class Pictures:
    """The pictures of a run: fixed noise from train.seed, one picture per `draw` of the step reached."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.noise = torch.randn(
            (run.config.sample.num, *run.dataset.shape), generator=torch.Generator().manual_seed(run.tc.seed)
        )
        self.labels = picture_labels(run.config, len(self.noise))

    def draw(self) -> None:
        """The picture of the step reached (main process; the others wait for it)."""
        run, step = self.run, self.run.state.step
        if run.acc.is_main_process:
            samples = sample_pictures(
                denoiser_for(run.state.ema.model, run.config), run.config, self.noise.to(run.acc.device)
            )
            save_picture(
                samples.cpu(),
                picture_path(run.out, step),
                reference=run.dataset.data[:5000] if not run.dataset.is_image else None,
                title=f"step {step}",
                labels=self.labels,
            )
        run.acc.wait_for_everyone()

    def missing(self) -> bool:
        """Whether the picture of the step reached is missing (process 0's answer, on every process)."""
        return main_decides(not picture_path(self.run.out, self.run.state.step).exists(), self.run.acc)


@torch.no_grad()
def sample_pictures(denoiser: Denoiser, config: RunConfig, x_T: torch.Tensor) -> torch.Tensor:
    """Samples from fixed noise with the config's sampler, for the pictures written during training; on a
    conditional model picture i is of class i % K (fokker.labels.picture_labels)."""
    s = config.sample
    # a stochastic sampler's noise comes from its own generator: fixed from picture to picture, and the
    # global RNG (dropout), saved in checkpoints for exact resume, is left alone
    gen = torch.Generator(x_T.device).manual_seed(config.train.seed)
    x_T = x_T * denoiser.process.prior_std
    options = sample_options(config, s.sampler)
    y = picture_labels(config, len(x_T), x_T.device)
    kw = None if y is None else {"y": y}
    x, _ = sample(denoiser, s.sampler, s.steps, x_T=x_T, spacing=s.spacing, generator=gen, model_kwargs=kw, **options)
    return x


def picture_path(out: Path, step: int) -> Path:
    """The sample picture of a step."""
    return out / "samples" / f"{step_name(step)}.png"


def picture_due(step: int, tc: dict) -> bool:
    """Whether the checkpoint of `step` has a sample picture: every sample_every steps, and where a run ended
    (the only checkpoints off the checkpoint_every grid; an end on the grid cannot be told apart)."""
    return step % tc.sample_every == 0 or step % tc.checkpoint_every != 0


def trim_pictures(out: Path, step: int) -> None:
    """On resume, drop the sample pictures of steps after the checkpoint being resumed from: they belong to
    the lost stretch and are drawn again (and on a fresh start, step 0, those of a stopped attempt)."""
    for picture in (out / "samples").glob("step_*.png"):
        if picture.stem[5:].isdigit() and int(picture.stem[5:]) > step:
            picture.unlink()
