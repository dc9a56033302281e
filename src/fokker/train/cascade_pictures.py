"""The pictures of a super-resolution model's run (fokker.cascade): held-out images downsampled to its input
size and upsampled by the EMA network, from the same noise at every step."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from fokker.cascade import DEFAULT_AUG_LEVEL, SuperResolution, downsample
from fokker.data import dataset_for
from fokker.model import denoiser_for
from fokker.train.pictures import SamplePictures, sample_pictures
from fokker.viz import save_picture

if TYPE_CHECKING:
    from fokker.train.build import Run


class SuperResolutionPictures(SamplePictures):
    """sample.num held-out images, spread over the test split, as triples: the low-resolution input (shown
    at full size, nearest neighbour), the model's upsampling of it (conditioning augmentation level
    DEFAULT_AUG_LEVEL) and the original."""

    def __init__(self, run: Run) -> None:
        super().__init__(run)
        sr = SuperResolution.of(run.config)
        held_out = dataset_for(run.config, "test").data
        idx = torch.linspace(0, len(held_out) - 1, len(self.noise)).round().long()
        self.truth = held_out[idx]
        self.low = downsample(self.truth, sr.size)

    def make(self, step: int) -> None:
        run, n = self.run, len(self.noise)
        kw = {
            "low_res": self.low.to(run.acc.device),
            "aug_level": torch.full((n,), DEFAULT_AUG_LEVEL, device=run.acc.device),
        }
        denoiser = denoiser_for(run.state.ema.model, run.config)
        samples = sample_pictures(denoiser, run.config, self.noise.to(run.acc.device), model_kwargs=kw).cpu()
        shown = F.interpolate(self.low, size=samples.shape[-2:], mode="nearest")
        triples = torch.stack([shown, samples, self.truth], dim=1).flatten(0, 1)
        save_picture(triples, self.path(step), title=f"step {step}", nrow=3 * math.ceil(math.sqrt(n)))
