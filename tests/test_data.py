"""Tests of tfmpq.data: the built-in subset, local look-up order, formats, subsets and errors."""
import gzip
import os
import pickle

import numpy as np
import pytest

from tfmpq import data



@pytest.fixture
def no_local_data(tmp_path, monkeypatch):
    """No $TFMPQ_DATA, an empty Keras cache and no Debian package."""
    monkeypatch.delenv("TFMPQ_DATA", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", str(tmp_path / "no_debian"))
    return tmp_path


def _write_idx(path, array):
    header = (0x08 << 8 | array.ndim).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _fake_fashion_dir(folder, num_train=40, num_test=20, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (num_train, 28, 28)),
        "train-labels-idx1-ubyte.gz": np.arange(num_train) % 10,
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (num_test, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": np.arange(num_test) % 10,
    }
    for name, a in arrays.items():
        _write_idx(os.path.join(folder, name), a)
    return arrays


# ------------------------------------------------------------------ the built-in subset

def test_default_is_balanced_float_images_in_unit_range():
    ds = data.load("default")
    assert ds.x_train.shape == (10000, 28, 28, 1) and ds.x_test.shape == (2000, 28, 28, 1)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    assert ds.num_classes == 10 and ds.input_shape == (28, 28, 1)
    assert ds.class_names[0] == "T-shirt/top" and len(ds.class_names) == 10
    np.testing.assert_array_equal(np.bincount(ds.y_train), [1000] * 10)
    np.testing.assert_array_equal(np.bincount(ds.y_test), [200] * 10)
    assert ds.source.endswith("fashion_mnist_subset.npz")


def test_default_file_is_small_and_uint8():
    with np.load(data.DEFAULT_PATH) as z:
        assert {z[k].dtype for k in z.files} == {np.dtype(np.uint8)}
    assert os.path.getsize(data.DEFAULT_PATH) <= 6 * 1024 * 1024


def test_default_needs_no_download(no_local_data, monkeypatch):
    monkeypatch.setattr(data, "_download", lambda name: pytest.fail("tried to download"))
    assert len(data.load("default", num_test=100).y_test) == 100


def test_callers_cannot_corrupt_the_cached_default():
    ds = data.load("default", num_train=10, num_test=10)
    ds.x_train[:] = 7.0
    assert data.load("default", num_train=10, num_test=10).x_train.max() <= 1.0


# ------------------------------------------------------------------ subsets and validation splits

def test_subsets_are_class_balanced_and_seeded():
    a = data.load("default", num_train=500, num_test=105, seed=3)
    b = data.load("default", num_train=500, num_test=105, seed=3)
    c = data.load("default", num_train=500, num_test=105, seed=4)
    np.testing.assert_array_equal(np.bincount(a.y_train), [50] * 10)
    np.testing.assert_array_equal(np.bincount(a.y_test), [11] * 5 + [10] * 5)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_train, c.x_train)


def test_balanced_subset_fills_from_other_classes_when_one_is_short():
    y = np.array([0] * 2 + [1] * 20 + [2] * 20)
    idx = data.balanced_subset(y, 12, seed=0)
    assert len(set(idx.tolist())) == 12
    np.testing.assert_array_equal(np.bincount(y[idx]), [2, 5, 5])


@pytest.mark.parametrize("num", [0, 10001, 2.5])
def test_invalid_num_train_is_rejected(num):
    with pytest.raises(ValueError, match=r"Invalid value for `num_train`.*Received: num_train="):
        data.load("default", num_train=num)


def test_split_validation_is_disjoint_balanced_and_seeded():
    ds = data.load("default", num_train=1000, num_test=10)
    (x_tr, y_tr), (x_val, y_val) = data.split_validation(ds, 0.2, seed=1)
    assert len(y_tr) == 800 and len(y_val) == 200 and x_val.shape == (200, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(y_val), [20] * 10)
    rows = {r.tobytes() for r in x_tr}
    assert not any(r.tobytes() in rows for r in x_val)
    (_, _), (x_val2, _) = data.split_validation(ds, 0.2, seed=1)
    np.testing.assert_array_equal(x_val, x_val2)


@pytest.mark.parametrize("fraction", [0, 1, -0.1, "0.1"])
def test_split_validation_rejects_bad_fractions(fraction):
    ds = data.load("default", num_train=100, num_test=10)
    with pytest.raises(ValueError, match=r"Invalid value for `fraction`.*\(0, 1\)"):
        data.split_validation(ds, fraction)


# ------------------------------------------------------------------ names, look-up order and errors

def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown dataset.*'imagenet'.*'default', 'fashion_mnist', 'mnist'"):
        data.load("imagenet")
    assert data.names() == ["default", "fashion_mnist", "mnist", "cifar10", "cifar100", "digits"]


def test_missing_path_raises_file_not_found():
    with pytest.raises(FileNotFoundError, match=r"Dataset path not found: 'nowhere/x.npz'"):
        data.load("nowhere/x.npz")


def test_tfmpq_data_comes_before_the_keras_cache(no_local_data, monkeypatch):
    own, cache = no_local_data / "own", no_local_data / "keras_home" / "datasets"
    own.mkdir(), cache.mkdir(parents=True)
    x = np.zeros((20, 28, 28), np.uint8)
    np.savez(own / "mnist.npz", x_train=x, y_train=np.arange(20) % 10, x_test=x[:10], y_test=np.arange(10))
    np.savez(cache / "mnist.npz", x_train=x[:4], y_train=np.arange(4), x_test=x[:2], y_test=np.arange(2))
    assert len(data.load("mnist", download=False).y_train) == 4  # only the Keras cache so far
    monkeypatch.setenv("TFMPQ_DATA", str(own))
    ds = data.load("mnist", download=False)
    assert len(ds.y_train) == 20 and ds.source == str(own / "mnist.npz") and ds.input_shape == (28, 28, 1)


def test_fashion_mnist_idx_files_in_tfmpq_data(no_local_data, monkeypatch):
    arrays = _fake_fashion_dir(no_local_data / "own" / "fashion-mnist")
    monkeypatch.setenv("TFMPQ_DATA", str(no_local_data / "own"))
    ds = data.load("fashion-mnist", download=False)
    assert ds.x_train.shape == (40, 28, 28, 1) and ds.name == "fashion_mnist"
    np.testing.assert_allclose(ds.x_test[..., 0] * 255, arrays["t10k-images-idx3-ubyte.gz"], atol=1e-3)


def test_fashion_mnist_falls_back_to_the_debian_folder(no_local_data, monkeypatch):
    _fake_fashion_dir(no_local_data / "debian")
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", str(no_local_data / "debian"))
    assert data.load("fashion_mnist", download=False).source == str(no_local_data / "debian")


def test_cifar10_from_the_keras_cache_is_nhwc(no_local_data):
    folder = no_local_data / "keras_home" / "datasets" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batches[name] = {b"data": rng.integers(0, 256, (2, 3072)).astype(np.uint8), b"labels": [1, 9]}
        with open(folder / name, "wb") as f:
            pickle.dump(batches[name], f)
    ds = data.load("cifar10", download=False)
    assert ds.x_train.shape == (10, 32, 32, 3) and ds.x_test.shape == (2, 32, 32, 3)
    assert ds.class_names[9] == "truck" and ds.num_classes == 10
    red_plane = batches["test_batch"][b"data"][0, :1024].reshape(32, 32)  # CIFAR stores planes R, G, B
    np.testing.assert_allclose(ds.x_test[0, :, :, 0] * 255, red_plane, atol=1e-3)


def test_missing_dataset_lists_every_place_and_how_to_get_it(no_local_data):
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.load("fashion_mnist", download=False)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert str(no_local_data / "keras_home" / "datasets" / "fashion-mnist") in message
    assert str(no_local_data / "no_debian") in message
    assert "apt-get install dataset-fashion-mnist" in message and "$TFMPQ_DATA" in message
    assert "download=False" in message


def test_failed_download_is_reported(no_local_data, monkeypatch):
    def offline(name):
        raise OSError("Name or service not known")

    monkeypatch.setattr(data, "_download", offline)
    with pytest.raises(data.DatasetNotFoundError, match=r"cifar100.*Keras download failed \(OSError: Name or"):
        data.load("cifar100")


# ------------------------------------------------------------------ other formats

def test_digits_are_8x8x1_in_unit_range():
    ds = data.load("digits")
    assert ds.x_train.shape[1:] == (8, 8, 1) and ds.num_classes == 10
    assert len(ds.y_train) + len(ds.y_test) == 1797 and abs(len(ds.y_test) - 359) <= 1
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0


def test_npz_file_is_scaled_and_given_a_channel_axis(tmp_path):
    path = tmp_path / "toy.npz"
    x = np.full((6, 5, 4), 255, np.uint8)
    np.savez(path, x_train=x, y_train=[0, 1, 2, 0, 1, 2], x_test=x[:3], y_test=[0, 1, 2])
    ds = data.load(str(path))
    assert ds.input_shape == (5, 4, 1) and ds.num_classes == 3 and ds.x_train.max() == 1.0


def test_npz_without_the_four_arrays_is_rejected(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, images=np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"expected arrays x_train.*missing \['x_train', 'y_train', 'x_test'"):
        data.load(str(path))


def _write_images(folder, classes, num, size=(6, 5), mode="L"):
    from PIL import Image

    for c, value in classes.items():
        os.makedirs(folder / c, exist_ok=True)
        for i in range(num):
            Image.new(mode, size, value if mode == "L" else (value, 0, 0)).save(folder / c / f"{i}.png")


def test_image_folder_is_split_stratified(tmp_path):
    _write_images(tmp_path, {"cat": 0, "dog": 255}, num=5)
    ds = data.load(str(tmp_path), test_fraction=0.4)
    assert ds.class_names == ("cat", "dog") and ds.input_shape == (5, 6, 1)
    np.testing.assert_array_equal(np.bincount(ds.y_test), [2, 2])
    assert (ds.x_train[ds.y_train == 1] == 1.0).all() and (ds.x_train[ds.y_train == 0] == 0.0).all()


def test_image_folder_with_train_and_test_resizes_rgb(tmp_path):
    _write_images(tmp_path / "train", {"a": 10, "b": 20}, num=2, size=(8, 8), mode="RGB")
    _write_images(tmp_path / "test", {"a": 10, "b": 20}, num=1, size=(4, 4), mode="RGB")
    ds = data.load(str(tmp_path), image_size=(8, 8))
    assert ds.x_train.shape == (4, 8, 8, 3) and ds.x_test.shape == (2, 8, 8, 3)


def test_image_folder_rejects_bad_color_mode(tmp_path):
    _write_images(tmp_path, {"a": 0}, num=1)
    with pytest.raises(ValueError, match=r"Invalid value for `color_mode`.*Received: color_mode='cmyk'"):
        data.load(str(tmp_path), color_mode="cmyk")


# ------------------------------------------------------------------ the script that made the subset

def test_make_subset_is_balanced_and_seeded(tmp_path):
    from tfmpq.data import make_subset

    _fake_fashion_dir(tmp_path / "src", num_train=100, num_test=50)
    a = make_subset.make_subset(str(tmp_path / "src"), str(tmp_path / "a.npz"), num_train=30, num_test=20, seed=5)
    b = make_subset.make_subset(str(tmp_path / "src"), str(tmp_path / "b.npz"), num_train=30, num_test=20, seed=5)
    np.testing.assert_array_equal(np.bincount(a["y_train"]), [3] * 10)
    np.testing.assert_array_equal(a["x_test"], b["x_test"])
    assert data.load(str(tmp_path / "a.npz")).x_train.shape == (30, 28, 28, 1)
    with pytest.raises(ValueError, match=r"expected a multiple of 10. Received: num=31"):
        make_subset.make_subset(str(tmp_path / "src"), str(tmp_path / "c.npz"), num_train=31)
