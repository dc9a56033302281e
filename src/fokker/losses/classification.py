"""The loss of a noise-conditional classifier: cross-entropy on noised inputs (Dhariwal & Nichol 2021,
sec. 4.1), its first argument a `fokker.classifier.NoisyClassifier` rather than a Denoiser."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F

from fokker.errors import UserError
from fokker.losses.base import Loss

if TYPE_CHECKING:
    from fokker.classifier import NoisyClassifier


@dataclass(frozen=True)
class CrossEntropyLoss(Loss):
    """-log p_theta(y | x_t, t) per example, with t drawn as the process draws training times
    (`Process.sample_time`), x_t = alpha(t) x_0 + sigma(t) eps (`Process.q_sample`) and the labels y of the
    batch as model_kwargs["y"] (Dhariwal & Nichol 2021, sec. 4.1: the classifier p_phi(y | x_t, t) that
    guidance differentiates)."""

    name: ClassVar[str] = "cross_entropy"
    task: ClassVar[str] = "classifier"

    def per_example(
        self, classifier: NoisyClassifier, x0: torch.Tensor, t64: torch.Tensor, noise: torch.Tensor, generator, kw
    ) -> torch.Tensor:
        kw = dict(kw)
        labels = kw.pop("y", None)
        if labels is None:
            raise UserError("the cross_entropy loss needs the labels of the batch: model_kwargs={'y': labels}")
        if kw:
            raise UserError(f"the cross_entropy loss takes only the labels y as model_kwargs, got {sorted(kw)}")
        x_t = classifier.process.q_sample(x0, t64, noise)
        return F.cross_entropy(classifier.logits(x_t, t64).float(), labels, reduction="none")
