"""Class labels for class-conditional models: the config switch `model.conditional`, label dropout in
training, and the classes a user asks a sampler for; and the labels a noise-conditional classifier is
trained to predict (fokker.classifier), which are never dropped.

A conditional network embeds labels 0..K-1 and a learned null class at index K (fokker.nets.embedding);
training replaces each label by the null class with probability `train.p_uncond`, so that one network
learns both p(x | y) and p(x) (Ho & Salimans 2022, Algorithm 1), and sampling without a class uses it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from fokker.errors import UserError

if TYPE_CHECKING:
    from fokker.config import RunConfig

P_UNCOND = 0.1  # the label dropout of a conditional model unless set (Ho & Salimans 2022 use 0.1 or 0.2)


def is_conditional(config: RunConfig) -> bool:
    """Whether the config's model is class-conditional (a config written before the switch is not)."""
    return config.model.conditional


def uses_labels(config: RunConfig) -> bool:
    """Whether training reads the data's labels: a conditional model's inputs, or a classifier's targets."""
    return is_conditional(config) or config.model.task == "classifier"


def check_conditional(config: RunConfig) -> None:
    """The label options that need no data (ModelSection checks model.conditional): train.p_uncond in
    [0, 1) and only on a conditional model; model.network.num_classes never set by hand on an unconditional one."""
    conditional = config.model.conditional
    p = config.train.p_uncond
    if p is not None and not conditional:
        raise UserError(
            f"train.p_uncond={p!r} (label dropout) has no effect on an unconditional model; "
            "set model.conditional=true or leave train.p_uncond unset"
        )
    if p is not None and (isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p < 1):
        raise UserError(f"bad value for train.p_uncond: {p!r}; expected a number in [0, 1)")
    given = config.model.network.get("num_classes")
    if given is not None and not conditional:
        raise UserError(
            f"model.network.num_classes={given!r} on an unconditional model would train only the null class; "
            "set model.conditional=true (the classes then come from the data) and leave num_classes unset"
        )


def resolve_classes(config: RunConfig, num_classes: int | None, data_name: str) -> None:
    """On a conditional model or a classifier (`uses_labels`), set model.network.num_classes from the data's
    classes, and a conditional model's train.p_uncond to its default, in place; a data set without labels
    is a UserError."""
    if not uses_labels(config):
        return
    who = "model.conditional=true" if is_conditional(config) else f"a classifier ({config.model.network['type']})"
    if num_classes is None:
        raise UserError(
            f"{who} needs class labels, but the data set {data_name!r} has none "
            "(labelled: moons, 8gaussians, digits, mnist, colour_mnist, or a folder with one subfolder per class)"
        )
    net = config.model.network
    if net.get("num_classes") not in (None, num_classes):
        raise UserError(
            f"model.network.num_classes={net['num_classes']!r} but {data_name!r} has {num_classes} classes; "
            f"leave num_classes unset ({who} takes it from the data)"
        )
    net["num_classes"] = num_classes
    if is_conditional(config) and config.train.p_uncond is None:
        config.train.p_uncond = P_UNCOND


def label_dropout(labels: torch.Tensor, p_uncond: float, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """`labels` with each one replaced by the null class `num_classes` with probability `p_uncond`, independently,
    the coin drawn from `generator` (Ho & Salimans 2022, Algorithm 1); nothing is drawn when p_uncond is 0."""
    if p_uncond == 0:
        return labels
    drop = torch.rand(labels.shape, generator=generator, device=generator.device) < p_uncond
    return torch.where(drop.to(labels.device), torch.full_like(labels, num_classes), labels)


def batch_kwargs(
    config: RunConfig, labels: torch.Tensor | None, idx: torch.Tensor, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """The model_kwargs of the training batch `idx`: {"y": its labels after dropout} on a conditional model
    (`labels` all the data's labels), {"y": its labels} as they are for a classifier (its targets), {} on
    an unconditional model; only the dropout draws from `generator`."""
    if labels is None:
        return {}
    if config.model.task == "classifier":
        return {"y": labels[idx]}
    y = label_dropout(labels[idx], config.train.p_uncond, config.model.network["num_classes"], generator)
    return {"y": y}


def picture_labels(config: RunConfig, num: int, device: torch.device | str = "cpu") -> torch.Tensor | None:
    """The classes of the pictures drawn during training: i % K for picture i on a conditional model with K
    classes (fokker.viz.save_picture draws them one row or one colour per class), None on an unconditional one."""
    if not is_conditional(config):
        return None
    return torch.arange(num, device=device) % config.model.network["num_classes"]


def parse_classes(spec: Sequence[str] | None, config: RunConfig, guide_classes: int | None = None) -> list[int] | None:
    """The classes `fokker sample --class` asks for: one class K, a list, or "all" (0..K-1); None without
    --class. A class on an unconditional model, one out of 0..K-1, a repeated one, or sampling without a
    class from a model whose null class was never trained (p_uncond 0) is a UserError. `guide_classes`: the
    number of classes of a classifier that guides the model (then the model may be unconditional)."""
    conditional = is_conditional(config) or guide_classes is not None
    if not spec:
        if is_conditional(config) and config.train.p_uncond == 0:
            raise UserError(
                "this model was trained with train.p_uncond=0, so it cannot sample without a class; give --class"
            )
        return None
    if not conditional:
        raise UserError(
            f"--class {' '.join(spec)}: this model is unconditional; "
            "--class needs one trained with model.conditional=true"
        )
    k = guide_classes if guide_classes is not None else config.model.network["num_classes"]
    if list(spec) == ["all"]:
        return list(range(k))
    classes = []
    for item in spec:
        if not re.fullmatch(r"-?[0-9]+", item):
            raise UserError(f"bad --class {item!r}; expected class numbers in 0..{k - 1}, or all alone")
        if not 0 <= int(item) < k:
            raise UserError(f"--class {item} is out of range; this model has {k} classes: 0..{k - 1}")
        if int(item) in classes:
            raise UserError(f"--class lists {item} twice")
        classes.append(int(item))
    return classes


def class_grid(classes: Sequence[int], num: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels, noise ids) of `num` samples of each class, class by class: row r of a grid `num` wide is
    classes[r], and sample j of every class gets noise id j, so the rows differ in their class only."""
    labels = torch.tensor(list(classes), dtype=torch.long).repeat_interleave(num)
    return labels, torch.arange(num).repeat(len(classes))
