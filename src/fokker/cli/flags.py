"""Parser pieces the commands share: the checkpoint, device and progress flags, and the sampling flags of
`fokker sample` and `fokker eval` (each sampler option of fokker.samplers.sampler_options as a flag)."""

from __future__ import annotations

import argparse

from fokker.devices import DEVICES
from fokker.guidance.options import Guidance
from fokker.samplers import GRID, SAMPLERS, SPACINGS

FORMATTER = argparse.RawDescriptionHelpFormatter

# every sampler's own options (fokker.samplers.sampler_options), as command-line flags
SAMPLER_FLAGS: dict[str, tuple[type, str]] = {
    "eta": (float, "ddim: noise scale in [0, 1] (0 = deterministic)"),
    "variance": (
        str,
        "ddpm, and pc with --predictor ancestral: beta_tilde, beta or learned (default: learned if the model has it)",
    ),
    "predictor": (str, "pc: reverse_diffusion (default), euler_maruyama or ancestral"),
    "corrector": (
        str,
        "pc: langevin (default) or none; unipc: unic (default) or none; "
        "dpmpp_2m, dpmpp_3m, deis: none (default) or unic",
    ),
    "order": (int, "unipc: its order, 1 to 3 (default: 2); deis: 1 to 4 (default: 3)"),
    "b_h": (str, "the unic corrector and unipc's predictor: bh1 or bh2 (default: bh2), UniPC's B(h)"),
    "step_rule": (
        str,
        "pc with the langevin corrector: its step, sigma (default: sigma_t^2 min(rate h, 1), h the step in "
        "log-SNR; converges), snr (per example, Song et al.) or snr_batch (batch-averaged, as score_sde)",
    ),
    "rate": (float, "pc with --step-rule sigma: Langevin time per unit log-SNR, in sigma_t^2 (default: 1)"),
    "snr": (float, "pc with --step-rule snr or snr_batch: the signal-to-noise ratio (default: 0.16)"),
    "corrector_steps": (int, "pc with the langevin corrector: its updates per step (default: 1)"),
    "method": (str, "ode: euler, heun (default) or dopri5 (adaptive: picks its own steps; no --steps / --spacing)"),
    "rtol": (float, "ode with --method dopri5: relative tolerance (default: 1e-5)"),
    "atol": (float, "ode with --method dopri5: absolute tolerance (default: 1e-5)"),
    "epsilon": (float, "annealed_langevin: NCSN's step size epsilon (default: 0.2 sigma_min^2 of the ladder)"),
    "steps_per_level": (int, "annealed_langevin: Langevin updates per noise level (default: 100)"),
    "s_churn": (float, "edm: the churn S_churn of Karras et al. (default: 0, no noise: edm_heun)"),
    "s_tmin": (float, "edm with --s-churn > 0: churn only where sigma / alpha >= S_tmin (default: 0)"),
    "s_tmax": (float, "edm with --s-churn > 0: churn only where sigma / alpha <= S_tmax (default: inf)"),
    "s_noise": (float, "edm with --s-churn > 0: the churn noise's scale S_noise (default: 1)"),
    "denoise": (bool, "euler_maruyama, pc, ode, annealed_langevin: end on Tweedie's x0_hat (default: yes)"),
}


def flag(key: str) -> str:
    """The command-line spelling of an option: t_samples -> --t-samples."""
    return "--" + key.replace("_", "-")


def given(args: argparse.Namespace, keys) -> dict:
    """Those of the options `keys` given on the command line (not None), by name."""
    return {k: getattr(args, k) for k in keys if getattr(args, k) is not None}


def add_checkpoint(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="a run folder or an exported .safetensors file")


def add_device(p: argparse.ArgumentParser) -> None:
    names = f"{', '.join(DEVICES[:-1])} or {DEVICES[-1]}"
    p.add_argument("--device", default="auto", help=f"{names} (default: auto)")


def add_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_sampling(p: argparse.ArgumentParser, several: bool) -> None:
    """The options `fokker sample` and `fokker eval` share; with several=True, --sampler and --steps take lists."""
    run_default = "(default: the run's config, sample section)"
    many = {"nargs": "+"} if several else {}
    s_help = "one or more of" if several else "one of"
    p.add_argument("--sampler", **many, help=f"{s_help} {', '.join(sorted(SAMPLERS))} {run_default}")
    p.add_argument("--steps", type=int, **many, help=f"number{'s' if several else ''} of sampler steps {run_default}")
    p.add_argument(
        "--spacing",
        help=f"time grid: {', '.join(SPACINGS)}, or optimized (the run's grid from `fokker grid`; fokker sample) "
        f"{run_default}",
    )
    p.add_argument("--seed", type=int, default=0, help="sample i is drawn from its own seed (seed, i) (default: 0)")
    p.add_argument("--batch-size", type=int, default=256, help="samples per batch; does not change the result")
    add_device(p)
    for name, (kind, text) in SAMPLER_FLAGS.items():
        if kind is bool:
            p.add_argument(flag(name), action=argparse.BooleanOptionalAction, help=text)
        else:
            p.add_argument(flag(name), type=kind, help=text)
    add_progress(p)


def add_guidance(p: argparse.ArgumentParser, several: bool, group: str) -> None:
    """The guidance flags (fokker.guidance.options.Guidance); with several=True, --guidance and
    --classifier-scale take lists (one guided setting each)."""
    many = {"nargs": "+"} if several else {}
    g = p.add_argument_group(group)
    g.add_argument(
        "--guidance",
        type=float,
        metavar="W",
        **many,
        help="classifier-free guidance scale w of a conditional model: 1 = the conditional model, 0 = unconditional, "
        "> 1 guides (Ho & Salimans' w is this w - 1); costs two evaluations per step",
    )
    g.add_argument("--guidance-rescale", type=float, metavar="PHI", help="guidance rescale phi in [0, 1] (Lin et al.)")
    g.add_argument(
        "--guidance-interval", type=float, nargs=2, metavar=("T_LO", "T_HI"), help="guide only for t in [T_LO, T_HI]"
    )
    g.add_argument("--classifier", metavar="RUN", help="classifier guidance by a noise-conditional classifier's run")
    g.add_argument(
        "--classifier-scale", type=float, metavar="S", **many, help="classifier guidance scale s (default: 1)"
    )
    g.add_argument(
        "--classifier-form", choices=("score", "mean"), help="score (default, every sampler) or mean (ddpm only)"
    )


def guides_from(args: argparse.Namespace, device) -> tuple[dict[str, Guidance], int | None]:
    """({name: Guidance} for each guided setting the flags ask for (every --guidance W with every
    --classifier-scale S; empty without guidance), the number of classes of the --classifier or None), the
    classifier loaded from its run (fokker.classifier.load_classifier)."""
    classifier, classes = None, None
    if args.classifier is not None:
        from fokker.classifier import load_classifier

        classifier, clf_config = load_classifier(args.classifier, device)
        classes = clf_config.data.num_classes
    ws = _listed(args.guidance)
    ss = _listed(args.classifier_scale) if classifier is not None or args.classifier_scale is not None else [None]
    guides = {}
    for w in ws:
        for s in ss:
            g = Guidance(w, args.guidance_rescale, args.guidance_interval, classifier, s, args.classifier_form)
            g.check()
            if g.asked:
                name = " ".join(f"{k}={v:g}" for k, v in (("w", w), ("s", s)) if v is not None) or "s=1"
                guides[name] = g
    return guides, classes


def _listed(value) -> list:
    """A flag's value as a list: [None] when not given, a single value as one item."""
    return [None] if value is None else list(value) if isinstance(value, list) else [value]


def sampler_options(args: argparse.Namespace) -> dict:
    """The sampler-specific options given on the command line."""
    return given(args, SAMPLER_FLAGS)


def grid_options(args: argparse.Namespace) -> dict:
    """--steps and --spacing when given on the command line (an adaptive sampler refuses them)."""
    return given(args, GRID)


def command_parser(sub, name: str, help: str, description: str, epilog: str) -> argparse.ArgumentParser:
    """The subcommand `name`, its examples shown as written."""
    return sub.add_parser(name, help=help, description=description, epilog=epilog, formatter_class=FORMATTER)
