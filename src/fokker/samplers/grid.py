"""Deprecated: the time grids are core now, `fokker.grids`; these names stay importable from here."""

import warnings

from fokker.grids import (
    KARRAS_RHO,
    SPACINGS,
    first_evaluation_time,
    karras_ratios,
    noise_ratio,
    time_grid,
    times_at_log_snr,
)

warnings.warn("fokker.samplers.grid is deprecated; import from fokker.grids", DeprecationWarning, stacklevel=2)

__all__ = [
    "KARRAS_RHO",
    "SPACINGS",
    "first_evaluation_time",
    "karras_ratios",
    "noise_ratio",
    "time_grid",
    "times_at_log_snr",
]
