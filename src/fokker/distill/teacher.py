"""The teacher of a distillation loss: a Denoiser given as it is (tests, the library), or a run folder loaded
once per device (in eval mode, without gradients)."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from fokker.denoiser import Denoiser


@functools.lru_cache(maxsize=4)
def _load(path: str, device: str) -> Denoiser:
    from fokker.model import load_model

    return load_model(path, device)[0]


def teacher_model(teacher: Denoiser | str | Path, device: torch.device | str) -> Denoiser:
    """The teacher Denoiser: `teacher` itself, or the model of the run folder (or .safetensors file) it names."""
    if isinstance(teacher, Denoiser):
        return teacher
    return _load(str(teacher), str(torch.device(device)))
