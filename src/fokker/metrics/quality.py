"""Sample-quality metrics that need no internet: for images, FID / KID / an Inception-Score analogue in the
feature space of fokker's own classifier, its confident ("recognizable") rate and the class histogram;
for vectors, sliced Wasserstein distance, MMD and, when the target density is known, the cross-entropy."""

from __future__ import annotations

from collections.abc import Callable

import torch

from fokker.metrics.classifier import Classifier
from fokker.metrics.distances import cross_entropy, fid, kid, mmd, sliced_wasserstein

CONFIDENT = 0.9  # a sample is "recognizable" when the classifier gives one class at least this probability


def inception_score(probs: torch.Tensor) -> float:
    """exp(E_x KL(p(y | x) || p(y))) (Salimans et al. 2016), p(y) the mean of p(y | x) over the samples."""
    probs = probs.to(torch.float64).clamp_min(1e-30)
    marginal = probs.mean(0, keepdim=True)
    return float(torch.exp((probs * (probs.log() - marginal.log())).sum(-1).mean()))


def image_metrics(
    samples: torch.Tensor,
    reference: torch.Tensor,
    classifier: Classifier,
    *,
    generator: torch.Generator | None = None,
) -> dict:
    """FID, KID (mean and std over subsets), IS, recognizable rate and class histogram of image samples
    against reference images, in `classifier`'s feature space."""
    feats, probs = classifier(samples)
    ref_feats, _ = classifier(reference)
    kid_mean, kid_std = kid(feats, ref_feats, generator=generator)
    top = probs.max(-1)
    hist = torch.bincount(top.indices, minlength=probs.shape[1]).tolist()
    return {
        "fid": fid(feats, ref_feats),
        "kid": kid_mean,
        "kid_std": kid_std,
        "inception_score": inception_score(probs),
        "recognizable": float((top.values >= CONFIDENT).double().mean()),
        "classes_present": sum(n > 0 for n in hist),
        "class_histogram": hist,
    }


def vector_metrics(
    samples: torch.Tensor,
    reference: torch.Tensor,
    *,
    log_prob: Callable[[torch.Tensor], torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> dict:
    """Sliced W2 and MMD^2 (on at most 4,000 points of each: its kernels are O(N^2)) of vector samples against
    reference points; with the target's log-density,
    also the cross-entropy -E log p(samples) in nats (the samples' entropy + KL(samples || target))."""
    out = {
        "sliced_w2": sliced_wasserstein(samples, reference, generator=generator),
        "mmd": mmd(samples[:4000], reference[:4000]),
    }
    if log_prob is not None:
        out["cross_entropy"], out["cross_entropy_se"] = cross_entropy(samples, log_prob)
    return out
