"""What a classifier's config may hold: the keys only a denoiser reads are refused (they would have no
effect); its classes come from labelled data (fokker.labels.resolve_classes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fokker.config.sections import SampleSection
from fokker.errors import UserError

if TYPE_CHECKING:
    from fokker.config import RunConfig

# the keys of a Denoiser, its label dropout, its loss's options and its sampler: none of them is read for a
# classifier, so each must keep its default
DENOISER_ONLY: dict[str, tuple[str, ...]] = {
    "model": ("prediction", "variance", "clip", "conditional"),
    "train": ("p_uncond", "loss_target", "weighting", "hybrid_weight"),
    "sample": tuple(SampleSection.keys()),
}


def check_classifier(config: RunConfig) -> None:
    """A UserError naming the first key of DENOISER_ONLY that a classifier's config sets (to other than its
    default): it would have no effect."""
    from fokker.config import RunConfig

    defaults, kind = RunConfig(), config.model.network.get("type")
    for section, keys in DENOISER_ONLY.items():
        for key in keys:
            value = getattr(getattr(config, section), key)
            if value != getattr(getattr(defaults, section), key):
                why = "it draws no samples (its pictures are its accuracy against t)" if section == "sample" else (
                    "only a diffusion model reads it"
                )  # fmt: skip
                raise UserError(
                    f"{section}.{key}={value!r} has no effect on a noise-conditional classifier "
                    f"(model.network.type {kind}): {why}; leave it unset"
                )
