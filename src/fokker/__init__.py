"""fokker: diffusion generative models, correct to the formula.

One Gaussian `Process` (VP, VE, SubVP), one `Denoiser` (any network + what it predicts), and
samplers that work on any Denoiser."""

import fokker.distill.losses  # noqa: F401  (registers the few-step losses in fokker.losses.LOSS_TYPES)
from fokker.denoiser import Denoiser
from fokker.errors import UserError
from fokker.latents import decode, encode, interpolate
from fokker.likelihood import Likelihood, likelihood
from fokker.losses import simple_loss
from fokker.processes import VE, VP, Process, SubVP, process_from_config
from fokker.samplers import SAMPLERS, langevin, sample, score_from_log_prob, time_grid

__all__ = [
    "SAMPLERS",
    "VE",
    "VP",
    "Denoiser",
    "Likelihood",
    "Process",
    "SubVP",
    "UserError",
    "decode",
    "encode",
    "interpolate",
    "langevin",
    "likelihood",
    "process_from_config",
    "sample",
    "score_from_log_prob",
    "simple_loss",
    "time_grid",
]
__version__ = "0.2.0"
