"""Datasets and transforms: the real Fashion-MNIST files, IDX and CIFAR readers (truncated and malicious files
refused), image folders with a broken file, the batch augmentation and the samplers' sharding."""

import gzip
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from senet.data import (
    FASHION_MNIST_DIR,
    BatchKey,
    EpochBatches,
    ImageFolder,
    Preprocess,
    TensorImages,
    image_transforms,
    load_datasets,
    normalize,
    random_crop_flip,
    random_erase,
    read_cifar_batch,
    read_idx,
)

needs_fmnist = pytest.mark.skipif(
    not (FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").is_file(),
    reason="Debian's dataset-fashion-mnist is not installed (make data)",
)


def write_idx(path, array: np.ndarray, gz: bool = True) -> None:
    """An IDX file as the Fashion-MNIST distribution has them (uint8 data)."""
    raw = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


def write_fake_fmnist(folder, n_train=64, n_test=32, gz=True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ext = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", (np.arange(n) % 10).astype(np.uint8), gz)


@needs_fmnist
def test_real_fashion_mnist():
    train, test, spec = load_datasets("fashion-mnist")
    assert train.images.shape == (60000, 1, 28, 28) and train.images.dtype == torch.uint8
    assert test.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(train.labels).tolist() == [6000] * 10  # the published class balance
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert spec.classes[0] == "T-shirt/top" and spec.classes[9] == "Ankle boot" and spec.in_chans == 1
    mean = train.images.float().mean().item() / 255
    assert abs(mean - spec.mean[0]) < 1e-3  # the normalisation constant is the real one


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip_gz_and_raw(tmp_path, gz):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "x", a, gz)
    assert np.array_equal(read_idx(tmp_path / "x"), a)


@pytest.mark.parametrize("gz", [True, False])
def test_truncated_idx_is_named(tmp_path, gz):
    write_idx(tmp_path / "x", np.zeros((10, 28, 28), np.uint8), gz)
    data = (tmp_path / "x").read_bytes()
    (tmp_path / "x").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"'.*x' is (a )?truncated"):
        read_idx(tmp_path / "x")


def test_not_an_idx_file(tmp_path):
    (tmp_path / "x").write_bytes(b"hello world")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "x")


def test_data_dir_in_torchvision_layout(tmp_path):
    write_fake_fmnist(tmp_path / "FashionMNIST" / "raw", gz=False)
    train, test, spec = load_datasets("fashion-mnist", data_dir=str(tmp_path), augment="none")
    assert len(train) == 64 and len(test) == 32 and spec.image_size == 28


def test_missing_data_says_where_and_how(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_datasets("fashion-mnist", data_dir=str(tmp_path))
    msg = str(e.value)
    assert str(tmp_path) in msg and "apt-get install dataset-fashion-mnist" in msg and "--download" in msg


def test_download_goes_through_torchvision(tmp_path, monkeypatch):
    import torchvision

    calls = []

    class FakeFashionMNIST:  # what torchvision's download leaves on disk, without the network
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            write_fake_fmnist(tmp_path / "FashionMNIST" / "raw")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", FakeFashionMNIST)
    train, _, _ = load_datasets("fashion-mnist", data_dir=str(tmp_path), download=True)
    assert len(train) == 64 and calls[0] == (str(tmp_path), True, True)


def test_unknown_dataset_and_augment():
    with pytest.raises(ValueError, match=r"unknown dataset 'fashion_mnist'.*did you mean 'fashion-mnist'"):
        load_datasets("fashion_mnist")
    with pytest.raises(ValueError, match="augment 'imagenet' does not apply to synthetic"):
        load_datasets("synthetic", augment="imagenet")


def py2_pickle(entries: dict[bytes, np.ndarray | list]) -> bytes:
    """A pickle as Python 2's cPickle wrote the CIFAR files (protocol 2, str as BINSTRING, numpy.core paths), assembled
    opcode by opcode: Python 3 cannot write one."""

    def text(b: bytes) -> bytes:  # SHORT_BINSTRING: a Python 2 str
        return b"U" + bytes([len(b)]) + b

    def value(v) -> bytes:
        if isinstance(v, list):  # EMPTY_LIST, MARK, items, APPENDS
            return b"](" + b"".join(b"K" + bytes([x]) if isinstance(x, int) else text(x) for x in v) + b"e"
        raw = v.tobytes()
        return (
            b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + b"K\x00\x85" + text(b"b") + b"\x87R"
            + b"(K\x01" + b"M" + struct.pack("<H", v.shape[0]) + b"M" + struct.pack("<H", v.shape[1]) + b"\x86"
            + b"cnumpy\ndtype\n" + text(b"u1") + b"K\x00K\x01\x87R"
            + b"(K\x03" + text(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
            + b"\x89T" + struct.pack("<I", len(raw)) + raw + b"tb"
        )  # fmt: skip

    return b"\x80\x02}(" + b"".join(text(k) + value(v) for k, v in entries.items()) + b"u."


def test_python2_cifar_pickle(tmp_path):
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    (tmp_path / "b").write_bytes(py2_pickle({b"data": data, b"labels": [3, 7], b"filenames": [b"a.png", b"b.png"]}))
    batch = read_cifar_batch(tmp_path / "b")
    assert np.array_equal(batch["data"], data) and batch["labels"] == [3, 7] and batch["filenames"][1] == "b.png"


def _cifar_folder(tmp, name="cifar10", n=20):
    rng = np.random.default_rng(0)
    if name == "cifar10":
        folder, parts, meta = (
            tmp / "cifar-10-batches-py",
            [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"],
            "batches.meta",
        )
        label_key, names_key, classes = "labels", "label_names", [f"c{i}" for i in range(10)]
    else:
        folder, parts, meta = tmp / "cifar-100-python", ["train", "test"], "meta"
        label_key, names_key, classes = "fine_labels", "fine_label_names", [f"c{i}" for i in range(100)]
    folder.mkdir(parents=True)
    for p in parts:  # the format: a pickled dict of a (N, 3072) uint8 array and a list of labels
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), label_key: [i % 10 for i in range(n)]}
        batch["filenames"] = [f"img{i}.png" for i in range(n)]
        (folder / p).write_bytes(pickle.dumps(batch, protocol=2))
    (folder / meta).write_bytes(pickle.dumps({names_key: classes}, protocol=2))
    return folder


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_standard_format(tmp_path, name):
    folder = _cifar_folder(tmp_path, name)
    train, test, spec = load_datasets(name, data_dir=str(tmp_path))
    assert train.images.shape == ((100 if name == "cifar10" else 20), 3, 32, 32) and len(test) == 20
    assert spec.classes[3] == "c3" and spec.num_classes == (10 if name == "cifar10" else 100)
    raw = read_cifar_batch(folder / ("test_batch" if name == "cifar10" else "test"))["data"]
    assert torch.equal(test.images[0], torch.from_numpy(raw[0].reshape(3, 32, 32)))  # channel-major rows


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/senet_cifar_pwned",))


def test_malicious_cifar_pickle_is_refused(tmp_path):
    folder = _cifar_folder(tmp_path)
    (folder / "data_batch_1").write_bytes(pickle.dumps({"data": _Evil(), "labels": []}, protocol=2))
    with pytest.raises(ValueError, match=r"refusing to unpickle posix\.system"):
        load_datasets("cifar10", data_dir=str(tmp_path))
    assert not os.path.exists("/tmp/senet_cifar_pwned")
    obj_array = np.array([1, "a"], dtype=object)
    (folder / "data_batch_1").write_bytes(pickle.dumps({"data": obj_array, "labels": []}, protocol=2))
    with pytest.raises(ValueError, match="array of Python objects"):
        read_cifar_batch(folder / "data_batch_1")


def test_random_crop_flip_is_a_per_image_crop_of_the_padded_batch():
    g = torch.Generator().manual_seed(3)
    x = torch.randint(1, 256, (64, 2, 8, 8), dtype=torch.uint8)
    y = random_crop_flip(x, 2, g)
    assert y.shape == x.shape and y.is_contiguous()
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    flips = 0
    for i in range(len(x)):  # each output is one of the 25 crops of its own padded image, maybe mirrored
        crops = [padded[i, :, dy : dy + 8, dx : dx + 8] for dy in range(5) for dx in range(5)]
        plain = any(torch.equal(y[i], c) for c in crops)
        mirrored = any(torch.equal(y[i], c.flip(-1)) for c in crops)
        assert plain or mirrored
        flips += mirrored and not plain
    assert 16 < flips < 48  # about half mirrored
    assert torch.equal(y, random_crop_flip(x, 2, torch.Generator().manual_seed(3)))  # a function of the seed


def test_random_erase_fills_one_rectangle_per_chosen_image():
    x = torch.full((400, 2, 20, 16), 7, dtype=torch.uint8)  # 7 marks an untouched pixel
    y = random_erase(x, 0.5, torch.Generator().manual_seed(4))
    assert y.shape == x.shape and y.dtype == torch.uint8
    erased = 0
    for i in range(len(x)):
        changed = (y[i] != 7).any(0)  # (H, W): where noise landed (noise may equal 7 at a pixel or two)
        if not changed.any():
            continue
        erased += 1
        rows, cols = changed.any(1).nonzero(), changed.any(0).nonzero()
        h, w = int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1
        assert 0.02 * 320 * 0.5 <= h * w <= 0.33 * 320 * 1.5  # 2–33% of the area, give or take the rounding
        assert changed.sum() >= 0.9 * h * w  # one filled rectangle, not scattered pixels
        assert (y[i, 0] != 7).eq(changed).float().mean() > 0.95  # every channel filled in the same rectangle
    assert 160 < erased < 240  # about half of the 400 images
    assert torch.equal(y, random_erase(x, 0.5, torch.Generator().manual_seed(4)))  # a function of the seed
    assert torch.equal(random_erase(x, 0.0, torch.Generator().manual_seed(4)), x)


def test_random_erasing_reaches_the_training_batches_and_is_checked():
    images = torch.randint(0, 256, (64, 1, 12, 12), dtype=torch.uint8)
    labels = torch.zeros(64, dtype=torch.long)
    key = BatchKey(5, list(range(64)))
    plain = TensorImages(images, labels, padding=0).__getitems__(key).images
    erased = TensorImages(images, labels, padding=0, erasing=1.0).__getitems__(key).images
    assert (plain != erased).flatten(1).any(1).float().mean() > 0.9
    with pytest.raises(ValueError, match=r"random_erasing=1\.5 is a probability"):
        load_datasets("synthetic", random_erasing=1.5)
    with pytest.raises(ValueError, match="in-memory datasets"):
        load_datasets("imagefolder", data_dir="/nonexistent", random_erasing=0.5)
    train, test, _ = load_datasets("synthetic", random_erasing=0.25, train_subset=32, test_subset=8)
    assert train.erasing == 0.25 and test.erasing == 0.0  # training images only


def test_crop_padding_zero_flips_only_and_none_does_nothing():
    images = torch.randint(0, 256, (64, 1, 6, 6), dtype=torch.uint8)
    labels = torch.zeros(64, dtype=torch.long)
    key = BatchKey(7, list(range(64)))
    flipped = TensorImages(images, labels, padding=0).__getitems__(key).images
    mirrored = [not torch.equal(flipped[i], images[i]) for i in range(64)]
    assert all(torch.equal(flipped[i], images[i].flip(-1) if m else images[i]) for i, m in enumerate(mirrored))
    assert 16 < sum(mirrored) < 48
    assert torch.equal(TensorImages(images, labels).__getitems__(key).images, images)


def test_normalize_gives_standard_strides():
    # A one-channel batch with channels-last strides sends every layer to slow kernels (found the hard way).
    x = torch.zeros(4, 28, 28, 1, dtype=torch.uint8).permute(0, 3, 1, 2)
    y = normalize(x, (0.5,), (0.25,))
    assert y.stride() == (784, 784, 28, 1) and torch.allclose(y, torch.full_like(y, -2.0))


@pytest.mark.parametrize(("n", "world"), [(10001, 2), (10, 3), (7, 1)])
def test_eval_batches_cover_every_image_once(n, world):
    seen = [
        i for r in range(world) for key in EpochBatches(n, 64, shuffle=False, rank=r, world=world) for i in key.indices
    ]
    assert sorted(seen) == list(range(n))


def test_training_batches_shard_resume_and_reshuffle():
    shards = [EpochBatches(1000, 10, shuffle=True, seed=5, rank=r, world=2) for r in range(2)]
    for s in shards:
        s.set_epoch(3)
    keys = [list(s) for s in shards]
    a, b = ({i for k in ks for i in k.indices} for ks in keys)
    assert len(a) == len(b) == 500 and not a & b  # disjoint halves of one permutation
    shards[0].set_epoch(3, start=20)
    assert list(shards[0]) == keys[0][20:]  # a resumed epoch reads exactly the rest, with the same seeds
    shards[0].set_epoch(4)
    assert [k.indices for k in shards[0]] != [k.indices for k in keys[0]]
    with pytest.raises(ValueError, match="do not fill one batch"):
        EpochBatches(10, 64, shuffle=True)


def _png(path, value, size=(12, 10)):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, value, value)).save(path)


def test_image_folder_names_unreadable_files(tmp_path):
    for c in ("cat", "dog"):
        for i in range(3):
            _png(tmp_path / "train" / c / f"{i}.png", 40 * i)
    (tmp_path / "train" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    ds = ImageFolder(
        tmp_path / "train",
        ["cat", "dog"],
        image_transforms(Preprocess(8, (0.5,) * 3, (0.5,) * 3), train=True),
        in_chans=3,
        size=8,
    )
    assert len(ds) == 7
    batch = ds.__getitems__(BatchKey(1, list(range(7))))
    assert batch.images.shape == (6, 3, 8, 8) and batch.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert len(batch.unreadable) == 1 and "broken.jpg" in batch.unreadable[0]
    again = ds.__getitems__(BatchKey(1, list(range(7))))
    assert torch.equal(again.images, batch.images)  # per-image randomness comes from the batch seed


def test_synthetic():
    train, test, spec = load_datasets("synthetic", image_size=16, train_subset=100, test_subset=10, in_chans=1)
    assert train.images.shape == (100, 1, 16, 16) and len(test) == 10 and spec.num_classes == 10
