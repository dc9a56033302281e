"""An autoencoder's numbers at one step (`Measure`), on the first REPORT_EXAMPLES of the held-out split:
PSNR of its reconstructions decode(encode(x)), the path a latent diffusion model's samples take, clamped to the
data's range [-1, 1] as a picture would be; their FID against the originals in fokker's classifier features
(R-FID, as Rombach et al. 2022 report their autoencoders); for a VQ-VAE its codebook usage and perplexity; and the
statistics of its latents on the training split, among them the latent scale factor (1 / their std)."""

from __future__ import annotations

import torch
from torch import nn

from fokker.autoencoder.metrics import codebook_usage, latent_statistics, perplexity, psnr
from fokker.data import Dataset
from fokker.metrics import Classifier, fid, load_classifier

REPORT_EXAMPLES = 2000  # at most this many held-out images (the first ones)
LATENT_EXAMPLES = 10000  # the latent statistics on at most this many training images (the first ones)
BATCH = 500  # images through the network at once


def feature_classifier(dataset: Dataset, progress: bool = False) -> Classifier | None:
    """fokker's classifier of the data set (fokker.metrics.load_classifier: trained and cached on first use),
    whose features the FID is measured in; None for data without class labels (then there is no FID)."""
    if not dataset.is_image or dataset.labels is None or (dataset.num_classes or 0) < 2:
        return None
    return load_classifier(dataset.name, image_size=dataset.shape[-1], channels=dataset.shape[0], progress=progress)


@torch.no_grad()
def reconstruct(network: nn.Module, x: torch.Tensor, batch: int = BATCH) -> torch.Tensor:
    """decode(encode(x)), `batch` images at a time, clamped to [-1, 1]."""
    return torch.cat([network.decode(network.encode(chunk)).clamp(-1, 1) for chunk in x.split(batch)])


class Measure:
    """The numbers of an autoencoder on fixed data: `held_out` images (the report's), the `train` images of the
    latent statistics, and the feature `classifier` of the FID (or None). `about` is what the report says of
    them: the split, the number of examples, the latent shape and, for scale, the FID of the held-out
    originals against the training images (two sets of real images)."""

    def __init__(
        self,
        held_out: torch.Tensor,
        train: torch.Tensor,
        classifier: Classifier | None,
        latent_shape: tuple[int, ...],
    ) -> None:
        self.held_out, self.train, self.classifier = held_out[:REPORT_EXAMPLES], train[:LATENT_EXAMPLES], classifier
        self.about = {
            "split": "test",
            "examples": len(self.held_out),
            "latent_examples": len(self.train),
            "latent_shape": list(latent_shape),
        }
        self.reference = None
        if classifier is not None:
            self.reference = classifier(self.held_out)[0]
            self.about["classifier"] = {"dataset": classifier.dataset, "accuracy": classifier.accuracy}
            self.about["fid_held_out_vs_train"] = round(fid(self.reference, classifier(self.train)[0]), 6)

    @torch.no_grad()
    def __call__(self, network: nn.Module) -> tuple[torch.Tensor, dict]:
        """(the reconstructions of the held-out images, {psnr, fid (with a classifier), codebook_usage and
        perplexity (VQ), latent_scale, latent_mean, latent_std}) of `network` (in eval mode)."""
        reconstructions = reconstruct(network, self.held_out)
        values = {"psnr": psnr(reconstructions, self.held_out)}
        if self.classifier is not None:
            values["fid"] = fid(self.classifier(reconstructions)[0], self.reference)
        if hasattr(network, "codebook"):
            indices = torch.cat([network.indices(chunk) for chunk in self.held_out.split(BATCH)])
            size = len(network.codebook)
            values |= {"codebook_usage": codebook_usage(indices, size), "perplexity": perplexity(indices, size)}
        mean, std = latent_statistics(network, self.train, BATCH)
        values |= {"latent_scale": 1 / std, "latent_mean": mean, "latent_std": std}
        return reconstructions, values
