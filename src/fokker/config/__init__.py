"""Run configuration: raw nested dicts from the YAML presets and `section.key=value` overrides
(fokker.config.presets), parsed once into a RunConfig of typed sections that check themselves
(fokker.config.run, fokker.config.sections)."""

from fokker.config.presets import apply_overrides, defaults, load_preset, merge, preset_names, set_values
from fokker.config.run import ORDER, RunConfig, as_run_config, read_run_config, sample_options, to_yaml, validate
from fokker.config.sections import (
    SECTIONS,
    DataSection,
    LatentSection,
    ModelSection,
    SampleSection,
    Section,
    TrainSection,
    require,
)

DEFAULTS = defaults()  # the default config as nested dicts

__all__ = [
    "DEFAULTS",
    "ORDER",
    "SECTIONS",
    "DataSection",
    "LatentSection",
    "ModelSection",
    "RunConfig",
    "SampleSection",
    "Section",
    "TrainSection",
    "apply_overrides",
    "as_run_config",
    "defaults",
    "load_preset",
    "merge",
    "preset_names",
    "read_run_config",
    "require",
    "sample_options",
    "set_values",
    "to_yaml",
    "validate",
]
