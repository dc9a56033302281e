"""A model guided as the command line asks (`fokker sample --guidance 3 --classifier RUN ...`): one function,
`guide`, that refuses an option that would have no effect and stacks the guides in the order the formulas
compose (classifier-free on the model, then the classifier's gradient on top, Dhariwal & Nichol 2021, sec. 5.3)."""

from __future__ import annotations

from dataclasses import dataclass

from fokker.denoiser import Denoiser
from fokker.errors import UserError
from fokker.guidance.classifier import Classifier, ClassifierGuidance
from fokker.guidance.free import ClassifierFree


@dataclass(frozen=True)
class Guidance:
    """What to guide by: classifier-free at scale w (with rescale phi and an interval [t_lo, t_hi]) and / or a
    classifier at scale s in the score or mean-shift form. None: not asked for."""

    scale: float | None = None
    rescale: float | None = None
    interval: tuple[float, float] | None = None
    classifier: Classifier | None = None
    classifier_scale: float | None = None
    form: str | None = None

    def check(self) -> None:
        """A UserError for an option given without the guide it belongs to."""
        if self.scale is None:
            for name, value in (("guidance rescale", self.rescale), ("guidance interval", self.interval)):
                if value is not None:
                    raise UserError(f"the {name} has no effect without classifier-free guidance (--guidance W)")
        if self.classifier is None:
            for name, value in (("classifier scale", self.classifier_scale), ("classifier form", self.form)):
                if value is not None:
                    raise UserError(f"the {name} has no effect without a classifier (--classifier RUN)")

    @property
    def asked(self) -> bool:
        """Whether any guide is asked for."""
        return self.scale is not None or self.classifier is not None


def guide(denoiser: Denoiser, guidance: Guidance) -> Denoiser:
    """`denoiser` guided as `guidance` says (itself when nothing is asked)."""
    guidance.check()
    if guidance.scale is not None:
        interval = None if guidance.interval is None else tuple(guidance.interval)
        denoiser = ClassifierFree(denoiser, guidance.scale, guidance.rescale or 0.0, interval)
    if guidance.classifier is not None:
        scale = 1.0 if guidance.classifier_scale is None else guidance.classifier_scale
        denoiser = ClassifierGuidance(denoiser, guidance.classifier, scale, guidance.form or "score")
    return denoiser
