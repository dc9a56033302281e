"""The `fokker` console script end to end, in subprocesses: train, resume and sample on toy data and on
digits, --help, --dry-run, and user errors: one line `fokker CMD: error: ...` on stderr, exit status 2,
and nothing written or overwritten."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from fokker.config import apply_overrides, load_preset
from fokker.train import train

# a tiny MLP on fewer points: seconds per few hundred steps
TINY = ["model.network.hidden=32", "model.network.depth=2", "data.num_points=2000", "train.batch_size=64"]


def fokker(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the installed `fokker` console script (or `python -m fokker` where it is not installed)."""
    script = Path(sys.executable).with_name("fokker")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "fokker"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*cmd, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file and folder under `folder`, files with their modification time and contents."""
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes()) if p.is_file() else None
        for p in folder.rglob("*")
    }


def logged_steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------- end to end


def test_train_resume_sample_on_toy_data(tmp_path):
    r = fokker(
        "train", "--preset", "toy", "--steps", "300", "--out", "run", "--no-progress", *TINY,
        "train.checkpoint_every=100", "train.log_every=50", "train.sample_every=150", "sample.num=200",
        cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("training on 1 process (cpu), from step 0 into run\ntrained 300 steps")
    assert "run/model.safetensors" in r.stdout
    run = tmp_path / "run"
    assert (run / "latest").read_text() == "step_00000300\n"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000200", "step_00000300"]
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_00000150.png", "step_00000300.png"]
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["train"]["steps"] == 300 and config["model"]["network"]["hidden"] == 32
    assert config["data"]["shape"] == [2]  # the resolved config
    assert logged_steps(run) == [50, 100, 150, 200, 250, 300]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(rec["loss"]) and rec["lr"] > 0 for rec in records)
    assert records[-1]["loss"] < records[0]["loss"]

    # as if killed in the middle of the step-300 save (after logging step 300): resume from step 200,
    # and the log lines after it are dropped before they are written again
    shutil.rmtree(run / "checkpoints" / "step_00000300")
    (run / "latest").write_text("step_00000200\n")
    r = fokker("train", "--out", "run", "--resume", "--steps", "400", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("training on 1 process (cpu), from step 200 into run\ntrained 400 steps")
    assert logged_steps(run) == [50, 100, 150, 200, 250, 300, 350, 400]
    assert (run / "latest").read_text() == "step_00000400\n"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000300", "step_00000400"]
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["steps"] == 400

    r = fokker(
        "sample", "--checkpoint", "run", "--sampler", "ddim", "--steps", "20", "--num", "100", "--seed", "0",
        "--out", "out/grid.png", "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "NFE 20 per sample" in r.stdout
    with Image.open(tmp_path / "out" / "grid.png") as img:
        assert img.format == "PNG" and img.width > 100 and img.height > 100
        img.load()
    samples = np.load(tmp_path / "out" / "grid.npz")["samples"]
    assert samples.shape == (100, 2) and samples.dtype == np.float32
    assert np.isfinite(samples).all() and (np.abs(samples) < 1.5).all(axis=1).mean() > 0.8  # mostly on the data
    # per-sample seeds: another batch size gives the same samples, to float32 rounding (the CPU kernels of
    # a matmul block differently for other batch sizes and thread counts), which is relative to the
    # samples' magnitude, up to |x| = 17 here. Batch size 1: 10 of 200 values off by 3.8e-6 (2.2e-7 of
    # max |x|); a fresh clone saw 11 off by up to 1e-5 with batch size 7. Another batch's noise: O(1).
    r = fokker(
        "sample", "--checkpoint", "run/model.safetensors", "--steps", "20", "--num", "100", "--batch-size", "1",
        "--out", "again.png", "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    again = np.load(tmp_path / "again.npz")["samples"]
    np.testing.assert_allclose(again, samples, rtol=1e-5, atol=1e-5 * np.abs(samples).max())


def test_train_and_sample_images_on_digits(tmp_path):
    r = fokker(
        "train", "--preset", "digits", "--steps", "4", "--out", "run", "--no-progress", "--batch-size", "16",
        "model.network.base_channels=8", "model.network.attention_resolutions=[]", "sample.num=4",
        "sample.steps=3", cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "run" / "samples" / "step_00000004.png").exists()
    r = fokker(
        "sample", "--checkpoint", "run", "--sampler", "ddpm", "--steps", "5", "--num", "6", "--out", "grid.png",
        "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "NFE 5 per sample" in r.stdout
    arrays = np.load(tmp_path / "grid.npz")
    assert arrays["samples"].shape == (6, 1, 8, 8)
    assert arrays["images"].shape == (6, 8, 8, 1) and arrays["images"].dtype == np.uint8
    with Image.open(tmp_path / "grid.png") as img:
        assert img.format == "PNG" and img.mode == "L"
    # without --sampler / --steps / --spacing: the run's own sample section
    r = fokker("sample", "--checkpoint", "run", "--num", "2", "--out", "own.png", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    sample_config = load_preset("digits")["sample"]
    assert f"with {sample_config['sampler']} (3 steps, {sample_config['spacing']} spacing)" in r.stdout
    # the bound with the discretized decoder of the 17-level digits; an interpolation from a file to a test image
    r = fokker("likelihood", "--checkpoint", "run", "--steps", "5", "--num", "4", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0 and "upper bound) over 4 test examples" in r.stdout, r.stderr
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["data"]["levels"] == 17
    Image.new("L", (20, 12), 200).save(tmp_path / "grey.png")
    r = fokker("interpolate", "--checkpoint", "run", "--a", "grey.png", "--b", "3", "--num", "3", "--rtol", "1e-2",
               "--atol", "1e-2", "--out", "path.png", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    with Image.open(tmp_path / "path.png") as img:  # 3 interpolants framed by the 2 inputs, in one row
        assert img.width > 4 * img.height


def test_score_family_from_the_command_line(tmp_path):
    """--process ve --loss ssm trains a VE model by sliced score matching; pc / ode / annealed Langevin
    sample it with options from the command line or, when the sampler is the run's own, from its config."""
    r = fokker(
        "train", "--preset", "ve-toy", "--process", "ve", "--loss", "ssm", "--steps", "30", "--out", "run",
        "--no-progress", *TINY, "sample.num=20", "sample.steps=5", cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config["process"]["type"] == "ve" and config["train"]["loss"] == "ssm"
    assert config["process"]["sigma_max"] == 4.0  # --process of the preset's own type keeps its settings
    assert config["sample"]["options"] == {"predictor": "reverse_diffusion", "corrector": "none"}
    runs = {
        "own": ([], "NFE 5 per sample"),  # the config's pc without a corrector
        "pc": (
            [
                "--sampler",
                "pc",
                "--corrector",
                "langevin",
                "--step-rule",
                "snr",
                "--snr",
                "0.1",
                "--corrector-steps",
                "2",
            ],
            "NFE 15",
        ),
        "ode": (["--sampler", "ode", "--method", "dopri5", "--rtol", "1e-3", "--atol", "1e-3", "--no-denoise"], "NFE"),
        "al": (["--sampler", "annealed_langevin", "--steps-per-level", "3", "--epsilon", "1e-4"], "NFE 16 per"),
    }
    for name, (args, expected) in runs.items():
        r = fokker("sample", "--checkpoint", "run", "--num", "8", "--out", f"{name}.png", "--no-progress", *args,
                   cwd=tmp_path)  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert expected in r.stdout, r.stdout
        assert np.isfinite(np.load(tmp_path / f"{name}.npz")["samples"]).all()


def test_likelihood_and_interpolation_from_the_command_line(tmp_path):
    """A learned-variance model trained by the hybrid loss: its bound (every term, and sampled terms), its
    ODE likelihood, and interpolations between two test points."""
    r = fokker(
        "train", "--preset", "toy", "--steps", "20", "--out", "run", "--no-progress", *TINY, "process.T=50",
        "model.variance=learned", "train.loss=hybrid", "sample.num=20", "sample.steps=5", cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = fokker("likelihood", "--checkpoint", "run", "--num", "40", "--out", "nll", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "bits/dim (95% CI, upper bound) over 40 test examples" in r.stdout and "NFE 50 per example" in r.stdout
    assert "L_T " in r.stdout and "L_0 (decoder)" in r.stdout
    record = json.loads((tmp_path / "nll" / "likelihood.json").read_text())
    assert record["method"] == "vlb" and len(record["per_example_bits_per_dim"]) == 40
    assert (tmp_path / "nll" / "terms.png").exists()
    r = fokker("likelihood", "--checkpoint", "run", "--num", "40", "--t-samples", "3", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0 and "NFE 3 per example" in r.stdout, r.stderr
    r = fokker("likelihood", "--checkpoint", "run", "--method", "ode", "--num", "10", "--rtol", "1e-3",
               "--atol", "1e-3", "--no-progress", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0 and "(95% CI, continuous)" in r.stdout, r.stderr
    for method, own in (("slerp", ["--rtol", "1e-3", "--atol", "1e-3"]), ("ddpm", ["--t", "0.3", "--seed", "1"])):
        r = fokker("interpolate", "--checkpoint", "run", "--a", "0", "--b", "1", "--num", "5", "--method", method,
                   "--out", f"{method}.png", *own, "--no-progress", cwd=tmp_path)  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert f"interpolated 5 pictures ({method})" in r.stdout and (tmp_path / f"{method}.png").exists()


def test_every_sampler_option_has_a_flag():
    from fokker.cli import SAMPLER_FLAGS
    from fokker.samplers import SAMPLERS, sampler_options

    options = {key for name in SAMPLERS for key in sampler_options(name)}
    assert options == set(SAMPLER_FLAGS)


# --------------------------------------------------------------------------- help, dry run


@pytest.mark.parametrize(
    "command", [[], ["train"], ["sample"], ["likelihood"], ["interpolate"]], ids=lambda c: c[0] if c else "fokker"
)
def test_help_shows_examples(command, tmp_path):
    r = fokker(*command, "--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "examples:" in r.stdout
    lines = [line.strip() for line in r.stdout.splitlines()]
    prefix = " ".join(["fokker", *command, ""])
    assert any(line.startswith(prefix) and " --" in line for line in lines), r.stdout


def test_dry_run_prints_the_resolved_config(tmp_path):
    r = fokker(
        "train", "--preset", "digits", "--dry-run", "--steps", "123", "--seed", "7", "train.lr=3e-4",
        "model.network.channel_mult=[1, 1]", "data.name=mnist", cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    config = yaml.safe_load(r.stdout)
    assert config["train"]["lr"] == 3e-4 and config["train"]["steps"] == 123 and config["train"]["seed"] == 7
    assert config["model"]["network"]["channel_mult"] == [1, 1]
    assert config["model"]["network"]["type"] == "unet"  # the rest of the preset is there
    assert config["data"]["name"] == "mnist"
    assert list(tmp_path.iterdir()) == []  # a dry run writes nothing


# --------------------------------------------------------------------------- user errors


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A folder with a trained run, a previous sample picture, an empty and a corrupt image folder, and a
    folder named folder.png."""
    root = tmp_path_factory.mktemp("cli_errors")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    config = apply_overrides(load_preset("toy"), [*TINY, "sample.num=16", "sample.steps=4"])
    train(config, root / "run", device="cpu", budget={"steps": 4}, progress=False)
    torch.set_num_threads(n)
    (root / "grid.png").write_bytes(b"a picture from before")
    (root / "grid.npz").write_bytes(b"samples from before")
    (root / "empty").mkdir()
    (root / "folder.png").mkdir()
    (root / "corrupt" / "cats").mkdir(parents=True)
    Image.new("L", (8, 8), 128).save(root / "corrupt" / "cats" / "good.png")
    (root / "corrupt" / "cats" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a picture")
    return root


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")

ERRORS = [
    # train: bad data, preset, options; new_run must not appear
    (["train", "--data", "corrupt", "--out", "new_run", "--steps", "5"], "cannot read image corrupt/cats/bad.png: "),
    (["train", "--data", "empty", "--out", "new_run", "--steps", "5"], "no .png/.jpg/.jpeg images found in empty"),
    (["train", "--preset", "nope", "--out", "new_run"], "unknown preset 'nope'; expected one of ['classifier-mnist', "),
    (["train", "--out", "new_run", "train.lr=-1"], "bad value for train.lr: -1; expected a positive number"),
    (["train", "--out", "new_run", "train.batch_size=abc"], "bad value for train.batch_size: 'abc'; expected a"),
    (["train", "--out", "new_run", "train.lrr=1e-3"], "unknown config key 'train.lrr'; known keys here: ["),
    (["train", "--out", "new_run", "train.lr"], "bad override 'train.lr'; expected section.key=value"),
    (["train", "--out", "new_run", "--loss", "nce"], "bad value for train.loss: 'nce'; expected one of simple,"),
    (["train", "--out", "new_run", "train.weighting=snr"], "unknown weighting 'snr'; expected one of"),
    (["train", "--out", "new_run", "model.network.type=resnet"], "unknown network type 'resnet'; accepted: "),
    (["train", "--out", "new_run", "--minutes", "-2"], "bad value for train.minutes: -2.0; expected a positive"),
    pytest.param(["train", "--out", "new_run", "--device", "cuda"], "no CUDA device is available", marks=NO_CUDA),
    (["train", "--out", "new_run", "--device", "gpu"], "bad --device 'gpu'; expected auto, cpu, cuda or mps"),
    (["train", "--out", "new_run", "--resume"], "cannot resume: new_run holds no run (no config.yaml)"),
    # harmful values, refused before any training (and any file)
    (["train", "--out", "new_run", "train.lr=.inf"], "bad value for train.lr: inf; expected a finite number"),
    (["train", "--out", "new_run", "train.ema_decay=.nan"], "bad value for train.ema_decay: nan; expected a finite"),
    (["train", "--out", "new_run", "train.grad_clip=-1"], "bad value for train.grad_clip: -1; expected a positive"),
    (["train", "--out", "new_run", "train.grad_clip=0"], "bad value for train.grad_clip: 0; expected a positive"),
    (["train", "--out", "new_run", "train.weight_decay=-0.1"], "bad value for train.weight_decay: -0.1; expected"),
    (["train", "--out", "new_run", "process.T=0"], "bad value for process.T: 0; expected a positive integer"),
    (["train", "--out", "new_run", "process.T=-3"], "bad value for process.T: -3; expected a positive integer"),
    (["train", "--out", "new_run", "model.network.hidden=-4"], "bad value for model.network.hidden: -4; expected"),
    (["train", "--out", "new_run", "model.network.depth=0"], "bad value for model.network.depth: 0; expected a"),
    (["train", "--out", "new_run", "sample.sampler=nope"], "sample.sampler: unknown sampler 'nope'; expected one"),
    (["train", "--out", "new_run", "sample.steps=0"], "sample.steps: steps must be at least 1, got 0"),
    (["train", "--out", "new_run", "sample.steps=1001"], "sample.steps: steps must be at most T = 1000"),
    (["train", "--out", "new_run", "sample.spacing=cubic"], "sample.spacing: unknown spacing 'cubic'"),
    (["train", "--out", "new_run", "sample.options={snr: 1}"], "sample.options: sampler 'ddim' has no option 'snr'"),
    (["train", "--out", "new_run", "sample.num=0"], "bad value for sample.num: 0; expected a positive integer"),
    (["train", "--out", "grid.png", "--steps", "5"], "cannot write --out grid.png: it is a file, not a folder"),
    # train: the existing run must stay as it is
    (["train", "--out", "run", "--steps", "5"], "run already holds a run; pass --resume to continue it"),
    (["train", "--out", "run", "--resume", "train.lr=1e-4"], "only --steps / --minutes may change"),
    (["train", "--out", "run", "--resume", "--seed", "0"], "only --steps / --minutes may change"),
    (["train", "--out", "run", "--resume", "--preset", "toy"], "only --steps / --minutes may change"),
    (["train", "--out", "run", "--resume", "--loss", "dsm"], "only --steps / --minutes may change"),
    (["train", "--out", "run", "--resume", "--steps", "0"], "bad value for train.steps: 0; expected a positive"),
    pytest.param(["train", "--out", "run", "--resume", "--device", "cuda"], "no CUDA device", marks=NO_CUDA),
    # sample: grid.png and grid.npz must stay as they are
    (["sample", "--checkpoint", "run", "--sampler", "ddpm", "--eta", "0.5"], "sampler 'ddpm' has no option 'eta'"),
    (["sample", "--checkpoint", "run", "--eta", "1.5"], "eta must be in [0, 1], got 1.5"),
    (["sample", "--checkpoint", "run", "--sampler", "ddpm", "--variance", "big"], "unknown variance 'big'"),
    (["sample", "--checkpoint", "run", "--sampler", "euler"], "unknown sampler 'euler'; expected one of ["),
    (["sample", "--checkpoint", "run", "--sampler", "pc", "--predictor", "rk4"], "unknown predictor 'rk4'"),
    (["sample", "--checkpoint", "run", "--sampler", "ode", "--snr", "0.1"], "sampler 'ode' has no option 'snr'"),
    (["sample", "--checkpoint", "run", "--steps", "0"], "steps must be at least 1, got 0"),
    (["sample", "--checkpoint", "run", "--steps", "1001"], "steps must be at most T = 1000"),
    (["sample", "--checkpoint", "run", "--spacing", "cubic"], "unknown spacing 'cubic'"),
    (["sample", "--checkpoint", "run", "--num", "0"], "--num and --batch-size must be positive, got 0 and 256"),
    (["sample", "--checkpoint", "run", "--out", "grid.jpg"], "--out must name a .png file, got grid.jpg"),
    (["sample", "--checkpoint", "nowhere"], "no weights at nowhere; give a run folder"),
    (["sample", "--checkpoint", "run", "--out", "folder.png"], "cannot write --out folder.png: it is a folder"),
    (["sample", "--checkpoint", "run", "--out", "grid.png/x.png"], "cannot write --out grid.png/x.png: grid.png is"),
    (["eval", "--checkpoint", "run", "--out", "grid.png"], "cannot write --out grid.png: it is a file, not a folder"),
    (["sample", "--checkpoint", "run/config.yaml"], "cannot read weights run/config.yaml: "),
    pytest.param(["sample", "--checkpoint", "run", "--device", "cuda"], "no CUDA device", marks=NO_CUDA),
    # likelihood and interpolate
    (["likelihood", "--checkpoint", "run", "--num", "1"], "--num must be at least 2 and --batch-size positive"),
    (["likelihood", "--checkpoint", "run", "--variance", "learned", "--out", "nll"], "needs a model with a learned"),
    (["likelihood", "--checkpoint", "run", "--method", "ode", "--divergence", "exakt"], "unknown divergence 'exakt'"),
    (["likelihood", "--checkpoint", "run", "--method", "ode", "--rtol", "0"], "rtol and atol must be positive"),
    (["likelihood", "--checkpoint", "run", "--t-samples", "0"], "t_samples must be at least 1, got 0"),
    (["interpolate", "--checkpoint", "run", "--a", "0", "--b", "99999"], "index 99999 is out of range"),
    (["interpolate", "--checkpoint", "run", "--a", "grid.png", "--b", "0"], "this model's data are vectors"),
    (["interpolate", "--checkpoint", "run", "--a", "0", "--b", "1", "--out", "x.jpg"], "--out must name a .png"),
    (["interpolate", "--checkpoint", "run", "--a", "0", "--b", "1", "--num", "1"], "num must be at least 2, got 1"),
    (["interpolate", "--checkpoint", "run", "--a", "0", "--b", "1", "--t", "0.3"], "'slerp' takes no t (only 'ddpm'"),
    (["interpolate", "--checkpoint", "run", "--a", "0", "--b", "1", "--seed", "1"], "'slerp' takes no --seed"),
    (
        ["interpolate", "--checkpoint", "run", "--a", "0", "--b", "1", "--method", "ddpm", "--rtol", "1e-3"],
        "'ddpm' takes no rtol (only 'slerp'",
    ),
]


def in_process(args: list[str], cwd: Path, monkeypatch, capsys) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of fokker.cli.main(args) run in this process in `cwd`: the console script
    is that function (test_a_user_error_from_the_console_script checks the script itself), and a subprocess
    per case would spend seconds importing torch."""
    from fokker.cli import main

    monkeypatch.chdir(cwd)
    capsys.readouterr()
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse's errors
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err


def check_user_error(code: int, out: str, err: str, command: str, message: str) -> None:
    assert code == 2, (code, out, err)
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"fokker {command}: error: "), err
    assert message in lines[0], err


@pytest.mark.parametrize(("args", "message"), ERRORS, ids=lambda v: " ".join(v)[:60] if isinstance(v, list) else None)
def test_user_errors_exit_2_with_one_line_and_write_nothing(world, args, message, monkeypatch, capsys):
    if args[0] == "sample" and "--out" not in args:
        args = [*args, "--out", "grid.png"]
    before = snapshot(world)
    check_user_error(*in_process([*args, "--no-progress"], world, monkeypatch, capsys), args[0], message)
    assert snapshot(world) == before


@pytest.mark.parametrize(("args", "message"), [ERRORS[0], ERRORS[-1]], ids=["first", "last"])
def test_a_user_error_from_the_console_script(world, args, message):
    before = snapshot(world)
    r = fokker(*args, "--no-progress", cwd=world)
    check_user_error(r.returncode, r.stdout, r.stderr, args[0], message)
    assert snapshot(world) == before


def test_an_unparsable_option_is_an_argparse_error(world):
    before = snapshot(world)
    r = fokker("sample", "--checkpoint", "run", "--steps", "many", cwd=world)
    assert r.returncode == 2
    assert r.stderr.splitlines()[-1] == "fokker sample: error: argument --steps: invalid int value: 'many'"
    assert snapshot(world) == before


# --------------------------------------------------------------------------- layering: inference without the trainer

INFERENCE = ["sample", "eval", "likelihood", "interpolate"]


@pytest.mark.parametrize("command", INFERENCE)
def test_an_inference_command_does_not_import_the_trainer(command):
    code = f"import sys, fokker.cli.{command}; print('fokker.train' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_the_inference_commands_run_without_the_trainer(world, tmp_path):
    """Not at import only: running each of them leaves fokker.train unimported."""
    runs = [
        ["sample", "--checkpoint", "run", "--steps", "2", "--num", "4", "--out", str(tmp_path / "s.png")],
        ["eval", "--checkpoint", "run", "--steps", "2", "--num", "20", "--out", str(tmp_path / "eval")],
        ["likelihood", "--checkpoint", "run", "--steps", "2", "--num", "4", "--out", str(tmp_path / "nll")],
        ["interpolate", "--checkpoint", "run", "--a", "0", "--b", "1", "--num", "3", "--rtol", "1e-2",
         "--atol", "1e-2", "--out", str(tmp_path / "i.png")],
    ]  # fmt: skip
    code = (
        f"import sys\nfrom fokker.cli import main\nfor args in {runs!r}:\n"
        "    assert main([*args, '--no-progress']) == 0, args\nprint('fokker.train' in sys.modules)"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", code], cwd=world, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "False", r.stdout
    assert (tmp_path / "eval" / "metrics.json").exists() and (tmp_path / "nll" / "likelihood.json").exists()


# --------------------------------------------------------------------------- flags -> config fields


def test_train_flags_set_their_config_fields_as_given():
    """A flag's value goes to its field as it is (no YAML round trip: a folder named 2023 stays a string);
    --process of another type replaces the section, of the preset's own type keeps its settings."""
    import argparse

    from fokker.cli.settings import TRAIN_FIELDS, flag_overrides, train_config

    flags = {"data": "2023", "seed": 0, "batch_size": None, "process": "ve", "loss": "dsm", "autoencoder": "2024"}
    args = argparse.Namespace(preset="toy", overrides=["train.lr=2e-3"], **flags)
    assert flag_overrides(args, TRAIN_FIELDS) == [
        ("data.name", "2023"), ("train.seed", 0), ("process.type", "ve"), ("train.loss", "dsm"),
        ("latent.autoencoder", "2024"),
    ]  # fmt: skip
    config = train_config(args)
    assert config["data"]["name"] == "2023" and config["train"]["seed"] == 0 and config["train"]["lr"] == 2e-3
    assert config["process"] == {"type": "ve"} and config["train"]["loss"] == "dsm"
    assert config["latent"]["autoencoder"] == "2024"
    own = train_config(argparse.Namespace(preset="ve-toy", overrides=[], **{**flags, "data": None}))
    assert own["process"]["type"] == "ve" and own["process"]["sigma_max"] == 4.0
