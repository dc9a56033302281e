"""The network registry, type name -> class, and each network's `config`: the arguments its constructor was
called with, defaults filled in, under its type name (diffusers' `register_to_config`), so that
`build_network(net.config)` rebuilds the architecture and no class keeps a dict that repeats its signature."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TypeVar

from torch import nn

NETWORKS: dict[str, type[nn.Module]] = {}
Net = TypeVar("Net", bound=type[nn.Module])


def register_network(kind: str) -> Callable[[Net], Net]:
    """Class decorator: registers the class as `kind` and sets `config` after each construction (tuples as
    lists, so the config is JSON-able). A subclass's own registration wins: its config is set last."""

    def wrap(cls: Net) -> Net:
        init = cls.__init__
        signature = inspect.signature(init)

        @functools.wraps(init)
        def __init__(self, *args, **kwargs) -> None:
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            init(self, *args, **kwargs)
            arguments = list(bound.arguments.items())[1:]  # without self
            self.config = {"type": kind, **{k: list(v) if isinstance(v, tuple) else v for k, v in arguments}}

        cls.__init__ = __init__
        NETWORKS[kind] = cls
        return cls

    return wrap
