"""Nothing lost, whatever the user or the machine does: a diverging run, two trainers on one folder, a
kill or Ctrl-C at any moment, damaged run files, harmful values and OS errors. Each test reproduces one
failure of a hostile run of the CLI; tiny configs, seconds each."""

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, safe_open, save_file
from test_cli import TINY, fokker

import fokker.cli as cli
import fokker.eval_report as eval_report
import fokker.train.build as build
import fokker.train.pictures as pictures
import fokker.train.state as train_state
from fokker.checkpoint import load_checkpoint
from fokker.config import apply_overrides, load_preset
from fokker.ema import EMA
from fokker.errors import UserError
from fokker.evaluate import evaluate
from fokker.train import train
from fokker.weights import export_weights, read_weights

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

QUIET = ["train.sample_every=100000", "train.log_every=5", "sample.num=16", "sample.steps=4"]
NEVER = "train.checkpoint_every=1000000"  # no checkpoint within a test's lifetime


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing on the way up can swallow it."""


def tiny(*overrides: str) -> dict:
    return apply_overrides(load_preset("toy"), [*TINY, *QUIET, *overrides])


def strict_records(run: Path) -> list[dict]:
    """metrics.jsonl parsed as strict JSON: NaN / Infinity are not JSON."""

    def refuse(name):
        raise AssertionError(f"{name} in metrics.jsonl")

    return [json.loads(line, parse_constant=refuse) for line in (run / "metrics.jsonl").read_text().splitlines()]


def finite(tensors: dict) -> bool:
    return all(torch.isfinite(v).all() for v in tensors.values())


def one_error_line(r: subprocess.CompletedProcess, command: str) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"fokker {command}: error: "), r.stderr
    return lines[0]


def interactive_sigint() -> None:
    """Ctrl-C as at a terminal: a shell without job control starts background commands (`make test &`,
    nohup) with SIGINT ignored, which the child would inherit, and Python then raises no KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(*args: str, cwd: Path) -> subprocess.Popen:
    """`fokker ARGS` in the background, taking Ctrl-C as at a terminal."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "fokker", *args, "--no-progress"]
    return subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=interactive_sigint,
    )  # fmt: skip


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        if proc.poll() is not None:
            said = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"exited with {proc.returncode} before {path} appeared: {said}")
        if time.time() > deadline:
            proc.kill()
            raise AssertionError(f"{path} did not appear in {timeout} s")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def run10(tmp_path_factory) -> Path:
    """A tiny toy run of 10 steps, checkpoints at 5 and 10, logs every 5 (made once; copy it to change it)."""
    run = tmp_path_factory.mktemp("robust") / "run"
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    config = tiny("train.checkpoint_every=5", "train.keep_last=2")
    train(config, run, device="cpu", budget={"steps": 10}, progress=False)
    torch.set_num_threads(n)
    return run


def copy_run(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


# --------------------------------------------------------------------------- C.1 non-finite training


def test_a_diverging_run_stops_with_one_line_and_writes_no_non_finite_file(tmp_path):
    """The issue's reproduction: lr = 1e3. The gradient norm overflows at the third step; before, the run
    exited 0 with NaN checkpoints and NaN / Infinity in metrics.jsonl."""
    r = fokker(
        "train", "--preset", "toy", "--steps", "300", "--out", "run", "--no-progress", *TINY, "train.lr=1e3",
        "train.checkpoint_every=50", "train.log_every=1", "train.sample_every=1000", cwd=tmp_path,
    )  # fmt: skip
    line = one_error_line(r, "train")
    assert re.search(r"training diverged at step \d+: .*gradient norm (inf|nan)", line), line
    assert "train.lr" in line  # says what to change
    run = tmp_path / "run"
    assert not (run / "model.safetensors").exists() and not (run / "latest").exists()
    records = strict_records(run)  # only finite values were logged
    assert records and all(np.isfinite(rec["grad_norm"]) for rec in records)


def _poison_the_loss(monkeypatch, at_call: int, interrupt: bool = False) -> None:
    """The training loss is NaN on its `at_call`-th evaluation (1-based), or Ctrl-C is pressed there."""
    real = build.loss_from_section

    class Poisoned:
        def __init__(self, fn) -> None:
            self.fn, self.calls = fn, []

        def at_step(self, step: int) -> "Poisoned":
            return self

        def __call__(self, *a, **k):
            self.calls.append(None)
            if interrupt and len(self.calls) == at_call:
                raise KeyboardInterrupt
            value = self.fn(*a, **k)
            return value * float("nan") if len(self.calls) == at_call else value

    monkeypatch.setattr(build, "loss_from_section", lambda *args, **kwargs: Poisoned(real(*args, **kwargs)))


def test_a_nan_loss_stops_training_and_keeps_the_last_finite_checkpoint(tmp_path, monkeypatch):
    _poison_the_loss(monkeypatch, at_call=13)
    run = tmp_path / "run"
    config = tiny("train.checkpoint_every=5", "train.keep_last=1")
    with pytest.raises(UserError, match=r"training diverged at step 13: the loss is nan"):
        train(config, run, device="cpu", budget={"steps": 20}, progress=False)
    assert (run / "latest").read_text() == "step_00000010\n"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000010"]
    state = load_checkpoint(run)
    assert finite(state["model"]) and finite(state["ema"])
    exported, _ = read_weights(run / "model.safetensors")
    assert all(torch.equal(v, state["ema"][k]) for k, v in exported.items())
    assert [rec["step"] for rec in strict_records(run)] == [5, 10]
    # the run resumes from its last finite checkpoint
    monkeypatch.undo()
    assert train({}, run, resume=True, device="cpu", budget={"steps": 15}, progress=False).step == 15


def test_non_finite_weights_are_never_saved(tmp_path, monkeypatch):
    """Finite loss and gradients, but the EMA weights turn NaN at update 7: the save at step 10 refuses,
    and the step-5 checkpoint (keep_last = 1) and its export stay."""
    real_update = EMA.update

    def update(self, model):
        real_update(self, model)
        if self.updates == 7:
            next(iter(self.model.parameters())).data.fill_(float("nan"))

    monkeypatch.setattr(EMA, "update", update)
    run = tmp_path / "run"
    with pytest.raises(UserError, match=r"non-finite weights at step 10"):
        train(tiny("train.checkpoint_every=5", "train.keep_last=1"), run, device="cpu", budget={"steps": 20},
              progress=False)  # fmt: skip
    assert (run / "latest").read_text() == "step_00000005\n"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000005"]
    exported, _ = read_weights(run / "model.safetensors")
    assert finite(exported) and all(torch.equal(v, load_checkpoint(run)["ema"][k]) for k, v in exported.items())


@pytest.fixture(scope="module")
def nan_run(run10, tmp_path_factory) -> Path:
    """A folder holding `run`: run10 whose exported weights were replaced by NaN ones."""
    root = tmp_path_factory.mktemp("nan")
    run = copy_run(run10, root / "run")
    weights, config = read_weights(run / "model.safetensors")
    export_weights(run / "model.safetensors", {k: v * float("nan") for k, v in weights.items()}, config)
    return root


@pytest.mark.parametrize(
    "args",
    [
        ["sample", "--checkpoint", "run", "--steps", "3", "--num", "8", "--out", "nan.png"],
        ["sample", "--checkpoint", "run/model.safetensors", "--steps", "3", "--num", "8", "--out", "nan.png"],
        ["eval", "--checkpoint", "run", "--steps", "3", "--num", "50", "--out", "nan_eval"],
        ["likelihood", "--checkpoint", "run", "--num", "8", "--steps", "5", "--out", "nan_nll"],
    ],
    ids=["sample", "sample-file", "eval", "likelihood"],
)
def test_a_model_with_non_finite_weights_is_refused_with_one_line(nan_run, args):
    r = fokker(*args, "--no-progress", cwd=nan_run)
    line = one_error_line(r, args[0])
    assert "non-finite" in line and "model.safetensors" in line, line
    assert sorted(p.name for p in nan_run.iterdir()) == ["run"]  # nothing written


# --------------------------------------------------------------------------- C.2 one writer per run folder


def test_a_second_trainer_is_refused_and_a_dead_ones_lock_does_not_block(tmp_path):
    first = start("train", "--preset", "toy", "--steps", "1000000", "--out", "run", *TINY, *QUIET, NEVER, cwd=tmp_path)
    try:
        wait_for(tmp_path / "run" / "config.yaml", first)
        for args in (["--steps", "5", *TINY], ["--resume", "--steps", "5"]):
            r = fokker("train", "--out", "run", *args, "--no-progress", cwd=tmp_path)
            line = one_error_line(r, "train")
            assert f"run is in use by another fokker train (pid {first.pid})" in line, line
        assert first.poll() is None  # the first one trains on, undisturbed
    finally:
        first.kill()
        first.communicate()
    # its lock died with it: the run (no checkpoint yet) resumes from step 0
    r = fokker("train", "--out", "run", "--resume", "--steps", "10", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "training on 1 process (cpu)" in r.stdout and "trained 10 steps" in r.stdout
    assert (tmp_path / "run" / "latest").read_text() == "step_00000010\n"


def test_a_lock_held_in_this_process_is_released_when_train_returns_or_raises(tmp_path, monkeypatch):
    run = tmp_path / "run"
    _poison_the_loss(monkeypatch, at_call=3)
    with pytest.raises(UserError, match="diverged"):
        train(tiny(), run, device="cpu", budget={"steps": 5}, progress=False)
    monkeypatch.undo()
    assert train({}, run, resume=True, device="cpu", budget={"steps": 5}, progress=False).step == 5
    assert train({}, run, resume=True, device="cpu", budget={"steps": 6}, progress=False).step == 6


def _children(pid: int) -> list[int]:
    """Process ids whose parent is `pid` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the workers through Linux /proc")
def test_workers_stop_when_their_launcher_is_killed(tmp_path):
    """kill -9 of torchrun (as of `accelerate launch`, which runs torchrun in its own process): before, its
    two workers trained on, writing into the run, with no one to stop them."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "fokker"]
    cmd += ["train", "--preset", "toy", "--steps", "1000000", "--out", "run", "--device", "cpu", "--no-progress"]
    with open(tmp_path / "output.txt", "w") as output:  # not a pipe: orphaned workers would hold it open
        launcher = subprocess.Popen([*cmd, *TINY, *QUIET, NEVER], cwd=tmp_path, env=env, stdout=output,
                                    stderr=subprocess.STDOUT)  # fmt: skip
    workers: list[int] = []
    try:
        wait_for(tmp_path / "run" / "metrics.jsonl", launcher, timeout=120)
        workers = _children(launcher.pid)
        assert len(workers) == 2
        launcher.kill()
        launcher.wait()
        deadline = time.time() + 60
        while time.time() < deadline and any(Path(f"/proc/{w}").exists() for w in workers):
            time.sleep(0.2)
        alive = [w for w in workers if Path(f"/proc/{w}").exists() and "(Z)" not in _state(w)]
        assert not alive, f"workers {alive} still run without their launcher"
    finally:
        launcher.kill()
        for w in workers:  # still ours (the pid not reused)?
            if b"fokker" in Path(f"/proc/{w}/cmdline").read_bytes() if Path(f"/proc/{w}").exists() else False:
                os.kill(w, signal.SIGKILL)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "(Z)"


# --------------------------------------------------------------------------- C.3 killed before the first checkpoint


@pytest.mark.parametrize("how", ["ctrl-c", "kill -9"])
def test_a_run_stopped_before_its_first_checkpoint_can_be_restarted_or_resumed(tmp_path, how):
    args = ["train", "--preset", "toy", "--steps", "1000000", "--out", "run", *TINY, *QUIET, NEVER]
    proc = start(*args, cwd=tmp_path)
    wait_for(tmp_path / "run" / "metrics.jsonl", proc)
    proc.send_signal(signal.SIGINT if how == "ctrl-c" else signal.SIGKILL)
    _, stderr = proc.communicate(timeout=60)
    assert not (tmp_path / "run" / "latest").exists()
    if how == "ctrl-c":
        assert proc.returncode == 130
        assert "intact" not in stderr and "no checkpoint yet" in stderr, stderr
        assert len(stderr.splitlines()) == 1, stderr
        # the same command again starts the run afresh
        r = fokker(*[a if a != "1000000" else "10" for a in args], "--no-progress", cwd=tmp_path)
    else:
        r = fokker("train", "--out", "run", "--resume", "--steps", "10", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    run = tmp_path / "run"
    assert (run / "latest").read_text() == "step_00000010\n"
    assert [rec["step"] for rec in strict_records(run)] == [5, 10]  # the aborted attempt's lines are gone
    # ... and equals a run that was never stopped
    train(tiny(NEVER), tmp_path / "whole", device="cpu", budget={"steps": 10}, progress=False)
    a, b = load_checkpoint(run), load_checkpoint(tmp_path / "whole")
    assert all(torch.equal(v, b["model"][k]) for k, v in a["model"].items())


def test_ctrl_c_after_a_checkpoint_names_it(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    _poison_the_loss(monkeypatch, at_call=8, interrupt=True)
    args = ["train", "--preset", "toy", "--out", str(run), "--steps", "20", *TINY, *QUIET, "train.checkpoint_every=5"]
    assert cli.main([*args, "--no-progress"]) == 130
    kept = f"{run} keeps checkpoint step_00000005 (resume: fokker train --out {run} --resume)"
    assert capsys.readouterr().err == f"fokker train: interrupted; {kept}\n"


# --------------------------------------------------------------------------- C.4 the export is that of `latest`


def test_a_kill_before_the_final_export_is_repaired_on_resume(tmp_path, monkeypatch):
    """Killed after `latest` names step 12 but before model.safetensors was replaced: it still held step 10's
    weights, and resuming with the budget reached reported success without exporting."""
    run = tmp_path / "run"
    real = train_state.export_weights

    def dying(path, *args, **kwargs):
        if (run / "latest").read_text().strip() == "step_00000012":
            raise Killed
        real(path, *args, **kwargs)

    monkeypatch.setattr(train_state, "export_weights", dying)
    with pytest.raises(Killed):
        train(tiny("train.checkpoint_every=5"), run, device="cpu", budget={"steps": 12}, progress=False)
    monkeypatch.undo()
    state = load_checkpoint(run)
    assert state["step"] == 12
    exported, _ = read_weights(run / "model.safetensors")
    assert not all(torch.equal(v, state["ema"][k]) for k, v in exported.items())  # stale: step 10's

    assert train({}, run, resume=True, device="cpu", budget={"steps": 12}, progress=False).step == 12
    exported, _ = read_weights(run / "model.safetensors")
    assert all(torch.equal(v, state["ema"][k]) for k, v in exported.items())


# --------------------------------------------------------------------------- C.5 sets of outputs: all new or all old


class DieAfterRenames:
    """os.replace that dies after `n` renames into `folder` (-1: never)."""

    def __init__(self, folder: Path, n: int):
        self.folder, self.n, self.done = folder.resolve(), n, 0
        self.real = os.replace

    def __call__(self, src, dst, **kwargs):
        if Path(dst).resolve().parent == self.folder and not Path(dst).name.startswith("."):
            if self.done == self.n:
                raise Killed
            self.done += 1
        return self.real(src, dst, **kwargs)


def _sample_pair(folder: Path) -> tuple[bytes | None, bytes | None]:
    png, npz = folder / "grid.png", folder / "grid.npz"
    return (png.read_bytes() if png.exists() else None, npz.read_bytes() if npz.exists() else None)


def test_a_kill_at_any_moment_never_leaves_a_picture_beside_other_samples(run10, tmp_path, monkeypatch):
    def sample(steps: int, folder: Path) -> None:  # the steps are in the picture's title, and change the samples
        args = ["sample", "--checkpoint", str(run10), "--steps", str(steps), "--num", "50"]
        assert cli.main([*args, "--out", str(folder / "grid.png"), "--no-progress"]) == 0

    sample(3, tmp_path / "old")
    sample(4, tmp_path / "new")
    old, new = _sample_pair(tmp_path / "old"), _sample_pair(tmp_path / "new")
    assert old[0] != new[0] and old[1] != new[1]
    for n in range(3):
        folder = tmp_path / f"kill{n}"
        sample(3, folder)
        monkeypatch.setattr(os, "replace", DieAfterRenames(folder, n))
        with contextlib.suppress(Killed):
            sample(4, folder)
        monkeypatch.undo()
        png, npz = _sample_pair(folder)
        if npz is not None:  # the samples file names its picture: both old or both new
            assert (png, npz) in (old, new), n
        else:  # killed within the renames: the set is visibly incomplete (its marker, the .npz, is missing)
            assert png in (old[0], new[0]), n
        sample(4, folder)  # the next run completes the set and leaves no temporary
        assert _sample_pair(folder) == new
        assert sorted(p.name for p in folder.iterdir()) == ["grid.npz", "grid.png"]


def test_a_kill_at_any_moment_never_leaves_metrics_beside_another_report(run10, tmp_path, monkeypatch):
    def steps_in(out: Path) -> tuple[list | None, list | None]:
        metrics = [r["steps"] for r in json.loads((out / "metrics.json").read_text())["runs"]] if (
            out / "metrics.json").exists() else None  # fmt: skip
        report = [int(s) for s in re.findall(r"\*\*ddim, (\d+) steps\*\*", (out / "report.md").read_text())] if (
            out / "report.md").exists() else None  # fmt: skip
        return metrics, report

    out = tmp_path / "eval"
    evaluate(run10, ["ddim"], [2], 50, out, progress=False)
    for n in range(8):
        monkeypatch.setattr(os, "replace", DieAfterRenames(out, n))
        try:
            evaluate(run10, ["ddim"], [3 + n], 50, out, progress=False)
            killed = False
        except Killed:
            killed = True
        monkeypatch.undo()
        metrics, report = steps_in(out)
        if metrics is not None:
            assert report == metrics, (n, metrics, report)
        if not killed:
            assert metrics == report == [3 + n]
            break
    else:
        raise AssertionError("evaluate renamed more files than expected")
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_an_eval_that_fails_while_writing_its_report_writes_neither_file(run10, tmp_path, monkeypatch):
    out = tmp_path / "eval"

    def broken(*args, **kwargs):
        raise RuntimeError("the plot failed")

    monkeypatch.setattr(eval_report, "metric_curves", broken)
    with pytest.raises(RuntimeError, match="the plot failed"):
        evaluate(run10, ["ddim"], [2], 50, out, progress=False)
    assert not (out / "metrics.json").exists() and not (out / "report.md").exists()
    assert not [p.name for p in out.iterdir()] if out.exists() else True


# --------------------------------------------------------------------------- C.6 damaged run files


def test_a_partial_last_line_in_metrics_jsonl_is_dropped_with_a_warning(run10, tmp_path):
    run = copy_run(run10, tmp_path / "run")
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 15, "loss": 0.3')  # a kill in the middle of a write
    with pytest.warns(UserWarning, match=r"metrics.jsonl: line 3 is not a JSON record \(cut short\?\); dropped"):
        evaluate(run, ["ddim"], [2], 50, tmp_path / "eval", progress=False)
    assert (tmp_path / "eval" / "loss.png").exists()
    with pytest.warns(UserWarning, match="line 3 is not a JSON record"):
        assert train({}, run, resume=True, device="cpu", budget={"steps": 15}, progress=False).step == 15
    assert [rec["step"] for rec in strict_records(run)] == [5, 10, 15]


def test_the_warning_is_one_line_from_the_command_line(run10, tmp_path):
    run = copy_run(run10, tmp_path / "run")
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 15, "lo')
    r = fokker("eval", "--checkpoint", "run", "--steps", "2", "--num", "50", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    warning = "fokker eval: warning: run/metrics.jsonl: line 3 is not a JSON record (cut short?); dropped"
    assert r.stderr.splitlines() == [warning], r.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe\x00garbage", "run/config.yaml is not UTF-8 text"),
        (b"", "run/config.yaml is empty"),
        (b"- just\n- a list\n", "run/config.yaml does not hold a config (a YAML mapping)"),
        (b"train: {steps: [unclosed\n", "run/config.yaml is not valid YAML"),
        (b"train: 3\n", "run/config.yaml: section 'data' is missing or not a mapping"),
    ],
    ids=["not-utf8", "empty", "a-list", "bad-yaml", "sections-missing"],
)
def test_a_damaged_config_yaml_is_one_clear_line_on_resume(run10, tmp_path, content, message):
    run = copy_run(run10, tmp_path / "run")
    (run / "config.yaml").write_bytes(content)
    r = fokker("train", "--out", "run", "--resume", "--steps", "20", "--no-progress", cwd=tmp_path)
    assert message in one_error_line(r, "train")
    assert load_checkpoint(run)["step"] == 10  # nothing changed


@pytest.mark.parametrize(
    ("metadata", "message"),
    [("{not json", "its fokker config metadata is not JSON"), ("[1, 2]", "its fokker config metadata is not")],
)
def test_weights_whose_metadata_is_not_a_json_config_are_one_clear_line(run10, tmp_path, metadata, message):
    tensors = load_file(run10 / "model.safetensors")
    save_file(tensors, tmp_path / "w.safetensors", metadata={"fokker_config": metadata})
    r = fokker("sample", "--checkpoint", "w.safetensors", "--out", "s.png", "--no-progress", cwd=tmp_path)
    assert message in one_error_line(r, "sample")


def _truncate(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


def _flip_last_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-8:] = bytes(255 - b for b in data[-8:])  # inside the tensor data: same size, parses fine
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated-optimizer": lambda c: _truncate(c / "optimizer.safetensors"),
    "flipped-bytes-in-model": lambda c: _flip_last_bytes(c / "model.safetensors"),
    "no-state-json": lambda c: (c / "state.json").unlink(),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_newest_checkpoint_falls_back_to_the_intact_older_one(run10, tmp_path, damage):
    run = copy_run(run10, tmp_path / "run")
    DAMAGE[damage](run / "checkpoints" / "step_00000010")
    with pytest.warns(UserWarning, match=r"checkpoint step_00000010 is damaged \(.+\); resuming from step_00000005"):
        assert train({}, run, resume=True, device="cpu", budget={"steps": 15}, progress=False).step == 15
    # from step 5 on, it is the run that was never damaged, bit for bit
    config = tiny("train.checkpoint_every=5", "train.keep_last=2")
    train(config, tmp_path / "whole", device="cpu", budget={"steps": 15}, progress=False)
    a, b = load_checkpoint(run), load_checkpoint(tmp_path / "whole")
    for part in ("model", "ema"):
        assert all(torch.equal(v, b[part][k]) for k, v in a[part].items()), part
    assert [rec["step"] for rec in strict_records(run)] == [5, 10, 15]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000010", "step_00000015"]


def test_every_checkpoint_damaged_is_one_clear_error(run10, tmp_path):
    run = copy_run(run10, tmp_path / "run")
    for name in ("step_00000005", "step_00000010"):
        _truncate(run / "checkpoints" / name / "model.safetensors")
    with pytest.raises(UserError, match=r"cannot read checkpoint .*step_00000010.*; no intact older checkpoint"):
        train({}, run, resume=True, device="cpu", budget={"steps": 15}, progress=False)


# --------------------------------------------------------------------------- C.7 harmful values, OS errors


def test_grad_clip_null_means_no_clipping(tmp_path):
    def weights(clip: str, name: str) -> dict:
        train(tiny(f"train.grad_clip={clip}"), tmp_path / name, device="cpu", budget={"steps": 5}, progress=False)
        return load_checkpoint(tmp_path / name)["model"]

    none, huge, tight = weights("null", "none"), weights("1e30", "huge"), weights("1e-3", "tight")
    assert all(torch.equal(v, huge[k]) for k, v in none.items())
    assert not all(torch.equal(v, tight[k]) for k, v in none.items())


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write into a read-only folder")
def test_a_read_only_out_folder_is_one_clear_line(tmp_path):
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    r = fokker("train", "--out", "ro/run", "--steps", "5", *TINY, "--no-progress", cwd=tmp_path)
    assert "ro is not writable" in one_error_line(r, "train")
    r = fokker("sample", "--checkpoint", "nowhere", "--out", "ro/s.png", "--no-progress", cwd=tmp_path)
    assert "ro is not writable" in one_error_line(r, "sample")


def test_an_out_folder_the_os_refuses_is_one_clear_line_and_nothing_is_written(tmp_path, monkeypatch, capsys):
    """As a read-only folder (where the test runs as root, which may write anywhere: os.access says no)."""
    (tmp_path / "ro").mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if Path(p) == tmp_path / "ro" else real(p, mode, **k))
    assert cli.main(["train", "--out", str(tmp_path / "ro" / "run"), "--steps", "5", *TINY, "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == f"fokker train: error: cannot write --out {tmp_path}/ro/run: " + (
        f"{tmp_path}/ro is not writable"
    )
    assert list((tmp_path / "ro").iterdir()) == []


def test_an_os_error_while_writing_is_one_line(run10, tmp_path, monkeypatch, capsys):
    """Whatever the checks before, the disk may fill up: one line, exit 2, no traceback."""

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", "grid.npz")

    monkeypatch.setattr(np, "savez_compressed", full)
    args = ["sample", "--checkpoint", str(run10), "--steps", "2", "--num", "4", "--out", str(tmp_path / "g.png")]
    assert cli.main([*args, "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == "fokker sample: error: [Errno 28] No space left on device: 'grid.npz'"
    assert list(tmp_path.iterdir()) == []  # not even the picture


# --------------------------------------------------------------------------- C.8 how many processes


def test_the_readme_two_process_cpu_command_is_the_one_that_runs_two_processes():
    """With accelerate 1.x, `accelerate launch --cpu --num_processes 2` needs MPI and silently runs one
    process; `--multi_gpu` starts two with torchrun (what tests/test_train.py launches)."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    blocks = "\n".join(re.findall(r"```bash\n(.*?)```", readme, flags=re.S))
    commands = [line for line in blocks.splitlines() if "accelerate launch" in line]
    assert commands and not [c for c in commands if "--cpu" in c]
    assert any("--multi_gpu --num_processes 2 --num_machines 1" in c and "--device cpu" in c for c in commands)


# --------------------------------------------------------------------------- smaller


def test_a_picture_cut_short_by_a_kill_is_drawn_on_resume(tmp_path, monkeypatch):
    run = tmp_path / "run"
    real = pictures.save_picture

    def dying(samples, path, **kwargs):
        if Path(path).name == "step_00000010.png":
            raise Killed
        real(samples, path, **kwargs)

    monkeypatch.setattr(pictures, "save_picture", dying)
    with pytest.raises(Killed):
        train(tiny("train.checkpoint_every=10", "train.sample_every=10"), run, device="cpu", budget={"steps": 20},
              progress=False)  # fmt: skip
    monkeypatch.undo()
    assert (run / "latest").read_text() == "step_00000010\n" and not (run / "samples").exists()
    train({}, run, resume=True, device="cpu", budget={"steps": 20}, progress=False)
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_00000010.png", "step_00000020.png"]


def test_the_last_step_has_a_picture_when_checkpoint_every_divides_it(tmp_path):
    run = tmp_path / "run"
    train(tiny("train.checkpoint_every=5"), run, device="cpu", budget={"steps": 10}, progress=False)
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_00000010.png"]


def test_temporaries_left_by_a_kill_are_removed_when_the_run_goes_on(run10, tmp_path):
    run = copy_run(run10, tmp_path / "run")
    leftovers = [
        run / "checkpoints" / ".tmp_step_00000015" / "model.safetensors",
        run / ".model.safetensors.4242.tmp",
        run / ".config.yaml.tmp",
        run / ".metrics.jsonl.tmp",
        run / ".latest.tmp",
        run / "samples" / ".step_00000015.png.tmp",
    ]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    (run / "notes.txt").write_text("mine")  # not fokker's: kept
    train({}, run, resume=True, device="cpu", budget={"steps": 12}, progress=False)
    assert not [p for p in leftovers if p.exists()] and not (run / "checkpoints" / ".tmp_step_00000015").exists()
    assert (run / "notes.txt").read_text() == "mine"


def test_the_exported_step_is_in_the_metadata(run10):
    with safe_open(str(run10 / "model.safetensors"), framework="pt") as f:
        assert f.metadata()["fokker_step"] == "10"
