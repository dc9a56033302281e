"""Offline metrics against closed forms: the Frechet distance of Gaussians, MMD of Gaussians under a Gaussian
kernel, sliced W2 of Gaussians, the cross-entropy of a Gaussian and a mixture; KID's unbiasedness; FID of
a set with itself and under growing noise; the Inception-Score analogue; the MNIST classifier's accuracy."""

import itertools
import math
import typing

import numpy as np
import pytest
import scipy.linalg
import torch

from fokker.data import analytic_target, load_dataset
from fokker.metrics import (
    cross_entropy,
    fid,
    frechet_distance,
    gaussian_kl,
    image_metrics,
    inception_score,
    kid,
    load_classifier,
    mmd,
    mmd2_unbiased,
    sliced_wasserstein,
    vector_metrics,
)
from fokker.targets import GaussianMixture, GaussianTarget

F64 = torch.float64


def random_spd(dim: int, g: torch.Generator) -> torch.Tensor:
    a = torch.randn(dim, dim, generator=g, dtype=F64)
    return a @ a.T / dim + 0.1 * torch.eye(dim, dtype=F64)


# --------------------------------------------------------------------------- Frechet distance


def test_frechet_distance_equals_the_matrix_square_root_formula(gen):
    """Against scipy's sqrtm of C1 C2 (the formula as Heusel et al. write it), for non-commuting covariances."""
    for dim in (1, 3, 16):
        m1, m2 = torch.randn(dim, generator=gen, dtype=F64), torch.randn(dim, generator=gen, dtype=F64)
        c1, c2 = random_spd(dim, gen), random_spd(dim, gen)
        cross = scipy.linalg.sqrtm(c1.numpy() @ c2.numpy()).real.trace()
        expected = ((m1 - m2) ** 2).sum().item() + c1.trace().item() + c2.trace().item() - 2 * cross
        assert frechet_distance(m1, c1, m2, c2) == pytest.approx(expected, rel=1e-9, abs=1e-10)
        assert frechet_distance(m1, c1, m1, c1) == pytest.approx(0, abs=1e-10)


def test_frechet_distance_of_diagonal_gaussians_is_w2_squared():
    """Commuting covariances: W2^2 = |m1 - m2|^2 + sum (s1 - s2)^2."""
    s1, s2 = torch.tensor([0.5, 1.0, 2.0], dtype=F64), torch.tensor([1.5, 1.0, 0.2], dtype=F64)
    m1, m2 = torch.zeros(3, dtype=F64), torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    expected = ((m1 - m2) ** 2).sum() + ((s1 - s2) ** 2).sum()
    assert frechet_distance(m1, torch.diag(s1**2), m2, torch.diag(s2**2)) == pytest.approx(expected.item(), rel=1e-12)


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_noise(gen):
    x = torch.randn(2000, 32, generator=gen, dtype=F64) @ random_spd(32, gen)
    assert fid(x, x) == pytest.approx(0, abs=1e-9)
    values = [fid(x, x + s * torch.randn(x.shape, generator=gen, dtype=F64)) for s in (0.1, 0.3, 1.0, 3.0)]
    assert all(a < b for a, b in itertools.pairwise(values)), values


def test_gaussian_kl_closed_forms(gen):
    """1-D: log(s2 / s1) + (s1^2 + (m1 - m2)^2) / (2 s2^2) - 1/2; in D dims with diagonal covariances, the sum."""
    m1, s1, m2, s2 = 0.3, 0.7, -0.2, 1.3
    one_d = math.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5
    t = lambda v: torch.tensor([v], dtype=F64)  # noqa: E731
    assert gaussian_kl(t(m1), t(s1**2)[None], t(m2), t(s2**2)[None]) == pytest.approx(one_d, rel=1e-12)
    assert gaussian_kl(
        torch.full((3,), m1, dtype=F64), torch.eye(3, dtype=F64) * s1**2,
        torch.full((3,), m2, dtype=F64), torch.eye(3, dtype=F64) * s2**2,
    ) == pytest.approx(3 * one_d, rel=1e-12)  # fmt: skip
    c = random_spd(5, gen)
    assert gaussian_kl(torch.zeros(5), c, torch.zeros(5), c) == pytest.approx(0, abs=1e-12)


# --------------------------------------------------------------------------- MMD and KID


def test_unbiased_mmd_averages_to_zero_for_one_distribution(gen):
    """Over 300 independent pairs of sets from one distribution, the unbiased MMD^2 averages to 0 within
    3 standard errors, while the biased estimate (diagonals kept) is positive by many standard errors."""
    unbiased, biased = [], []
    for _ in range(300):
        x, y = torch.randn(2, 40, 4, generator=gen, dtype=F64)
        k = lambda u, v: torch.exp(-(torch.cdist(u, v) ** 2) / 2)  # noqa: E731
        kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
        unbiased.append(mmd2_unbiased(kxx, kyy, kxy).item())
        biased.append((kxx.mean() + kyy.mean() - 2 * kxy.mean()).item())
    u, b = np.array(unbiased), np.array(biased)
    se = u.std() / math.sqrt(len(u))
    assert abs(u.mean()) < 3 * se
    assert b.mean() > 10 * se


def test_mmd_of_two_gaussians_matches_its_closed_form(gen):
    """x ~ N(m1, s1^2 I), y ~ N(m2, s2^2 I) in D dims, kernel exp(-|x - y|^2 / 2h^2): E k = (h^2 / (h^2 + a + b))^(D/2)
    exp(-|m_a - m_b|^2 / (2 (h^2 + a + b))) with a, b the two variances."""
    dim, s1, s2, h = 2, 0.3, 0.5, 0.5
    m1, m2 = torch.zeros(dim, dtype=F64), torch.tensor([0.4, -0.2], dtype=F64)

    def expected_k(ma, va, mb, vb):
        v = h**2 + va + vb
        return (h**2 / v) ** (dim / 2) * math.exp(-((ma - mb) ** 2).sum().item() / (2 * v))

    exact = expected_k(m1, s1**2, m1, s1**2) + expected_k(m2, s2**2, m2, s2**2) - 2 * expected_k(m1, s1**2, m2, s2**2)
    x = m1 + s1 * torch.randn(4000, dim, generator=gen, dtype=F64)
    y = m2 + s2 * torch.randn(4000, dim, generator=gen, dtype=F64)
    assert mmd(x, y, bandwidths=(h,)) == pytest.approx(exact, rel=0.05)
    assert abs(mmd(x, m1 + s1 * torch.randn(4000, dim, generator=gen, dtype=F64), bandwidths=(h,))) < 0.02 * exact


def test_kid_is_unbiased_on_two_halves_of_the_same_data(gen):
    feats = torch.randn(4000, 64, generator=gen, dtype=F64) @ random_spd(64, gen)
    a, b = feats[:2000], feats[2000:]
    mean, std = kid(a, b, subsets=100, subset_size=500, generator=gen)
    assert abs(mean) < 3 * std / math.sqrt(100) * 5  # subsets overlap, so allow 5x the independent-case error
    shifted_mean, _ = kid(a, b + 0.3, subsets=100, subset_size=500, generator=gen)
    assert shifted_mean > 20 * abs(mean) and shifted_mean > 10 * std


# --------------------------------------------------------------------------- sliced Wasserstein


def test_sliced_wasserstein_of_point_sets(gen):
    x = torch.randn(1000, 2, generator=gen, dtype=F64)
    assert sliced_wasserstein(x, x) == 0
    assert sliced_wasserstein(x, x[torch.randperm(1000, generator=gen)]) == 0  # a distance between sets
    # a shift by v: each direction d sees the shift d.v, and the mean of (d.v)^2 over directions is |v|^2 / 2
    v = torch.tensor([0.3, 0.4], dtype=F64)
    assert sliced_wasserstein(x, x + v, projections=4096) == pytest.approx(0.5 / 2**0.5, abs=0.01)
    # unequal sizes compare quantile functions
    assert sliced_wasserstein(x, (x + v)[:500], projections=4096) == pytest.approx(0.5 / 2**0.5, abs=0.02)


def test_sliced_wasserstein_of_two_gaussians_matches_its_closed_form(gen):
    """Along direction d both projections are Gaussian, with 1-D W2^2 = (d.(m1 - m2))^2 + (sd1 - sd2)^2."""
    dim = 4
    m1, m2 = torch.zeros(dim, dtype=F64), torch.tensor([0.5, 0.0, -0.3, 0.2], dtype=F64)
    c1, c2 = random_spd(dim, gen), random_spd(dim, gen)
    n = 100_000
    x = m1 + torch.randn(n, dim, generator=gen, dtype=F64) @ torch.linalg.cholesky(c1).T
    y = m2 + torch.randn(n, dim, generator=gen, dtype=F64) @ torch.linalg.cholesky(c2).T
    d = torch.randn(dim, 64, generator=torch.Generator().manual_seed(5), dtype=F64)
    d /= d.norm(dim=0, keepdim=True)
    sd1, sd2 = ((d * (c1 @ d)).sum(0)).sqrt(), ((d * (c2 @ d)).sum(0)).sqrt()
    exact = (((m1 - m2) @ d) ** 2 + (sd1 - sd2) ** 2).mean().sqrt().item()
    got = sliced_wasserstein(x, y, projections=64, generator=torch.Generator().manual_seed(5))
    assert got == pytest.approx(exact, rel=0.02)


# --------------------------------------------------------------------------- cross-entropy of analytic targets


def test_cross_entropy_of_a_gaussian_is_its_entropy_plus_kl(gen):
    target = GaussianTarget.anisotropic(16, seed=0)
    entropy = 0.5 * torch.logdet(2 * math.pi * math.e * target.cov).item()
    ce, se = cross_entropy(target.sample(20000, gen), target.log_prob)
    assert abs(ce - entropy) < 4 * se
    # samples from N(mu + delta, S): KL = delta' S^-1 delta / 2
    delta = 0.05 * torch.ones(16, dtype=F64)
    kl = 0.5 * (delta @ torch.linalg.solve(target.cov, delta)).item()
    ce_shift, se_shift = cross_entropy(target.sample(20000, gen) + delta, target.log_prob)
    assert abs(ce_shift - (entropy + kl)) < 4 * se_shift and kl > 10 * se_shift


def test_vector_metrics_of_the_mixture_data_set(gen):
    """The `mixture` data set is its analytic target: held-out draws score the target's entropy (by Monte
    Carlo with 200,000 draws) and a near-zero distance; samples in the wrong proportions score worse."""
    target = analytic_target("mixture")
    assert isinstance(target, GaussianMixture)
    entropy = -target.log_prob(target.sample(200_000, gen)).mean().item()
    data = load_dataset("mixture", split="train", num_points=4000).data
    held_out = load_dataset("mixture", split="test", num_points=4000).data
    assert not torch.equal(data, held_out)
    good = vector_metrics(held_out, data, log_prob=target.log_prob)
    assert abs(good["cross_entropy"] - entropy) < 4 * good["cross_entropy_se"] + 0.005
    # two draws of 4,000 points: the floor of the distances (sliced W2 is large for far-apart modes whose
    # sample weights fluctuate: 0.046-0.063 over seeds)
    assert good["sliced_w2"] < 0.1 and abs(good["mmd"]) < 0.005
    # the right modes in equal proportions: distances grow; cross-entropy alone is no divergence (it is
    # H(q) + KL(q || p)) and is not asked to
    k = torch.arange(4000) % 3
    equal = target.means[k] + target.stds[k, None] * torch.randn(4000, 2, generator=gen, dtype=F64)
    bad = vector_metrics(equal, data, log_prob=target.log_prob)
    assert bad["sliced_w2"] > 3 * good["sliced_w2"] and bad["mmd"] > 20 * abs(good["mmd"])
    # the right proportions, components c = 1.5x too wide (an over-dispersed sampler): for separated modes
    # in D = 2 dims -log p grows in expectation by D (c^2 - 1) / 2 = 1.25 nats
    k = torch.multinomial(target.weights, 4000, replacement=True, generator=gen)
    wide = target.means[k] + 1.5 * target.stds[k, None] * torch.randn(4000, 2, generator=gen, dtype=F64)
    ce_wide, se_wide = cross_entropy(wide, target.log_prob)
    assert abs(ce_wide - (entropy + 1.25)) < 4 * se_wide + 0.02


# --------------------------------------------------------------------------- classifier features


def test_inception_score_bounds():
    k = 10
    onehot = torch.eye(k, dtype=F64).repeat(5, 1)  # confident and every class equally often: IS = K
    assert inception_score(onehot) == pytest.approx(k, rel=1e-9)
    assert inception_score(torch.full((50, k), 1 / k, dtype=F64)) == pytest.approx(1, rel=1e-9)
    collapsed = torch.zeros(50, k, dtype=F64)
    collapsed[:, 3] = 1  # confident but one class: IS = 1
    assert inception_score(collapsed) == pytest.approx(1, rel=1e-9)


@pytest.fixture(scope="module")
def mnist_classifier():
    return load_classifier("mnist", progress=False)


@pytest.mark.slow
def test_mnist_classifier_accuracy_and_image_metrics(mnist_classifier, gen):
    """The classifier is trained on the 4,500 training digits and reports >95% on the 500 held out; its
    features give FID ~0 for a set against itself, growing with added noise; real digits are recognizable
    and cover all ten classes."""
    c = mnist_classifier
    print(f"mnist classifier: held-out accuracy {c.accuracy:.4f} on {c.num_test}")
    assert c.num_test == 500 and c.accuracy > 0.95
    again = load_classifier("mnist", progress=False)  # from the cache now: same weights, same accuracy
    assert again.accuracy == c.accuracy
    assert all(
        torch.equal(a, b) for a, b in zip(again.net.state_dict().values(), c.net.state_dict().values(), strict=True)
    )

    train = load_dataset("mnist", split="train").data
    test = load_dataset("mnist", split="test").data
    same = image_metrics(test, test, c, generator=gen)
    assert same["fid"] == pytest.approx(0, abs=1e-6)
    real = image_metrics(test, train, c, generator=gen)
    assert real["recognizable"] > 0.85 and real["classes_present"] == 10
    hist = real["class_histogram"]  # 50 test images per class
    assert sum(hist) == 500 and all(40 <= n <= 60 for n in hist), hist
    assert 8 < real["inception_score"] <= 10
    fids = []
    for s in (0.1, 0.3, 0.6, 1.0):
        noisy = (test + s * torch.randn(test.shape, generator=gen)).clamp(-1, 1)
        fids.append(image_metrics(noisy, train, c, generator=gen)["fid"])
    assert real["fid"] < fids[0] and all(a < b for a, b in itertools.pairwise(fids)), (real["fid"], fids)


# --------------------------------------------------------------------------- Inception, from a local file only


class FakeInception(torch.nn.Module):
    """Stands in for torch-fidelity's extractor (which needs torchvision, absent here): records what it is
    given and returns features that are a fixed function of the uint8 pixels."""

    calls: typing.ClassVar[list] = []

    def __init__(self, name: str, features_list: list[str], weights_path: str):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        FakeInception.calls.append((name, tuple(features_list), weights_path))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert x.dtype == torch.uint8 and x.shape[1] == 3
        FakeInception.calls.append(x.clone())
        flat = x.flatten(1).double()
        pool = flat[:, torch.arange(2048) % flat.shape[1]] * self.scale
        return pool, flat[:, :1008]


def test_inception_metrics_read_only_a_local_file(tmp_path, monkeypatch, gen):
    import sys
    import types

    from fokker.errors import UserError
    from fokker.metrics.inception import inception_metrics, load_inception

    with pytest.raises(UserError, match=r"no Inception weights file at .*never downloads"):
        load_inception(tmp_path / "missing.pth")
    weights = tmp_path / "inception.pth"
    weights.write_bytes(b"weights")
    monkeypatch.setitem(sys.modules, "torch_fidelity.feature_extractor_inceptionv3", None)  # not installed
    with pytest.raises(UserError, match=r"pip install 'fokker\[inception\]'"):
        load_inception(weights)

    fake = types.ModuleType("torch_fidelity.feature_extractor_inceptionv3")
    fake.FeatureExtractorInceptionV3 = FakeInception
    monkeypatch.setitem(sys.modules, "torch_fidelity.feature_extractor_inceptionv3", fake)
    FakeInception.calls = []
    net = load_inception(weights)
    assert FakeInception.calls == [("inception-v3-compat", ("2048", "logits_unbiased"), str(weights))]
    grey = torch.rand(30, 1, 28, 28, generator=gen) * 2 - 1
    grey[0, 0, 0, :3] = torch.tensor([-1.0, 0.0, 1.0])
    same = inception_metrics(grey, grey, net, generator=gen)
    seen = FakeInception.calls[1]
    assert seen.shape == (30, 3, 28, 28) and torch.equal(seen[:, 0], seen[:, 2])  # grey repeated to RGB
    assert seen[0, 0, 0, :3].tolist() == [0, 128, 255]  # [-1, 1] -> 0..255, rounded
    assert same["inception_fid"] == pytest.approx(0, abs=1e-6) and set(same) == {
        "inception_fid", "inception_kid", "inception_is"
    }  # fmt: skip
    assert inception_metrics(grey.flip(-1).clamp(-1, 0), grey, net, generator=gen)["inception_fid"] > 1
