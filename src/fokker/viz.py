"""Pictures of samples: image grids (Pillow) and 2-D scatter plots (matplotlib)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fokker.data import to_uint8_images
from fokker.files import atomic_write

# matplotlib's ten default colours less its grey (C7), which the data points are drawn in
CLASS_COLOURS = [f"C{i}" for i in range(10) if i != 7]


def image_grid(x: torch.Tensor, nrow: int | None = None, pad: int = 2) -> Image.Image:
    """Tile (N, C, H, W) images in [-1, 1] into one picture, nrow per row (default: near square)."""
    imgs = to_uint8_images(x)
    n, h, w, c = imgs.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    canvas = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, nrow)
        canvas[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + k * (w + pad) : pad + k * (w + pad) + w] = imgs[i]
    img = Image.fromarray(canvas[..., 0] if c == 1 else canvas)
    scale = max(1, 256 // max(canvas.shape[:2]))  # small images are hard to see: upscale
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST) if scale > 1 else img


def class_rows(x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(images, nrow) for `image_grid` with one row per class, in the order the classes first appear in
    `labels`; a class with fewer images than the longest row is padded with white (+1) images."""
    classes = list(dict.fromkeys(labels.tolist()))
    rows = [x[labels.cpu() == k] for k in classes]
    nrow = max(len(r) for r in rows)
    blank = torch.ones_like(x[:1])
    return torch.cat([torch.cat([r, blank.expand(nrow - len(r), *x.shape[1:])]) for r in rows]), nrow


def scatter_plot(
    x: torch.Tensor, reference: torch.Tensor | None = None, title: str = "", labels: torch.Tensor | None = None
) -> Image.Image:
    """A 2-D scatter of samples over the reference data (grey), as a Pillow image; with `labels`, the
    samples of each class in a colour of their own."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    if reference is not None:
        ax.scatter(*reference[:, :2].T.cpu().numpy(), s=1, c="0.75", label="data")
    if labels is None:
        ax.scatter(*x[:, :2].T.float().cpu().numpy(), s=1, c="tab:blue", label="samples")
    else:
        for k in dict.fromkeys(labels.tolist()):
            points = x[labels.cpu() == k, :2].T.float().cpu().numpy()
            ax.scatter(*points, s=1, c=CLASS_COLOURS[k % len(CLASS_COLOURS)], label=f"class {k}")
    ax.set_xlim(-1.3, 1.3), ax.set_ylim(-1.3, 1.3), ax.set_aspect("equal"), ax.set_title(title)
    ax.legend(loc="upper right", markerscale=6, fontsize=7)
    fig.tight_layout()
    fig.canvas.draw()
    img = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    plt.close(fig)
    return img


def save_picture(
    x: torch.Tensor,
    path: str | Path,
    reference: torch.Tensor | None = None,
    title: str = "",
    labels: torch.Tensor | None = None,
    nrow: int | None = None,
) -> None:
    """Save samples as a PNG, a grid for images (`nrow` per row, default near square) or a scatter plot for 2-D
    points; written atomically. With the samples' class `labels`, the grid has one row per class and the
    scatter one colour per class."""
    if nrow is not None and (labels is not None or x.dim() != 4):
        raise ValueError("nrow sets an unlabelled image grid's width; a labelled grid has one row per class")
    if x.dim() != 4:
        img = scatter_plot(x, reference, title, labels)
    else:
        img = image_grid(*class_rows(x, labels)) if labels is not None else image_grid(x, nrow)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig, path: Path) -> None:
    """Save a matplotlib figure as PNG atomically, then close it."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    _pyplot().close(fig)


def training_curve(metrics_jsonl: Path, path: Path) -> bool:
    """Plot loss (and its running mean) against step from a run's metrics.jsonl; False if it has no records.
    A line cut short by a kill is dropped with a warning (`read_metrics`)."""
    from fokker.metrics_jsonl import read_metrics

    records = [r for r in read_metrics(Path(metrics_jsonl)) if isinstance(r.get("loss"), int | float)]
    if not records:
        return False
    plt = _pyplot()
    steps = np.array([r["step"] for r in records])
    loss = np.array([r["loss"] for r in records])
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    ax.plot(steps, loss, lw=0.8, c="0.6", label="loss")
    k = max(1, len(loss) // 20)
    if k > 1:
        ax.plot(steps[k - 1 :], np.convolve(loss, np.ones(k) / k, mode="valid"), c="tab:blue", label=f"mean of {k}")
    ax.set_yscale("log"), ax.set_xlabel("step"), ax.set_ylabel("training loss"), ax.legend(fontsize=7)
    fig.tight_layout()
    _save_figure(fig, path)
    return True


def round_curves(logs: dict[str, Path], path: Path) -> bool:
    """The training loss of each round of a distillation, one after the other on one step axis (one colour
    per round, from the runs' metrics.jsonl); False if none has records."""
    from fokker.metrics_jsonl import read_metrics

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    offset, drawn = 0, False
    for label, log in logs.items():
        if not Path(log).exists():  # a round shorter than train.log_every logs nothing
            continue
        records = [r for r in read_metrics(Path(log)) if isinstance(r.get("loss"), int | float)]
        if not records:
            continue
        steps = np.array([r["step"] for r in records]) + offset
        ax.plot(steps, [r["loss"] for r in records], lw=0.9, label=label)
        offset, drawn = int(steps[-1]), True
    if not drawn:
        plt.close(fig)
        return False
    ax.set_yscale("log"), ax.set_xlabel("update (rounds in order)"), ax.set_ylabel("training loss")
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save_figure(fig, path)
    return True


def metric_curves(runs: list[dict], keys: list[str], path: Path, floor: dict | None = None) -> None:
    """One panel per metric against NFE (log axis), one line per sampler (and guide); the floor dashed."""
    plt = _pyplot()
    cols = min(len(keys), 3)
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), dpi=100, squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        for series in dict.fromkeys(map(_series, runs)):
            pts = sorted((r["nfe"], r[key]) for r in runs if _series(r) == series)
            ax.plot(*zip(*pts, strict=True), marker="o", label=series)
        if floor is not None and key in floor:
            ax.axhline(floor[key], ls="--", c="0.5", lw=1, label="held-out data")
        ax.set_xscale("log"), ax.set_xlabel("NFE"), ax.set_title(key)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.tight_layout()
    _save_figure(fig, path)


def _series(run: dict) -> str:
    """The line of a run of `fokker eval` in a plot: its model (student or teacher, when compared), its sampler,
    and its guide when guided."""
    model = f"{run['model']} " if run.get("model") else ""
    return model + run["sampler"] + (f" {run['guide']}" if run.get("guide") else "")


def guidance_tradeoff(runs: list[dict], quality: str, path: Path) -> None:
    """Quality (e.g. FID) against label agreement, one line per (sampler, steps) through its guides, each
    point labelled with its guide: the trade-off of Ho & Salimans 2022, fig. 4."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.6), dpi=100)
    for key in dict.fromkeys((r["sampler"], r["steps"]) for r in runs):
        mine = [r for r in runs if (r["sampler"], r["steps"]) == key]
        ax.plot(
            [r["agreement"] for r in mine], [r[quality] for r in mine], marker="o", label=f"{key[0]}, {key[1]} steps"
        )
        for r in mine:
            ax.annotate(r["guide"], (r["agreement"], r[quality]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("label agreement"), ax.set_ylabel(quality), ax.legend(fontsize=7)
    fig.tight_layout()
    _save_figure(fig, path)


def bound_terms(terms: torch.Tensor, times: torch.Tensor, path: Path, title: str = "") -> None:
    """The variational bound's terms L_t (bits per dimension, mean over examples) against t, log scale:
    where in time the bound's cost lies (cf. Nichol & Dhariwal 2021, fig. 2)."""
    plt = _pyplot()
    mean = terms.double().mean(0).numpy()
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    ax.plot(times.numpy()[: len(mean)], np.maximum(mean, 1e-12), lw=1)
    ax.set_yscale("log"), ax.set_xlabel("t"), ax.set_ylabel("term (bits/dim)"), ax.set_title(title)
    fig.tight_layout()
    _save_figure(fig, path)


def accuracy_curve(times: torch.Tensor, accuracy: torch.Tensor, path: Path, chance: float, title: str = "") -> None:
    """A noise-conditional classifier's accuracy against t (fokker.classifier), with chance (1 / K) dashed:
    high at t = 0, falling to chance where x_t holds no signal."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    ax.plot(times.numpy(), accuracy.numpy(), marker="o", ms=3, lw=1, label="held-out accuracy")
    ax.axhline(chance, ls="--", c="0.5", lw=1, label="chance")
    ax.set_xlim(0, 1), ax.set_ylim(0, 1.02), ax.set_xlabel("t"), ax.set_ylabel("accuracy"), ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    _save_figure(fig, path)
