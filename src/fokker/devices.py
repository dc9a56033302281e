"""The device a command runs on: --device auto|cpu|cuda|mps, checked and resolved the way Accelerate
resolves it (so `fokker train` and the inference commands agree), without the trainer."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from fokker.errors import UserError

if TYPE_CHECKING:
    from accelerate import Accelerator

DEVICES = ("auto", "cpu", "cuda", "mps")


def check_device(device: str) -> None:
    """A UserError for a device name not in DEVICES, or for a device this machine does not have."""
    if device not in DEVICES:
        raise UserError(f"bad --device {device!r}; expected {', '.join(DEVICES[:-1])} or {DEVICES[-1]}")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but no CUDA device is available")
    if device == "mps" and not torch.backends.mps.is_available():
        raise UserError("--device mps asked for, but no MPS device is available")


def wants_cpu(device: str) -> bool:
    """Whether Accelerate must be told to use the CPU: for "cpu", and for "auto" with neither CUDA nor MPS
    (only then does Accelerate join the processes of torchrun / accelerate launch into one group)."""
    accelerated = torch.cuda.is_available() or torch.backends.mps.is_available()
    return device == "cpu" or (device == "auto" and not accelerated)


def inference_device(device: str) -> torch.device:
    """The torch device of a one-process command (sample, eval, likelihood, interpolate): the device an
    `Accelerator(cpu=wants_cpu(device))` would pick, from Accelerate's shared process state."""
    from accelerate import PartialState

    check_device(device)
    return PartialState(cpu=wants_cpu(device)).device


def make_accelerator(device: str, mixed_precision: str) -> Accelerator:
    """The Accelerator (Hugging Face Accelerate) that trains on --device auto|cpu|cuda|mps; an absent
    device is a UserError."""
    from accelerate import Accelerator

    check_device(device)
    return Accelerator(cpu=wants_cpu(device), mixed_precision=mixed_precision)
