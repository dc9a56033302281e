"""The files the inference commands write, each a whole: a sample set (its picture and the raw samples
beside it), a set of completions (inpainting, colorization) likewise, an interpolation picture, and a
likelihood report (likelihood.json, and terms.png for the bound on every step). Writing is kept apart from
computing (fokker.reports, fokker.samplers) so a script can compute without writing, and so the rules for
writing a result whole live in one place."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from fokker.files import FileSet, atomic_write
from fokker.reports import LikelihoodReport

if TYPE_CHECKING:
    from fokker.config import RunConfig


def write_samples(out: Path, samples: torch.Tensor, labels: torch.Tensor | None, config: RunConfig, title: str) -> None:
    """The picture `out` and the raw samples beside it (.npz: samples, labels, uint8 images), written as one set:
    both new or both old (fokker.files.FileSet, the .npz marks it whole)."""
    import numpy as np

    from fokker.data import load_dataset, to_uint8_images
    from fokker.viz import save_picture

    reference = None
    if samples.dim() == 2:
        reference = load_dataset(config.data.name, num_points=5000, seed=config.train.seed).data
    arrays = {"samples": samples.numpy()}
    if labels is not None:
        arrays["labels"] = labels.numpy()
    if samples.dim() == 4:
        arrays["images"] = to_uint8_images(samples)
    npz = out.with_suffix(".npz").name
    with FileSet(out.parent, marker=npz) as files:
        save_picture(samples, files.path(out.name), reference=reference, title=title, labels=labels)
        np.savez_compressed(files.path(npz), **arrays)


def write_completions(
    out: Path, samples: torch.Tensor, inputs: torch.Tensor, shown: torch.Tensor, config: RunConfig, arrays: dict
) -> None:
    """The picture of inpainted / colorized `samples` (num of each input, input by input) and the raw samples
    beside it (.npz: samples, inputs, uint8 images and `arrays`, e.g. the mask), written as one set. Images: one
    row per input, what the model was given (`shown`: the masked input, the grey image) | its completions |
    the input itself; vectors: a scatter plot of the completions, one colour per input, over the data."""
    import numpy as np

    from fokker.data import load_dataset, to_uint8_images
    from fokker.viz import image_grid, save_picture

    num = len(samples) // len(inputs)
    npz = out.with_suffix(".npz").name
    arrays = {"samples": samples.numpy(), "inputs": inputs.numpy(), **arrays}
    with FileSet(out.parent, marker=npz) as files:
        if samples.dim() == 4:
            arrays["images"] = to_uint8_images(samples)
            grouped = samples.reshape(len(inputs), num, *samples.shape[1:])
            rows = torch.cat([shown[:, None], grouped, inputs[:, None]], 1).flatten(0, 1)
            image_grid(rows, nrow=num + 2).save(files.path(out.name), format="PNG")
        else:
            reference = load_dataset(config.data.name, num_points=5000, seed=config.train.seed).data
            labels = torch.arange(len(inputs)).repeat_interleave(num)
            save_picture(samples, files.path(out.name), reference=reference, labels=labels, title="completions")
        np.savez_compressed(files.path(npz), **arrays)


def write_interpolation(out: Path, path: torch.Tensor, a: torch.Tensor, b: torch.Tensor, title: str) -> None:
    """The picture of an interpolation `path` from `a` to `b`: for images one row framed by the two inputs
    (written atomically: fokker.files.atomic_write), for vectors a scatter plot with the inputs as reference."""
    from fokker.viz import image_grid, save_picture

    path = path.float().cpu()
    out.parent.mkdir(parents=True, exist_ok=True)
    if path.dim() == 4:
        picture = torch.cat([a[None].cpu(), path, b[None].cpu()])  # the inputs at both ends, framing the path
        atomic_write(out, lambda tmp: image_grid(picture, nrow=len(picture)).save(tmp, format="PNG"))
    else:
        save_picture(path, out, reference=torch.stack([a, b]).cpu(), title=title)


def write_likelihood(out: Path, report: LikelihoodReport) -> Path:
    """OUT/likelihood.json, and OUT/terms.png (each term of the bound against t) when the report has them;
    returns the path of likelihood.json."""
    import json

    from fokker.viz import bound_terms

    out.mkdir(parents=True, exist_ok=True)
    (out / "likelihood.json").write_text(json.dumps(report.record(), indent=1))
    if report.times is not None:
        mean, _ = report.result.mean_bpd()
        bound_terms(report.bits(report.result.info["terms"]), report.times, out / "terms.png", f"{mean:.3f} bits/dim")
    return out / "likelihood.json"
