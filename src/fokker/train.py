"""The training loop: Accelerate (so `accelerate launch` / torchrun spread it over devices unchanged),
AdamW with linear warm-up, gradient clipping, EMA with warm-up, a budget in steps or minutes,
sample pictures from fixed noise, metrics.jsonl, atomic checkpoints and exact resume."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import broadcast, gather
from tqdm.auto import tqdm

from fokker.checkpoint import atomic_write_text, export_weights, load_checkpoint, load_strict, save_checkpoint
from fokker.config import sample_options, to_yaml, validate
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

RUN_FILES = ("config.yaml", "latest", "model.safetensors", "checkpoints")


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


def prepare_run(config: dict, out: Path, resume: bool, budget: dict) -> dict:
    """The config to train with: a fresh one (refusing to overwrite a run) or the run's own on resume,
    with the budget keys (steps, minutes) in `budget` replacing the config's."""
    if resume:
        if not (out / "config.yaml").exists():
            raise UserError(f"cannot resume: {out} holds no run (no config.yaml)")
        config = yaml.safe_load((out / "config.yaml").read_text())
    elif any((out / f).exists() for f in RUN_FILES):
        raise UserError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
    config["train"].update(budget)
    validate(config)
    return config


def train(
    config: dict,
    out: str | Path,
    *,
    resume: bool = False,
    device: str = "auto",
    budget: dict | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train the model described by `config` into the run folder `out` (see fokker.checkpoint)."""
    out = Path(out)
    config = prepare_run(config, out, resume, budget or {})
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
    step, elapsed = 0, 0.0
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
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.yaml", to_yaml(config))
        trim_metrics(out / "metrics.jsonl", step)
    fixed_noise = torch.randn(
        (config["sample"]["num"], *dataset.shape), generator=torch.Generator().manual_seed(tc["seed"])
    )
    fixed_labels = picture_labels(config, len(fixed_noise))

    def save() -> None:
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
            export_weights(out / "model.safetensors", ema.model.state_dict(), config)
        acc.wait_for_everyone()

    def draw() -> None:
        if acc.is_main_process:
            samples = sample_pictures(denoiser_for(ema.model, config), config, fixed_noise.to(acc.device))
            save_picture(
                samples.cpu(),
                out / "samples" / f"step_{step:08d}.png",
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
    while not done(step, elapsed, tc, acc):
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
        grad_norm = acc.clip_grad_norm_(model.parameters(), tc["grad_clip"])
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
                with open(out / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(record) + "\n")
            loss_sum, loss_n, last_log, log_step = 0.0, 0, now, step
        if step % tc["checkpoint_every"] == 0:
            save()
        if step % tc["sample_every"] == 0:
            draw()
    bar.close()
    latest = out / "latest"  # not the folder's existence: a kill before `latest` was written can leave it
    if not (latest.exists() and latest.read_text().strip() == f"step_{step:08d}"):
        save()
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
    """On resume, drop log lines written after the checkpoint being resumed from."""
    if path.exists():
        lines = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
        atomic_write_text(path, "".join(ln + "\n" for ln in lines))
