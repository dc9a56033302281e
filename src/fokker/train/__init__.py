"""The trainer: Accelerate (so `accelerate launch` / torchrun spread it over devices unchanged), AdamW
with linear warm-up, gradient clipping, EMA with warm-up, a budget in steps or minutes, sample pictures
from fixed noise, metrics.jsonl, atomic checkpoints and exact resume.

Nothing is lost, whatever happens: one trainer at a time writes a run folder (its lock dies with it);
a NaN / infinite loss or gradient stops the run before it reaches the weights, and non-finite weights
are never saved; a run killed before its first checkpoint can be started again or resumed from step 0;
model.safetensors is repaired on start when a kill left it behind `latest`; and workers whose launcher
was killed stop instead of training on unwatched.

    build.py       the run: config, Accelerator, data, network, EMA, optimiser, schedule, loss (build_run)
    state.py       the whole training state as one object, saved to and loaded from checkpoints (TrainState)
    step.py        one optimisation step (train_step)
    progress.py    the clock, the progress bar and metrics.jsonl (Progress)
    pictures.py    the pictures of each task: samples, accuracy, reconstructions (Pictures, sample_pictures)
    collective.py  what all processes must agree on; the run lock
    loop.py        the loop (train)"""

from fokker.devices import make_accelerator
from fokker.train.build import Run, build_run, check_fresh, prepare_run
from fokker.train.loop import TrainResult, train
from fokker.train.pictures import picture_path, sample_pictures, trim_pictures
from fokker.train.state import TrainState

__all__ = [
    "Run",
    "TrainResult",
    "TrainState",
    "build_run",
    "check_fresh",
    "make_accelerator",
    "picture_path",
    "prepare_run",
    "sample_pictures",
    "train",
    "trim_pictures",
]
