"""Sample-quality metrics that work offline: distances between sample sets, fokker's own feature
classifier for image data, and Inception FID / IS from a local weights file only."""

from fokker.metrics.classifier import Classifier, load_classifier, train_classifier
from fokker.metrics.distances import (
    cross_entropy,
    fid,
    frechet_distance,
    gaussian_fit,
    gaussian_kl,
    kid,
    mmd,
    mmd2_unbiased,
    sliced_wasserstein,
)
from fokker.metrics.quality import image_metrics, inception_score, vector_metrics

__all__ = [
    "Classifier",
    "cross_entropy",
    "fid",
    "frechet_distance",
    "gaussian_fit",
    "gaussian_kl",
    "image_metrics",
    "inception_score",
    "kid",
    "load_classifier",
    "mmd",
    "mmd2_unbiased",
    "sliced_wasserstein",
    "train_classifier",
    "vector_metrics",
]
