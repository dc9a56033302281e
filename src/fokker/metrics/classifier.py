"""The feature network of the offline metrics: a small CNN that fokker trains on the data set itself
(the usual practice at MNIST scale, where Inception features mean little), trained once per data set
and cached as safetensors with its held-out accuracy in the metadata.

Its penultimate layer (128 features) plays the role of Inception's pool features for FID and KID, and
its class probabilities the role of Inception's logits for the Inception Score."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from fokker.data import Dataset, load_dataset
from fokker.errors import UserError
from fokker.weights import export_weights, load_strict, read_weights

ARCH_VERSION = 1  # bump when the network or its recipe changes: old cache files are then ignored
FEATURE_DIM = 128


class FeatureNet(nn.Module):
    """conv-conv-pool-conv-conv-pool, a 128-unit feature layer, then class logits."""

    def __init__(self, channels: int, num_classes: int, width: int = 32):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width // 2, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width // 2, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(3), nn.Flatten(),
            nn.Linear(18 * width, FEATURE_DIM), nn.ReLU(),
        )  # fmt: skip
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, logits) of images in [-1, 1]."""
        features = self.body(x)
        return features, self.head(self.dropout(features))


@dataclass
class Classifier:
    """A trained FeatureNet with what it was trained on and its accuracy on the held-out split."""

    net: FeatureNet
    dataset: str
    accuracy: float
    num_test: int

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (N, 128), class probabilities (N, K)) of images in [-1, 1], in float64."""
        self.net.eval()
        device = next(self.net.parameters()).device
        feats, probs = [], []
        for chunk in x.split(batch_size):
            f, logits = self.net(chunk.to(device, torch.float32))
            feats.append(f.double().cpu())
            probs.append(logits.double().softmax(-1).cpu())
        return torch.cat(feats), torch.cat(probs)


def cache_dir() -> Path:
    """Where trained classifiers are kept: $FOKKER_CACHE, else ~/.cache/fokker."""
    return Path(os.environ.get("FOKKER_CACHE") or Path.home() / ".cache" / "fokker") / "classifiers"


def _fingerprint(train: Dataset, seed: int) -> str:
    """Hash of the training images, labels, architecture version and seed: the cache key."""
    h = hashlib.sha256(f"{ARCH_VERSION}:{seed}:{tuple(train.data.shape)}".encode())
    h.update(train.data.numpy().tobytes())
    h.update(train.labels.numpy().tobytes())
    return h.hexdigest()[:16]


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random translations of up to 1/10 of the side and small rotations, one affine warp for the batch."""
    b = x.shape[0]
    angle = (torch.rand(b, generator=generator) - 0.5) * 0.3
    shift = (torch.rand(b, 2, generator=generator) - 0.5) * 0.4
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], -1), torch.stack([sin, cos, shift[:, 1]], -1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x + 1, grid, align_corners=False, padding_mode="zeros") - 1  # background stays -1


def accuracy(classifier: Classifier | FeatureNet, data: Dataset) -> float:
    """Fraction of `data` whose most probable class is its label."""
    if isinstance(classifier, FeatureNet):
        classifier = Classifier(classifier, data.name, float("nan"), 0)
    _, probs = classifier(data.data)
    return float((probs.argmax(-1) == data.labels).double().mean())


def train_classifier(
    train: Dataset, test: Dataset, *, steps: int = 500, seed: int = 0, progress: bool = True
) -> Classifier:
    """Train a FeatureNet for `steps` batches of 128 with AdamW (one-cycle learning rate) and augmentation;
    report its held-out accuracy."""
    if train.labels is None or not train.is_image:
        raise UserError(f"data set {train.name!r} has no labelled images: no classifier features for it")
    g = torch.Generator().manual_seed(seed)  # data order and augmentation
    with torch.random.fork_rng(devices=[]):  # initialization and dropout, leaving the caller's RNG as it was
        torch.manual_seed(seed)
        net = _fit(FeatureNet(train.shape[0], train.num_classes), train, steps, g, progress)
    return Classifier(net.eval(), train.name, accuracy(net, test), len(test))


def _fit(net: FeatureNet, train: Dataset, steps: int, g: torch.Generator, progress: bool) -> FeatureNet:
    """The optimization loop of `train_classifier`."""
    batch = 128
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    net.train()
    bar = tqdm(total=steps, disable=not progress, desc=f"classifier for {train.name}", unit="step")
    done = 0
    while done < steps:  # epochs of shuffled batches, the last one cut at `steps`
        for idx in torch.randperm(len(train), generator=g).split(batch)[: steps - done]:
            _, logits = net(_augment(train.data[idx], g))
            loss = F.cross_entropy(logits, train.labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update()
            done += 1
    bar.close()
    return net


def load_classifier(name: str, *, image_size: int | None = None, channels: int | None = None, seed: int = 0,
                    progress: bool = True) -> Classifier:  # fmt: skip
    """The classifier of data set `name` (built-in or a folder with class subfolders), from the cache, or
    trained now (a minute or two on a CPU) and cached."""
    train = load_dataset(name, split="train", image_size=image_size, channels=channels)
    test = load_dataset(name, split="test", image_size=image_size, channels=channels)
    if train.labels is None or train.num_classes is None or train.num_classes < 2 or not train.is_image:
        raise UserError(f"data set {name!r} has no class labels (image subfolders): no classifier metrics for it")
    path = cache_dir() / f"{Path(name).name}-{train.shape[1]}px-{_fingerprint(train, seed)}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(path.with_suffix(".lock")):  # two processes asking at once: one trains, one waits
        if path.exists():
            state, meta = read_weights(path)
            net = FeatureNet(train.shape[0], train.num_classes)
            load_strict(net, state, path)
            return Classifier(net.eval(), meta["dataset"], meta["accuracy"], meta["num_test"])
        classifier = train_classifier(train, test, seed=seed, progress=progress)
        meta = {"dataset": name, "accuracy": classifier.accuracy, "num_test": classifier.num_test, "seed": seed,
                "arch_version": ARCH_VERSION}  # fmt: skip
        export_weights(path, classifier.net.state_dict(), meta)
        return classifier


@contextlib.contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file `lock` (POSIX; elsewhere no lock is taken)."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
