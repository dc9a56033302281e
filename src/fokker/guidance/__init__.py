"""Guided generation: a guided model is itself a Denoiser (fokker.guidance.base), so every sampler, loss and
metric runs on it. Classifier-free guidance (`ClassifierFree`), classifier guidance in the score and the
mean-shift forms (`ClassifierGuidance`) and class-conditional sampling of a score SDE (`conditional_score`)."""

from fokker.guidance.base import GuidedDenoiser
from fokker.guidance.classifier import FORMS, Classifier, ClassifierGuidance, check_same_process, conditional_score
from fokker.guidance.free import ClassifierFree

__all__ = [
    "FORMS",
    "Classifier",
    "ClassifierFree",
    "ClassifierGuidance",
    "GuidedDenoiser",
    "check_same_process",
    "conditional_score",
]
