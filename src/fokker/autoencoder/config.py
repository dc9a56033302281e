"""What an autoencoder's config may hold: it is trained on clean data with its own loss, so the keys of a
diffusion model (its process, its Denoiser, its time sampling, its labels and its sampler) are refused when
set (they would have no effect), and the loss must be the one of its network type."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fokker.config.sections import SampleSection
from fokker.errors import UserError

if TYPE_CHECKING:
    from fokker.config import RunConfig

# the keys no autoencoder reads: each must keep its default (the process too: `check_autoencoder`)
UNREAD: dict[str, tuple[str, ...]] = {
    "model": ("prediction", "conditioning", "variance", "clip", "conditional", "parameterisation", "sigma_data"),
    "train": ("p_uncond", "loss_target", "weighting", "hybrid_weight", "time_sampler"),
    "sample": tuple(SampleSection.keys()),
}
LOSS_OF = {"vae": "vae", "vqvae": "vq"}  # network type -> the loss that trains it (fokker.losses.reconstruction)
NO_DIFFUSION = "an autoencoder is trained on clean data, with no process, noise level or labels"


def check_autoencoder(config: RunConfig) -> None:
    """A UserError naming the first key an autoencoder's config sets that it does not read (UNREAD, or a
    process other than the default), or a loss that does not train its network type."""
    from fokker.config import RunConfig

    defaults, kind = RunConfig(), config.model.network.get("type")
    for section, keys in UNREAD.items():
        for key in keys:
            value = getattr(getattr(config, section), key)
            if value != getattr(getattr(defaults, section), key):
                why = "it draws no samples (its pictures are reconstructions)" if section == "sample" else NO_DIFFUSION
                raise UserError(
                    f"{section}.{key}={value!r} has no effect on an autoencoder (model.network.type {kind}): "
                    f"{why}; leave it unset"
                )
    if config.process != defaults.process:
        raise UserError(
            f"process {config.process} has no effect on an autoencoder (model.network.type {kind}): "
            f"{NO_DIFFUSION}; leave the process section unset"
        )
    loss = LOSS_OF.get(kind)
    if loss is not None and config.train.loss != loss:
        raise UserError(f"train.loss {config.train.loss} does not train a {kind} network: use train.loss {loss}")
