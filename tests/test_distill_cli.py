"""`fokker distill` end to end on a tiny digits teacher (progressive rounds, ECT, CD), the student's config
and starting weights, `fokker eval --teacher`, the consistency preset, and the errors a user can cause."""

from __future__ import annotations

import json

import pytest
import torch
from accelerate import Accelerator

from fokker.cli.main import main
from fokker.config import apply_overrides, load_preset, read_run_config
from fokker.model import load_model
from fokker.train import train
from fokker.train.build import new_state
from fokker.weights import read_weights

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

SMALL = ["model.network.base_channels=8", "model.network.attention_resolutions=[]", "train.batch_size=16"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    out = tmp_path_factory.mktemp("distill") / "teacher"
    overrides = [*SMALL, "train.steps=6", "train.sample_every=1000", "train.log_every=1"]
    config = apply_overrides(load_preset("digits"), overrides)
    train(config, out, progress=False)
    return out


def run(*argv: str) -> int:
    return main([*argv, "--no-progress"])


def test_progressive_rounds_are_run_folders_sampled_at_their_steps(teacher, tmp_path, capsys):
    out = tmp_path / "pd"
    assert run("distill", "--checkpoint", str(teacher), "--method", "progressive", "--from-steps", "8",
               "--to-steps", "2", "--steps", "2", "--out", str(out)) == 0  # fmt: skip
    rounds = json.loads((out / "distill.json").read_text())["rounds"]
    assert [r["steps"] for r in rounds] == [4, 2] and all(r["trained_steps"] == 2 for r in rounds)
    assert (out / "loss.png").exists()  # the rounds' losses
    first, last = read_run_config(out / "steps-4" / "config.yaml"), read_run_config(out / "config.yaml")
    assert first.train.init == str(teacher) and first.train.loss_options["teacher"] == str(teacher)
    assert last.train.init == str(out / "steps-4") and last.train.loss_options["steps"] == 2
    assert first.model.prediction == "v" and (first.sample.sampler, first.sample.steps) == ("ddim", 4)
    assert run("sample", "--checkpoint", str(out), "--num", "4", "--out", str(tmp_path / "s.png")) == 0
    assert "ddim (2 steps" in capsys.readouterr().out
    # a finished distillation continues only with --resume, which keeps the finished rounds
    again = ["distill", "--checkpoint", str(teacher), "--method", "progressive", "--from-steps", "8", "--to-steps", "2"]
    assert run(*again, "--steps", "2", "--out", str(out)) == 2
    assert run(*again, "--steps", "2", "--out", str(out), "--resume") == 0
    assert json.loads((out / "distill.json").read_text())["rounds"] == rounds


def test_a_student_starts_as_its_teacher(teacher):
    config = read_run_config(teacher / "config.yaml")
    from fokker.distill.student import student_config

    student = student_config(config, teacher, "progressive", steps=4)
    state = new_state(student, Accelerator(cpu=True))
    weights, _ = read_weights(teacher / "model.safetensors")
    for name, value in state.model.state_dict().items():
        assert torch.equal(value, weights[name]), name
    for name, value in state.ema.model.state_dict().items():
        assert torch.equal(value, weights[name]), name


@pytest.mark.parametrize("method", ["ect", "consistency"])
def test_consistency_students_sample_in_one_step_and_evaluate_beside_the_teacher(method, teacher, tmp_path, capsys):
    out = tmp_path / method
    own = ["--pairs", "uniform"] if method == "consistency" else []  # reaches the loss (checked below)
    assert (
        run("distill", "--checkpoint", str(teacher), "--method", method, *own, "--steps", "2", "--out", str(out)) == 0
    )
    model, config = load_model(out)
    if method == "consistency":
        assert config.train.loss_options["pairs"] == "uniform"
    assert config.model.parameterisation == "consistency" and type(model).__name__ == "ConsistencyDenoiser"
    assert run("sample", "--checkpoint", str(out), "--steps", "1", "--num", "4", "--out", str(tmp_path / "s.png")) == 0
    assert "consistency (1 steps" in capsys.readouterr().out
    ev = tmp_path / "ev"
    assert run("eval", "--checkpoint", str(out), "--steps", "1", "2", "--num", "20", "--teacher", str(teacher),
               "--teacher-steps", "3", "--out", str(ev)) == 0  # fmt: skip
    record = json.loads((ev / "metrics.json").read_text())
    rows = [(r["model"], r["sampler"], r["steps"]) for r in record["runs"]]
    assert rows == [("student", "consistency", 1), ("student", "consistency", 2), ("teacher", "ddim", 3)]
    report = (ev / "report.md").read_text()
    assert "| teacher | ddim | 3 |" in report and (ev / "teacher_samples_ddim_3.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--method", "progressive", "--solver", "ddim", "--steps", "1"],
            "--solver applies only to --method consistency",
        ),
        (["--method", "ect", "--to-steps", "2", "--steps", "1"], "--to-steps applies only to --method progressive"),
        (["--method", "ect", "--pairs", "uniform", "--steps", "1"], "--pairs applies only to --method consistency"),
        (["--method", "progressive", "--from-steps", "12", "--to-steps", "8", "--steps", "1"], "12 does not reach 8"),
        (["--method", "progressive", "--from-steps", "6", "--to-steps", "1", "--steps", "1"], "3 is odd"),
        (["--method", "ect"], "give the budget"),
        (["--method", "progressive", "--minutes", "1", "--steps", "1"], "give the budget"),
    ],
)
def test_distill_user_errors(teacher, tmp_path, capsys, args, message):
    assert run("distill", "--checkpoint", str(teacher), "--out", str(tmp_path / "x"), *args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.loss=progressive"], "needs the student's steps"),
        (["train.loss=consistency_tuning", "train.loss_options={q: 2}"], "set model.parameterisation consistency"),
        (["train.loss=progressive", "train.loss_options={steps: 2, teach: x}"], "has no option 'teach'"),
        (["train.loss_options={steps: 2}"], "apply only to train.loss"),
        (
            ["train.loss=progressive", "train.loss_options={steps: 2}", "train.weighting=likelihood"],
            "train.weighting has no effect",
        ),
        (["model.sigma_data=0.5"], "model.sigma_data applies only"),
        (["model.parameterisation=consistency", "model.prediction=score"], "a consistency model's network predicts"),
        (["model.parameterisation=flow"], "bad value for model.parameterisation"),
    ],
)
def test_config_refuses_what_has_no_effect(overrides, message, tmp_path, capsys):
    argv = ["train", "--preset", "digits", "--steps", "1", "--out", str(tmp_path / "r"), *SMALL, *overrides]
    assert run(*argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # refused before the run folder is made


def test_consistency_preset_trains(tmp_path, capsys):
    net = [
        "model.network.channel_mult=[1,2]",
        "model.network.base_channels=8",
        "model.network.attention_resolutions=[]",
    ]
    argv = ["train", "--preset", "consistency-mnist", "--steps", "3", "--out", str(tmp_path / "ct"), "data.name=digits"]
    assert run(*argv, *net, "train.batch_size=8", "train.loss_options={doubling_every: 1}") == 0
    config = read_run_config(tmp_path / "ct" / "config.yaml")
    assert config.train.loss == "consistency_training" and config.sample.sampler == "consistency"
    assert (tmp_path / "ct" / "samples" / "step_3.png").exists() or any((tmp_path / "ct" / "samples").iterdir())


def test_a_conditional_teacher_gives_a_guidable_student(tmp_path, capsys):
    teacher = tmp_path / "teacher"
    overrides = [*SMALL, "train.steps=3", "train.sample_every=1000", "model.conditional=true"]
    train(apply_overrides(load_preset("digits"), overrides), teacher, progress=False)
    out = tmp_path / "ect"
    assert run("distill", "--checkpoint", str(teacher), "--method", "ect", "--steps", "2", "--out", str(out)) == 0
    assert read_run_config(out / "config.yaml").model.conditional
    picture = str(tmp_path / "g.png")
    assert run("sample", "--checkpoint", str(out), "--steps", "2", "--class", "3", "--guidance", "2", "--num", "4",
               "--out", picture) == 0  # fmt: skip
    assert "consistency (2 steps" in capsys.readouterr().out


def test_ect_with_minutes_sizes_its_stages_from_the_teachers_rate(teacher, tmp_path, capsys):
    out = tmp_path / "ect"
    assert run("distill", "--checkpoint", str(teacher), "--method", "ect", "--minutes", "0.02", "--out", str(out)) == 0
    said = capsys.readouterr().out
    assert "ECT: about" in said and "a new stage every" in said
    every = read_run_config(out / "config.yaml").train.loss_options["doubling_every"]
    assert isinstance(every, int) and every >= 1
