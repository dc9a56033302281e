"""A run's clock and what it tells: the progress bar (in steps, or in seconds for a budget in minutes)
and RUN/metrics.jsonl, one record per train.log_every steps (fokker.metrics_jsonl)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from fokker.metrics_jsonl import append_record

if TYPE_CHECKING:
    from fokker.train.build import Run


class Progress:
    """Counts the seconds trained into `run.state.elapsed` (on from a resumed run's), shows them on a bar and
    logs the mean loss of each log_every steps with the learning rate, the gradient norm and the speed."""

    def __init__(self, run: Run, show: bool) -> None:
        s, tc = run.state, run.tc
        self.run, self.every = run, tc.log_every
        self.start, self.last_time, self.last_step = time.time() - s.elapsed, time.time(), s.step
        self.loss_sum, self.loss_n, self.last_loss = 0.0, 0, float("nan")
        self.by_steps = bool(tc.steps)
        self.bar = tqdm(
            total=tc.steps if self.by_steps else int(tc.minutes * 60),
            initial=s.step if self.by_steps else int(s.elapsed),
            unit="step" if self.by_steps else "s",
            disable=not (show and run.acc.is_main_process),
            dynamic_ncols=True,
        )

    def update(self, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        """After a step: the clock and the bar move on, and every log_every steps a record is written."""
        s = self.run.state
        self.loss_sum, self.loss_n = self.loss_sum + loss.item(), self.loss_n + 1
        before, s.elapsed = s.elapsed, time.time() - self.start
        self.bar.update(1 if self.by_steps else int(s.elapsed) - int(before))
        if s.step % self.every == 0:
            self.record(grad_norm)

    def record(self, grad_norm: torch.Tensor) -> None:
        """One line of metrics.jsonl (main process) and the bar's loss and speed."""
        s, now = self.run.state, time.time()
        self.last_loss = self.loss_sum / self.loss_n
        record = {
            "step": s.step,
            "loss": self.last_loss,
            "lr": s.scheduler.get_last_lr()[0],
            "grad_norm": float(grad_norm),
            "steps_per_sec": (s.step - self.last_step) / (now - self.last_time),
            "elapsed": round(s.elapsed, 2),
        }
        self.bar.set_postfix(loss=f"{self.last_loss:.4f}", it_s=f"{record['steps_per_sec']:.1f}")
        if self.run.acc.is_main_process:
            append_record(self.run.out / "metrics.jsonl", record)
        self.loss_sum, self.loss_n, self.last_time, self.last_step = 0.0, 0, now, s.step

    def close(self) -> float:
        """Close the bar; the mean loss since the last record (the last record's, if none since)."""
        self.bar.close()
        return self.loss_sum / self.loss_n if self.loss_n else self.last_loss
