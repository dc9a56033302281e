"""Checkpoints and exported weights: exact round trips, clear errors for mismatched files, and saves that
a kill cannot half-do (the previous checkpoint and `latest` survive), with keep-last-N pruning."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import fokker.checkpoint as ckpt
from fokker.checkpoint import flatten_state, load_checkpoint, save_checkpoint, unflatten_state
from fokker.config import apply_overrides, load_preset
from fokker.errors import UserError
from fokker.model import load_model
from fokker.nets import MLP
from fokker.train import train
from fokker.weights import export_weights, read_weights

TINY = [
    "model.network.hidden=32",
    "model.network.depth=2",
    "data.num_points=2000",
    "train.batch_size=64",
    "train.log_every=5",
    "train.sample_every=100000",
    "sample.num=32",
    "sample.steps=5",
]


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def tiny_config(*overrides: str) -> dict:
    return apply_overrides(load_preset("toy"), [*TINY, *overrides])


def fokker_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "fokker", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def checkpoints(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").iterdir())


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under `folder` with its modification time and contents."""
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.rglob("*") if p.is_file()
    }


@pytest.fixture(scope="module")
def run10(tmp_path_factory) -> Path:
    """A tiny toy run trained for 10 steps, checkpoints every 5."""
    run = tmp_path_factory.mktemp("ckpt") / "run"
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    train(tiny_config("train.checkpoint_every=5"), run, device="cpu", budget={"steps": 10}, progress=False)
    torch.set_num_threads(n)
    return run


# --------------------------------------------------------------------------- round trips


def test_load_model_returns_exactly_the_exported_ema_weights(run10):
    denoiser, config = load_model(run10)
    state = load_checkpoint(run10)
    assert state["step"] == 10
    loaded = denoiser.fn.state_dict()
    assert loaded.keys() == state["ema"].keys()
    for k, v in loaded.items():
        assert v.dtype == state["ema"][k].dtype
        assert torch.equal(v, state["ema"][k]), k
    # the EMA really is a different set of weights from the raw model after 10 steps
    assert any(not torch.equal(state["ema"][k], state["model"][k]) for k in loaded)
    # the exported config is the run's resolved config
    assert config.model.network["hidden"] == 32
    assert config.data.shape == [2]
    assert not denoiser.fn.training
    # a path to the .safetensors file itself gives the same thing
    again, _ = load_model(run10 / "model.safetensors")
    assert all(torch.equal(v, again.fn.state_dict()[k]) for k, v in loaded.items())


def _adamw_state() -> tuple[torch.nn.Module, torch.optim.AdamW]:
    torch.manual_seed(0)
    net = MLP(2, hidden=16, depth=2)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.01)
    for _ in range(3):
        x = torch.randn(32, 2)
        loss = (net(x, torch.rand(32)) - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net, opt


def _assert_same_optimizer_state(a: dict, b: dict) -> None:
    assert list(a["state"]) == list(b["state"])
    assert all(type(k) is int for k in b["state"])  # int keys come back as ints, not "0"
    for k, sa in a["state"].items():
        sb = b["state"][k]
        assert sa.keys() == sb.keys()
        for name, v in sa.items():
            assert torch.equal(v, sb[name]), (k, name)
            assert v.dtype == sb[name].dtype
    assert len(a["param_groups"]) == len(b["param_groups"])
    for ga, gb in zip(a["param_groups"], b["param_groups"], strict=True):
        assert ga.keys() == gb.keys()
        for key, v in ga.items():
            w = gb[key]
            assert (list(v) if isinstance(v, tuple) else v) == (list(w) if isinstance(w, tuple) else w), key


def test_flatten_unflatten_round_trips_an_adamw_state():
    net, opt = _adamw_state()
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    skeleton = flatten_state(sd, tensors)
    skeleton = json.loads(json.dumps(skeleton))  # what state.json holds
    assert tensors and all(isinstance(t, torch.Tensor) for t in tensors.values())
    back = unflatten_state(skeleton, tensors)
    _assert_same_optimizer_state(sd, back)

    # the restored state drives AdamW exactly as the original: one more step gives equal weights
    net2, _ = _adamw_state()
    opt2 = torch.optim.AdamW(net2.parameters(), lr=1.0)
    opt2.load_state_dict(back)
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(1))
    t = torch.rand(32, generator=torch.Generator().manual_seed(2))
    for n, o in ((net, opt), (net2, opt2)):
        o.zero_grad()
        (n(x, t) - x).pow(2).mean().backward()
        o.step()
    for (k, p), p2 in zip(net.state_dict().items(), net2.state_dict().values(), strict=True):
        assert torch.equal(p, p2), k


def test_save_and_load_checkpoint_round_trip_through_disk(tmp_path):
    net, opt = _adamw_state()
    parts = {
        "model": net.state_dict(),
        "optimizer": opt.state_dict(),
        "rng": {"torch": torch.get_rng_state()[None]},
        "trainer": {"elapsed": 1.25, "ema_updates": 3, "nested": [1, {"a": None}]},
    }
    save_checkpoint(tmp_path, 3, parts, keep_last=2)
    assert (tmp_path / "latest").read_text().strip() == "step_00000003"
    back = load_checkpoint(tmp_path)
    assert back["step"] == 3
    _assert_same_optimizer_state(parts["optimizer"], back["optimizer"])
    assert all(torch.equal(v, back["model"][k]) for k, v in parts["model"].items())
    assert torch.equal(back["rng"]["torch"], parts["rng"]["torch"])
    assert back["trainer"] == parts["trainer"]
    # no pickle anywhere: tensors in safetensors, the rest in JSON
    files = {p.name for p in (tmp_path / "checkpoints" / "step_00000003").iterdir()}
    assert files == {
        "model.safetensors",
        "optimizer.safetensors",
        "rng.safetensors",
        "trainer.safetensors",
        "state.json",
    }


# --------------------------------------------------------------------------- mismatched files


def test_weights_whose_config_describes_another_network_raise_a_user_error(run10, tmp_path):
    state, config = read_weights(run10 / "model.safetensors")
    config["model"]["network"]["hidden"] = 64
    bad = tmp_path / "bad.safetensors"
    export_weights(bad, state, config)
    with pytest.raises(
        UserError, match=r"does not match the config: shape of \S+: checkpoint \(64, 64\) vs config \(128, 64\)"
    ):
        load_model(bad)


def test_weights_with_a_missing_key_raise_a_user_error(run10, tmp_path):
    state, config = read_weights(run10 / "model.safetensors")
    dropped = sorted(state)[0]
    del state[dropped]
    bad = tmp_path / "missing.safetensors"
    export_weights(bad, state, config)
    with pytest.raises(UserError, match=rf"does not match the config: missing \['{dropped}'\]"):
        load_model(bad)


def test_weights_not_written_by_fokker_or_corrupt_raise_a_user_error(run10, tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file(load_file(run10 / "model.safetensors"), plain)  # same tensors, no config in the metadata
    with pytest.raises(UserError, match="no fokker config in its metadata"):
        load_model(plain)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01 not a safetensors file")
    with pytest.raises(UserError, match="cannot read weights"):
        load_model(garbage)
    with pytest.raises(UserError, match="no weights at"):
        load_model(tmp_path / "nothing_here")


def test_sampling_from_a_mismatched_checkpoint_exits_2_and_writes_nothing(run10, tmp_path):
    state, config = read_weights(run10 / "model.safetensors")
    config["model"]["network"]["depth"] = 3
    bad = tmp_path / "bad.safetensors"
    export_weights(bad, state, config)
    (tmp_path / "grid.png").write_bytes(b"an earlier picture")
    before = snapshot(tmp_path)
    r = fokker_cli("sample", "--checkpoint", str(bad), "--num", "4", "--out", "grid.png", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fokker sample: error: checkpoint "), r.stderr
    assert "does not match the config" in lines[0] and "missing" in lines[0]
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "grid.npz").exists()


def test_resuming_a_run_whose_checkpoint_does_not_match_its_config_raises(tmp_path):
    run = tmp_path / "run"
    train(tiny_config(), run, device="cpu", budget={"steps": 3}, progress=False)
    text = (run / "config.yaml").read_text()
    assert "hidden: 32" in text
    (run / "config.yaml").write_text(text.replace("hidden: 32", "hidden: 48"))
    before = snapshot(run)
    with pytest.raises(UserError, match="does not match the config"):
        train({}, run, resume=True, device="cpu", budget={"steps": 6}, progress=False)
    assert snapshot(run) == before


# --------------------------------------------------------------------------- atomic saves, pruning


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing on the way up can swallow it."""


def test_kill_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    run = tmp_path / "run"
    real_save_file = ckpt.save_file

    def dying_save_file(tensors, filename, metadata=None):
        # the second checkpoint dies in the middle of its optimizer file, after model and ema were written
        real_save_file(tensors, filename, metadata=metadata)
        if Path(filename).parent.name == ".tmp_step_00000010" and Path(filename).name == "optimizer.safetensors":
            with open(filename, "r+b") as f:
                f.truncate(os.path.getsize(filename) // 2)
            raise Killed

    monkeypatch.setattr(ckpt, "save_file", dying_save_file)
    config = tiny_config("train.checkpoint_every=5", "train.keep_last=2")
    with pytest.raises(Killed):
        train(config, run, device="cpu", budget={"steps": 20}, progress=False)
    monkeypatch.undo()

    assert (run / "latest").read_text() == "step_00000005\n"
    assert checkpoints(run) == [".tmp_step_00000010", "step_00000005"]  # the half-written one is not a step_
    state = load_checkpoint(run)
    assert state["step"] == 5 and state["trainer"]["ema_updates"] == 5
    # model.safetensors is still the (complete) export of step 5
    denoiser, _ = load_model(run)
    assert all(torch.equal(v, state["ema"][k]) for k, v in denoiser.fn.state_dict().items())

    # resuming continues from step 5, and pruning keeps the last two
    result = train({}, run, resume=True, device="cpu", budget={"steps": 20}, progress=False)
    assert result.step == 20
    assert (run / "latest").read_text() == "step_00000020\n"
    assert checkpoints(run) == ["step_00000015", "step_00000020"]
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [5, 10, 15, 20]


def test_kill_between_renaming_a_checkpoint_and_updating_latest(tmp_path, monkeypatch):
    """The new folder is complete but `latest` still names the previous one: resuming goes on from the
    previous one, and a later save never prunes the checkpoint `latest` points to (keep_last = 1)."""
    run = tmp_path / "run"
    real_write = ckpt.atomic_write_text

    def dying_write(path, text):
        if path.name == "latest" and text.strip() == "step_00000010":
            raise Killed
        real_write(path, text)

    monkeypatch.setattr(ckpt, "atomic_write_text", dying_write)
    config = tiny_config("train.checkpoint_every=5", "train.keep_last=1")
    with pytest.raises(Killed):
        train(config, run, device="cpu", budget={"steps": 20}, progress=False)
    monkeypatch.undo()
    assert (run / "latest").read_text() == "step_00000005\n"
    assert load_checkpoint(run)["step"] == 5

    # resume to a step short of the orphaned step 10: the final save at step 8 must survive the pruning
    assert train({}, run, resume=True, device="cpu", budget={"steps": 8}, progress=False).step == 8
    assert (run / "latest").read_text() == "step_00000008\n"
    assert load_checkpoint(run)["step"] == 8
    assert "step_00000008" in checkpoints(run) and "step_00000005" not in checkpoints(run)
    assert train({}, run, resume=True, device="cpu", budget={"steps": 15}, progress=False).step == 15
    assert checkpoints(run) == ["step_00000015"]
    assert load_checkpoint(run)["step"] == 15


def test_resuming_after_a_kill_in_the_final_save_saves_and_exports_the_final_step(tmp_path, monkeypatch):
    """Killed after renaming the final checkpoint (step 12, not a multiple of checkpoint_every) but before
    `latest`: resuming with the same budget must save and export step 12, not trust the stray folder."""
    run = tmp_path / "run"
    real_write = ckpt.atomic_write_text

    def dying_write(path, text):
        if path.name == "latest" and text.strip() == "step_00000012":
            raise Killed
        real_write(path, text)

    monkeypatch.setattr(ckpt, "atomic_write_text", dying_write)
    with pytest.raises(Killed):
        train(tiny_config("train.checkpoint_every=5"), run, device="cpu", budget={"steps": 12}, progress=False)
    monkeypatch.undo()
    assert (run / "latest").read_text() == "step_00000010\n" and (run / "checkpoints" / "step_00000012").is_dir()

    assert train({}, run, resume=True, device="cpu", budget={"steps": 12}, progress=False).step == 12
    assert (run / "latest").read_text() == "step_00000012\n"
    state = load_checkpoint(run)
    assert state["step"] == 12 and state["trainer"]["ema_updates"] == 12
    denoiser, _ = load_model(run)
    assert all(torch.equal(v, state["ema"][k]) for k, v in denoiser.fn.state_dict().items())


def test_keep_last_prunes_old_checkpoints(tmp_path):
    run = tmp_path / "run"
    config = tiny_config("train.checkpoint_every=3", "train.keep_last=2")
    train(config, run, device="cpu", budget={"steps": 13}, progress=False)
    # saves at 3, 6, 9, 12 and the final step 13
    assert checkpoints(run) == ["step_00000012", "step_00000013"]
    assert (run / "latest").read_text() == "step_00000013\n"
    assert not list(run.rglob(".*.tmp")) and not list(run.rglob(".tmp_*"))
    for name in checkpoints(run):
        files = {p.name for p in (run / "checkpoints" / name).iterdir()}
        assert {"model.safetensors", "ema.safetensors", "optimizer.safetensors", "state.json"} <= files
