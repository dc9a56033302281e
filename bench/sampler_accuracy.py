"""Sampler accuracy against NFE on analytic targets, fokker's samplers side by side with diffusers'
schedulers, every one fed the same exact model.

Targets: a rotated anisotropic Gaussian in 16-D (error: KL between the Gaussian fitted to the samples and
the true one) and a 2-D mixture weighted 0.2 / 0.5 / 0.3 (errors: the largest mode-weight error and the
sliced W2 distance to exact samples). The process is DDPM's: linear betas 1e-4..0.02, T = 1000. The exact
eps is computed in float64 from the closed-form noised score, so only the discretization shows; the rows
"exact samples" give the floor that 20,000 samples allow. Run by hand, not in CI:

    python bench/sampler_accuracy.py                 # print the table
    python bench/sampler_accuracy.py --write         # also update docs/benchmarks.md

Needs the "bench" extra (diffusers): pip install -e ".[bench]".
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone

import numpy as np
import torch
from _common import footer, load, machine, publish

import fokker
from fokker.metrics import gaussian_fit, gaussian_kl, sliced_wasserstein
from fokker.samplers import fit_gaussian, optimize_grid
from fokker.targets import GaussianMixture, GaussianTarget, exact_denoiser

SECTION = "## Sampler accuracy against NFE"
F64 = torch.float64
T, BETA_START, BETA_END = 1000, 1e-4, 0.02
TARGETS = {"gaussian16": GaussianTarget.anisotropic(16, seed=0), "mixture2d": GaussianMixture.unequal_2d()}
# label: (sampler, options, spacing); each runs as many steps as fit its NFE budget (see fokker_steps)
FOKKER_SAMPLERS = {
    "fokker ddpm (beta-tilde)": ("ddpm", {}, "uniform"),
    "fokker ddpm (beta)": ("ddpm", {"variance": "beta"}, "uniform"),
    "fokker ddim (eta 0)": ("ddim", {}, "uniform"),
    "fokker ddim (eta 1)": ("ddim", {"eta": 1.0}, "uniform"),
    "fokker euler_maruyama": ("euler_maruyama", {}, "uniform"),
    "fokker pc (reverse diffusion)": ("pc", {"corrector": "none"}, "uniform"),
    "fokker pc (reverse diffusion + Langevin)": ("pc", {}, "uniform"),
    "fokker ode (euler)": ("ode", {"method": "euler"}, "uniform"),
    "fokker ode (heun)": ("ode", {"method": "heun"}, "uniform"),
    "fokker annealed_langevin (1 step per level)": ("annealed_langevin", {"steps_per_level": 1}, "uniform"),
}
# the exponential integrators and EDM's samplers, each on the grids a user would pick
FAST = {
    "dpmpp_2m": ("dpmpp_2m", {}),
    "dpmpp_3m": ("dpmpp_3m", {}),
    "dpmpp_2s": ("dpmpp_2s", {}),
    "dpmpp_2m_sde": ("dpmpp_2m_sde", {}),
    "unipc (order 2)": ("unipc", {}),
    "unipc (order 3)": ("unipc", {"order": 3}),
    "deis (order 3)": ("deis", {}),
    "deis + unic": ("deis", {"corrector": "unic"}),
}
FAST_SPACINGS = ("log_snr", "quadratic", "karras")
for _label, (_sampler, _options) in FAST.items():
    for _spacing in FAST_SPACINGS:
        FOKKER_SAMPLERS[f"fokker {_label} [{_spacing}]"] = (_sampler, _options, _spacing)
# the optimized grid (fokker grid): fitted to 20,000 samples of each target, to NFE 20 (above it the search over
# every interior time costs minutes per grid, and the log_snr grid is already near the floor)
OPTIMIZED = {"dpmpp_2m": ("dpmpp_2m", {}), "dpmpp_3m": ("dpmpp_3m", {}), "unipc (order 2)": ("unipc", {}),
             "unipc (order 3)": ("unipc", {"order": 3})}  # fmt: skip
OPTIMIZED_MAX_NFE = 20
for _label, (_sampler, _options) in OPTIMIZED.items():
    FOKKER_SAMPLERS[f"fokker {_label} [optimized]"] = (_sampler, _options, "optimized")
FOKKER_SAMPLERS["fokker edm_heun [karras]"] = ("edm_heun", {}, "karras")
FOKKER_SAMPLERS["fokker edm (s_churn 40) [karras]"] = ("edm", {"s_churn": 40.0}, "karras")
RTOLS = [1e-2, 1e-3, 1e-4, 1e-5]  # the adaptive ODE (dopri5) chooses its own NFE
PEERS = [
    "DDPM",
    "DDPM (fixed_large)",
    "DDIM",
    "DPM-Solver++ (2M)",
    "DPM-Solver++ (2M, Karras)",
    "DPM-Solver++ (3M)",
    "DPM-Solver++ (3M, Karras)",
    "Euler",
    "Euler (Karras)",
    "Heun",
    "Heun (Karras)",
    "UniPC",
    "UniPC (Karras)",
]


class AbarProcess:
    """VP noise levels indexed by alpha-bar itself: alpha = sqrt(a), sigma = sqrt(1 - a). Lets the exact
    score of a target be evaluated at whatever noise level a diffusers scheduler asks for."""

    def alpha(self, a: torch.Tensor) -> torch.Tensor:
        return a.sqrt()

    def sigma(self, a: torch.Tensor) -> torch.Tensor:
        return (1 - a).sqrt()


def make_scheduler(name: str, betas: np.ndarray | None = None, clip: bool = False):
    """The diffusers scheduler `name` of PEERS on DDPM's linear betas, or on `betas` (trained_betas), with the
    trailing grid; `clip`: x0_hat clipped to [-1, 1] (DDIM's clip_sample; for DPM-Solver++ and UniPC,
    thresholding with sample_max_value 1, which clips at 1 whatever the quantile). Euler and Heun cannot clip."""
    import diffusers

    common = {"num_train_timesteps": T, "beta_start": BETA_START, "beta_end": BETA_END, "beta_schedule": "linear",
              "timestep_spacing": "trailing"}  # fmt: skip
    if betas is not None:
        common |= {"num_train_timesteps": len(betas), "trained_betas": betas.tolist()}
    threshold = {"thresholding": True, "sample_max_value": 1.0} if clip else {}
    if clip and name.startswith(("Euler", "Heun")):
        raise ValueError(f"diffusers' {name} cannot clip x0_hat")
    if name.startswith("DDPM"):
        variance = "fixed_large" if "fixed_large" in name else "fixed_small"
        return diffusers.DDPMScheduler(**common, clip_sample=clip, variance_type=variance)
    if name == "DDIM":
        return diffusers.DDIMScheduler(**common, clip_sample=clip, set_alpha_to_one=True)
    karras = {"use_karras_sigmas": True} if "Karras" in name else {}
    if name.startswith("DPM-Solver++ (SDE"):
        return diffusers.DPMSolverMultistepScheduler(**common, algorithm_type="sde-dpmsolver++", **karras, **threshold)
    if name.startswith("DPM-Solver++"):
        order = 3 if "3M" in name else 2
        return diffusers.DPMSolverMultistepScheduler(
            **common, algorithm_type="dpmsolver++", solver_order=order, **karras, **threshold
        )
    if name.startswith("Euler"):
        return diffusers.EulerDiscreteScheduler(**common, **karras)
    if name.startswith("Heun"):
        return diffusers.HeunDiscreteScheduler(**common, **karras)
    if name.startswith("UniPC"):
        return diffusers.UniPCMultistepScheduler(**common, **karras, **threshold)
    raise ValueError(name)


def peer_model(target, scheduler) -> tuple[Callable, list[int]]:
    """The exact eps at a diffusers timestep k (integer or, for Euler / Heun, fractional): the noise level
    sigma(k) interpolated linearly between the training sigmas, as those schedulers do, and alpha-bar =
    1 / (1 + sigma^2). Counts calls."""
    abar = scheduler.alphas_cumprod.double().numpy()
    base_sigmas = np.sqrt((1 - abar) / abar)
    calls = [0]
    levels = AbarProcess()

    def eps(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        sigma = float(np.interp(float(k), np.arange(T), base_sigmas))
        a = torch.tensor([1 / (1 + sigma**2)], dtype=F64)
        return -levels.sigma(a) * target.score(x, a, levels)

    return eps, calls


def run_peer(name: str, target, steps: int, x_T: torch.Tensor, seed: int) -> tuple[torch.Tensor, int]:
    scheduler = make_scheduler(name)
    scheduler.set_timesteps(steps)
    model, calls = peer_model(target, scheduler)
    gen = torch.Generator().manual_seed(seed)
    x = x_T * scheduler.init_noise_sigma
    for k in scheduler.timesteps:
        eps = model(scheduler.scale_model_input(x, k), k)
        kwargs = {"generator": gen} if name.startswith("DDPM") else {}
        x = scheduler.step(eps, k, x, **kwargs).prev_sample
    return x, calls[0]


def fokker_steps(sampler: str, options: dict, nfe: int) -> int:
    """Grid steps that spend `nfe` evaluations: Heun 2 per step but the last; pc 1 + its corrector steps;
    annealed Langevin steps_per_level per level plus the final denoising step."""
    if options.get("method") == "heun" or sampler in ("edm_heun", "edm"):
        return (nfe + 1) // 2
    if sampler == "pc" and options.get("corrector", "langevin") == "langevin":
        return max(nfe // 2, 1)
    if sampler == "annealed_langevin":
        return max((nfe - 1) // options["steps_per_level"], 1)
    return nfe


_GRIDS: dict = {}


def optimized_times(target, sampler: str, options: dict, steps: int) -> torch.Tensor:
    """The grid `fokker grid` would store for a run trained on 20,000 samples of `target`: optimize_grid on the
    Gaussian fitted to them (computed once per target, sampler and steps)."""
    key = (id(target), sampler, tuple(sorted(options.items())), steps)
    if key not in _GRIDS:
        mean, eigvals = fit_gaussian(target.sample(20000, torch.Generator().manual_seed(12345)))
        _GRIDS[key] = optimize_grid(fokker.VP(T=T), mean, eigvals, sampler, steps, **options)[0]
    return _GRIDS[key]


def run_fokker(sampler: str, options: dict, spacing: str, target, steps: int, x_T: torch.Tensor, seed: int):
    denoiser = exact_denoiser(target, fokker.VP(T=T))
    gen = torch.Generator().manual_seed(seed)
    optimized = spacing == "optimized"
    grid = {"times": optimized_times(target, sampler, options, steps)} if optimized else {"spacing": spacing}
    x, info = fokker.sample(denoiser, sampler, steps, x_T=x_T, generator=gen, **grid, **options)
    return x, info["nfe"]


def adaptive(n: int, seed: int) -> list[str]:
    """The probability-flow ODE by dopri5 at several tolerances: NFE, accepted / rejected steps, errors."""
    lines = ["| rtol = atol | gaussian16: NFE (accepted / rejected) | KL | mixture2d: NFE | sliced W2 | weight error |",
             "|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for tol in RTOLS:
        cells = []
        for tname, target in TARGETS.items():
            x_T = torch.randn(n, target.dim, generator=torch.Generator().manual_seed(seed), dtype=F64)
            exact = target.sample(n, torch.Generator().manual_seed(seed + 1))
            d = exact_denoiser(target, fokker.VP(T=T))
            x, info = fokker.sample(d, "ode", 1, x_T=x_T, method="dopri5", rtol=tol, atol=tol)
            err = errors(tname, x, exact)
            steps = f"{info['nfe']} ({info['accepted']} / {info['rejected']})"
            cells += [steps, f"{err['kl']:.4f}"] if tname == "gaussian16" else [
                str(info["nfe"]), f"{err['sw2']:.4f}", f"{err['weight_err']:.4f}"]  # fmt: skip
        lines.append(f"| {tol:g} | " + " | ".join(cells) + " |")
    return lines


def errors(name: str, x: torch.Tensor, exact: torch.Tensor) -> dict[str, float]:
    target = TARGETS[name]
    if name == "gaussian16":
        return {"kl": gaussian_kl(*gaussian_fit(x), target.mean, target.cov)}
    weights = torch.bincount(target.assign(x), minlength=len(target.weights)).double() / len(x)
    return {
        "weight_err": float((weights - target.weights).abs().max()),
        "sw2": sliced_wasserstein(x, exact),
    }


def peer_steps(name: str, nfe: int) -> int:
    """Scheduler steps that spend `nfe` evaluations: Heun takes 2 per step but the last (2 n - 1)."""
    return (nfe + 1) // 2 if name.startswith("Heun") else nfe


def starts(target, n: int, seed: int, sets: int) -> list[torch.Tensor]:
    """`sets` independent sets of n starting points x_T (one for the Gaussian, whose KL varies little)."""
    return [torch.randn(n, target.dim, generator=torch.Generator().manual_seed(seed + 100 * k), dtype=F64)
            for k in range(sets)]  # fmt: skip


def mean_errors(tname: str, outputs: list[torch.Tensor], exact: torch.Tensor) -> dict[str, float]:
    """The errors of each set of outputs, averaged over the sets."""
    each = [errors(tname, x, exact) for x in outputs]
    return {key: sum(e[key] for e in each) / len(each) for key in each[0]}


def collect(nfes: list[int], n: int, seed: int, sets: int) -> dict:
    """Every sampler at every NFE on both targets. The mixture's errors are averaged over `sets` sets of
    starting points, as its floor is over as many sets of exact samples: the mode weights of ONE set of exact
    samples err by about 0.004 by chance, so one set of x_T, through the exact flow, does too."""
    results = {}
    for tname, target in TARGETS.items():
        x_Ts = starts(target, n, seed, 1 if tname == "gaussian16" else sets)
        exact = target.sample(n, torch.Generator().manual_seed(seed + 1))
        draws = [target.sample(n, torch.Generator().manual_seed(seed + 2 + k)) for k in range(max(sets, 5))]
        rows = {"exact samples": {0: (mean_errors(tname, draws, exact), 0)}}
        for label, (sampler, options, spacing) in FOKKER_SAMPLERS.items():
            rows[label] = {}
            for nfe in nfes:
                if spacing == "optimized" and nfe > OPTIMIZED_MAX_NFE:
                    continue
                steps = fokker_steps(sampler, options, nfe)
                runs = [
                    run_fokker(sampler, options, spacing, target, steps, x_T, seed + k) for k, x_T in enumerate(x_Ts)
                ]
                rows[label][nfe] = (mean_errors(tname, [x for x, _ in runs], exact), runs[0][1])
        for peer in PEERS:
            rows[f"diffusers {peer}"] = {}
            for nfe in nfes:
                runs = [run_peer(peer, target, peer_steps(peer, nfe), x_T, seed + k) for k, x_T in enumerate(x_Ts)]
                rows[f"diffusers {peer}"][nfe] = (mean_errors(tname, [x for x, _ in runs], exact), runs[0][1])
            print(f"  {tname}: {peer} done", file=sys.stderr)
        results[tname] = rows
    results["adaptive"] = adaptive(n, seed)
    return results


def table(rows: dict, nfes: list[int], key: str, digits: int) -> list[str]:
    head = ["sampler", *[f"NFE {n}" for n in nfes]]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * len(nfes)]
    for label, cells in rows.items():
        if label == "exact samples":
            ((err, _),) = cells.values()
            lines.append("| exact samples (floor) | " + " | ".join(f"{err[key]:.{digits}f}" for _ in nfes) + " |")
            continue
        best = {n: min(r[n][0][key] for lab, r in rows.items() if lab != "exact samples" and n in r) for n in nfes}
        vals = []
        for n in nfes:
            if n not in cells:
                vals.append("-")
                continue
            err, used = cells[n]
            text = f"{err[key]:.{digits}f}" + ("" if used == n else f" ({used})")
            vals.append(f"**{text}**" if err[key] == best[n] else text)
        lines.append(f"| {label} | " + " | ".join(vals) + " |")
    return lines


AT_FLOOR = 1.2  # "at the floor": within the chance variation of a mean over 5 sets of 20,000 samples


def both(results: dict, prefix: str, n: int, kl_max: float, ratio_max: float) -> tuple[float, float, str] | None:
    """The (KL, weight error / floor, label) of the sampler starting with `prefix` that meets KL <= kl_max and
    weight error <= ratio_max floors at `n` NFE with the lowest weight error, or the nearest miss (lowest
    max(KL / kl_max, ratio / ratio_max)) flagged by returning it anyway; None without rows."""
    g, m = results["gaussian16"], results["mixture2d"]
    floor = next(iter(m["exact samples"].values()))[0]["weight_err"]
    cands = [(g[lab][n][0]["kl"], m[lab][n][0]["weight_err"] / floor, lab) for lab in g
             if lab.startswith(prefix) and n in g[lab]]  # fmt: skip
    if not cands:
        return None
    return min(cands, key=lambda c: max(c[0] / kl_max, c[1] / ratio_max, 1.0) * 1e3 + c[1])


def goal_lines(results: dict, nfes: list[int]) -> list[str]:
    """The issue's goals: at 10 NFE one sampler with KL <= 0.1 and mode-weight error <= 1.5x the floor; at 20
    KL <= 0.02 and the weight error at the floor; at 5 the best KL and the best weight error of all."""
    out = []
    for n, kl_max, ratio_max in ((10, 0.1, 1.5), (20, 0.02, AT_FLOOR)):
        if n not in nfes:
            continue
        for prefix in ("fokker", "diffusers"):
            kl, ratio, lab = both(results, prefix, n, kl_max, ratio_max)
            ok = kl <= kl_max and ratio <= ratio_max
            verdict = ("met" if ok else "not met") if prefix == "fokker" else f"{'meets' if ok else 'misses'} it (peer)"
            out.append(f"- {n} NFE, KL <= {kl_max} and weight error <= {ratio_max}x floor: {lab} has KL {kl:.4f}, "
                       f"weight error {ratio:.2f}x floor: {verdict}")  # fmt: skip
    low = nfes[0]
    for tname, key in (("gaussian16", "kl"), ("mixture2d", "weight_err")):
        ours, peer = best(results[tname], "fokker", low, key), best(results[tname], "diffusers", low, key)
        verdict = "met" if ours[0] <= peer[0] else "not met"
        out.append(f"- {low} NFE, best {key}: fokker {ours[0]:.4f} ({ours[1][7:]}), best peer {peer[0]:.4f} "
                   f"({peer[1][10:]}): {verdict}")  # fmt: skip
    return out


def best(rows: dict, prefix: str, n: int, key: str) -> tuple[float, str]:
    """(error, label) of the most accurate sampler whose label starts with `prefix`, at `n` NFE."""
    return min((r[n][0][key], lab) for lab, r in rows.items() if lab.startswith(prefix) and n in r)


def conclusion(results: dict, nfes: list[int]) -> str:
    """What the tables say, computed from them: the ratio of fokker's best error to the best peer's, and
    the fewest NFE at which each comes within 2x of the sampling floor."""
    parts = []
    for tname, key, what in (("gaussian16", "kl", "KL on the 16-D Gaussian"), ("mixture2d", "sw2", "sliced W2")):
        rows = results[tname]
        floor = next(iter(rows["exact samples"].values()))[0][key]
        ratios = ", ".join(f"{best(rows, 'fokker', n, key)[0] / best(rows, 'diffusers', n, key)[0]:.2g}x at {n}"
                           for n in nfes)  # fmt: skip
        reach = {}
        for prefix in ("fokker", "diffusers"):
            ok = [n for n in nfes if best(rows, prefix, n, key)[0] <= 2 * floor]
            reach[prefix] = f"{ok[0]} NFE" if ok else f"more than {nfes[-1]} NFE"
        parts.append(f"{what}: fokker's best / the best peer's = {ratios} NFE; within 2x of the floor from "
                     f"{reach['fokker']} (fokker) and {reach['diffusers']} (peers).")  # fmt: skip
    low = best(results["gaussian16"], "fokker", nfes[0], "kl")[1][7:]
    return " ".join(parts) + f" At {nfes[0]} NFE fokker's most accurate sampler is {low}."


def section(results: dict, nfes: list[int], n: int, sets: int, command: str, date: str, conditions: str) -> str:
    g, m = results["gaussian16"], results["mixture2d"]
    goals = goal_lines(results, nfes)
    met = sum(line.endswith(": met") for line in goals)
    checks = sum(line.endswith("met") for line in goals)
    return "\n".join(
        [
            SECTION,
            "",
            f"Every sampler gets the same exact eps (float64, closed form) on DDPM's linear schedule (T = 1000) and "
            f'the same {n:,} starting points x_T. diffusers\' schedulers run with timestep_spacing="trailing" so '
            'that they start at t = 1 as fokker does (their default "leading" grid starts at timestep 980); '
            "DDPM with fixed_small variance (beta-tilde) and with fixed_large (beta), DDIM with eta 0, "
            "DPM-Solver++ of order 2 (multistep), "
            "Euler and Heun (sigma interpolated between training timesteps, as diffusers does; the exact model "
            "answers at that interpolated level), UniPC with its defaults. An NFE column counts network "
            "evaluations; a figure in parentheses is the NFE actually used when it differs (Heun spends 2 per step "
            "but the last). Bold: the best sampler in the column. The floor row is the mean score of five more "
            "sets of exact samples of the same size (one set's sliced W2 varies by about 30% with the mode "
            "weights it happens to draw, so a sampler can land below the mean floor). diffusers' DDPM with "
            "fixed_large on a grid that ends above timestep 0 (trailing spacing: 999, ..., 199 at 5 steps) adds "
            "noise of variance 1 - alpha-bar at its last step, since it adds noise whenever t > 0; its column "
            "measures that, and it is why it trails fokker's ddpm (beta), which adds no noise at the last step. "
            "fokker's score-SDE samplers run on the same model: the reverse SDE (Euler-Maruyama), predictor-"
            "corrector with the reverse-diffusion or ancestral predictor (with and without the Langevin "
            "corrector, which costs one more NFE per step), the probability-flow ODE by Euler and Heun, and "
            "annealed Langevin dynamics with one update per noise level (NFE - 1 levels). All of them end with "
            "one Tweedie step x0_hat, as DDPM and DDIM do. The fast samplers (DPM-Solver++ 2M / 3M / 2S / SDE 2M, "
            "UniPC of order 2 and 3, DEIS of order 3 with and without the UniC corrector) run on three grids: "
            "uniform in log-SNR, quadratic in t, and Karras' rho = 7 grid in sigma / alpha; EDM's Heun and "
            "stochastic samplers on the Karras grid. [optimized]: the grid `fokker grid` computes (optimize_grid "
            "on the Gaussian fitted to 20,000 samples of the target, as a run fits its training data), up to "
            f"{OPTIMIZED_MAX_NFE} NFE ('-' above). Peers with (Karras) use use_karras_sigmas=True. The mixture's "
            f"rows are means over {sets} sets of starting points, as its floor is over as many sets of exact "
            "samples: one set of x_T, carried through the exact flow, errs in its mode weights by chance as much "
            "as one set of exact samples does.",
            "",
            "**16-D anisotropic Gaussian: KL(fitted Gaussian || target)**",
            "",
            *table(g, nfes, "kl", 4),
            "",
            "**2-D mixture (weights 0.2 / 0.5 / 0.3): sliced W2 to exact samples**",
            "",
            *table(m, nfes, "sw2", 4),
            "",
            "**2-D mixture: largest mode-weight error**",
            "",
            *table(m, nfes, "weight_err", 4),
            "",
            "**The probability-flow ODE solved adaptively (fokker ode, dopri5; to t = 1 / T, then x0_hat)**",
            "",
            *results["adaptive"],
            "",
            "Goals: at 10 NFE one sampler-plus-grid with KL <= 0.1 on the Gaussian and mode-weight error <= 1.5x "
            f"the floor; at 20 NFE KL <= 0.02 and the weight error at the floor (<= {AT_FLOOR}x); at the smallest "
            "NFE the best KL and the best weight error of any sampler, peers included. For each, fokker's best "
            "candidate and the best peer's:",
            "",
            *goals,
            "",
            f"**Conclusion.** {met} of {checks} goal checks are met. {conclusion(results, nfes)}",
            "",
            *footer(command, date, machine("diffusers"), conditions),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python bench/sampler_accuracy.py --nfe 5 10 20 50 100 --num 20000 --write",
    )
    parser.add_argument("--nfe", type=int, nargs="+", default=[5, 10, 20, 50, 100], help="NFE budgets")
    parser.add_argument("--num", type=int, default=20000, help="samples per setting (default: 20000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sets", type=int, default=5, help="sets of starting points for the mixture (default: 5)")
    parser.add_argument("--write", action="store_true", help=f"replace the '{SECTION}' section of docs/benchmarks.md")
    args = parser.parse_args(argv)
    command = "python bench/sampler_accuracy.py" + ("" if argv is None and len(sys.argv) == 1 else " " + shlex.join(
        sys.argv[1:] if argv is None else argv))  # fmt: skip
    before = load()
    start = time.time()
    results = collect(args.nfe, args.num, args.seed, args.sets)
    conditions = f"{before} in the second before the run, {load()} in the second after; {time.time() - start:.0f} s"
    date = datetime.now(timezone.utc).strftime("%a %b %d %H:%M:%S UTC %Y")
    text = section(results, args.nfe, args.num, args.sets, command, date, conditions)
    publish(SECTION, text, args.write)


if __name__ == "__main__":
    main()
