"""One optimisation step: a batch drawn with the run's generator, its loss (with importance-sampled t,
Nichol & Dhariwal 2021, sec. 3.3, when train.time_sampler is "importance"), backward, gradient clipping,
AdamW, the learning-rate schedule and the EMA update; a NaN or infinite loss or gradient stops the run
before it reaches the weights."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import gather

from fokker.cascade import is_super_resolution, training_kwargs
from fokker.checkpoint import latest_name
from fokker.errors import UserError
from fokker.labels import batch_kwargs
from fokker.train.build import Run


def train_step(run: Run) -> tuple[torch.Tensor, torch.Tensor]:
    """Advance `run.state` by one step; (the batch's loss, the gradient norm before clipping)."""
    s, acc, tc = run.state, run.acc, run.tc
    idx = torch.randint(0, len(run.data), (tc.batch_size,), generator=s.gen, device=acc.device)
    kw = batch_kwargs(run.config, run.labels, idx, s.gen)  # the batch's labels (a conditional model drops some)
    if is_super_resolution(run.config):  # its low-resolution input, downsampled from the batch and augmented
        kw |= training_kwargs(run.data[idx], run.config, s.gen)
    with acc.autocast():
        loss = batch_loss(run, idx, kw)
    s.optimizer.zero_grad(set_to_none=True)
    acc.backward(loss)
    grad_norm = acc.clip_grad_norm_(s.model.parameters(), math.inf if tc.grad_clip is None else tc.grad_clip)
    check_step(loss, grad_norm, s.step + 1, acc, run.out, tc)
    s.optimizer.step()
    s.scheduler.step()
    s.ema.update(acc.unwrap_model(s.model))
    s.step += 1
    return loss, grad_norm


def batch_loss(run: Run, idx: torch.Tensor, kw: dict | None) -> torch.Tensor:
    """The mean loss of the examples `idx`: at uniform t, or at importance-sampled t with each loss
    reweighted by 1 / (T p_t); every process records the losses of all in the sampler's history."""
    times, gen, x0 = run.state.times, run.state.gen, run.data[idx]
    loss_fn = run.loss_fn.at_step(run.state.step)
    if times is None:
        return loss_fn(run.denoiser, x0, generator=gen, model_kwargs=kw).mean()
    t, weights = times.sample(len(idx), gen, run.acc.device)
    per_example = loss_fn(run.denoiser, x0, t=t, generator=gen, model_kwargs=kw)
    loss = (per_example * weights).mean()
    times.update(*(gather(v.detach()) for v in (t, per_example)))
    return loss


def check_step(loss: torch.Tensor, grad_norm: torch.Tensor, step: int, acc: Accelerator, out: Path, tc: dict) -> None:
    """Stop before a NaN or infinite loss (on any process) or gradient norm reaches the weights, with one
    clear UserError on every process. Under fp16 an infinite gradient is the loss scaler's business (it
    skips that step and lowers its scale), so there only the loss counts."""
    losses = loss.detach().float().reshape(1)
    if acc.num_processes > 1:
        losses = gather(losses)
    norm = float(grad_norm)
    if bool(torch.isfinite(losses).all()) and (math.isfinite(norm) or acc.scaler is not None):
        return
    bad = next((v for v in losses.tolist() if not math.isfinite(v)), losses[0].item())
    kept = latest_name(out)
    raise UserError(
        f"training diverged at step {step}: the loss is {bad:.4g}, the gradient norm {norm:.4g}; nothing of it "
        f"was saved ({f'the run keeps {kept}' if kept else 'no checkpoint yet'}); lower train.lr "
        f"(now {tc.lr:g}) or train.grad_clip (now {tc.grad_clip})"
    )
