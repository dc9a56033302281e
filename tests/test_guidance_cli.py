"""`fokker sample` with guidance end to end: classifier-free guidance of a trained conditional 8gaussians
model (--guidance, --guidance-rescale, --guidance-interval), the NFE it reports, and the user errors."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_cli import TINY, fokker, snapshot
from test_labels import GAUSS8, config_for, nearest_centre

from fokker.train import train


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """A trained conditional 8gaussians run, an unconditional one (a few steps of a moons model), and a
    trained unconditional 8gaussians model with a noise-conditional classifier of the same process."""
    root = tmp_path_factory.mktemp("guided")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    train(config_for(*GAUSS8), root / "cond", device="cpu", budget={"steps": 600}, progress=False)
    train(config_for(*TINY), root / "uncond", device="cpu", budget={"steps": 2}, progress=False)
    plain = [o for o in GAUSS8 if o != "model.conditional=true"]
    train(config_for(*plain), root / "plain", device="cpu", budget={"steps": 600}, progress=False)
    clf = config_for("data.name=8gaussians", "data.num_points=2000", "model.network.hidden=64", preset="classifier-toy")
    train(clf, root / "clf", device="cpu", budget={"steps": 400}, progress=False)
    torch.set_num_threads(n)
    return root


def sample(runs: Path, *flags: str):
    common = ["--sampler", "ddim", "--steps", "20", "--num", "200", "--no-progress", "--device", "cpu"]
    return fokker("sample", "--checkpoint", "cond", *common, *flags, cwd=runs)


def spread(npz: Path) -> float:
    """The samples' mean distance to their mean."""
    x = torch.from_numpy(np.load(npz)["samples"])
    return (x - x.mean(0)).norm(dim=1).mean().item()


def test_guided_samples_are_of_the_class_and_tighter(runs):
    plain = sample(runs, "--class", "5", "--out", "plain.png")
    guided = sample(runs, "--class", "5", "--guidance", "3", "--out", "guided.png")
    assert plain.returncode == guided.returncode == 0, guided.stderr
    assert "NFE 20 per sample" in plain.stdout and "NFE 40 per sample" in guided.stdout  # both halves count
    x = torch.from_numpy(np.load(runs / "guided.npz")["samples"])
    assert (nearest_centre(x) == 5).to(torch.float64).mean() > 0.95
    assert spread(runs / "guided.npz") < spread(runs / "plain.npz")  # w > 1 concentrates
    half = sample(runs, "--class", "5", "--guidance", "3", "--guidance-interval", "0.5", "1", "--out", "half.png")
    assert half.returncode == 0, half.stderr
    nfe = int(half.stdout.split("NFE ")[1].split()[0])
    assert 20 < nfe < 40  # guided (two evaluations) on the steps with t in [0.5, 1] only
    rescaled = sample(runs, "--class", "5", "--guidance", "3", "--guidance-rescale", "0.7", "--out", "r.png")
    assert rescaled.returncode == 0, rescaled.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--guidance", "3"], "--guidance and --classifier steer to a class: give --class"),
        (["--class", "1", "--guidance-rescale", "0.5"], "the guidance rescale has no effect without"),
        (["--class", "1", "--guidance-interval", "0.2", "0.8"], "the guidance interval has no effect without"),
        (["--class", "1", "--classifier-scale", "2"], "the classifier scale has no effect without a classifier"),
        (["--class", "1", "--guidance", "1", "--guidance-rescale", "0.5"], "have no effect at w = 1"),
        (["--class", "1", "--guidance", "3", "--guidance-interval", "0.8", "0.2"], "the guidance interval must be"),
        (["--class", "1", "--classifier", "nowhere"], "no weights at nowhere"),
        (["--class", "1", "--classifier", "cond"], "not a noise-conditional classifier"),
        (["--class", "1", "--classifier", "clf", "--classifier-form", "mean"], "mean-shift"),
    ],
)
def test_guidance_errors_are_one_line(runs, flags, message):
    before = snapshot(runs)
    r = sample(runs, *flags, "--out", "bad.png")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert message in r.stderr
    assert snapshot(runs) == before


def test_classifier_free_guidance_needs_a_conditional_model(runs):
    r = fokker("sample", "--checkpoint", "uncond", "--guidance", "3", "--class", "0", "--out", "u.png", cwd=runs)
    assert r.returncode == 2 and "this model is unconditional" in r.stderr


def test_a_guided_evaluation_scores_agreement_and_each_class(runs):
    r = fokker(
        "eval", "--checkpoint", "cond", "--sampler", "ddim", "--steps", "50", "--guidance", "1", "3", "--num", "400",
        "--out", "ev", "--no-progress", "--device", "cpu", cwd=runs,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    record = json.loads((runs / "ev" / "metrics.json").read_text())
    assert [(row["guide"], row["nfe"]) for row in record["runs"]] == [("w=1", 50), ("w=3", 100)]
    for row in record["runs"]:
        assert row["agreement"] > 0.95 and len(row["per_class"]) == 8  # 50 samples of each of the 8 classes
        assert all(0 < v < 0.5 for v in row["per_class"])
    report = (runs / "ev" / "report.md").read_text()
    assert "![guidance trade-off](guidance_tradeoff.png)" in report and (runs / "ev" / "guidance_tradeoff.png").exists()
    assert "w=3" in r.stdout and "agreement" in r.stdout


def test_classifier_guidance_steers_an_unconditional_model(runs):
    """The classifier's gradient turns the unconditional 8gaussians model into samples of the class asked for
    (unguided: 1/8 of each class)."""
    common = ["--sampler", "ddim", "--steps", "50", "--num", "200", "--no-progress", "--device", "cpu"]
    r = fokker(
        "sample", "--checkpoint", "plain", "--classifier", "clf", "--classifier-scale", "2", "--class", "5",
        *common, "--out", "c.png", cwd=runs,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "NFE 50 per sample" in r.stdout  # classifier evaluations are not the model's
    x = torch.from_numpy(np.load(runs / "c.npz")["samples"])
    assert (nearest_centre(x) == 5).to(torch.float64).mean() > 0.8
    ddpm = fokker(
        "sample", "--checkpoint", "plain", "--classifier", "clf", "--classifier-form", "mean", "--class", "5",
        "--classifier-scale", "2", "--sampler", "ddpm", "--steps", "100", "--num", "200", "--no-progress",
        "--out", "m.png", cwd=runs,
    )  # fmt: skip
    assert ddpm.returncode == 0, ddpm.stderr
    x = torch.from_numpy(np.load(runs / "m.npz")["samples"])
    assert (nearest_centre(x) == 5).to(torch.float64).mean() > 0.8
