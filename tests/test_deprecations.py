"""The names that moved in 0.2 keep working, with a DeprecationWarning that says where they went."""

import importlib
import sys

import pytest

from fokker.config import RunConfig, apply_overrides, load_preset


def test_indexing_a_typed_config_warns_and_gives_the_field():
    config = RunConfig.from_dict(apply_overrides(load_preset("toy"), ["train.lr=3e-4"]))
    with pytest.warns(DeprecationWarning, match=r"use config\.train"):
        section = config["train"]
    with pytest.warns(DeprecationWarning, match=r"use config\.train\.lr"):
        assert section["lr"] == 3e-4 == config.train.lr
    with pytest.warns(DeprecationWarning, match=r"use config\.model\.conditional"):
        assert config.model.get("conditional") is False


def test_the_old_noise_module_warns_and_is_the_new_one():
    sys.modules.pop("fokker.samplers.noise", None)
    with pytest.warns(DeprecationWarning, match="fokker.noise"):
        old = importlib.import_module("fokker.samplers.noise")
    import fokker.noise

    assert old.randn is fokker.noise.randn and old.seeded_batches is fokker.noise.seeded_batches


def test_the_old_grid_module_warns_and_is_the_new_one():
    sys.modules.pop("fokker.samplers.grid", None)
    with pytest.warns(DeprecationWarning, match="fokker.grids"):
        old = importlib.import_module("fokker.samplers.grid")
    import fokker.grids

    assert old.time_grid is fokker.grids.time_grid and old.SPACINGS is fokker.grids.SPACINGS
