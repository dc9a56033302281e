"""The numbers an autoencoder is judged by: PSNR of its reconstructions, its codebook's usage and perplexity
(VQ), and the statistics of its latents, among them the latent scale factor a latent diffusion model
multiplies them by."""

from __future__ import annotations

import math

import torch
from torch import nn

DATA_RANGE = 2.0  # fokker's images lie in [-1, 1]


def psnr(reconstruction: torch.Tensor, x: torch.Tensor, data_range: float = DATA_RANGE) -> float:
    """Peak signal-to-noise ratio in dB, 10 log10(data_range^2 / MSE), with the MSE over every pixel of every
    image (not a mean of per-image PSNRs, which Jensen's inequality makes larger): 10 log10(4 / MSE) for data
    in [-1, 1]."""
    mse = (reconstruction.double() - x.double()).pow(2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(data_range**2 / mse)


def code_frequencies(indices: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """How often each code occurs among `indices` (any shape), as fractions (float64, summing to 1)."""
    counts = torch.bincount(indices.flatten().long(), minlength=codebook_size).double()
    return counts / counts.sum()


def codebook_usage(indices: torch.Tensor, codebook_size: int) -> float:
    """The fraction of the codebook that occurs among `indices` at least once."""
    return (code_frequencies(indices, codebook_size) > 0).double().mean().item()


def perplexity(indices: torch.Tensor, codebook_size: int) -> float:
    """exp(H(p)) of the codes' frequencies p, H the entropy in nats (0 log 0 = 0): the number of equally used
    codes that would give the same entropy; codebook_size for uniform use, 1 for a single code."""
    p = code_frequencies(indices, codebook_size)
    p = p[p > 0]
    return math.exp(-(p * p.log()).sum().item())


@torch.no_grad()
def latent_statistics(network: nn.Module, data: torch.Tensor, batch: int = 500) -> tuple[float, float]:
    """(mean, standard deviation) of every element of `network.encode(data)`, encoded `batch` images at a
    time and accumulated in float64 (the standard deviation with Bessel's correction, as torch.std)."""
    total, squares, n = 0.0, 0.0, 0
    for chunk in data.split(batch):
        z = network.encode(chunk).double()
        total, squares, n = total + z.sum().item(), squares + z.pow(2).sum().item(), n + z.numel()
    mean = total / n
    return mean, math.sqrt(max(squares - n * mean**2, 0.0) / (n - 1))


def latent_scale_of(network: nn.Module, data: torch.Tensor, batch: int = 500) -> float:
    """The latent scale factor 1 / std of the latents of `data`, so that scale * encode(x) has unit variance
    as a diffusion model's data should (Rombach et al. 2022, sec. 4.3.2 and app. G, there estimated from one
    batch; here from `data`). It is computed from the autoencoder's own latents: latent
    diffusion's constant 0.18215 is that number for one autoencoder (Stable Diffusion's KL-f8 on its data)
    and is wrong for any other, silently giving its diffusion model data of the wrong scale."""
    return 1.0 / latent_statistics(network, data, batch)[1]
