"""What every process of a distributed run must agree on: process 0 decides (whether the budget is spent,
whether a file is missing, the run lock's refusal) and tells the others, so that all of them enter the
same collectives; and workers whose launcher is gone stop."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast

from fokker.config import TrainSection
from fokker.errors import UserError
from fokker.files import lock_run


def main_decides(flag: bool, acc: Accelerator) -> bool:
    """Process 0's answer, on every process (a decision that leads into a collective must be the same)."""
    if acc.num_processes == 1:
        return flag
    return bool(broadcast(torch.tensor([flag], device=acc.device), from_process=0).item())


def main_says(text: str | None, acc: Accelerator, size: int = 2048) -> str:
    """Process 0's line of text (up to `size` bytes of UTF-8), on every process; "" for None."""
    data = torch.zeros(size, dtype=torch.uint8)
    raw = (text or "").encode()[:size]
    data[: len(raw)] = torch.tensor(list(raw), dtype=torch.uint8)
    data = broadcast(data.to(acc.device), from_process=0).cpu()
    return bytes(data.tolist()).rstrip(b"\0").decode("utf-8", "replace")


def done(step: int, elapsed: float, tc: TrainSection, acc: Accelerator) -> bool:
    """Whether the budget (train.steps or train.minutes) is spent; with several processes, process 0's clock
    decides for all."""
    stop = (tc.steps is not None and step >= tc.steps) or (tc.minutes is not None and elapsed >= tc.minutes * 60)
    if acc.num_processes > 1 and tc.minutes is not None:
        stop = bool(broadcast(torch.tensor([stop], device=acc.device), from_process=0).item())
    return stop


@contextmanager
def run_lock(out: Path, acc: Accelerator) -> Iterator[IO | None]:
    """Hold the run folder's lock (fokker.files.lock_run) while training: the main process takes it
    (and yields it), or every process stops with its refusal."""
    lock, refusal = None, None
    if acc.is_main_process:
        try:
            lock = lock_run(out)
        except UserError as err:
            refusal = str(err)
        except OSError as err:
            refusal = f"cannot write --out {out}: {err}"
    if acc.num_processes > 1:
        refusal = main_says(refusal, acc)
    if refusal:
        raise UserError(refusal)
    try:
        yield lock
    finally:
        if lock is not None:
            lock.close()


def launcher_pid(acc: Accelerator) -> int | None:
    """The pid of the launcher of a distributed run (this process's parent), None for a single process."""
    return os.getppid() if acc.num_processes > 1 else None


def check_launcher(launcher: int | None) -> None:
    """A worker of `accelerate launch` / torchrun whose launcher is gone (killed: its pid is no longer our
    parent's) stops, instead of training on where nobody can stop it."""
    if launcher is not None and os.getppid() != launcher:
        raise UserError(f"the launcher of this process (pid {launcher}) is gone; stopping")


def leave_process_group(acc: Accelerator) -> None:
    """Leave the process group once every process is done: wait for all, drop Accelerate's references to
    the prepared network and optimiser (DDP holds the group) and collect them, then destroy the group, so
    that its gloo threads are joined here and not torn down at interpreter exit (which can abort it)."""
    acc.wait_for_everyone()
    acc.free_memory()
    gc.collect()
    acc.end_training()
