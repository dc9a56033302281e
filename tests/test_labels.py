"""Class labels through training and sampling: model.conditional takes the classes from the data, the
trainer feeds each batch's labels with label dropout train.p_uncond, the run records it, and a trained
conditional toy model's samples of class k are of class k (`fokker sample --class`, fokker.sample)."""

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from test_cli import TINY, fokker, snapshot
from torch import nn

import fokker as fk
from fokker.cli import main
from fokker.config import RunConfig, apply_overrides, load_preset, validate
from fokker.data import dataset_names, load_dataset
from fokker.errors import UserError
from fokker.labels import P_UNCOND, class_grid, label_dropout, parse_classes
from fokker.model import load_model, resolve_config
from fokker.samplers import sample_seeded
from fokker.targets import GaussianMixture, exact_denoiser
from fokker.train import sample_pictures, train
from fokker.viz import class_rows
from fokker.weights import read_weights

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

# 8 Gaussians on a circle, centre k at angle k pi / 4 (fokker.data.toys.eight_gaussians): a 64 x 2 MLP learns the
# classes in 600 steps (~4 s); measured: 100% of DDIM-20 samples of every class land nearest their centre
GAUSS8 = ["data.name=8gaussians", "model.conditional=true", "model.network.hidden=64", "model.network.depth=2"]
GAUSS8 += ["data.num_points=2000", "train.batch_size=128", "train.warmup=20", "sample.num=16", "sample.steps=5"]


def nearest_centre(x: torch.Tensor) -> torch.Tensor:
    """The class of 8gaussians points: the index of the nearest of the 8 centres, i.e. of the nearest angle."""
    return torch.round(torch.atan2(x[:, 1], x[:, 0]) / (math.pi / 4)).long() % 8


def config_for(*overrides: str, preset: str = "toy") -> dict:
    return apply_overrides(load_preset(preset), list(overrides))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """A folder with a trained conditional 8gaussians run, an unconditional one and one with p_uncond 0."""
    root = tmp_path_factory.mktemp("labels")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    train(config_for(*GAUSS8), root / "cond", device="cpu", budget={"steps": 600}, progress=False)
    train(config_for(*TINY), root / "uncond", device="cpu", budget={"steps": 2}, progress=False)
    train(config_for(*GAUSS8, "train.p_uncond=0"), root / "p0", device="cpu", budget={"steps": 2}, progress=False)
    torch.set_num_threads(n)
    return root


# --------------------------------------------------------------------------- the config


def test_a_conditional_model_takes_its_classes_from_the_data_and_the_run_records_them(runs):
    config = resolve_config(config_for(*GAUSS8), load_dataset("8gaussians", num_points=10))
    assert config.model.network["num_classes"] == 8 and config.train.p_uncond == P_UNCOND == 0.1
    saved = yaml.safe_load((runs / "cond" / "config.yaml").read_text())
    _, exported = read_weights(runs / "cond" / "model.safetensors")
    for c in (saved, exported):
        assert c["model"]["conditional"] is True and c["model"]["network"]["num_classes"] == 8
        assert c["train"]["p_uncond"] == 0.1
    state, _ = read_weights(runs / "cond" / "model.safetensors")
    assert state["label_embed.table.weight"].shape[0] == 9  # 8 classes and the null class
    denoiser, _ = load_model(runs / "cond")
    assert denoiser.fn.label_embed.num_classes == 8
    unconditional = yaml.safe_load((runs / "uncond" / "config.yaml").read_text())
    assert unconditional["model"]["conditional"] is False and unconditional["train"]["p_uncond"] is None
    assert unconditional["model"]["network"].get("num_classes") is None


def test_the_labelled_data_sets_are_those_the_error_names():
    """The UserError for data without labels lists the built-in sets that have them: check that list."""
    with pytest.raises(UserError) as err:
        resolve_config(config_for("model.conditional=true", "data.name=swiss_roll"), load_dataset("swiss_roll"))
    message = str(err.value)
    assert message.startswith("model.conditional=true needs class labels, but the data set 'swiss_roll' has none")
    for name in dataset_names():
        labelled = load_dataset(name, num_points=10).num_classes is not None
        assert (f" {name}," in message) == labelled, name


def test_a_folder_without_class_subfolders_cannot_train_a_conditional_model(tmp_path):
    for i in range(2):
        Image.new("L", (8, 8), 100 * i).save(tmp_path / f"{i}.png")
    data = load_dataset(str(tmp_path))
    assert data.num_classes is None
    with pytest.raises(UserError, match=f"the data set '{tmp_path.name}' has none"):
        resolve_config(config_for("model.conditional=true", preset="images"), data)
    (tmp_path / "cats").mkdir()
    (tmp_path / "0.png").rename(tmp_path / "cats" / "0.png")
    (tmp_path / "dogs").mkdir()
    (tmp_path / "1.png").rename(tmp_path / "dogs" / "1.png")
    config = resolve_config(config_for("model.conditional=true", preset="images"), load_dataset(str(tmp_path)))
    assert config.model.network["num_classes"] == 2


BAD_CONFIGS = [
    (["model.conditional=1"], "bad value for model.conditional: 1; expected true or false"),
    (["train.p_uncond=0.2"], "train.p_uncond=0.2 (label dropout) has no effect on an unconditional model"),
    (["model.conditional=true", "train.p_uncond=1"], "bad value for train.p_uncond: 1; expected a number in [0, 1)"),
    (["model.conditional=true", "train.p_uncond=-0.1"], "bad value for train.p_uncond: -0.1; expected a number"),
    (["model.conditional=true", "train.p_uncond=true"], "bad value for train.p_uncond: True; expected a number"),
    (["model.conditional=true", "train.p_uncond=lots"], "bad value for train.p_uncond: 'lots'; expected a number"),
    (["model.network.num_classes=2"], "model.network.num_classes=2 on an unconditional model would train only"),
]


@pytest.mark.parametrize(
    ("overrides", "message"), BAD_CONFIGS, ids=lambda v: " ".join(v) if isinstance(v, list) else None
)
def test_label_options_that_would_do_nothing_or_harm_are_refused(overrides, message):
    with pytest.raises(UserError) as err:
        validate(config_for(*overrides))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_a_hand_set_num_classes_must_be_the_datas():
    data = load_dataset("moons", num_points=10)
    same = resolve_config(config_for("model.conditional=true", "model.network.num_classes=2"), data)
    assert same.model.network["num_classes"] == 2
    with pytest.raises(UserError, match=re.escape("model.network.num_classes=3 but 'moons' has 2 classes")):
        resolve_config(config_for("model.conditional=true", "model.network.num_classes=3"), data)


def test_user_errors_of_train_from_the_command_line(tmp_path):
    r = fokker(
        "train", "--out", "new", "--steps", "2", "model.conditional=true", "data.name=checkerboard", cwd=tmp_path
    )
    assert r.returncode == 2 and r.stderr.startswith("fokker train: error: model.conditional=true needs class")
    assert len(r.stderr.splitlines()) == 1 and list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- labels in training


class Recorder(nn.Module):
    """A network that records the labels it is given while training (gradients on)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net, self.seen = net, []

    def forward(self, x, t, y=None):
        if torch.is_grad_enabled():
            self.seen.append(None if y is None else y.clone())
        return self.net(x, t, y)


def train_recording(monkeypatch, tmp_path, config: dict, steps: int) -> list:
    """Train with the network wrapped in a Recorder; the labels it saw, one entry per evaluation."""
    import fokker.train.build as trainer

    built = []

    def build(spec):
        built.append(Recorder(trainer_build(spec)))
        return built[-1]

    trainer_build = trainer.build_network
    monkeypatch.setattr(trainer, "build_network", build)
    train(config, tmp_path / "run", device="cpu", budget={"steps": steps}, progress=False)
    return built[0].seen


LOSSES = {
    "simple": [],
    "dsm": ["train.loss=dsm"],
    "ssm": ["train.loss=ssm"],
    "ism": ["train.loss=ism"],
    "vlb": ["train.loss=vlb", "model.variance=learned"],
    "hybrid": ["train.loss=hybrid", "model.variance=learned"],
    "importance": ["train.loss=vlb", "train.time_sampler=importance", "process.T=20"],
}


@pytest.mark.parametrize("loss", list(LOSSES))
def test_every_loss_feeds_the_batch_labels_to_the_network(loss, monkeypatch, tmp_path):
    """The labels reach the network in every loss (vlb / hybrid through fokker.vlb; the importance sampler
    of t), with the null class 8 for the dropped ones and the classes of 8gaussians otherwise."""
    config = config_for(*GAUSS8, "train.sample_every=1000", "train.batch_size=256", *LOSSES[loss])
    seen = train_recording(monkeypatch, tmp_path, config, 3)
    assert len(seen) == 3 and all(y is not None and y.shape == (256,) and y.dtype == torch.long for y in seen)
    y = torch.cat(seen)
    assert set(y.tolist()) == set(range(9))
    assert 0.05 < (y == 8).float().mean() < 0.15  # p_uncond 0.1 of 768 labels: sd 0.011


def test_an_unconditional_model_gets_no_labels(monkeypatch, tmp_path):
    seen = train_recording(monkeypatch, tmp_path, config_for(*TINY, "train.sample_every=1000"), 2)
    assert seen == [None, None]


@pytest.mark.parametrize("p", [0.0, 0.3, 0.7])
def test_label_dropout_drops_the_asked_fraction(p):
    """Each label is dropped to the null class with probability p: 100,000 labels, sd of the fraction <= 0.0016,
    so a bound of 0.01 (6 sd) cannot fail by chance; the kept labels are untouched."""
    labels = torch.randint(0, 10, (100_000,), generator=torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(0)
    dropped = label_dropout(labels, p, 10, gen)
    null = dropped == 10
    assert abs(null.float().mean().item() - p) < 0.01
    assert torch.equal(dropped[~null], labels[~null])
    again = label_dropout(labels, p, 10, torch.Generator().manual_seed(0))
    assert torch.equal(dropped, again)  # drawn from the generator only
    if p == 0:
        assert torch.equal(gen.get_state(), torch.Generator().manual_seed(0).get_state())  # nothing drawn


def test_the_trainer_drops_labels_at_p_uncond(monkeypatch, tmp_path):
    """train.p_uncond = 0.3 over 20 x 256 labels: the null fraction within 0.03 (sd 0.0064, ~5 sd)."""
    config = config_for(*GAUSS8, "train.sample_every=1000", "train.batch_size=256", "train.p_uncond=0.3")
    y = torch.cat(train_recording(monkeypatch, tmp_path, config, 20))
    assert abs((y == 8).float().mean().item() - 0.3) < 0.03


def test_training_pictures_show_the_classes():
    """Picture i of a conditional model is of class i % K: the sampler gets those labels."""
    seen = []

    def fn(x, c, y=None):
        seen.append(y)
        return torch.zeros_like(x)

    config = resolve_config(config_for(*GAUSS8, "sample.num=20"), load_dataset("8gaussians", num_points=10))
    denoiser = fk.Denoiser(fn, fk.VP(T=1000))
    sample_pictures(denoiser, config, torch.zeros(20, 2))
    assert len(seen) == 5 and all(torch.equal(y, torch.arange(20) % 8) for y in seen)


def test_a_conditional_image_run_draws_one_row_per_class(tmp_path):
    """digits, 10 classes, 20 pictures: a grid of 10 rows of 2 (8x8 pixels, 2 px padding, upscaled x2)
    where an unconditional run draws a near-square 5 x 4 grid."""
    tiny_unet = [
        "model.network.base_channels=8",
        "model.network.channel_mult=[1]",
        "model.network.attention_resolutions=[]",
    ]
    common = [*tiny_unet, "train.batch_size=8", "sample.num=20", "sample.steps=2"]
    for name, extra in (("cond", ["model.conditional=true"]), ("uncond", [])):
        train(
            config_for(*common, *extra, preset="digits"),
            tmp_path / name,
            device="cpu",
            budget={"steps": 1},
            progress=False,
        )
    cond = Image.open(tmp_path / "cond" / "samples" / "step_00000001.png")
    uncond = Image.open(tmp_path / "uncond" / "samples" / "step_00000001.png")
    assert cond.size == (2 * (2 * 10 + 2), 2 * (10 * 10 + 2))
    assert uncond.size == (4 * (5 * 10 + 2), 4 * (4 * 10 + 2))


def test_class_rows_puts_each_class_on_its_own_row():
    x = torch.arange(7.0)[:, None, None, None].expand(7, 1, 2, 2) / 10
    grid, nrow = class_rows(x, torch.tensor([0, 1, 2, 0, 1, 2, 0]))
    assert nrow == 3
    assert grid[:, 0, 0, 0].tolist() == pytest.approx([0.0, 0.3, 0.6, 0.1, 0.4, 1.0, 0.2, 0.5, 1.0])  # 1 = blank


# --------------------------------------------------------------------------- sampling classes


def test_samples_of_class_k_are_of_class_k(runs):
    """The acceptance test: 200 DDIM-20 samples of each class of the conditional 8gaussians model; the
    nearest centre is the asked class for > 90% of them, every class (chance: 12.5%; measured 100%).
    Without a class (the null class) the samples cover all 8 classes."""
    denoiser, _ = load_model(runs / "cond")
    for k in range(8):
        y = torch.full((200,), k)
        x, _ = fk.sample(denoiser, "ddim", 20, shape=(200, 2), generator=torch.Generator().manual_seed(k),
                         model_kwargs={"y": y})  # fmt: skip
        assert (nearest_centre(x) == k).float().mean() > 0.9, k
    x, _ = fk.sample(denoiser, "ddim", 20, shape=(800, 2), generator=torch.Generator().manual_seed(9))
    share = torch.bincount(nearest_centre(x), minlength=8).float() / 800
    assert (share > 0.05).all() and (share < 0.25).all(), share  # each 1/8 of the data


def test_sample_seeded_slices_per_sample_labels_with_the_batches():
    """The labels of each batch are its rows of model_kwargs["y"], and a sample does not depend on the
    batch size; noise_ids give sample i the noise of sample noise_ids[i]."""
    mixture = exact_denoiser(GaussianMixture.unequal_2d(), fk.VP(T=1000))
    seen = []

    def fn(x, c, y=None):
        seen.append(y.clone())
        return mixture.fn(x, c) + 0.1 * y[:, None].to(x)  # the label moves the sample

    d = fk.Denoiser(fn, fk.VP(T=1000))
    labels = torch.tensor([3, 1, 4, 1, 5, 9, 2])
    a, _ = sample_seeded(d, "ddpm", 4, (2,), 7, batch_size=3, model_kwargs={"y": labels})
    assert [y.tolist() for y in seen[:4]] == [[3, 1, 4]] * 4 and [y.tolist() for y in seen[8:]] == [[2]] * 4
    b, _ = sample_seeded(d, "ddpm", 4, (2,), 7, batch_size=7, model_kwargs={"y": labels})
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item())
    one, _ = sample_seeded(d, "ddpm", 4, (2,), 1, model_kwargs={"y": labels[2:3]}, noise_ids=[2])
    torch.testing.assert_close(one[0], a[2], rtol=1e-5, atol=1e-5 * a.abs().max().item())
    with pytest.raises(ValueError, match=r"model_kwargs\['y'\] has shape \(6,\); expected 7 rows"):
        sample_seeded(d, "ddpm", 4, (2,), 7, model_kwargs={"y": labels[:6]})
    with pytest.raises(ValueError, match="got 2 noise ids for 7 samples"):
        sample_seeded(d, "ddpm", 4, (2,), 7, model_kwargs={"y": labels}, noise_ids=[0, 1])


def test_class_grid_and_parse_classes():
    labels, ids = class_grid([5, 2], 3)
    assert labels.tolist() == [5, 5, 5, 2, 2, 2] and ids.tolist() == [0, 1, 2, 0, 1, 2]
    config = RunConfig.from_dict(
        {"model": {"conditional": True, "network": {"num_classes": 4}}, "train": {"p_uncond": 0.1}}
    )
    assert parse_classes(None, config) is None
    assert parse_classes(["all"], config) == [0, 1, 2, 3] and parse_classes(["3", "1"], config) == [3, 1]


def load_npz(path: Path) -> dict:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def test_sample_one_class_a_list_and_all_from_the_command_line(runs, tmp_path, capsys):
    """--num is per class; the samples come class by class (one colour per class in the scatter) with
    their labels in the .npz; sample j of every class has the noise of unconditional sample j, so a
    class's samples are the same whichever classes are asked for, and whatever the batch size."""
    cond = str(runs / "cond")
    outputs = {
        "one": ["--class", "3", "--num", "50"],
        "list": ["--class", "1", "3", "5", "--num", "20"],
        "all": ["--class", "all", "--num", "10", "--batch-size", "7"],
        "none": ["--num", "400"],
    }
    for name, args in outputs.items():  # in this process (cli.main) to save the start-up of each
        assert main(["sample", "--checkpoint", cond, *args, "--steps", "20", "--out", str(tmp_path / f"{name}.png"),
                     "--no-progress"]) == 0  # fmt: skip
    one, lst, every, none = (load_npz(tmp_path / f"{n}.npz") for n in outputs)
    assert one["labels"].tolist() == [3] * 50 and (nearest_centre(torch.from_numpy(one["samples"])) == 3).all()
    assert lst["labels"].tolist() == [1] * 20 + [3] * 20 + [5] * 20
    assert every["labels"].tolist() == [k for k in range(8) for _ in range(10)]
    assert (nearest_centre(torch.from_numpy(lst["samples"])).numpy() == lst["labels"]).mean() > 0.9
    assert (nearest_centre(torch.from_numpy(every["samples"])).numpy() == every["labels"]).mean() > 0.9
    scale = np.abs(every["samples"]).max()
    np.testing.assert_allclose(every["samples"][30:40], one["samples"][:10], rtol=1e-5, atol=1e-5 * scale)
    np.testing.assert_allclose(every["samples"][30:40], lst["samples"][20:30], rtol=1e-5, atol=1e-5 * scale)
    assert "labels" not in none and len(none["samples"]) == 400
    assert len(set(nearest_centre(torch.from_numpy(none["samples"])).tolist())) == 8


def test_the_command_line_reports_the_classes(runs, tmp_path):
    r = fokker("sample", "--checkpoint", str(runs / "cond"), "--class", "1", "3", "--num", "4", "--steps", "2",
               "--no-progress", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("sampled 8 (4 of each of classes [1, 3]) with ddim (2 steps")


CLASS_ERRORS = [
    (
        "uncond",
        ["--class", "1"],
        "--class 1: this model is unconditional; --class needs one trained with model.conditional=true",
    ),
    ("cond", ["--class", "8"], "--class 8 is out of range; this model has 8 classes: 0..7"),
    ("cond", ["--class", "-1"], "--class -1 is out of range; this model has 8 classes: 0..7"),
    ("cond", ["--class", "2", "9"], "--class 9 is out of range; this model has 8 classes: 0..7"),
    ("cond", ["--class", "three"], "bad --class 'three'; expected class numbers in 0..7, or all alone"),
    ("cond", ["--class", "²"], "bad --class '²'; expected class numbers in 0..7, or all alone"),
    ("cond", ["--class", "all", "3"], "bad --class 'all'; expected class numbers in 0..7, or all alone"),
    ("cond", ["--class", "2", "2"], "--class lists 2 twice"),
    ("p0", [], "this model was trained with train.p_uncond=0, so it cannot sample without a class; give --class"),
]


@pytest.mark.parametrize(
    ("run", "args", "message"), CLASS_ERRORS, ids=lambda v: " ".join(v) if isinstance(v, list) else v
)
def test_class_errors_exit_2_with_one_line_and_write_nothing(runs, run, args, message, capsys, monkeypatch):
    """In this process (cli.main, as the console script runs it) to save the start-up of one per case."""
    monkeypatch.chdir(runs)
    before = snapshot(runs)
    assert main(["sample", "--checkpoint", run, *args, "--out", "grid.png", "--no-progress"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.splitlines() == [f"fokker sample: error: {message}"]
    assert snapshot(runs) == before
