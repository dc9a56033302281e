"""The Accelerator (Hugging Face Accelerate) that trains and samples on the device --device asks for; outside
the trainer, so that inference commands need not import it."""

from __future__ import annotations

import torch
from accelerate import Accelerator

from fokker.errors import UserError


def make_accelerator(device: str, mixed_precision: str) -> Accelerator:
    """An Accelerator for --device auto|cpu|cuda|mps; asking for an absent device is a UserError."""
    if device not in ("auto", "cpu", "cuda", "mps"):
        raise UserError(f"bad --device {device!r}; expected auto, cpu, cuda or mps")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but no CUDA device is available")
    if device == "mps" and not torch.backends.mps.is_available():
        raise UserError("--device mps asked for, but no MPS device is available")
    # "auto" with neither CUDA nor MPS must ask for the CPU: only then does Accelerate join the processes
    # of torchrun / accelerate launch into one group (otherwise each would train alone into the same run)
    cpu = device == "cpu" or (device == "auto" and not (torch.cuda.is_available() or torch.backends.mps.is_available()))
    return Accelerator(cpu=cpu, mixed_precision=mixed_precision)
