"""FID, KID and Inception Score with the usual Inception-v3 features, only from a local weights file.

The network comes from torch-fidelity (install ``fokker[inception]``; it brings torchvision). fokker passes
it the file the user names and never lets it download: without a file, or without torch-fidelity, the
user gets one clear message instead of a network request that hangs offline."""

from __future__ import annotations

from pathlib import Path

import torch

from fokker.errors import UserError
from fokker.metrics.distances import fid, kid
from fokker.metrics.quality import inception_score


def load_inception(weights: str | Path, device: torch.device | str = "cpu") -> torch.nn.Module:
    """torch-fidelity's Inception-v3 (2048 pool features and the 1008 unbiased logits) from a local file,
    e.g. weights-inception-2015-12-05-6726825d.pth."""
    path = Path(weights).expanduser()
    if not path.is_file():
        raise UserError(f"no Inception weights file at {path}; fokker never downloads them: give a local file")
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError as err:
        raise UserError(f"Inception metrics need torch-fidelity: pip install 'fokker[inception]' ({err})") from None
    net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"], str(path))
    return net.to(device).eval()


@torch.no_grad()
def inception_outputs(net: torch.nn.Module, images: torch.Tensor, batch_size: int = 100) -> tuple[torch.Tensor, ...]:
    """(pool features (N, 2048), class probabilities) of images in [-1, 1]; grey images are repeated to RGB
    and every image is quantized to uint8 first, as the network expects."""
    device = next(net.parameters()).device
    feats, probs = [], []
    for chunk in images.split(batch_size):
        rgb = chunk.expand(-1, 3, -1, -1) if chunk.shape[1] == 1 else chunk
        uint8 = ((rgb.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        pool, logits = net(uint8.to(device))
        feats.append(pool.double().cpu())
        probs.append(logits.double().softmax(-1).cpu())
    return torch.cat(feats), torch.cat(probs)


def inception_metrics(
    samples: torch.Tensor, reference: torch.Tensor, net: torch.nn.Module, *, generator: torch.Generator | None = None
) -> dict:
    """Inception FID, KID and IS of image samples against reference images."""
    feats, probs = inception_outputs(net, samples)
    ref_feats, _ = inception_outputs(net, reference)
    kid_mean, _ = kid(feats, ref_feats, generator=generator)
    return {"inception_fid": fid(feats, ref_feats), "inception_kid": kid_mean, "inception_is": inception_score(probs)}
