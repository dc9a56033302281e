"""The training loop, `train`: build the run, set its folder up, step until the budget is spent with a
checkpoint every train.checkpoint_every steps and a picture every train.sample_every, then a final
checkpoint and picture."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from fokker.autoencoder.space import keep_autoencoder
from fokker.checkpoint import latest_name, remove_temporaries, step_name
from fokker.config import RunConfig, to_yaml
from fokker.files import atomic_write_text, sign_lock
from fokker.metrics_jsonl import trim_metrics
from fokker.train.build import Run, build_run
from fokker.train.collective import check_launcher, done, launcher_pid, leave_process_group, main_decides
from fokker.train.pictures import Pictures, picture_due, pictures_for
from fokker.train.progress import Progress
from fokker.train.step import train_step


@dataclass
class TrainResult:
    """Where a training run was written, the step it reached and its seconds of training."""

    run: Path
    step: int
    elapsed: float
    loss: float


def train(
    config: dict | RunConfig,
    out: str | Path,
    *,
    resume: bool = False,
    device: str = "auto",
    budget: dict | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train the model described by `config` (a RunConfig, or raw nested dicts: fokker.config) into the run
    folder `out` (see fokker.checkpoint), holding its lock throughout. `log` (print, for the CLI) is told
    how many processes train on which device."""
    with ExitStack() as held:
        run = build_run(config, Path(out), resume, device, budget or {}, held)
        result, acc = _train(run, progress, log), run.acc
        del run  # the last reference to the DDP network, which holds the process group
        if acc.num_processes > 1:
            leave_process_group(acc)
        return result


def _train(run: Run, progress: bool, log: Callable[[str], None] | None) -> TrainResult:
    s, acc, tc = run.state, run.acc, run.tc
    pictures = pictures_for(run)
    if acc.is_main_process:
        open_folder(run, pictures, log)
    clock = Progress(run, progress)
    s.model.train()
    if run.resumed and picture_due(s.step, tc) and pictures.missing():
        pictures.draw()  # a kill cut the picture of this checkpoint short
    launcher = launcher_pid(acc)
    while not done(s.step, s.elapsed, tc, acc):
        check_launcher(launcher)
        loss, grad_norm = train_step(run)
        clock.update(loss, grad_norm)
        if s.step % tc.checkpoint_every == 0:
            s.save(run.out, run.config, acc)
        if s.step % tc.sample_every == 0:
            pictures.draw()
    loss = clock.close()
    if main_decides(latest_name(run.out) != step_name(s.step), acc):  # not the folder: a kill can leave it
        s.save(run.out, run.config, acc)
    if pictures.missing():  # also when checkpoint_every divides the step
        pictures.draw()
    return TrainResult(run.out, s.step, s.elapsed, loss)


def open_folder(run: Run, pictures: Pictures, log: Callable[[str], None] | None) -> None:
    """Main process, past every check (a refused or failed start changes no file): sign the lock, remove
    what a kill left half-written, write config.yaml, drop the logs and pictures of steps after the one
    resumed from, repair `latest` and model.safetensors on resume, keep a latent diffusion run's autoencoder,
    and say where training goes."""
    sign_lock(run.lock)
    remove_temporaries(run.out)
    atomic_write_text(run.out / "config.yaml", to_yaml(run.config))
    if run.space is not None:
        keep_autoencoder(run.space, run.config, run.out)
    trim_metrics(run.out / "metrics.jsonl", run.state.step)
    pictures.trim()
    if run.resumed:
        run.state.repair(run.out, run.config)
    if log is not None:
        world = run.acc.num_processes
        what = f"{world} process{'es' if world > 1 else ''} ({run.acc.device.type})"
        log(f"training on {what}, from step {run.state.step} into {run.out}")
