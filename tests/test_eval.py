"""`fokker eval` end to end: a 2-D toy checkpoint and a digits checkpoint scored by several samplers and
step counts, metrics.json and report.md with the grids and plots they name; and its user errors."""

import json
import re

import pytest
from PIL import Image
from test_cli import TINY, fokker

from fokker.config import apply_overrides, load_preset
from fokker.evaluate import evaluate
from fokker.train import train

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def assert_png(path) -> None:
    with Image.open(path) as img:
        assert img.format == "PNG" and img.width > 100
        img.load()


def assert_report_complete(out, record) -> None:
    report = (out / "report.md").read_text()
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    pictures = [r["picture"] for r in record["runs"]]
    assert set(pictures) <= set(linked) and "metrics_vs_nfe.png" in linked and "loss.png" in linked
    for name in linked:
        assert_png(out / name)
    for r in record["runs"]:
        assert f"| {r['sampler']} | {r['steps']} | {r['nfe']} |" in report


def test_eval_on_a_toy_checkpoint(tmp_path):
    r = fokker("train", "--preset", "toy", "--steps", "300", "--out", "run", "--no-progress", *TINY, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = fokker(
        "eval", "--checkpoint", "run", "--sampler", "ddim", "ddpm", "--steps", "2", "20", "--num", "1000",
        "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = tmp_path / "run" / "eval"
    record = json.loads((out / "metrics.json").read_text())
    assert [(x["sampler"], x["steps"], x["nfe"]) for x in record["runs"]] == [
        ("ddim", 2, 2), ("ddim", 20, 20), ("ddpm", 2, 2), ("ddpm", 20, 20)
    ]  # fmt: skip
    assert record["data"] == "moons" and record["classifier"] is None and "cross_entropy" not in record["floor"]
    by = {(x["sampler"], x["steps"]): x for x in record["runs"]}
    floor = record["floor"]["sliced_w2"]
    assert floor < 0.05  # two draws of 1,000 points
    for sampler in ("ddim", "ddpm"):  # 20 steps land nearer the data than 2
        assert floor < by[sampler, 20]["sliced_w2"] < by[sampler, 2]["sliced_w2"]
    assert_report_complete(out, record)
    assert "held-out" in r.stdout and "wrote" in r.stdout


def test_eval_reports_cross_entropy_on_an_analytic_target(tmp_path):
    config = apply_overrides(
        load_preset("toy"), [*TINY, "data.name=mixture", "train.sample_every=100000", "train.checkpoint_every=100000"]
    )
    train(config, tmp_path / "run", device="cpu", budget={"steps": 300}, progress=False)
    record = evaluate(tmp_path / "run", ["ddim"], [3, 30], 2000, tmp_path / "eval", progress=False)
    floor, few, many = record["floor"], record["runs"][0], record["runs"][1]
    # held-out draws of the target itself score its entropy; a model can only score more (entropy + KL)
    target_entropy = floor["cross_entropy"]
    assert many["cross_entropy"] > target_entropy - 4 * floor["cross_entropy_se"]
    assert few["cross_entropy"] > many["cross_entropy"]
    assert_report_complete(tmp_path / "eval", record)


@pytest.mark.slow
def test_eval_on_a_digits_checkpoint_uses_the_classifier(tmp_path):
    r = fokker(
        "train", "--preset", "digits", "--steps", "4", "--out", "run", "--no-progress", "--batch-size", "16",
        "model.network.base_channels=8", "model.network.attention_resolutions=[]", cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = fokker(
        "eval", "--checkpoint", "run/model.safetensors", "--sampler", "ddim", "--steps", "3", "--num", "100",
        "--out", "ev", "--eta", "1", "--no-progress", cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    record = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert record["classifier"]["dataset"] == "digits" and record["classifier"]["accuracy"] > 0.9
    run = record["runs"][0]
    assert {"fid", "kid", "kid_std", "inception_score", "recognizable", "class_histogram"} <= set(run)
    assert sum(run["class_histogram"]) == 100
    # an untrained model's samples are far from the digits; held-out digits are near
    assert run["fid"] > 5 * record["floor"]["fid"] and record["floor"]["recognizable"] > 0.8
    report = (tmp_path / "ev" / "report.md").read_text()
    assert "held-out accuracy" in report and "give the run folder" in report  # no metrics.jsonl beside a file


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sampler", "ddpm", "--eta", "0.5"], "option 'eta' is taken by none of the samplers ['ddpm']"),
        (["--sampler", "ddim", "--eta", "2"], "eta must be in [0, 1], got 2"),
        (["--spacing", "cubic"], "unknown spacing 'cubic'"),
        (["--sampler", "ddim", "euler"], "unknown sampler 'euler'"),
        (["--num", "1"], "--num must be at least 2"),
        (["--steps", "0"], "steps must be at least 1, got 0"),
    ],
)
def test_eval_user_errors(tiny_run, args, message):
    r = fokker("eval", "--checkpoint", "run", "--no-progress", *args, cwd=tiny_run)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tiny_run / "run" / "eval").exists()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A folder holding `run`, a toy model trained for 2 steps."""
    folder = tmp_path_factory.mktemp("tiny")
    r = fokker("train", "--preset", "toy", "--steps", "2", "--out", "run", "--no-progress", *TINY, cwd=folder)
    assert r.returncode == 0, r.stderr
    return folder


def test_eval_defaults_to_the_runs_sample_config(tiny_run):
    r = fokker("eval", "--checkpoint", "run", "--num", "50", "--out", "ev", "--no-progress", cwd=tiny_run)
    assert r.returncode == 0, r.stderr
    record = json.loads((tiny_run / "ev" / "metrics.json").read_text())
    own = load_preset("toy")["sample"]
    assert [(x["sampler"], x["steps"]) for x in record["runs"]] == [(own["sampler"], own["steps"])]
    assert record["spacing"] == own["spacing"]
