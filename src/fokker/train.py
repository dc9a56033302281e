"""The training loop: Accelerate (so `accelerate launch` / torchrun spread it over devices unchanged),
AdamW with linear warm-up, gradient clipping, EMA with warm-up, a budget in steps or minutes,
sample pictures from fixed noise, metrics.jsonl, atomic checkpoints and exact resume.

Nothing is lost, whatever happens: one trainer at a time writes a run folder (its lock dies with it);
a NaN / infinite loss or gradient stops the run before it reaches the weights, and non-finite weights
are never saved; a run killed before its first checkpoint can be started again or resumed from step 0;
model.safetensors is repaired on start when a kill left it behind `latest`; and workers whose launcher
was killed stop instead of training on unwatched."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast, gather
from tqdm.auto import tqdm

from fokker.checkpoint import (
    atomic_write_text,
    check_writable,
    export_weights,
    exported_step,
    load_checkpoint,
    load_strict,
    lock_run,
    metric_lines,
    non_finite,
    remove_temporaries,
    save_checkpoint,
    sign_lock,
)
from fokker.config import RunConfig, as_run_config, read_run_config, sample_options, to_yaml
from fokker.data import dataset_for
from fokker.denoiser import Denoiser
from fokker.ema import EMA
from fokker.errors import UserError
from fokker.labels import batch_kwargs, is_conditional, picture_labels
from fokker.losses import training_loss
from fokker.model import build_model, denoiser_for, resolve_config
from fokker.samplers import sample
from fokker.timesteps import LossAwareSampler
from fokker.viz import save_picture

# what makes a folder a run that a fresh start must not overwrite: a checkpoint, exported weights (a folder
# with only config.yaml, logs and pictures was stopped before its first checkpoint: it may start again)
RUN_WORK = ("latest", "model.safetensors")


@dataclass
class TrainResult:
    """Where a training run was written, the step it reached and its seconds of training."""

    run: Path
    step: int
    elapsed: float
    loss: float


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


def prepare_run(config: dict | RunConfig, out: Path, resume: bool, budget: dict) -> RunConfig:
    """The config to train with: a fresh one (refusing to overwrite a run) or the run's own on resume,
    with the budget keys (steps, minutes) in `budget` replacing the config's."""
    check_writable(out, folder=True)
    if resume:
        if not (out / "config.yaml").exists():
            raise UserError(f"cannot resume: {out} holds no run (no config.yaml)")
        config = read_run_config(out / "config.yaml")
    else:
        check_fresh(out)
    return as_run_config(config).replace("train", **budget).validate()


def check_fresh(out: Path) -> None:
    """A fresh run must not overwrite one that holds work (RUN_WORK)."""
    if any((out / f).exists() for f in RUN_WORK):
        raise UserError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")


def train(
    config: dict,
    out: str | Path,
    *,
    resume: bool = False,
    device: str = "auto",
    budget: dict | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train the model described by `config` into the run folder `out` (see fokker.checkpoint), holding its
    lock throughout. `log` (print, for the CLI) is told how many processes train on which device."""
    with ExitStack() as held:
        return _train(config, Path(out), resume, device, budget or {}, progress, log, held)


def _train(
    config: dict,
    out: Path,
    resume: bool,
    device: str,
    budget: dict,
    progress: bool,
    log: Callable[[str], None] | None,
    held: ExitStack,
) -> TrainResult:
    config = prepare_run(config, out, resume, budget)
    dataset = dataset_for(config)
    config = resolve_config(config, dataset)
    tc = config["train"]
    acc = make_accelerator(device, tc["mixed_precision"])
    torch.manual_seed(tc["seed"])  # the initial weights: the seed's, the same on every process
    network, _ = build_model(config)
    optimizer = torch.optim.AdamW(network.parameters(), lr=tc["lr"], weight_decay=tc["weight_decay"])
    warmup = max(tc["warmup"], 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))
    ema = EMA(network, tc["ema_decay"])
    rank, world = acc.process_index, acc.num_processes
    torch.manual_seed(tc["seed"] + rank)
    gen = torch.Generator(device=acc.device).manual_seed(tc["seed"] + 7919 * rank)
    lock = held.enter_context(run_lock(out, acc))
    if not resume:
        check_fresh(out)  # again, under the lock: another trainer may have saved in the meantime
    step, elapsed = 0, 0.0
    resume = resume and (out / "latest").exists()  # stopped before its first checkpoint: from step 0
    if resume:
        state = load_checkpoint(out)
        load_strict(network, state["model"], out / "latest")
        load_strict(ema.model, state["ema"], out / "latest")
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, elapsed, ema.updates = state["step"], state["trainer"]["elapsed"], state["trainer"]["ema_updates"]
        rng = state["rng"]
        if rng["gen"].shape[0] != world:
            raise UserError(f"the run was trained on {rng['gen'].shape[0]} processes; resume it on as many")
        # clone: the row of process > 0 is a view at an offset, which set_state misreads (crashes, even)
        torch.set_rng_state(rng["torch"][rank].clone())
        gen.set_state(rng["gen"][rank].clone())
    ema.model.to(acc.device)
    model, optimizer = acc.prepare(network, optimizer)
    denoiser = denoiser_for(model, config)
    data = dataset.data.to(acc.device)
    labels = dataset.labels.to(acc.device) if is_conditional(config) else None
    loss_fn = training_loss(
        tc["loss"], tc["weighting"], tc["loss_target"], config["data"]["levels"], tc["hybrid_weight"]
    )
    times = LossAwareSampler(denoiser.process.T) if tc["time_sampler"] == "importance" else None
    if resume and times is not None:
        times.load_state_dict(state["time_sampler"])

    if acc.is_main_process:
        sign_lock(lock)  # only now, past every check: a refused or failed start changes no file
        remove_temporaries(out)
        atomic_write_text(out / "config.yaml", to_yaml(config))
        trim_metrics(out / "metrics.jsonl", step)
        trim_pictures(out, step)
        if resume:
            repair_latest(out, step, ema.model.state_dict(), config)
        if log is not None:
            what = f"{world} process{'es' if world > 1 else ''} ({acc.device.type})"
            log(f"training on {what}, from step {step} into {out}")
    fixed_noise = torch.randn(
        (config["sample"]["num"], *dataset.shape), generator=torch.Generator().manual_seed(tc["seed"])
    )
    fixed_labels = picture_labels(config, len(fixed_noise))

    def save() -> None:
        check_weights(step, {"model": acc.unwrap_model(model), "ema": ema.model}, out)
        rng = {"torch": torch.get_rng_state(), "gen": gen.get_state()}
        if world > 1:
            rng = {k: gather(v.to(acc.device)[None]).cpu() for k, v in rng.items()}
        else:
            rng = {k: v[None] for k, v in rng.items()}
        if acc.is_main_process:
            parts = {
                "model": acc.unwrap_model(model).state_dict(),
                "ema": ema.model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rng,
                "trainer": {"elapsed": elapsed, "ema_updates": ema.updates},
            }
            if times is not None:
                parts["time_sampler"] = times.state_dict()
            save_checkpoint(out, step, parts, tc["keep_last"])
            export_weights(out / "model.safetensors", ema.model.state_dict(), config, step)
        acc.wait_for_everyone()

    def draw() -> None:
        if acc.is_main_process:
            samples = sample_pictures(denoiser_for(ema.model, config), config, fixed_noise.to(acc.device))
            save_picture(
                samples.cpu(),
                picture_path(out, step),
                reference=dataset.data[:5000] if not dataset.is_image else None,
                title=f"step {step}",
                labels=fixed_labels,
            )
        acc.wait_for_everyone()

    start, last_log, loss_sum, loss_n, last_loss = time.time() - elapsed, time.time(), 0.0, 0, float("nan")
    log_step = step
    total = tc["steps"]
    bar = tqdm(
        total=total if total else int(tc["minutes"] * 60),
        initial=step if total else int(elapsed),
        unit="step" if total else "s",
        disable=not (progress and acc.is_main_process),
        dynamic_ncols=True,
    )
    model.train()
    if resume and picture_due(step, tc) and main_decides(not picture_path(out, step).exists(), acc):
        draw()  # a kill cut the picture of this checkpoint short
    launcher = os.getppid() if world > 1 else None
    clip = math.inf if tc["grad_clip"] is None else tc["grad_clip"]
    while not done(step, elapsed, tc, acc):
        check_launcher(launcher)
        idx = torch.randint(0, len(data), (tc["batch_size"],), generator=gen, device=acc.device)
        kw = batch_kwargs(config, labels, idx, gen)  # the batch's labels, some dropped to the null class
        with acc.autocast():
            if times is None:
                loss = loss_fn(denoiser, data[idx], generator=gen, model_kwargs=kw).mean()
            else:  # importance-sampled t, each loss reweighted by 1 / (T p_t); every process records all
                t, weights = times.sample(len(idx), gen, acc.device)
                per_example = loss_fn(denoiser, data[idx], t=t, generator=gen, model_kwargs=kw)
                loss = (per_example * weights).mean()
                times.update(*(gather(v.detach()) for v in (t, per_example)))
        optimizer.zero_grad(set_to_none=True)
        acc.backward(loss)
        grad_norm = acc.clip_grad_norm_(model.parameters(), clip)
        check_step(loss, grad_norm, step + 1, acc, out, tc)
        optimizer.step()
        scheduler.step()
        ema.update(acc.unwrap_model(model))
        step += 1
        loss_sum, loss_n = loss_sum + loss.item(), loss_n + 1
        new_elapsed = time.time() - start
        bar.update(1 if total else int(new_elapsed) - int(elapsed))
        elapsed = new_elapsed
        if step % tc["log_every"] == 0:
            now = time.time()
            last_loss = loss_sum / loss_n
            record = {
                "step": step,
                "loss": last_loss,
                "lr": scheduler.get_last_lr()[0],
                "grad_norm": float(grad_norm),
                "steps_per_sec": (step - log_step) / (now - last_log),
                "elapsed": round(elapsed, 2),
            }
            bar.set_postfix(loss=f"{last_loss:.4f}", it_s=f"{record['steps_per_sec']:.1f}")
            if acc.is_main_process:
                append_record(out / "metrics.jsonl", record)
            loss_sum, loss_n, last_log, log_step = 0.0, 0, now, step
        if step % tc["checkpoint_every"] == 0:
            save()
        if step % tc["sample_every"] == 0:
            draw()
    bar.close()
    if main_decides(latest_name(out) != f"step_{step:08d}", acc):  # not the folder: a kill can leave it
        save()
    if main_decides(not picture_path(out, step).exists(), acc):  # also when checkpoint_every divides step
        draw()
    if loss_n:
        last_loss = loss_sum / loss_n
    if acc.num_processes > 1:  # leave the process group before exit: gloo threads alive at exit abort it
        acc.wait_for_everyone()
        acc.end_training()
    return TrainResult(out, step, elapsed, last_loss)


def done(step: int, elapsed: float, tc: dict, acc: Accelerator) -> bool:
    """Whether the budget is spent; with several processes, process 0's clock decides for all."""
    stop = (tc["steps"] is not None and step >= tc["steps"]) or (
        tc["minutes"] is not None and elapsed >= tc["minutes"] * 60
    )
    if acc.num_processes > 1 and tc["minutes"] is not None:
        stop = bool(broadcast(torch.tensor([stop], device=acc.device), from_process=0).item())
    return stop


@torch.no_grad()
def sample_pictures(denoiser: Denoiser, config: dict, x_T: torch.Tensor) -> torch.Tensor:
    """Samples from fixed noise with the config's sampler, for the pictures written during training; on a
    conditional model picture i is of class i % K (fokker.labels.picture_labels)."""
    s = config["sample"]
    # a stochastic sampler's noise comes from its own generator: fixed from picture to picture, and the
    # global RNG (dropout), saved in checkpoints for exact resume, is left alone
    gen = torch.Generator(x_T.device).manual_seed(config["train"]["seed"])
    x_T = x_T * denoiser.process.prior_std
    options = sample_options(config, s["sampler"])
    y = picture_labels(config, len(x_T), x_T.device)
    kw = None if y is None else {"y": y}
    x, _ = sample(
        denoiser, s["sampler"], s["steps"], x_T=x_T, spacing=s["spacing"], generator=gen, model_kwargs=kw, **options
    )
    return x


def trim_metrics(path: Path, step: int) -> None:
    """On resume, drop log lines written after the checkpoint being resumed from (and a line cut short)."""
    if path.exists():
        lines = [line for line, record in metric_lines(path) if record["step"] <= step]
        atomic_write_text(path, "".join(ln + "\n" for ln in lines))


def trim_pictures(out: Path, step: int) -> None:
    """On resume, drop the sample pictures of steps after the checkpoint being resumed from: they belong to
    the lost stretch and are drawn again (and on a fresh start, step 0, those of a stopped attempt)."""
    for picture in (out / "samples").glob("step_*.png"):
        if picture.stem[5:].isdigit() and int(picture.stem[5:]) > step:
            picture.unlink()


def picture_path(out: Path, step: int) -> Path:
    """The sample picture of a step."""
    return out / "samples" / f"step_{step:08d}.png"


def picture_due(step: int, tc: dict) -> bool:
    """Whether the checkpoint of `step` has a sample picture: every sample_every steps, and where a run ended
    (the only checkpoints off the checkpoint_every grid; an end on the grid cannot be told apart)."""
    return step % tc["sample_every"] == 0 or step % tc["checkpoint_every"] != 0


def latest_name(out: Path) -> str | None:
    """The checkpoint `latest` names, if any."""
    latest = out / "latest"
    return latest.read_bytes().decode("utf-8", "replace").strip() if latest.exists() else None


def append_record(path: Path, record: dict) -> None:
    """One line of metrics.jsonl, strict JSON: a NaN or infinite value is written as null."""
    clean = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
    with open(path, "a") as f:
        f.write(json.dumps(clean, allow_nan=False) + "\n")


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


@contextmanager
def run_lock(out: Path, acc: Accelerator) -> Iterator[IO | None]:
    """Hold the run folder's lock (fokker.checkpoint.lock_run) while training: the main process takes it
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


def repair_latest(out: Path, step: int, ema_state: dict[str, torch.Tensor], config: dict) -> None:
    """After a kill (or a damaged newest checkpoint), make `latest` name the checkpoint resumed from and
    model.safetensors hold its EMA weights (the step is in its metadata)."""
    name = f"step_{step:08d}"
    if latest_name(out) != name:
        atomic_write_text(out / "latest", name + "\n")
    if exported_step(out / "model.safetensors") != step:
        export_weights(out / "model.safetensors", ema_state, config, step)


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
        f"was saved ({f'the run keeps {kept}' if kept else 'no checkpoint yet'}); lower train.lr (now "
        f"{tc['lr']:g}) or train.grad_clip (now {tc['grad_clip']})"
    )


def check_weights(step: int, modules: dict[str, torch.nn.Module], out: Path) -> None:
    """Refuse to save weights that are NaN or infinite: the checkpoint `latest` names stays the last one."""
    for name, module in modules.items():
        bad = non_finite(module.state_dict())
        if bad:
            kept = latest_name(out)
            raise UserError(
                f"non-finite weights at step {step} ({name} {bad[0]}): the training diverged; nothing was saved "
                f"({f'the run keeps {kept}' if kept else 'no checkpoint yet'}); lower train.lr"
            )


def check_launcher(launcher: int | None) -> None:
    """A worker of `accelerate launch` / torchrun whose launcher is gone (killed: its pid is no longer our
    parent's) stops, instead of training on where nobody can stop it."""
    if launcher is not None and os.getppid() != launcher:
        raise UserError(f"the launcher of this process (pid {launcher}) is gone; stopping")
