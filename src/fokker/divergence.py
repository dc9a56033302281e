"""The divergence tr(df/dx) of a vector field per example, exactly or by Hutchinson's estimator.

One place for the Jacobian trace that implicit / sliced score matching (Hyvarinen 2005, Thm. 1; Song et
al. 2019, eq. 8) and the probability-flow ODE likelihood (Song et al. 2021, eq. 39; Grathwohl et al. 2019)
need: exact by one backward pass per dimension, or probe' (df/dx) probe for a random probe with
E[probe probe'] = I (Hutchinson 1989), unbiased for the trace."""

from __future__ import annotations

import torch

from fokker.errors import UserError
from fokker.noise import Generators, randn

PROBES = ("rademacher", "gaussian")
MAX_EXACT_DIM = 256  # the exact divergence costs one backward pass per dimension


def check_probe(kind: str, what: str = "probe") -> None:
    """A UserError unless `kind` is one of PROBES; `what` names the option in the message."""
    if kind not in PROBES:
        raise UserError(f"unknown {what} {kind!r}; expected one of {PROBES}")


def draw_probe(like: torch.Tensor, kind: str | None, generator: Generators) -> torch.Tensor:
    """A Hutchinson probe shaped like `like`: Rademacher (signs of a normal draw; the default for None)
    or Gaussian, one normal draw either way."""
    z = randn(like.shape, generator, device=like.device, dtype=like.dtype)
    return z.sign() if kind in (None, "rademacher") else z


def divergence(
    f: torch.Tensor, x: torch.Tensor, probe: torch.Tensor | None = None, *, create_graph: bool = False
) -> torch.Tensor:
    """tr(df/dx) per example: exact (one backward pass per dimension) when probe is None, else Hutchinson's
    probe' (df/dx) probe (Hutchinson 1989). `create_graph` keeps it differentiable (a training loss); the
    graph of f is kept either way. A part of f that does not depend on x contributes 0."""
    zero = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)

    def grad(output: torch.Tensor) -> torch.Tensor | None:
        return torch.autograd.grad(output, x, retain_graph=True, create_graph=create_graph, allow_unused=True)[0]

    if probe is not None:
        g = grad((f * probe).sum())
        return zero if g is None else (g * probe).flatten(1).sum(1)
    flat, total = f.flatten(1), zero
    for i in range(flat.shape[1]):
        row = grad(flat[:, i].sum())
        if row is not None:
            total = total + row.flatten(1)[:, i]
    return total
