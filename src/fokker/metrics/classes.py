"""Metrics of samples drawn for given classes (a conditional or a guided model): label agreement, the
fraction of samples that fokker's own classifier puts in the class asked for, and the quality of each
class's samples against the training data of that class (per-class FID for images, sliced W2 for vectors).
Together, over the guidance scale, they trace the trade-off the guidance papers plot (Ho & Salimans 2022,
fig. 4; Dhariwal & Nichol 2021, fig. 4): agreement (precision) against FID (quality and diversity)."""

from __future__ import annotations

import torch

from fokker.data import Dataset
from fokker.metrics.classifier import Classifier
from fokker.metrics.distances import fid, sliced_wasserstein

NEIGHBOURS = 10  # the vote of a vector sample's label: its nearest training points


def nearest_labels(x: torch.Tensor, reference: torch.Tensor, labels: torch.Tensor, k: int = NEIGHBOURS) -> torch.Tensor:
    """The majority label of each row of x among its k nearest reference points (Euclidean), in chunks."""
    votes = []
    for chunk in x.to(torch.float64).split(2048):
        idx = torch.cdist(chunk, reference.to(torch.float64)).topk(k, largest=False).indices
        votes.append(labels[idx].mode(dim=1).values)
    return torch.cat(votes)


def class_metrics(
    samples: torch.Tensor,
    asked: torch.Tensor,
    reference: Dataset,
    classifier: Classifier | None,
    generator: torch.Generator | None = None,
) -> dict:
    """{"agreement": the fraction of samples labelled as the class asked for, "per_class": the quality of
    each class's samples against the reference examples of that class (FID in the classifier's features for
    images, sliced W2 for vectors; NaN for a class with fewer than 2 samples)}. Images are labelled by
    `classifier`, vectors by their nearest reference points (`nearest_labels`)."""
    if samples.dim() == 4:
        feats, probs = classifier(samples)
        ref_feats, _ = classifier(reference.data)
        predicted = probs.argmax(-1)
    else:
        feats, ref_feats = samples.to(torch.float64), reference.data.to(torch.float64)
        predicted = nearest_labels(feats, ref_feats, reference.labels)
    per_class = []
    for k in range(reference.num_classes):
        mine, theirs = feats[asked == k], ref_feats[reference.labels == k]
        if len(mine) < 2:
            per_class.append(float("nan"))
        elif samples.dim() == 4:
            per_class.append(fid(mine, theirs))
        else:
            per_class.append(sliced_wasserstein(mine, theirs, generator=generator))
    return {"agreement": float((predicted == asked).double().mean()), "per_class": per_class}
