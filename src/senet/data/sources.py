"""Where a dataset's files are: the places senet looks for each dataset, and torchvision's download where asked.

Fashion-MNIST: ``--data-dir``, then Debian's ``dataset-fashion-mnist`` (/usr/share/datasets/fashion-mnist), then
``$SENET_DATA`` or ~/.cache/senet/data. CIFAR-10/100: ``--data-dir`` or the same cache folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..files import download_retrying
from .formats import cifar_images, read_cifar_batch, read_idx

__all__ = ["CIFAR10_CLASSES", "FASHION_MNIST_CLASSES", "FASHION_MNIST_DIR", "cifar_arrays", "default_root",
           "fashion_mnist_arrays", "missing_files"]  # fmt: skip

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def default_root() -> Path:
    """Where downloads go when no --data-dir is given: $SENET_DATA, else ~/.cache/senet/data."""
    return Path(os.environ.get("SENET_DATA") or Path.home() / ".cache" / "senet" / "data")


def missing_files(what: str, looked: Sequence[Path], how: str) -> FileNotFoundError:
    """The error for a dataset that is not where senet looked: the places, and how to get it there."""
    where = ", ".join(str(p) for p in dict.fromkeys(looked))
    return FileNotFoundError(f"{what} not found: looked in {where}; {how}")


def _find(dirs: Sequence[Path], names: Sequence[str]) -> Path | None:
    """The first folder holding all ``names`` (each optionally gzipped)."""
    for d in dirs:
        if all((d / n).is_file() or (d / f"{n}.gz").is_file() for n in names):
            return d
    return None


def _idx(d: Path, name: str) -> np.ndarray:
    return read_idx(d / name if (d / name).is_file() else d / f"{name}.gz")


def _torchvision_download(dataset: str, root: Path) -> None:
    import torchvision

    cls = {
        "fashion-mnist": torchvision.datasets.FashionMNIST,
        "cifar10": torchvision.datasets.CIFAR10,
        "cifar100": torchvision.datasets.CIFAR100,
    }[dataset]

    def fetch() -> None:
        for train in (True, False):
            cls(str(root), train=train, download=True)

    try:
        download_retrying(fetch, f"{dataset} into {root}")
    except ConnectionError as e:
        raise FileNotFoundError(str(e)) from None
    except Exception as e:  # checksum failures, archives that do not extract: all one message
        raise FileNotFoundError(f"could not download {dataset} into {root}: {str(e).splitlines()[0]}") from None


Splits = dict[str, tuple[np.ndarray, np.ndarray]]  # "train" / "test" → (images (N, C, H, W) uint8, labels (N,))


def fashion_mnist_arrays(data_dir: str | None, download: bool) -> tuple[Splits, tuple[str, ...]]:
    """Fashion-MNIST's two splits and class names, from the first place that holds the four IDX files."""
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    root = Path(data_dir).expanduser() if data_dir else default_root()
    dirs = [root, root / "fashion-mnist", root / "FashionMNIST" / "raw"]
    if not data_dir:
        dirs.insert(0, FASHION_MNIST_DIR)
    found = _find(dirs, names)
    if found is None and download:
        _torchvision_download("fashion-mnist", root)
        found = _find(dirs, names)
    if found is None:
        raise missing_files(
            "Fashion-MNIST (train-images-idx3-ubyte.gz, ...)",
            dirs,
            "install it with `apt-get install dataset-fashion-mnist`, pass --data-dir DIR holding the IDX files, "
            "or --download",
        )
    splits = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = _idx(found, f"{prefix}-images-idx3-ubyte"), _idx(found, f"{prefix}-labels-idx1-ubyte")
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(f"Fashion-MNIST files in {found} disagree: images {images.shape}, labels {labels.shape}")
        if images.shape[1:] != (28, 28) or images.dtype != np.uint8:
            raise ValueError(
                f"{prefix}-images-idx3-ubyte in {found} holds {images.dtype} images of {images.shape[1:]}; "
                "Fashion-MNIST's are uint8, 28 × 28: fetch the dataset again"
            )
        splits[split] = (images[:, None], labels)
    return splits, FASHION_MNIST_CLASSES


def cifar_arrays(name: str, data_dir: str | None, download: bool) -> tuple[Splits, tuple[str, ...]]:
    """CIFAR-10's or CIFAR-100's two splits and class names, from the "python version" batch files."""
    folder, files, meta_file, label_key, names_key = {
        "cifar10": (
            "cifar-10-batches-py",
            {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
            "batches.meta",
            "labels",
            "label_names",
        ),
        "cifar100": (
            "cifar-100-python",
            {"train": ["train"], "test": ["test"]},
            "meta",
            "fine_labels",
            "fine_label_names",
        ),
    }[name]
    root = Path(data_dir).expanduser() if data_dir else default_root()
    dirs = [root / folder, root]
    needed = [*files["train"], *files["test"]]
    found = _find(dirs, needed)
    if found is None and download:
        _torchvision_download(name, root)
        found = _find(dirs, needed)
    if found is None:
        raise missing_files(
            f"{name} ({folder}/{needed[0]}, ...)",
            dirs,
            f"pass --data-dir DIR holding {folder}/ (the 'python version' from cs.toronto.edu/~kriz/cifar.html), "
            "or --download",
        )
    splits = {}
    for split, parts in files.items():
        batches = [cifar_images(read_cifar_batch(found / p), label_key, found / p) for p in parts]
        splits[split] = (np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches]))
    classes = (
        tuple(str(c) for c in read_cifar_batch(found / meta_file)[names_key]) if (found / meta_file).is_file() else ()
    )
    num = 10 if name == "cifar10" else 100
    return splits, classes if len(classes) == num else CIFAR10_CLASSES if num == 10 else tuple(map(str, range(num)))
