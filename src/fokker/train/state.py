"""The whole state of a training run as one object, `TrainState`: what a checkpoint holds and all that
exact (bitwise) resume needs: network, EMA, optimiser, learning-rate schedule, step, seconds trained, the
RNG states of every process and the importance sampler's loss history. Saved as the parts of a
checkpoint (fokker.checkpoint), the EMA weights exported beside it (fokker.weights)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import gather
from torch import nn

from fokker.checkpoint import latest_name, load_checkpoint, save_checkpoint, step_name
from fokker.config import RunConfig
from fokker.ema import EMA
from fokker.errors import UserError
from fokker.files import atomic_write_text
from fokker.timesteps import LossAwareSampler
from fokker.weights import export_weights, exported_step, load_strict, non_finite


@dataclass
class TrainState:
    """Everything a checkpoint holds. `model` and `optimizer` are the network and its AdamW, as prepared by
    Accelerate once the state is built (and loaded: `load` takes the unprepared ones); `gen` draws the
    batches, the times and the noise; `times` is the importance sampler of t, None for uniform t."""

    model: nn.Module
    ema: EMA
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    gen: torch.Generator
    times: LossAwareSampler | None
    step: int = 0
    elapsed: float = 0.0
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # exported beside the EMA weights (`exported`)

    def load(self, out: Path, rank: int, world: int) -> None:
        """Restore the state of the run's newest intact checkpoint; this process's RNG states are its rank's."""
        saved = load_checkpoint(out)
        load_strict(self.model, saved["model"], out / "latest")
        load_strict(self.ema.model, saved["ema"], out / "latest")
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.step, self.elapsed = saved["step"], saved["trainer"]["elapsed"]
        self.ema.updates = saved["trainer"]["ema_updates"]
        rng = saved["rng"]
        if rng["gen"].shape[0] != world:
            raise UserError(f"the run was trained on {rng['gen'].shape[0]} processes; resume it on as many")
        # clone: the row of process > 0 is a view at an offset, which set_state misreads (crashes, even)
        torch.set_rng_state(rng["torch"][rank].clone())
        self.gen.set_state(rng["gen"][rank].clone())
        if self.times is not None:
            self.times.load_state_dict(saved["time_sampler"])

    def save(self, out: Path, config: RunConfig, acc: Accelerator) -> None:
        """Checkpoint the state (every process takes part: the RNG states are gathered) and export its EMA
        weights to model.safetensors; weights that are NaN or infinite are refused (`check_weights`)."""
        network = acc.unwrap_model(self.model)
        check_weights(self.step, {"model": network, "ema": self.ema.model}, out)
        rng = self.rng_states(acc)
        if acc.is_main_process:
            save_checkpoint(out, self.step, self.parts(network, rng), config.train.keep_last)
            export_weights(out / "model.safetensors", self.exported(), config.to_dict(), self.step)
        acc.wait_for_everyone()

    def exported(self) -> dict[str, torch.Tensor]:
        """The tensors of RUN/model.safetensors: the EMA weights, and `extra` (a latent diffusion model's
        autoencoder: fokker.autoencoder.space.prefixed)."""
        return {**self.ema.model.state_dict(), **self.extra}

    def rng_states(self, acc: Accelerator) -> dict[str, torch.Tensor]:
        """The global torch RNG state and `gen`'s, one row per process (a collective with several)."""
        rng = {"torch": torch.get_rng_state(), "gen": self.gen.get_state()}
        if acc.num_processes > 1:
            return {k: gather(v.to(acc.device)[None]).cpu() for k, v in rng.items()}
        return {k: v[None] for k, v in rng.items()}

    def parts(self, network: nn.Module, rng: dict[str, torch.Tensor]) -> dict[str, Any]:
        """The checkpoint's parts (fokker.checkpoint.save_checkpoint), in the order they are written."""
        parts = {
            "model": network.state_dict(),
            "ema": self.ema.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng,
            "trainer": {"elapsed": self.elapsed, "ema_updates": self.ema.updates},
        }
        if self.times is not None:
            parts["time_sampler"] = self.times.state_dict()
        return parts

    def repair(self, out: Path, config: RunConfig) -> None:
        """After a kill (or a damaged newest checkpoint), make `latest` name the checkpoint resumed from and
        model.safetensors hold its EMA weights (the step is in its metadata)."""
        if latest_name(out) != step_name(self.step):
            atomic_write_text(out / "latest", step_name(self.step) + "\n")
        if exported_step(out / "model.safetensors") != self.step:
            export_weights(out / "model.safetensors", self.exported(), config.to_dict(), self.step)


def check_weights(step: int, modules: dict[str, nn.Module], out: Path) -> None:
    """Refuse to save weights that are NaN or infinite: the checkpoint `latest` names stays the last one."""
    for name, module in modules.items():
        bad = non_finite(module.state_dict())
        if bad:
            kept = latest_name(out)
            raise UserError(
                f"non-finite weights at step {step} ({name} {bad[0]}): the training diverged; nothing was saved "
                f"({f'the run keeps {kept}' if kept else 'no checkpoint yet'}); lower train.lr"
            )
