"""The Accelerator (Hugging Face Accelerate) that trains and samples on the device --device asks for; outside
the trainer, so that inference commands need not import it."""

from __future__ import annotations

from accelerate import Accelerator

from fokker.devices import check_device, wants_cpu


def make_accelerator(device: str, mixed_precision: str) -> Accelerator:
    """An Accelerator for --device auto|cpu|cuda|mps (fokker.devices); an absent device is a UserError."""
    check_device(device)
    return Accelerator(cpu=wants_cpu(device), mixed_precision=mixed_precision)
