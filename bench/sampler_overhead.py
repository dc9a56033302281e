"""Per-step overhead of fokker's DDIM sampler against the bare arithmetic of one DDIM update and
against diffusers' DDIMScheduler.step, measured in one run on the same inputs.

The network is a trivial model whose own cost is timed alone and subtracted, so what remains per
step is the sampler: the update arithmetic plus the Python around it. Run by hand, not in CI:

    python bench/sampler_overhead.py                 # print the table
    python bench/sampler_overhead.py --write         # also update docs/benchmarks.md

Needs the "bench" extra (diffusers): pip install -e ".[bench]".
"""

from __future__ import annotations

import argparse
import gc
import itertools
import math
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone

import torch
from _common import DOCS, busy, footer, load, machine, write_section

import fokker
from fokker.samplers.exponential import clear_plans

T = 1000
BETA_START, BETA_END = 1e-4, 0.02
SECTION = "## Sampler overhead"

# goals from the issue: fokker's per-step overhead at most 1.2x the bare arithmetic and at most half
# of diffusers' DDIMScheduler.step
GOAL_BARE, GOAL_DIFFUSERS = 1.2, 0.5


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad shape {text!r}; write it as 64,3,32,32") from None
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"bad shape {text!r}; write it as 64,3,32,32")
    return shape


def make_model(kind: str, shape: tuple[int, ...]) -> Callable:
    """The trivial eps-model: "mul" returns 0.1 x (one elementwise op, eps depends on x), "const"
    returns a preallocated tensor (costs only the Python call)."""
    if kind == "mul":
        return lambda x, t: x * 0.1
    eps = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    return lambda x, t: eps


def grid_indices(steps: int) -> list[int]:
    """Descending noise-level indices T, ..., 0 of a uniform grid (index i: alpha-bar_i = prod_{j<=i} (1 - beta_j))."""
    return [round((steps - k) * T / steps) for k in range(steps + 1)]


def bare_coefficients(steps: int) -> list[tuple[float, float, float, float]]:
    """(alpha_t, sigma_t, alpha_s, sqrt(1 - alpha_s^2)) per step as python floats, from the linear betas
    computed here in float64 independently of fokker."""
    abar, prod = [1.0], 1.0
    for i in range(T):
        prod *= 1.0 - (BETA_START + (BETA_END - BETA_START) * i / (T - 1))
        abar.append(prod)
    idx = grid_indices(steps)
    out = []
    for i, j in itertools.pairwise(idx):
        alpha_t, alpha_s = math.sqrt(abar[i]), math.sqrt(abar[j])
        out.append((alpha_t, math.sqrt(1.0 - abar[i]), alpha_s, math.sqrt(max(0.0, 1.0 - alpha_s * alpha_s))))
    return out


def make_scheduler(spacing: str):
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=T,
        beta_start=BETA_START,
        beta_end=BETA_END,
        beta_schedule="linear",
        clip_sample=False,
        set_alpha_to_one=True,
        prediction_type="epsilon",
        timestep_spacing=spacing,
    )


def loops(shape: tuple[int, ...], steps: int, model_kind: str) -> tuple[dict[str, Callable], dict[str, torch.Tensor]]:
    """The timed loops, each a no-argument callable running one whole 50-step (or `steps`) sampling,
    and x_T."""
    x_T = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    model = make_model(model_kind, shape)
    batch = shape[0]

    coefs = bare_coefficients(steps)
    t_bare = [torch.full((batch,), i / T) for i in grid_indices(steps)[:-1]]
    bare_steps = list(zip(t_bare, coefs, strict=True))

    def model_alone():
        for t in t_bare:
            model(x_T, t)

    def bare():
        with torch.no_grad():
            x = x_T
            for t, (alpha_t, sigma_t, alpha_s, c_s) in bare_steps:
                eps = model(x, t)
                x0 = (x - sigma_t * eps) / alpha_t
                x = alpha_s * x0 + c_s * eps
        return x

    process = fokker.VP(T=T)
    den = fokker.Denoiser(model, process, prediction="eps")
    ddim = fokker.samplers.get_sampler("ddim")
    times = fokker.time_grid(process, steps)

    def fokker_sampler():
        return ddim(den, x_T, times, eta=0.0)[0]

    def fokker_sample():
        return fokker.sample(den, "ddim", steps=steps, x_T=x_T, eta=0.0)[0]

    sched = make_scheduler("trailing")
    sched.set_timesteps(steps)

    def diffusers_step():
        with torch.no_grad():
            x = x_T
            for t in sched.timesteps:
                eps = model(x, t)
                x = sched.step(eps, t, x).prev_sample
        return x

    def diffusers_full():
        with torch.no_grad():
            sched.set_timesteps(steps)
            x = x_T
            for t in sched.timesteps:
                eps = model(x, t)
                x = sched.step(eps, t, x).prev_sample
        return x

    fns = {
        "model alone": model_alone,
        "bare arithmetic": bare,
        "fokker ddim sampler (grid precomputed)": fokker_sampler,
        "fokker.sample (builds the grid)": fokker_sample,
        "diffusers DDIMScheduler.step": diffusers_step,
        "diffusers incl. set_timesteps": diffusers_full,
    }
    return fns, {"x_T": x_T, "model": model}


# fokker's new solvers and the diffusers scheduler that implements the same method, with its arguments beyond
# the betas (None: no counterpart)
TRAILING = {"timestep_spacing": "trailing"}
SOLVERS: dict[str, tuple[dict, tuple[str, dict] | None]] = {
    "dpmpp_2m": ({}, ("DPMSolverMultistepScheduler", {"solver_order": 2, **TRAILING})),
    "dpmpp_3m": ({}, ("DPMSolverMultistepScheduler", {"solver_order": 3, **TRAILING})),
    "dpmpp_2s": ({}, ("DPMSolverSinglestepScheduler", {"solver_order": 2})),
    "dpmpp_2m_sde": ({}, ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", **TRAILING})),
    "unipc": ({}, ("UniPCMultistepScheduler", dict(TRAILING))),
    "deis": ({}, ("DEISMultistepScheduler", {"solver_order": 3, **TRAILING})),
    "edm_heun": ({}, ("HeunDiscreteScheduler", dict(TRAILING))),
    "edm": ({"s_churn": 10.0}, None),
}


def peer_label(spec: tuple[str, dict]) -> str:
    name, kwargs = spec
    return name + "(" + ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if k != "timestep_spacing") + ")"


def peer_scheduler(spec: tuple[str, dict]):
    """The diffusers scheduler of `spec` on the same linear betas."""
    import diffusers

    name, kwargs = spec
    common = {"num_train_timesteps": T, "beta_start": BETA_START, "beta_end": BETA_END, "beta_schedule": "linear"}
    return getattr(diffusers, name)(**common, **kwargs)


def solver_loops(shape: tuple[int, ...], steps: int, model_kind: str) -> dict[str, tuple[Callable, int]]:
    """Per solver: (whole sampling loop, its NFE) for fokker's sampler with the grid precomputed and for its
    diffusers counterpart with set_timesteps done beforehand, on the same trivial model. The NFE is counted
    in one untimed run with a counting model."""
    x_T = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    model = make_model(model_kind, shape)
    process = fokker.VP(T=T)

    def fokker_loop(name: str, options: dict, fresh: bool = False) -> Callable[[Callable], Callable]:
        """fokker's sampler on a grid built beforehand; `fresh`: its plan too, in each call (caches cleared)."""
        fn = fokker.samplers.get_sampler(name)
        times = fokker.time_grid(process, steps, "karras" if name.startswith("edm") else "uniform")

        def make(m: Callable) -> Callable:
            den = fokker.Denoiser(m, process, prediction="eps")

            def loop():
                if fresh:
                    clear_plans()
                return fn(den, x_T, times, generator=torch.Generator().manual_seed(0), **options)[0]

            return loop

        return make

    def peer_loop(spec: tuple[str, dict]) -> Callable[[Callable], Callable]:
        sched = peer_scheduler(spec)
        sched.set_timesteps(steps)

        def make(m: Callable) -> Callable:
            def loop():
                with torch.no_grad():
                    sched.set_timesteps(steps)  # resets the scheduler's state; timed alone and subtracted
                    x = x_T * sched.init_noise_sigma
                    for t in sched.timesteps:
                        x = sched.step(m(sched.scale_model_input(x, t), t), t, x).prev_sample
                return x

            return loop

        return make

    def reset_only(spec: tuple[str, dict]) -> Callable:
        sched = peer_scheduler(spec)
        return lambda: sched.set_timesteps(steps)

    makers = {}
    for name, (options, spec) in SOLVERS.items():
        makers[f"fokker {name}"] = fokker_loop(name, options)
        makers[f"planned {name}"] = fokker_loop(name, options, fresh=True)
        if spec is not None:
            makers[f"diffusers {peer_label(spec)}"] = peer_loop(spec)
    out = {f"set_timesteps {peer_label(spec)}": (reset_only(spec), 1) for _, spec in SOLVERS.values() if spec}
    out["noise draw"] = (lambda: torch.randn(shape), 1)
    for label, make in makers.items():
        calls = [0]

        def counting(x, t, calls=calls):
            calls[0] += 1
            return model(x, t)

        make(counting)()
        out[label] = (make(model), calls[0])
    return out


def solver_rows(shape: tuple[int, ...], args, bare_us: float, model_us_per_call: float) -> list[dict]:
    """Overhead per network evaluation of every solver and its diffusers counterpart, and the ratios to the
    bare DDIM arithmetic and to the counterpart."""
    loops_ = solver_loops(shape, args.steps, args.model)
    raw = measure({label: fn for label, (fn, _) in loops_.items()}, args.repeats, args.warmup)
    per = {}
    for label, (_, nfe) in loops_.items():
        if label.startswith("diffusers "):
            reset = statistics.median(raw["set_timesteps " + label[len("diffusers ") :]])
            per[label] = ((statistics.median(raw[label]) - reset) * 1e6 - model_us_per_call * nfe) / nfe
        elif label.startswith(("fokker ", "planned ")):
            per[label] = (statistics.median(raw[label]) * 1e6 - model_us_per_call * nfe) / nfe
    rows = []
    for name, (_, spec) in SOLVERS.items():
        ours = per[f"fokker {name}"]
        peer = per[f"diffusers {peer_label(spec)}"] if spec else None
        rows.append({"shape": shape, "name": name, "us": ours, "peer": spec and peer_label(spec), "peer_us": peer,
                     "vs_bare": ours / bare_us, "vs_peer": None if peer is None else ours / peer,
                     "planned_us": per[f"planned {name}"],
                     "noise_us": statistics.median(raw["noise draw"]) * 1e6})  # fmt: skip
    return rows


def agreement(shape: tuple[int, ...], steps: int, fns: dict[str, Callable], ctx: dict) -> dict[str, float | str]:
    """Final samples of fokker against the bare loop and diffusers (trailing spacing: the same grid as
    fokker's when steps divides T; diffusers' default "leading" grid is another grid)."""
    x_f = fns["fokker ddim sampler (grid precomputed)"]()
    x_b = fns["bare arithmetic"]()
    out: dict[str, float | str] = {"scale": x_f.abs().max().item(), "bare": (x_f - x_b).abs().max().item()}
    if T % steps:
        out["trailing"] = "n/a (grids differ when steps does not divide 1000)"
    else:
        out["trailing"] = (x_f - fns["diffusers DDIMScheduler.step"]()).abs().max().item()
    sched = make_scheduler("leading")
    sched.set_timesteps(steps)
    x, model = ctx["x_T"], ctx["model"]
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(model(x, t), t, x).prev_sample
    out["leading"] = (x_f - x).abs().max().item()
    out["leading_start"] = int(sched.timesteps[0])
    return out


def measure(fns: dict[str, Callable], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per whole loop, `repeats` times each, the methods interleaved round-robin (order rotated
    every repeat) so that drift in the machine hits them alike."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    gc.collect()
    gc.disable()
    try:
        for r in range(repeats):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                fn = fns[name]
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    finally:
        gc.enable()
    return times


def quartiles(v: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(v, n=4, method="inclusive")
    return q[0], statistics.median(v), q[2]


def run_shape(shape: tuple[int, ...], args) -> dict:
    fns, ctx = loops(shape, args.steps, args.model)
    check = agreement(shape, args.steps, fns, ctx)
    raw = measure(fns, args.repeats, args.warmup)
    model_med = statistics.median(raw["model alone"])
    rows = {}
    for name, v in raw.items():
        q1, med, q3 = quartiles(v)
        per_step = (med - (0.0 if name == "model alone" else model_med)) / args.steps * 1e6
        rows[name] = {"loop_ms": med * 1e3, "us_per_step": per_step, "iqr_us": (q3 - q1) / args.steps * 1e6}
    o = {name: rows[name]["us_per_step"] for name in rows}
    ratios = {
        "fokker/bare": o["fokker ddim sampler (grid precomputed)"] / o["bare arithmetic"],
        "fokker/diffusers": o["fokker ddim sampler (grid precomputed)"] / o["diffusers DDIMScheduler.step"],
        "sample/bare": o["fokker.sample (builds the grid)"] / o["bare arithmetic"],
        "sample/diffusers": o["fokker.sample (builds the grid)"] / o["diffusers incl. set_timesteps"],
    }
    solvers = solver_rows(shape, args, o["bare arithmetic"], model_med / args.steps * 1e6)
    return {"shape": shape, "rows": rows, "ratios": ratios, "check": check, "solvers": solvers}


def fmt_shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


def table(results: list[dict], steps: int) -> str:
    lines = [
        f"| shape | loop ({steps} DDIM steps) | median loop ms | overhead µs/step | IQR µs/step | vs bare |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for res in results:
        bare = res["rows"]["bare arithmetic"]["us_per_step"]
        for name, row in res["rows"].items():
            if name == "model alone":
                rel, per = "", f"({row['us_per_step']:.1f} model)"
            else:
                rel, per = f"{row['us_per_step'] / bare:.2f}x", f"{row['us_per_step']:.1f}"
            lines.append(
                f"| {fmt_shape(res['shape'])} | {name} | {row['loop_ms']:.2f} | {per} | {row['iqr_us']:.1f} | {rel} |"
            )
    return "\n".join(lines)


def solver_table(results: list[dict]) -> str:
    lines = [
        "| shape | fokker solver | overhead µs/NFE | vs bare DDIM | plan built in the call: µs/NFE | diffusers "
        "counterpart | its µs/NFE | fokker / it |",
        "|---|---|---:|---:|---:|---|---:|---:|",
    ]
    for res in results:
        for r in res["solvers"]:
            peer = (
                ("—", "", "")
                if r["peer"] is None
                else (f"`{r['peer']}`", f"{r['peer_us']:.1f}", f"{r['vs_peer']:.2f}x")
            )
            lines.append(f"| {fmt_shape(r['shape'])} | {r['name']} | {r['us']:.1f} | {r['vs_bare']:.2f}x | "
                         f"{r['planned_us']:.1f} | {peer[0]} | {peer[1]} | {peer[2]} |")  # fmt: skip
    return "\n".join(lines)


def solver_verdict(results: list[dict]) -> str:
    rows = [r for res in results for r in res["solvers"]]
    over_bare = [f"{r['name']} {fmt_shape(r['shape'])} {r['vs_bare']:.2f}x" for r in rows if r["vs_bare"] > GOAL_BARE]
    over_peer = [f"{r['name']} {fmt_shape(r['shape'])} {r['vs_peer']:.2f}x" for r in rows
                 if r["vs_peer"] is not None and r["vs_peer"] > GOAL_DIFFUSERS]  # fmt: skip
    worst_peer = max(r["vs_peer"] for r in rows if r["vs_peer"] is not None)
    return (
        f"Every solver's overhead per NFE is at most {max(r['vs_bare'] for r in rows):.2f}x the bare DDIM arithmetic "
        f"(goal <= {GOAL_BARE}x: " + ("met" if not over_bare else "missed by " + ", ".join(over_bare)) + ") and at "
        f"most {worst_peer:.2f}x its diffusers counterpart's step() (goal <= {GOAL_DIFFUSERS}x: "
        + ("met" if not over_peer else "missed by " + ", ".join(over_peer))
        + ")."
    )


def ratio_lines(results: list[dict]) -> list[str]:
    out = []
    for res in results:
        r = res["ratios"]
        ok_b, ok_d = r["fokker/bare"] <= GOAL_BARE, r["fokker/diffusers"] <= GOAL_DIFFUSERS
        out.append(
            f"- {fmt_shape(res['shape'])}: fokker/bare = {r['fokker/bare']:.2f} "
            f"(goal <= {GOAL_BARE}: {'met' if ok_b else 'MISSED'}), "
            f"fokker/diffusers = {r['fokker/diffusers']:.2f} "
            f"(goal <= {GOAL_DIFFUSERS}: {'met' if ok_d else 'MISSED'}); "
            f"with grid construction, fokker.sample/bare = {r['sample/bare']:.2f}, "
            f"fokker.sample/(diffusers incl. set_timesteps) = {r['sample/diffusers']:.2f}"
        )
    return out


def check_lines(results: list[dict]) -> list[str]:
    out = []
    for res in results:
        c = res["check"]
        trailing = c["trailing"] if isinstance(c["trailing"], str) else f"{c['trailing']:.2e}"
        out.append(
            f"- {fmt_shape(res['shape'])}: max |fokker - bare| = {c['bare']:.2e}, "
            f"max |fokker - diffusers (trailing)| = {trailing}, on samples of max |x| = {c['scale']:.3g}; "
            f'diffusers\' default "leading" spacing starts at its timestep {c["leading_start"]} '
            f"(noise level {c['leading_start'] + 1}/1000, fokker starts at t = 1), "
            f"a different grid: max |diff| = {c['leading']:.3g}"
        )
    return out


def conclusion(results: list[dict]) -> str:
    fb = [res["ratios"]["fokker/bare"] for res in results]
    fd = [res["ratios"]["fokker/diffusers"] for res in results]
    span = lambda v: f"{min(v):.2f}x" if len(v) == 1 else f"{min(v):.2f}x to {max(v):.2f}x"  # noqa: E731
    s = (
        f"Beyond the model, fokker's DDIM step costs {span(fb)} the bare arithmetic and {span(fd)} "
        f"diffusers' DDIMScheduler.step"
    )
    missed = [
        f"{fmt_shape(res['shape'])} misses <= {goal}x {what} ({res['ratios'][key]:.2f}x)"
        for res in results
        for key, goal, what in (("fokker/bare", GOAL_BARE, "bare"), ("fokker/diffusers", GOAL_DIFFUSERS, "diffusers"))
        if res["ratios"][key] > goal
    ]
    if not missed:
        return s + ", so both goals are met and the sampler adds next to nothing to any real network's cost."
    worst = max(res["rows"]["fokker ddim sampler (grid precomputed)"]["us_per_step"] for res in results)
    return (
        s + f"; the goals are not all met ({'; '.join(missed)}). In absolute terms the sampler costs at most "
        f"{worst:.0f} µs per step here, negligible next to a real network; it matters only for tiny models."
    )


def section(results: list[dict], args, command: str, date: str, conditions: str) -> str:
    model = "`lambda x, t: x * 0.1`" if args.model == "mul" else "a model returning a preallocated tensor"
    return "\n".join(
        [
            SECTION,
            "",
            f"Per-step cost of {args.steps}-step deterministic DDIM (eta = 0) beyond the network, float32 on CPU. "
            f'The network is {model}; its own time ("model alone") is measured in the same run and subtracted '
            f"from every loop, so overhead = (loop time - model time) / steps: the update arithmetic plus the "
            f'Python around it. "bare arithmetic" is a hand loop with python-float coefficients '
            f"(x0 = (x - sigma_t eps) / alpha_t; x = alpha_s x0 + sqrt(1 - alpha_s^2) eps: five tensor operations). "
            f"fokker folds the same step into x = A x + B eps with A, B computed for the whole grid before the "
            f"loop (two tensor operations; it forms x0_hat only when clipping or a callback needs it), which is "
            f"why it can cost less than the bare loop. diffusers' "
            f"DDIMScheduler is configured to the same linear betas (1e-4 to 0.02, 1000 steps, clip_sample=False, "
            f'set_alpha_to_one=True, timestep_spacing="trailing" so its grid is fokker\'s). '
            f"Medians of {args.repeats} repeats, the loops interleaved. Whole runs vary by 10-20% on a shared "
            f"machine, more so on the large shape; the CPU-busy figures at the end say whether other work ran.",
            "",
            table(results, args.steps),
            "",
            f"Goals: fokker's overhead at most {GOAL_BARE}x the bare arithmetic and at most {GOAL_DIFFUSERS}x "
            f"diffusers' (ratios of the overhead column, fokker's sampler with the grid precomputed against "
            f"DDIMScheduler.step with set_timesteps done beforehand):",
            "",
            *ratio_lines(results),
            "",
            "Agreement of the final samples (fokker's correctness is tested in tests/; this only checks that the "
            "three loops compute the same thing):",
            "",
            *check_lines(results),
            "",
            "**The fast solvers.** Overhead per network evaluation (loop time minus the model's time per call "
            "times the NFE, divided by the NFE) of every new solver with its grid precomputed, against the bare "
            "DDIM arithmetic above and against the diffusers scheduler that implements the same method on the "
            "same betas and trailing grid (the step() loop with scale_model_input; each loop starts with "
            "set_timesteps, which resets the scheduler's state, and its time, measured alone in the same run, is "
            "subtracted). EDM's samplers run on the Karras grid; edm with s_churn = 10 has no diffusers "
            "counterpart. A multistep solver's coefficients for a grid (its plan) are cached by grid and method, "
            "so every batch of a sampling run after the first reuses them: the overhead column is that case, the "
            "'plan built' column the first call on a grid (caches cleared before each call). Each step is one "
            "combination of the raw outputs and the states they were evaluated at (x0_hat and, for UniPC, the "
            "corrected state eliminated), so 2M on an eps network costs four tensor operations per step and "
            "UniPC-2 six, against the bare DDIM loop's five. The stochastic solvers also draw one Gaussian per step: "
            + "; ".join(f"{fmt_shape(res['shape'])} {res['solvers'][0]['noise_us']:.1f} µs" for res in results)
            + " (torch.randn of the shape, in the same run), which the bare DDIM loop does not.",
            "",
            solver_table(results),
            "",
            f"**Conclusion.** {conclusion(results)} {solver_verdict(results)}",
            "",
            *footer(command, date, machine("diffusers"), conditions),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python bench/sampler_overhead.py --shapes 64,2 64,3,32,32 --steps 50 --repeats 100 --write",
    )
    parser.add_argument(
        "--shapes",
        type=parse_shape,
        nargs="+",
        default=[(64, 2), (64, 3, 32, 32)],
        help="batch shapes, e.g. 64,2 64,3,32,32 (default: those two)",
    )
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps (default 50)")
    parser.add_argument(
        "--repeats", type=int, default=100, help="timed repeats of each loop; medians are reported (default 100)"
    )
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs of each loop first (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument(
        "--model",
        choices=["mul", "const"],
        default="mul",
        help="trivial model: 'mul' = x * 0.1 (default), 'const' = a preallocated tensor",
    )
    parser.add_argument("--write", action="store_true", help=f"replace the '{SECTION}' section of docs/benchmarks.md")
    args = parser.parse_args(argv)
    if not 1 <= args.steps <= T:
        parser.error(f"--steps must be in [1, {T}]")
    if args.repeats < 2:
        parser.error("--repeats must be at least 2")
    try:
        import diffusers  # noqa: F401
    except ImportError:
        sys.exit('this benchmark needs diffusers: pip install -e ".[bench]"')

    torch.set_num_threads(args.threads)
    torch.set_default_dtype(torch.float32)
    command = "python bench/sampler_overhead.py" + "".join(" " + shlex.quote(a) for a in sys.argv[1:])
    date = subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip() or datetime.now(
        timezone.utc
    ).strftime("%a %b %d %H:%M:%S UTC %Y")

    pct = busy()
    load_before = "CPU use unknown" if pct is None else f"{pct:.0f}% CPU busy"
    if pct is not None and pct > 10:
        print(f"warning: the machine is busy ({load_before} before the run); timings will be noisy", file=sys.stderr)
    results = []
    for shape in args.shapes:
        print(f"measuring {fmt_shape(shape)} ...", file=sys.stderr, flush=True)
        results.append(run_shape(shape, args))

    print(table(results, args.steps))
    print()
    print("\n".join(ratio_lines(results)))
    print()
    print(solver_table(results))
    print(solver_verdict(results))
    print()
    print("\n".join(check_lines(results)))
    print()
    print(conclusion(results))
    conditions = f"{load_before} in the second before the run, {load()} in the second after"
    print(f"\n{machine('diffusers')}\n{conditions}\n{date}\n{command}")
    if args.write:
        write_section(SECTION, section(results, args, command, date, conditions))
        print(f"wrote the '{SECTION}' section of {DOCS}")


if __name__ == "__main__":
    main()
