"""Image autoencoders, the first stage of latent diffusion (Rombach et al. 2022, sec. 3.1): a KL-regularised VAE
and a VQ-VAE, both a convolutional encoder to a (C, h, w) latent downsampled by 2^(len(channel_mult) - 1) and a
decoder back (fokker.nets.autoencoder_blocks). `encode` gives the latent a diffusion model is trained on,
`decode` maps one back to an image; `forward` gives what the training loss needs (fokker.losses.reconstruction).
The reconstruction is not squashed (no tanh): its loss keeps it in the data's range [-1, 1]."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from .autoencoder_blocks import decoder, encoder, level_sizes
from .registry import register_network


class Autoencoder(nn.Module):
    """What the two autoencoders share: the sizes, the input check, `latent_shape` and `decode`."""

    task: ClassVar[str] = "autoencoder"  # its output is a reconstruction (fokker.nets.TASKS)

    def build(
        self,
        in_channels: int,
        image_size: int,
        latent_channels: int,
        encoded: int,
        base: int,
        channel_mult: tuple[int, ...],
        blocks: int,
        groups: int,
    ) -> None:
        """The encoder (to `encoded` channels) and the decoder (from `latent_channels`)."""
        self.in_channels, self.image_size, self.latent_channels = in_channels, image_size, latent_channels
        self.latent_size = level_sizes(image_size, len(channel_mult))[-1]
        self.encoder = encoder(in_channels, encoded, base, channel_mult, blocks, groups)
        self.decoder = decoder(latent_channels, in_channels, base, channel_mult, blocks, groups, image_size)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of one image's latent."""
        return self.latent_channels, self.latent_size, self.latent_size

    def check_input(self, x: Tensor) -> Tensor:
        """`x` itself when it is (B, in_channels, image_size, image_size), else a ValueError."""
        want = (self.in_channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(f"expected images of shape (B, {', '.join(map(str, want))}), got {tuple(x.shape)}")
        return x

    def decode(self, z: Tensor) -> Tensor:
        """The image (B, in_channels, image_size, image_size) of latents z (B, *latent_shape)."""
        return self.decoder(z)


@register_network("vae")
class VAE(Autoencoder):
    """KL-regularised autoencoder (Kingma & Welling 2014; latent diffusion's "KL-reg." first stage, Rombach
    et al. 2022, sec. 3.1): the encoder gives the mean and log-variance of a diagonal Gaussian q(z | x) over a
    (latent_channels, h, w) latent (the log-variance clamped to [-30, 20] as in latent diffusion)."""

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        latent_channels: int = 4,
        base_channels: int = 32,
        channel_mult: tuple[int, ...] = (1, 2, 2),
        num_res_blocks: int = 1,
        groups: int = 8,
    ) -> None:
        super().__init__()
        self.build(
            in_channels, image_size, latent_channels, 2 * latent_channels, base_channels, channel_mult,
            num_res_blocks, groups,
        )  # fmt: skip

    def moments(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, log-variance) of q(z | x), each (B, *latent_shape)."""
        mean, logvar = self.encoder(self.check_input(x)).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def encode(self, x: Tensor) -> Tensor:
        """The latent of x for a diffusion model: the posterior mean (deterministic; latent diffusion draws a
        sample, which at its KL weight differs from the mean by a tiny standard deviation)."""
        return self.moments(x)[0]

    def forward(
        self, x: Tensor, sample: bool = True, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(reconstruction, mean, log-variance): the decoding of z = mean + exp(logvar / 2) * eps, eps ~ N(0, I)
        drawn from `generator` (the reparameterisation trick, Kingma & Welling 2014, sec. 2.4), or of the mean
        when not `sample`."""
        mean, logvar = self.moments(x)
        z = mean
        if sample:
            eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            z = mean + (0.5 * logvar).exp() * eps
        return self.decode(z), mean, logvar


@register_network("vqvae")
class VQVAE(Autoencoder):
    """VQ-VAE (van den Oord et al. 2017): the encoder's output z_e (latent_channels, h, w) is quantised to its
    nearest of `codebook_size` codes by vector_quantize_pytorch's VectorQuantize with an EMA codebook (decay
    `codebook_decay`, van den Oord et al. 2017, app. A.1), k-means initialisation on the first training batch
    and dead-code replacement (a code whose EMA count falls below dead_code_threshold times the mean count is
    reset to an encoder output of the batch), with the straight-through gradient dz_q/dz_e = I (eq. 3; not the
    package's default rotation trick). The codebook moves only in training mode; its k-means and replacement
    draws use torch's global RNG (which fokker's trainer seeds and checkpoints). The commitment term is the
    loss's (fokker.losses.VQLoss): the quantiser's own weight is 0. In float64 the nearest code is found in
    float32 (the package casts), the rest runs in float64."""

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        latent_channels: int = 4,
        codebook_size: int = 256,
        base_channels: int = 32,
        channel_mult: tuple[int, ...] = (1, 2, 2),
        num_res_blocks: int = 1,
        groups: int = 8,
        codebook_decay: float = 0.99,
        kmeans_init: bool = True,
        kmeans_iters: int = 10,
        dead_code_threshold: float = 0.1,
    ) -> None:
        super().__init__()
        if not 0 < codebook_decay < 1:
            raise ValueError(f"codebook_decay must be in (0, 1), got {codebook_decay}")
        if not 0 <= dead_code_threshold < 1:
            raise ValueError(f"dead_code_threshold must be in [0, 1) (0: no replacement), got {dead_code_threshold}")
        from vector_quantize_pytorch import VectorQuantize  # here: importing it takes a second or two

        self.build(
            in_channels, image_size, latent_channels, latent_channels, base_channels, channel_mult,
            num_res_blocks, groups,
        )  # fmt: skip
        self.quantizer = VectorQuantize(
            dim=latent_channels, codebook_size=codebook_size, decay=codebook_decay, kmeans_init=kmeans_init,
            kmeans_iters=kmeans_iters, dead_code_threshold_ratio=dead_code_threshold, commitment_weight=0.0,
            accept_image_fmap=True, rotation_trick=False,
        )  # fmt: skip

    @property
    def codebook(self) -> Tensor:
        """The codes, (codebook_size, latent_channels)."""
        return self.quantizer.codebook

    def quantize(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """(z_q, code indices (B, h, w)) of encoder outputs z through the VectorQuantize layer: in training
        mode this updates the codebook and z_q = z + sg(e_k - z) passes z's gradient straight through."""
        z_q, indices, _ = self.quantizer(z)
        return z_q, indices

    def indices(self, x: Tensor) -> Tensor:
        """The nearest code of each latent position of x, (B, h, w); the codebook is left as it is."""
        return self.nearest(self.encoder(self.check_input(x)))

    def nearest(self, z: Tensor) -> Tensor:
        """The index of the nearest code (Euclidean) of each position of z (B, C, h, w): (B, h, w)."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        distance = torch.cdist(flat.float(), self.codebook.float())
        return distance.argmin(-1).reshape(z.shape[0], *z.shape[2:])

    def lookup(self, indices: Tensor, dtype: torch.dtype) -> Tensor:
        """The codes of `indices` (B, h, w) as latents (B, C, h, w)."""
        return self.codebook[indices].permute(0, 3, 1, 2).to(dtype)

    def encode(self, x: Tensor) -> Tensor:
        """The latent of x for a diffusion model: the quantised latent z_q (its nearest codes)."""
        z = self.encoder(self.check_input(x))
        return self.lookup(self.nearest(z), z.dtype)

    def decode(self, z: Tensor) -> Tensor:
        """The image of latents z, each position first snapped to its nearest code (the identity on z_q; a
        diffusion model's latents are quantised as latent diffusion's VQ decoder does, Rombach et al. 2022)."""
        return self.decoder(self.lookup(self.nearest(z), z.dtype))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(reconstruction decoded from z_q, commitment ||z_e - sg(z_q)||^2 per example averaged over the
        latent's dimensions, code indices (B, h, w)): van den Oord et al. 2017, eq. 3."""
        z = self.encoder(self.check_input(x))
        z_q, indices = self.quantize(z)
        commitment = (z - z_q.detach()).pow(2).flatten(1).mean(1)
        return self.decoder(z_q), commitment, indices
