"""Domain FID against NFE on MNIST for every fokker sampler and for diffusers' schedulers driving the SAME
fokker network: the `mnist` preset trained for 15 CPU-minutes, each sampler at NFE 5, 10 and 20 on the
grids a user would pick, against the 100-step DDPM FID of the same model (the preset's default sampler).
Scored like the other MNIST benchmarks: FID in fokker's MNIST classifier features against the 4,500
training images. Run by hand on an idle machine, about 40 minutes with the training:

    python bench/sampler_fid_mnist.py --write

The run is kept in --runs (default runs/bench-samplers) and reused when it is there; so is each row's FID at
each NFE (RUN/sampler_fid.json, keyed by the row, the NFE, --num and --seed): a rerun measures only the rows
it has not measured, and --fresh measures them all again. The grid of an [optimized] row is computed by
`fokker grid` for that run (fokker.samplers.optimize_grid on the Gaussian fitted to its training data) and
stored in RUN/grids."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from _common import footer, invocation, load, machine, publish
from guidance_mnist import trained
from sampler_accuracy import fokker_steps, make_scheduler, peer_steps

from fokker.cli import main as fokker_cli
from fokker.denoiser import Denoiser
from fokker.evaluate import Scorer, reference_data
from fokker.grids import times_at_log_snr
from fokker.model import load_model
from fokker.noise import randn, seeded_batches
from fokker.samplers import sample_seeded
from fokker.samplers.grid_files import grid_path, load_grid

SECTION = "## Samplers on MNIST: FID against NFE"
NFES = (5, 10, 20)
# label: (sampler, options, spacing)
FOKKER = {
    "ddpm [uniform]": ("ddpm", {}, "uniform"),
    "ddim [uniform]": ("ddim", {}, "uniform"),
    "ode heun [log_snr]": ("ode", {"method": "heun"}, "log_snr"),
    "dpmpp_2m [log_snr]": ("dpmpp_2m", {}, "log_snr"),
    "dpmpp_2m [karras]": ("dpmpp_2m", {}, "karras"),
    "dpmpp_2m [optimized]": ("dpmpp_2m", {}, "optimized"),
    "dpmpp_3m [log_snr]": ("dpmpp_3m", {}, "log_snr"),
    "dpmpp_2s [log_snr]": ("dpmpp_2s", {}, "log_snr"),
    "unipc [log_snr]": ("unipc", {}, "log_snr"),
    "unipc [optimized]": ("unipc", {}, "optimized"),
    "unipc (order 3) [quadratic]": ("unipc", {"order": 3}, "quadratic"),
    "deis [log_snr]": ("deis", {}, "log_snr"),
    "edm_heun [karras]": ("edm_heun", {}, "karras"),
    "dpmpp_2m_sde [uniform]": ("dpmpp_2m_sde", {}, "uniform"),
    "dpmpp_2m_sde [log_snr]": ("dpmpp_2m_sde", {}, "log_snr"),
    "dpmpp_2m_sde [karras]": ("dpmpp_2m_sde", {}, "karras"),
    "edm (s_churn 40) [karras]": ("edm", {"s_churn": 40.0}, "karras"),
}
PEERS = ["DDIM", "DPM-Solver++ (2M)", "DPM-Solver++ (2M, Karras)", "DPM-Solver++ (3M, Karras)", "UniPC",
         "UniPC (Karras)", "DPM-Solver++ (SDE 2M)", "DPM-Solver++ (SDE 2M, Karras)"]  # fmt: skip


def starts(denoiser: Denoiser, shape: tuple[int, ...], num: int, seed: int) -> torch.Tensor:
    """The x_T sample_seeded draws: sample i from its own generator seed_for(seed, i)."""
    chunks = [randn((len(g), *shape), g) for _, _, g in seeded_batches(list(range(num)), 256, seed)]
    return denoiser.process.prior_std * torch.cat(chunks)


def peer_samples(denoiser: Denoiser, name: str, steps: int, x_T: torch.Tensor, seed: int) -> tuple[torch.Tensor, int]:
    """diffusers' scheduler `name` on the process's own betas driving the fokker network: at a diffusers
    timestep k (fractional for Euler / Heun on Karras sigmas) the network runs at the fokker time with the
    same noise level, log sigma(k) interpolated as diffusers does. In batches of 256."""
    process = denoiser.process
    grid = torch.arange(process.T + 1, dtype=torch.float64) / process.T
    abar = (process.alpha(grid[1:]) ** 2).numpy()
    betas = 1 - abar / np.concatenate([[1.0], abar[:-1]])
    log_sigmas = 0.5 * np.log((1 - abar) / abar)
    nfe, out = 0, []
    for lo in range(0, len(x_T), 256):
        scheduler = make_scheduler(name, betas, clip=denoiser.clip is not None)
        scheduler.set_timesteps(steps)
        x = x_T[lo : lo + 256].double() * scheduler.init_noise_sigma
        noise = {"generator": torch.Generator().manual_seed(seed + lo)} if "SDE" in name else {}
        nfe = 0
        for k in scheduler.timesteps:
            log_sigma = float(np.interp(float(k), np.arange(process.T), log_sigmas))
            t = times_at_log_snr(process, torch.tensor([-2 * log_sigma], dtype=torch.float64), 0.0)
            model_in = scheduler.scale_model_input(x, k).float()
            with torch.no_grad():
                eps = denoiser.predict(model_in, float(t))[1].double()
            nfe += 1
            x = scheduler.step(eps, k, x, **noise).prev_sample
        out.append(x.float())
    return torch.cat(out), nfe


class Cache:
    """Each row's (FID, NFE used) at each NFE, kept in RUN/sampler_fid.json with the date it was measured and
    reused by later runs with the same --num and --seed (`fresh`: measure every row again)."""

    def __init__(self, run: Path, num: int, seed: int, fresh: bool):
        self.path, self.suffix = run / "sampler_fid.json", f" | num {num} | seed {seed}"
        self.entries = {} if fresh or not self.path.exists() else json.loads(self.path.read_text())
        self.reused: set[str] = set()

    def get(self, label: str, nfe: int, measure: Callable[[], tuple[float, int]]) -> tuple[float, int]:
        key = f"{label} | NFE {nfe}{self.suffix}"
        if key in self.entries:
            self.reused.add(self.entries[key]["measured"])
        else:
            value, used = measure()
            when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            self.entries[key] = {"fid": value, "nfe": used, "measured": when}
            self.path.write_text(json.dumps(self.entries, indent=1))
        return self.entries[key]["fid"], self.entries[key]["nfe"]


def grid_times(run: Path, sampler: str, steps: int, options: dict) -> torch.Tensor:
    """The optimized grid `fokker grid` stores with the run for this sampler and step count, computed now if
    it is not there."""
    if not grid_path(run, sampler, steps, options).exists():
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
        if fokker_cli(["grid", "--checkpoint", str(run), "--sampler", sampler, "--steps", str(steps), *flags]) != 0:
            raise SystemExit(f"fokker grid failed for {sampler}, {steps} steps")
    return load_grid(run, sampler, steps, options)


def measure(
    run: Path, num: int, seed: int, nfes: tuple[int, ...], fresh: bool = False, more_seeds: tuple[int, ...] = ()
) -> dict:
    """Every row's FID at every NFE (from the cache where measured before), the references and the floor; with
    `more_seeds`, DDPM-100 and the best fokker and peer rows at each NFE again from those seeds' noise (FID of
    500 samples moves by several units with the noise alone)."""
    denoiser, config = load_model(run, "cpu")
    if denoiser.clip is None or tuple(denoiser.clip) != (-1.0, 1.0):
        raise SystemExit(
            f"this benchmark compares samplers with x0_hat clipped to [-1, 1]; the run clips {denoiser.clip}"
        )
    shape = config.data.shape
    reference, held_out = reference_data(config, num)
    scorer = Scorer.for_data(reference, config, "cpu", False, None, seed)
    fid = lambda samples: scorer(samples)["fid"]  # noqa: E731
    caches = {s: Cache(run, num, s, fresh) for s in (seed, *more_seeds)}
    cache = caches[seed]
    out: dict = {"floor": fid(held_out.data[:num]), "rows": {}, "cache": cache}
    start = time.time()
    out["ddpm100"] = fid(sample_seeded(denoiser, "ddpm", 100, shape, num, seed=seed, batch_size=256)[0])
    out["ddpm100 seconds"] = time.time() - start

    def fokker_row(sampler: str, options: dict, spacing: str, nfe: int, seed: int = seed) -> tuple[float, int]:
        steps = fokker_steps(sampler, options, nfe)
        grid = {"times": grid_times(run, sampler, steps, options)} if spacing == "optimized" else {"spacing": spacing}
        samples, info = sample_seeded(
            denoiser, sampler, steps, shape, num, seed=seed, batch_size=256, **grid, **options
        )
        return fid(samples), info["nfe"]

    def peer_row(peer: str, nfe: int, seed: int = seed) -> tuple[float, int]:
        samples, used = peer_samples(denoiser, peer, peer_steps(peer, nfe), starts(denoiser, shape, num, seed), seed)
        return fid(samples), used

    rows = {f"fokker {label}": (lambda n, s=seed, spec=spec: fokker_row(*spec, n, s)) for label, spec in FOKKER.items()}
    rows |= {f"diffusers {peer}": (lambda n, s=seed, peer=peer: peer_row(peer, n, s)) for peer in PEERS}
    for label, row in rows.items():
        out["rows"][label] = {n: cache.get(label, n, lambda n=n, row=row: row(n)) for n in nfes}
        print(f"  {label}: {out['rows'][label]}", file=sys.stderr)
    out["spread"] = {}
    if more_seeds:
        rows["fokker ddpm [uniform]"] = lambda n, s: fokker_row("ddpm", {}, "uniform", n, s)
        picks = [("fokker ddpm [uniform]", 100)] + [(best(out["rows"], who, n)[1], n) for n in nfes
                                                     for who in ("fokker", "diffusers")]  # fmt: skip
        for label, n in picks:
            values = [out["ddpm100"] if (label, n) == picks[0] else out["rows"][label][n][0]]
            values += [caches[s].get(label, n, lambda s=s, label=label, n=n: rows[label](n, s))[0] for s in more_seeds]
            out["spread"][label, n] = values
            print(f"  {label} at {n} NFE over seeds {(seed, *more_seeds)}: {values}", file=sys.stderr)
    return out


def spread_lines(result: dict, seeds: tuple[int, ...]) -> list[str]:
    """The spread table: FID per seed, mean and standard deviation."""
    if not result["spread"]:
        return []
    head = " | ".join(f"seed {s}" for s in seeds)
    lines = [f"| sampler | NFE | {head} | mean | std |", "|---|---:|" + "---:|" * (len(seeds) + 2)]
    for (label, n), values in result["spread"].items():
        cells = " | ".join(f"{v:.2f}" for v in values)
        lines.append(f"| {label} | {n} | {cells} | {statistics.mean(values):.2f} | {statistics.stdev(values):.2f} |")
    return lines


def table(rows: dict, nfes: tuple[int, ...]) -> list[str]:
    best = {n: min(r[n][0] for r in rows.values()) for n in nfes}
    lines = ["| sampler | " + " | ".join(f"NFE {n}" for n in nfes) + " |", "|---|" + "---:|" * len(nfes)]
    for label, cells in rows.items():
        vals = []
        for n in nfes:
            value, used = cells[n]
            text = f"{value:.2f}" + ("" if used == n else f" ({used})")
            vals.append(f"**{text}**" if value == best[n] else text)
        lines.append(f"| {label} | " + " | ".join(vals) + " |")
    return lines


def best(rows: dict, prefix: str, n: int) -> tuple[float, str]:
    return min((r[n][0], label) for label, r in rows.items() if label.startswith(prefix))


def conclusion(result: dict, nfes: tuple[int, ...]) -> str:
    ref, rows = result["ddpm100"], result["rows"]
    parts = []
    for n in nfes:
        ours, peer = best(rows, "fokker", n), best(rows, "diffusers", n)
        parts.append(f"at {n} NFE fokker's best is {ours[1][7:]} ({ours[0]:.2f}, {ours[0] / ref:.2f}x DDPM-100), "
                     f"the best peer {peer[1][10:]} ({peer[0]:.2f})")  # fmt: skip
    at10 = best(rows, "fokker", 10) if 10 in nfes else None
    goal = "" if at10 is None else (
        f" Goal (FID at 10 NFE <= 1.2x the 100-step DDPM FID {ref:.2f}, i.e. <= {1.2 * ref:.2f}): "
        f"{'met' if at10[0] <= 1.2 * ref else 'not met'} by {at10[1][7:]} ({at10[0]:.2f})."
    )  # fmt: skip
    spread = result["spread"]
    if at10 is not None and (at10[1], 10) in spread:
        ours, ddpm = statistics.mean(spread[at10[1], 10]), statistics.mean(spread["fokker ddpm [uniform]", 100])
        goal += (f" On the means over {len(spread[at10[1], 10])} seeds: {ours:.2f} against DDPM-100's {ddpm:.2f}, "
                 f"{ours / ddpm:.2f}x: {'met' if ours <= 1.2 * ddpm else 'not met'}.")  # fmt: skip
    return "; ".join(parts) + "." + goal


def section(result: dict, args, steps: int, command: str, date: str, conditions: str) -> str:
    return "\n".join([
        SECTION, "",
        f"The `mnist` preset (cosine VP, T = 1000, eps-prediction U-Net of 0.3M parameters) trained for "
        f"{args.minutes:g} minutes on this machine ({steps} steps). {args.num} samples per setting from the same "
        "per-sample noise x_T, scored by domain FID in fokker's MNIST classifier features against the 4,500 "
        f"training images; {args.num} held-out test digits score {result['floor']:.2f} (the floor of finite "
        f"samples). The reference: the preset's default sampler, DDPM ancestral at 100 steps with the preset's "
        f"x0_hat clip to [-1, 1]: FID {result['ddpm100']:.2f} in {result['ddpm100 seconds']:.0f} s. Every sampler "
        "runs with that clip, as a user of the preset gets it: without it the deterministic samplers of this briefly "
        "trained model score FID above 20,000 (its eps errors, amplified by 1 / alpha at the first steps, put "
        "x0_hat far outside the data range). diffusers' schedulers clip the same way (DDIM's clip_sample; "
        "thresholding with sample_max_value 1 for DPM-Solver++ and UniPC; Euler and Heun cannot clip and are left "
        "out), get the process's own betas (trained_betas) and the trailing grid, and the "
        "network at the fokker time of the noise level each asks for. fokker's [uniform] grid is diffusers' "
        "trailing grid; an [optimized] row samples on the grid `fokker grid` computed for that sampler and step "
        "count on this run (the Gaussian fitted to its training data; the clip is not part of that model). A "
        "figure in parentheses is the NFE used "
        "where it differs from the column's; bold: the best in the column.", "",
        *table(result["rows"], args.nfe), "",
        *(["**The noise alone.** FID of 500 samples moves by several units with the seed of the noise: DDPM-100 and "
           "the best fokker and peer rows at each NFE again from the noise of other seeds (seed 0 is the table's).",
           "", *spread_lines(result, (args.seed, *args.more_seeds)), ""] if result["spread"] else []),
        f"**Conclusion.** {conclusion(result, args.nfe)}", "",
        *footer(command, date, machine("diffusers"), conditions),
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=Path, default=Path("runs/bench-samplers"), help="the kept run, reused")
    p.add_argument("--minutes", type=float, default=15.0, help="training budget of the model (default: 15)")
    p.add_argument("--num", type=int, default=500, help="samples per setting (default: 500)")
    p.add_argument("--nfe", type=int, nargs="+", default=list(NFES), help="NFE budgets (default: 5 10 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--more-seeds", type=int, nargs="*", default=[1, 2, 3], help="seeds of the spread table (default: 1 2 3)"
    )
    p.add_argument("--fresh", action="store_true", help="measure every row again (default: reuse RUN/sampler_fid.json)")
    p.add_argument("--write", action="store_true", help=f"write the '{SECTION}' section into docs/benchmarks.md")
    args = p.parse_args(argv)
    args.nfe = tuple(args.nfe)
    torch.set_num_threads(2)
    command, date = invocation("sampler_fid_mnist.py")
    before = load()
    run = trained(args.runs, "mnist", "mnist", args.minutes, [])
    start = time.time()
    args.more_seeds = tuple(args.more_seeds)
    result = measure(run, args.num, args.seed, args.nfe, args.fresh, args.more_seeds)
    steps = _trained_steps(run)
    conditions = f"{before} before the run, {load()} after; {time.time() - start:.0f} s of sampling and scoring"
    if result["cache"].reused:
        conditions += "; rows reused from RUN/sampler_fid.json, measured " + ", ".join(sorted(result["cache"].reused))
    publish(SECTION, section(result, args, steps, command, date, conditions), args.write)


def _trained_steps(run: Path) -> int | str:
    """The run's last training step, from its metrics.jsonl."""
    import json

    lines = (run / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(line).get("step") for line in lines if line.strip()]
    steps = [s for s in steps if isinstance(s, int)]
    return max(steps) if steps else "?"


if __name__ == "__main__":
    main()
