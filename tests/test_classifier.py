"""Noise-conditional classifiers (fokker.classifier): the networks, the cross-entropy loss against a hand
computation, the conditioning against the Denoiser's, gradients against a closed form, training on the
8 Gaussians against the Bayes classifier of the exact noised mixture, exact resume, the accuracy report
and its trimming, loading and the refusals."""

import json
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_train import assert_same_state, metrics

from fokker.checkpoint import load_checkpoint
from fokker.classifier import NoisyClassifier, load_classifier, read_accuracy, report_times
from fokker.classifier.report import summary
from fokker.cli.main import main
from fokker.config import apply_overrides, load_preset, validate
from fokker.data import load_dataset
from fokker.denoiser import CONDITIONINGS, Denoiser
from fokker.errors import UserError
from fokker.losses import CrossEntropyLoss, training_loss
from fokker.model import load_model, resolve_config
from fokker.nets import NETWORKS, UNet, build_network, network_task
from fokker.noise import randn
from fokker.processes import VE, VP
from fokker.targets import GaussianMixture
from fokker.train import train
from fokker.weights import read_weights

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

TINY_MLP = ["model.network.hidden=32", "model.network.depth=2", "data.num_points=2000", "train.batch_size=64"]
TINY_ENCODER = [
    "data.name=digits",
    "model.network.type=unet_encoder",
    "model.network.base_channels=8",
    "model.network.channel_mult=[1, 2]",
    "model.network.attention_resolutions=[4]",
    "model.network.dropout=0.1",  # dropout draws from the global RNG: it must be restored too
    "train.batch_size=16",
]
GAUSS8 = ["data.name=8gaussians", "data.num_points=4000"]


def config_for(*overrides: str, preset: str = "classifier-toy") -> dict:
    return apply_overrides(load_preset(preset), list(overrides))


def quiet(*overrides: str) -> dict:
    return config_for(*TINY_MLP, "train.log_every=5", "train.warmup=5", *overrides)


# --------------------------------------------------------------------------- networks


def test_the_classifier_networks_map_inputs_to_one_logit_per_class():
    for size, mult, attention in ((28, [1, 2, 2], [7]), (8, [1, 2], [4]), (9, [1, 2, 2], [])):
        net = build_network(
            {"type": "unet_encoder", "num_classes": 10, "in_channels": 3, "base_channels": 8,
             "channel_mult": mult, "attention_resolutions": attention, "image_size": size}
        )  # fmt: skip
        assert net(torch.randn(5, 3, size, size), torch.rand(5)).shape == (5, 10)
        assert build_network(net.config).config == net.config
    mlp = build_network({"type": "mlp_classifier", "dim": 2, "num_classes": 8, "hidden": 16, "depth": 2})
    logits = mlp(torch.randn(6, 2), 0.5)
    assert logits.shape == (6, 8) and torch.equal(logits, torch.zeros(6, 8))  # zero head: uniform at init
    assert build_network(mlp.config).config == mlp.config
    assert {k: network_task(k) for k in NETWORKS} == {
        "unet": "denoiser", "dit": "denoiser", "mlp": "denoiser", "unet_encoder": "classifier",
        "mlp_classifier": "classifier", "vae": "autoencoder", "vqvae": "autoencoder",
    }  # fmt: skip


def test_the_encoder_is_the_unets_encoder_and_middle_block():
    """The same blocks, built by the same code: parameter for parameter the U-Net's time embedding, conv_in,
    encoder and middle block, with the same initial weights from the same seed."""
    sizes = {"in_channels": 1, "base_channels": 8, "channel_mult": (1, 2, 2), "attention_resolutions": (7,),
             "image_size": 28, "num_res_blocks": 2}  # fmt: skip
    torch.manual_seed(0)
    unet = UNet(**sizes).state_dict()
    torch.manual_seed(0)
    encoder = build_network({"type": "unet_encoder", "num_classes": 10, **sizes}).state_dict()
    shared = [k for k in unet if k.split(".")[0] in ("time_embed", "conv_in", "down", "mid")]
    assert shared == [k for k in encoder if not k.startswith("out.")]
    for k in shared:
        assert torch.equal(unet[k], encoder[k]), k
    assert encoder["out.4.weight"].shape == (10, 16)  # GN, SiLU, pool, flatten, Linear


# --------------------------------------------------------------------------- conditioning and gradients


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_the_classifier_conditions_the_network_as_the_denoiser_does(conditioning):
    process = VP(T=1000, schedule="cosine") if conditioning == "index" else VE(0.01, 50.0)
    seen = {}

    def network(name):
        def fn(x, c):
            seen[name] = c
            return x[:, :3]

        return fn

    x = torch.randn(4, 5)
    for t in (0.37, torch.tensor([0.001, 0.25, 0.5, 1.0], dtype=torch.float64)):
        NoisyClassifier(network("classifier"), process, conditioning).logits(x, t)
        Denoiser(network("denoiser"), process, conditioning=conditioning).raw(x, t)
        assert seen["classifier"].shape == (4,) and seen["classifier"].dtype == x.dtype
        assert torch.equal(seen["classifier"], seen["denoiser"])
    with pytest.raises(UserError, match="conditioning 'index' needs a discrete process"):
        NoisyClassifier(network("classifier"), VE(), "index")


def test_log_probs_have_the_gradient_of_a_linear_softmax_classifier():
    """logits = W x + b: grad_x log p(y | x) = W_y - sum_k p_k W_k, in float64 inputs too."""
    gen = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(3, 4).double()
    classifier = NoisyClassifier(lambda x, c: linear(x), VP(T=1000))
    x = torch.randn(6, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    log_p = classifier.log_probs(x, 0.3)
    assert torch.allclose(log_p.exp().sum(-1), torch.ones(6, dtype=torch.float64))
    (grad,) = torch.autograd.grad(log_p.gather(1, y[:, None]).sum(), x)
    w = linear.weight.detach()
    expected = w[y] - log_p.detach().exp() @ w
    assert torch.allclose(grad, expected, rtol=1e-10, atol=1e-12)


def test_a_float32_network_takes_float64_inputs_and_returns_their_dtype():
    net = build_network({"type": "mlp_classifier", "dim": 2, "num_classes": 3, "hidden": 8, "depth": 1})
    torch.nn.init.normal_(net.head.weight)
    classifier = NoisyClassifier(net, VP(T=1000))
    x = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    t = torch.full((5,), 0.5, dtype=torch.float64)
    log_p = classifier.log_probs(x, t)
    assert log_p.dtype == torch.float64
    (grad,) = torch.autograd.grad(log_p[:, 1].sum(), x)
    assert grad.dtype == torch.float64 and grad.abs().sum() > 0
    assert torch.allclose(log_p.float(), classifier.log_probs(x.detach().float(), 0.5), atol=1e-6)


# --------------------------------------------------------------------------- the loss


def test_cross_entropy_at_given_times_and_noise_is_computed_by_hand():
    process = VP(T=1000, schedule="cosine")
    net = build_network({"type": "mlp_classifier", "dim": 2, "num_classes": 3, "hidden": 8, "depth": 2})
    torch.nn.init.normal_(net.head.weight)
    classifier = NoisyClassifier(net, process, "index")
    gen = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(5, 2, generator=gen), torch.randn(5, 2, generator=gen)
    y = torch.tensor([0, 2, 1, 1, 0])
    t = torch.tensor([0.001, 0.2, 0.5, 0.9, 1.0], dtype=torch.float64)
    loss = CrossEntropyLoss()(classifier, x0, t=t, noise=noise, model_kwargs={"y": y})
    abar = process.alpha(t) ** 2
    x_t = abar.sqrt().float()[:, None] * x0 + (1 - abar).sqrt().float()[:, None] * noise
    logits = net(x_t, (t * 1000).float())
    expected = torch.logsumexp(logits, 1) - logits[torch.arange(5), y]
    assert loss.shape == (5,) and torch.allclose(loss, expected, rtol=1e-5, atol=1e-6)
    assert training_loss("cross_entropy") == CrossEntropyLoss()


def test_cross_entropy_draws_its_times_as_the_process_draws_training_times():
    process = VP(T=1000)
    net = build_network({"type": "mlp_classifier", "dim": 2, "num_classes": 2, "hidden": 8, "depth": 1})
    torch.nn.init.normal_(net.head.weight)
    classifier = NoisyClassifier(net, process)
    x0, y = torch.randn(64, 2), torch.randint(0, 2, (64,))
    drawn = CrossEntropyLoss()(classifier, x0, generator=torch.Generator().manual_seed(3), model_kwargs={"y": y})
    gen = torch.Generator().manual_seed(3)
    t = process.sample_time(64, gen)
    given = CrossEntropyLoss()(classifier, x0, t=t, noise=randn(x0.shape, gen), model_kwargs={"y": y})
    assert torch.equal(drawn, given)
    with pytest.raises(UserError, match="needs the labels of the batch"):
        CrossEntropyLoss()(classifier, x0, generator=gen)


# --------------------------------------------------------------------------- the config


BAD_CONFIGS = [
    (["model.prediction=x0"], "model.prediction='x0' has no effect on a noise-conditional classifier"),
    (["model.clip=[-1, 1]"], "model.clip=[-1, 1] has no effect on a noise-conditional classifier"),
    (["model.conditional=true"], "model.conditional=True has no effect on a noise-conditional classifier"),
    (["model.variance=learned"], "model.variance='learned' has no effect on a noise-conditional classifier"),
    (["train.p_uncond=0.1"], "train.p_uncond=0.1 has no effect on a noise-conditional classifier"),
    (["train.weighting=likelihood"], "train.weighting='likelihood' has no effect on a noise-conditional"),
    (["sample.sampler=ddpm"], "sample.sampler='ddpm' has no effect on a noise-conditional classifier"),
    (
        ["sample.num=16"],
        "sample.num=16 has no effect on a noise-conditional classifier (model.network.type "
        "mlp_classifier): it draws no samples",
    ),
    (
        ["train.loss=simple"],
        "train.loss simple trains a denoiser, but model.network.type mlp_classifier is a "
        "classifier network: use train.loss cross_entropy",
    ),
    (["train.loss=vlb"], "train.loss vlb trains a denoiser, but model.network.type mlp_classifier is a classifier"),
]


@pytest.mark.parametrize(
    ("overrides", "message"), BAD_CONFIGS, ids=lambda v: " ".join(v) if isinstance(v, list) else None
)
def test_options_a_classifier_does_not_read_are_refused(overrides, message):
    with pytest.raises(UserError) as err:
        validate(config_for(*overrides))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_the_sample_section_a_classifier_does_not_read_is_not_checked_against_its_process():
    assert validate(config_for("process.T=20")).sample.steps == 50  # more steps than T: unread, so no error
    with pytest.raises(UserError, match=re.escape("sample.steps: steps must be at most T = 20")):
        validate(apply_overrides(load_preset("toy"), ["process.T=20"]))


def test_a_diffusion_model_cannot_train_with_cross_entropy():
    with pytest.raises(UserError, match=re.escape("train.loss cross_entropy trains a classifier, but model.network")):
        validate(apply_overrides(load_preset("toy"), ["train.loss=cross_entropy"]))


def test_a_classifier_takes_its_sizes_and_classes_from_labelled_data():
    config = resolve_config(validate(config_for(*GAUSS8)), load_dataset("8gaussians", num_points=10))
    assert config.model.network | {"num_classes": 8, "dim": 2} == config.model.network
    digits = load_dataset("digits")
    config = resolve_config(validate(config_for(preset="classifier-mnist")), digits)
    net = config.model.network
    assert (net["num_classes"], net["in_channels"], net["image_size"]) == (10, 1, 8)
    cases = [
        (config_for("data.name=swiss_roll"), "swiss_roll", "a classifier (mlp_classifier) needs class labels, but"),
        (config_for("model.network.num_classes=3"), "moons", "model.network.num_classes=3 but 'moons' has 2 classes"),
        (config_for(), "digits", "an mlp_classifier network needs vector data; digits has shape (1, 8, 8)"),
        (config_for(preset="classifier-mnist"), "moons", "a unet_encoder network needs image data; moons has shape"),
    ]
    for raw, data, message in cases:
        with pytest.raises(UserError, match=re.escape(message)):
            resolve_config(validate(raw), load_dataset(data, num_points=10))


def test_the_presets_use_the_processes_of_the_runs_they_guide():
    for classifier, model in (("classifier-mnist", "mnist"), ("classifier-toy", "toy")):
        config, guided = validate(load_preset(classifier)), validate(load_preset(model))
        assert config.process == guided.process and config.data.name == guided.data.name
        assert config.model.task == "classifier" and config.train.loss == "cross_entropy"
    assert load_preset("mnist")["process"] == {"type": "vp", "T": 1000, "schedule": "cosine"}


# --------------------------------------------------------------------------- training


def bayes_accuracy(test, times: torch.Tensor, process, seed: int) -> torch.Tensor:
    """The accuracy of the Bayes classifier of the exact noised 8-Gaussian mixture (fokker.data.toys: centres
    2 (cos k pi/4, sin k pi/4) / 2.6, std 0.2 / 2.6, truncated at 3 std) with the trainer's noise."""
    angle = torch.arange(8, dtype=torch.float64) * math.pi / 4
    mixture = GaussianMixture(torch.ones(8), 2 * torch.stack([angle.cos(), angle.sin()], 1) / 2.6,
                              torch.full((8,), 0.2 / 2.6))  # fmt: skip
    bayes = NoisyClassifier(lambda x, t: mixture.responsibilities(x, t, process).log(), process)
    return bayes.accuracy_by_time(test.data, test.labels, times, torch.Generator().manual_seed(seed))


def test_a_trained_toy_classifier_is_near_the_bayes_classifier_at_every_t(tmp_path):
    """400 steps on the 8 Gaussians: at every t of the report within 0.04 of the Bayes classifier's accuracy
    on the same 2,000 held-out points and noise (a sampling floor of about 0.005 for the difference), so
    near 1 at t = 0 and near chance 1/8 at t = 1, where the signal is alpha(1) = 0.006."""
    config = config_for(*GAUSS8, "train.sample_every=400", "train.log_every=100")
    train(config, tmp_path / "run", device="cpu", budget={"steps": 400}, progress=False)
    report = read_accuracy(tmp_path / "run")
    assert [e["step"] for e in report["evaluations"]] == [400]
    assert report["times"] == report_times().tolist() and report["chance"] == 1 / 8
    accuracy = torch.tensor(report["evaluations"][0]["accuracy"], dtype=torch.float64)
    test = load_dataset("8gaussians", split="test", num_points=4000, seed=0)
    test.data, test.labels = test.data[: report["examples"]], test.labels[: report["examples"]]
    bayes = bayes_accuracy(test, report_times(), VP(T=1000, schedule="linear"), seed=0)
    assert (accuracy - bayes).abs().max() < 0.04, (accuracy - bayes).abs().max()
    assert accuracy[0] > 0.99 and abs(accuracy[-1] - 1 / 8) < 0.03
    assert accuracy[:4].min() > 3 / 8  # three times chance and more for t <= 0.15


# --------------------------------------------------------------------------- resume and the report

RESUME_CASES = {
    "toy-mlp": ([*TINY_MLP, *GAUSS8[:1]], 20),
    "digits-encoder": (TINY_ENCODER, 4),
}


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resumed_training_of_a_classifier_equals_uninterrupted_training_bit_for_bit(case, tmp_path):
    """As for a diffusion model (test_train): train A for 2k steps, B for k and resume it to 2k; the
    checkpoints, the exported weights, the logs and the accuracy reports are equal bit for bit."""
    overrides, k = RESUME_CASES[case]
    config = config_for(*overrides, f"train.checkpoint_every={k}", f"train.sample_every={k}", "train.log_every=2",
                        "train.keep_last=5")  # fmt: skip
    a, b = tmp_path / "a", tmp_path / "b"
    train(config, a, device="cpu", budget={"steps": 2 * k}, progress=False)
    assert train(config, b, device="cpu", budget={"steps": k}, progress=False).step == k
    assert train({}, b, resume=True, device="cpu", budget={"steps": 2 * k}, progress=False).step == 2 * k
    state_a, state_b = load_checkpoint(a), load_checkpoint(b)
    for part in ("model", "ema", "optimizer", "scheduler", "rng"):
        assert_same_state(state_a[part], state_b[part], part)
    assert_same_state(read_weights(a / "model.safetensors")[0], read_weights(b / "model.safetensors")[0])
    assert metrics(a) == [{**r, "steps_per_sec": m["steps_per_sec"], "elapsed": m["elapsed"]}
                          for r, m in zip(metrics(b), metrics(a), strict=True)]  # fmt: skip
    assert (a / "accuracy.json").read_text() == (b / "accuracy.json").read_text()
    assert [e["step"] for e in read_accuracy(b)["evaluations"]] == [k, 2 * k]
    assert sorted(p.name for p in (b / "accuracy").iterdir()) == [f"step_{k:08d}.png", f"step_{2 * k:08d}.png"]
    assert not (b / "samples").exists()


def test_the_report_of_steps_after_the_checkpoint_resumed_from_is_dropped_and_measured_again(tmp_path):
    run = tmp_path / "run"
    config = quiet("train.checkpoint_every=10", "train.sample_every=5", "train.keep_last=5")
    train(config, run, device="cpu", budget={"steps": 20}, progress=False)
    before = (run / "accuracy.json").read_text()
    assert [e["step"] for e in read_accuracy(run)["evaluations"]] == [5, 10, 15, 20]
    (run / "latest").write_text("step_00000010\n")  # as if killed before the checkpoint of step 20
    train({}, run, resume=True, device="cpu", budget={"steps": 10}, progress=False)
    assert [e["step"] for e in read_accuracy(run)["evaluations"]] == [5, 10]
    assert sorted(p.name for p in (run / "accuracy").iterdir()) == ["step_00000005.png", "step_00000010.png"]
    train({}, run, resume=True, device="cpu", budget={"steps": 20}, progress=False)
    assert (run / "accuracy.json").read_text() == before
    assert len(list((run / "accuracy").iterdir())) == 4
    assert summary(run).startswith("accuracy at step 20 on 2000 test examples by t (0: ")


def test_a_damaged_report_is_one_clear_error(tmp_path):
    (tmp_path / "accuracy.json").write_text("{not json")
    with pytest.raises(UserError, match=re.escape("accuracy.json is not JSON: the run's accuracy report is damaged")):
        read_accuracy(tmp_path)
    assert read_accuracy(tmp_path / "nothing") == {"evaluations": []}


def test_accuracy_by_time_does_not_depend_on_the_batch():
    net = build_network({"type": "mlp_classifier", "dim": 2, "num_classes": 8, "hidden": 16, "depth": 2})
    torch.nn.init.normal_(net.head.weight)
    classifier = NoisyClassifier(net.eval(), VP(T=1000))
    test = load_dataset("8gaussians", split="test", num_points=300)
    times = report_times()
    by_batch = [
        classifier.accuracy_by_time(test.data, test.labels, times, torch.Generator().manual_seed(0), batch)
        for batch in (7, 300)
    ]
    assert torch.equal(*by_batch) and by_batch[0].dtype == torch.float64 and by_batch[0].shape == (21,)


# --------------------------------------------------------------------------- loading


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """A classifier run and a diffusion model's run, 5 steps each."""
    root = tmp_path_factory.mktemp("classifier-runs")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    train(quiet(), root / "clf", device="cpu", budget={"steps": 5}, progress=False)
    toy = apply_overrides(load_preset("toy"), [*TINY_MLP, "sample.num=8", "sample.steps=2"])
    train(toy, root / "toy", device="cpu", budget={"steps": 5}, progress=False)
    torch.set_num_threads(n)
    return root


def test_load_classifier_gives_the_runs_ema_network_with_its_process(runs):
    classifier, config = load_classifier(runs / "clf")
    assert isinstance(classifier, NoisyClassifier) and config.model.task == "classifier"
    assert classifier.process.config() == VP(T=1000, schedule="linear").config()
    ema = load_checkpoint(runs / "clf")["ema"]
    net = build_network(config.model.network)
    net.load_state_dict(ema)
    x = torch.randn(4, 2)
    assert torch.equal(classifier.logits(x, 0.5), net.eval()(x, torch.full((4,), 0.5)))
    again, _ = load_classifier(runs / "clf" / "model.safetensors")
    assert torch.equal(again.log_probs(x, 0.5), classifier.log_probs(x, 0.5))
    assert not any(p.requires_grad for p in classifier.network.parameters())


def test_a_classifier_is_not_a_diffusion_model_and_back(runs):
    with pytest.raises(UserError) as err:
        load_model(runs / "clf")
    assert str(err.value) == (
        f"{runs / 'clf' / 'model.safetensors'} holds a noise-conditional classifier (model.network.type "
        "mlp_classifier), not a diffusion model; load it with fokker.classifier.load_classifier"
    )
    with pytest.raises(UserError, match=re.escape("holds a diffusion model (model.network.type mlp), not a noise-")):
        load_classifier(runs / "toy")


def test_fokker_sample_on_a_classifier_fails_with_one_line(runs, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["sample", "--checkpoint", str(runs / "clf"), "--out", str(out), "--no-progress"]) == 2
    stdout, stderr = capsys.readouterr()
    assert stdout == "" and len(stderr.splitlines()) == 1 and not out.exists()
    assert stderr.startswith("fokker sample: error: ") and "holds a noise-conditional classifier" in stderr


def test_the_command_line_trains_a_classifier_and_reports_its_accuracy(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["train", "--preset", "classifier-toy", "--steps", "10", "--out", "clf", "--no-progress", *TINY_MLP]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == summary(tmp_path / "clf") and lines[-1].startswith("accuracy at step 10 on 2000 test")
    assert json.loads((tmp_path / "clf" / "accuracy.json").read_text())["split"] == "test"
    assert F.softmax(load_classifier(tmp_path / "clf")[0].logits(torch.zeros(1, 2), 1.0), -1).shape == (1, 2)
