"""Autoencoders trained by fokker, the first stage of latent diffusion (Rombach et al. 2022): a KL-regularised
VAE and a VQ-VAE (fokker.nets.VAE, fokker.nets.VQVAE), trained by `fokker train` with the vae and vq losses:

    fokker train --preset vae-mnist --out runs/vae
    fokker train --preset vqvae-mnist --out runs/vqvae

    load.py     load_autoencoder: from a run folder or its model.safetensors
    config.py   check_autoencoder: its config sets nothing only a diffusion model reads
    metrics.py  psnr, codebook_usage, perplexity, latent_statistics, latent_scale_of
    measure.py  Measure: the numbers of an autoencoder on the held-out split (with the reconstruction FID)
    report.py   RUN/autoencoder.json, the numbers by step; latent_scale(run), the scale a latent diffusion
                model multiplies the latents by (computed from the data, never latent diffusion's 0.18215)"""

from fokker.autoencoder.config import check_autoencoder
from fokker.autoencoder.load import load_autoencoder
from fokker.autoencoder.metrics import codebook_usage, latent_scale_of, latent_statistics, perplexity, psnr
from fokker.autoencoder.report import latent_scale, read_report

__all__ = [
    "check_autoencoder",
    "codebook_usage",
    "latent_scale",
    "latent_scale_of",
    "latent_statistics",
    "load_autoencoder",
    "perplexity",
    "psnr",
    "read_report",
]
