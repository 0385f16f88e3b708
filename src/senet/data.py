"""Datasets and transforms for training and evaluating SE networks (paper §5 and shared/REFERENCE.md §5–6).

Every dataset here yields *uint8* image batches, (B, C, H, W), and int64 labels; the conversion to float and the
normalisation by the dataset's mean and std happen on the training device (`normalize`), so a GPU receives a
quarter of the bytes. Datasets:

* ``fashion-mnist``: the IDX files (gzipped or raw), from ``--data-dir``, Debian's ``dataset-fashion-mnist``
  (/usr/share/datasets/fashion-mnist) or a torchvision download.
* ``cifar10`` / ``cifar100``: the standard "python" batches (cifar-10-batches-py, cifar-100-python), read with an
  unpickler that builds numpy arrays and nothing else.
* ``imagefolder``: ImageNet-style ``train/CLASS/*.jpg`` and ``val/CLASS/*.jpg``.
* ``synthetic``: random images, for smoke runs and speed measurements.

Augmentation. Small in-memory datasets use the CIFAR recipe (pad, random crop, horizontal flip), drawn per image but
applied to a whole batch in one gather (`random_crop_flip`); image folders use the paper's ImageNet recipe
(random-size crop 8–100 %, aspect 3/4–4/3, mirror, rotation ±10°, pixel jitter ±20) per image with
torchvision.transforms.v2, and evaluate on the 256/224 centre crop. All randomness of a batch comes from the seed
the sampler hands it (`BatchKey`), so a batch is a pure function of (run seed, epoch, batch number): the same with
any number of loader workers, across processes, and after a resume.
"""

from __future__ import annotations

import codecs
import difflib
import gzip
import math
import os
import pickle
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, DistributedSampler, Sampler

from .models._base import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "AUGMENTATIONS",
    "DATASETS",
    "Batch",
    "BatchKey",
    "DataSpec",
    "EpochBatches",
    "ImageFolder",
    "TensorImages",
    "derive_seed",
    "load_datasets",
    "normalize",
    "random_crop_flip",
    "read_cifar_batch",
    "read_idx",
]

DATASETS = ("fashion-mnist", "cifar10", "cifar100", "imagefolder", "synthetic")
AUGMENTATIONS = ("auto", "none", "crop-flip", "imagenet")  # auto: imagenet for image folders, crop-flip otherwise

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff")

# Per-channel mean and std of the training images, on the 0–1 scale.
_STATS = {
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagefolder": (IMAGENET_MEAN, IMAGENET_STD),
    "synthetic": ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
}


def default_root() -> Path:
    """Where downloads go when no --data-dir is given: $SENET_DATA, else ~/.cache/senet/data."""
    return Path(os.environ.get("SENET_DATA") or Path.home() / ".cache" / "senet" / "data")


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from a tuple such as (run seed, "order", epoch); distinct tuples give unrelated streams."""
    import hashlib

    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


# --------------------------------------------------------------------------------------------------- batches


class BatchKey(NamedTuple):
    """What a loader asks a dataset for: the images at ``indices``, augmented with randomness from ``seed``."""

    seed: int
    indices: list[int]


class Batch(NamedTuple):
    """A batch of uint8 images (B, C, H, W), int64 labels (B,), and the files that could not be read (left out)."""

    images: Tensor
    labels: Tensor
    unreadable: tuple[str, ...] = ()


def collate_batch(batch: Batch) -> Batch:
    """DataLoader ``collate_fn``: our datasets return whole batches already."""
    return batch


class EpochBatches(Sampler[BatchKey]):
    """The batches one process reads in one epoch, as `BatchKey`s for a DataLoader's ``batch_sampler``.

    Training (``shuffle=True``): a DistributedSampler's share of a permutation drawn from (seed, epoch), cut into
    full batches (the last partial one is dropped, as BatchNorm needs more than one image). ``set_epoch(epoch,
    start)`` skips the first ``start`` batches, which is how a run resumes in the middle of an epoch.
    Evaluation (``shuffle=False``): rank r reads images r, r + world, r + 2·world, ... in batches, every image
    exactly once across ranks, with no padding.
    """

    def __init__(
        self, size: int, batch_size: int, *, shuffle: bool, seed: int = 0, rank: int = 0, world: int = 1
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} must be at least 1")
        self.size, self.batch_size, self.shuffle, self.seed = size, batch_size, shuffle, seed
        self.rank, self.world = rank, world
        self.epoch, self.start = 0, 0
        if shuffle:
            # DistributedSampler seeds with seed + epoch; a hashed run seed keeps runs of nearby seeds unrelated.
            self._sampler = DistributedSampler(
                range(size), num_replicas=world, rank=rank, shuffle=True, seed=derive_seed(seed, "order") % 2**31
            )
            if len(self._sampler) < batch_size:
                raise ValueError(
                    f"{size} training images over {world} process(es) do not fill one batch of {batch_size}; "
                    f"lower batch_size"
                )

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start
        if self.shuffle:
            self._sampler.set_epoch(epoch)

    def __len__(self) -> int:
        if self.shuffle:
            return len(self._sampler) // self.batch_size - self.start
        return math.ceil(len(range(self.rank, self.size, self.world)) / self.batch_size)

    def __iter__(self) -> Iterator[BatchKey]:
        if self.shuffle:
            order = list(self._sampler)
            for b in range(self.start, len(order) // self.batch_size):
                chunk = order[b * self.batch_size : (b + 1) * self.batch_size]
                yield BatchKey(derive_seed(self.seed, "augment", self.epoch, self.rank, b), chunk)
        else:
            order = list(range(self.rank, self.size, self.world))
            for b in range(0, len(order), self.batch_size):
                yield BatchKey(0, order[b : b + self.batch_size])


# ---------------------------------------------------------------------------------------------- transforms


def random_crop_flip(images: Tensor, padding: int, generator: torch.Generator) -> Tensor:
    """The CIFAR augmentation on a batch: zero-pad by ``padding``, crop back at a random offset per image, and
    mirror half of the images at random. One gather for the whole batch. (B, C, H, W) in and out."""
    b, _, h, w = images.shape
    if padding > 0:
        images = F.pad(images, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (b, 1), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (b, 1), generator=generator)
    flip = torch.rand(b, 1, generator=generator) < 0.5
    rows = dy + torch.arange(h)  # (B, H)
    cols = dx + torch.arange(w)  # (B, W)
    cols = torch.where(flip, cols.flip(1), cols)
    channels = torch.arange(images.shape[1])[None, :, None, None]
    return images[torch.arange(b)[:, None, None, None], channels, rows[:, None, :, None], cols[:, None, None, :]]


def random_erase(images: Tensor, p: float, generator: torch.Generator) -> Tensor:
    """Random erasing (Zhong et al., 2017) on a uint8 batch: with probability ``p`` per image, one rectangle of 2–33%
    of the area, aspect ratio 0.3–3.3, at a random place, is filled with random values. (B, C, H, W) in and out."""
    b, _, h, w = images.shape
    area = torch.empty(b).uniform_(0.02, 0.33, generator=generator) * h * w
    aspect = torch.empty(b).uniform_(math.log(0.3), math.log(3.3), generator=generator).exp()
    eh = (area * aspect).sqrt().round().clamp(1, h).long()
    ew = (area / aspect).sqrt().round().clamp(1, w).long()
    y0 = (torch.rand(b, generator=generator) * (h - eh + 1)).long()
    x0 = (torch.rand(b, generator=generator) * (w - ew + 1)).long()
    erase = torch.rand(b, generator=generator) < p
    rows, cols = torch.arange(h)[None, :], torch.arange(w)[None, :]
    inside_r = (rows >= y0[:, None]) & (rows < (y0 + eh)[:, None])  # (B, H)
    inside_c = (cols >= x0[:, None]) & (cols < (x0 + ew)[:, None])  # (B, W)
    mask = (inside_r[:, :, None] & inside_c[:, None, :] & erase[:, None, None])[:, None]  # (B, 1, H, W)
    noise = torch.randint(0, 256, images.shape, generator=generator, dtype=torch.uint8)
    return torch.where(mask, noise, images)


def normalize(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """uint8 (B, C, H, W) on any device → float32 normalised by the dataset's per-channel mean and std."""
    from torchvision.transforms import v2

    # Standard strides: a one-channel batch with channels-last strides counts as contiguous, yet would send every
    # layer to slow kernels; .to(memory_format=...) lays it out anew.
    x = images.to(torch.float32, memory_format=torch.contiguous_format).div_(255)
    return v2.functional.normalize(x, list(mean), list(std))


class PixelJitter(torch.nn.Module):
    """Add one random offset in [-amount, amount] (0–255 scale) to each channel of a uint8 image: our reading of
    the "pixel jitter ±20" of the released SENet models' training."""

    def __init__(self, amount: int = 20) -> None:
        super().__init__()
        self.amount = amount

    def forward(self, img: Tensor) -> Tensor:
        offset = torch.randint(-self.amount, self.amount + 1, (img.shape[0], 1, 1))
        return (img.to(torch.int16) + offset).clamp_(0, 255).to(torch.uint8)


def imagenet_transforms(size: int, train: bool) -> torch.nn.Module:
    """Per-image transforms of uint8 tensors: the paper's training augmentation, or its single-crop evaluation
    (shorter side resized to size / 0.875, i.e. 256 for 224, then the centre crop)."""
    from torchvision.transforms import v2

    if train:
        return v2.Compose(
            [
                v2.RandomResizedCrop(size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), antialias=True),
                v2.RandomHorizontalFlip(),
                v2.RandomRotation(10),
                PixelJitter(20),
            ]
        )
    return v2.Compose([v2.Resize(round(size / 0.875), antialias=True), v2.CenterCrop(size)])


# ------------------------------------------------------------------------------------------------ datasets


@dataclass(frozen=True)
class DataSpec:
    """What a model trained on a dataset must know to be used again: stored with its weights."""

    dataset: str
    classes: tuple[str, ...]
    in_chans: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


class TensorImages(Dataset):
    """Images held in memory as one uint8 tensor (N, C, H, W) with int64 labels (N,).

    ``padding`` turns on the pad-crop-flip augmentation (`random_crop_flip`; 0: flips only, None: off) and
    ``erasing`` random erasing with that probability per image (`random_erase`), both drawn from each batch's seed;
    ``size`` resizes (bilinear, antialiased) when the model wants another size than the files have.
    """

    def __init__(
        self, images: Tensor, labels: Tensor, *, padding: int | None = None, size: int = 0, erasing: float = 0.0
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or len(images) != len(labels):
            raise ValueError(f"expected uint8 images (N, C, H, W) and N labels, got {images.shape} and {labels.shape}")
        self.images, self.labels = images, labels.long()
        self.padding, self.size, self.erasing = padding, size, erasing

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        batch = self.__getitems__(BatchKey(0, [index]))
        return batch.images[0], int(batch.labels[0])

    def __getitems__(self, key: BatchKey) -> Batch:
        idx = torch.as_tensor(key.indices, dtype=torch.long)
        images = self.images[idx]
        if self.size and self.size != images.shape[-1]:
            from torchvision.transforms import v2

            images = v2.functional.resize(images, [self.size, self.size], antialias=True)
        generator = torch.Generator().manual_seed(key.seed)
        if self.padding is not None:
            images = random_crop_flip(images, self.padding, generator)
        if self.erasing > 0:
            images = random_erase(images, self.erasing, generator)
        return Batch(images, self.labels[idx])


class ImageFolder(Dataset):
    """Images in class folders (``root/CLASS/*.jpg``), decoded per image with PIL and transformed with
    torchvision.transforms.v2. A file that cannot be decoded is left out of its batch and named in
    `Batch.unreadable`, so the trainer can stop with its name or skip and count it."""

    def __init__(self, root: Path, classes: Sequence[str], transform: torch.nn.Module, *, in_chans: int, size: int):
        self.root, self.classes, self.transform, self.in_chans, self.size = (
            root,
            tuple(classes),
            transform,
            in_chans,
            size,
        )
        index = {c: i for i, c in enumerate(self.classes)}
        extra = sorted(d.name for d in root.iterdir() if d.is_dir() and d.name not in index)
        if extra:
            raise ValueError(f"{str(root)!r} has class folders the training set lacks: {extra[:5]}")
        self.samples: list[tuple[str, int]] = [
            (str(p), index[c])
            for c in self.classes
            if (root / c).is_dir()
            for p in sorted((root / c).rglob("*"))
            if p.suffix.lower() in IMAGE_EXTENSIONS
        ]
        if not self.samples:
            raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {str(root)!r}")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        batch = self.__getitems__(BatchKey(0, [index]))
        if batch.unreadable:
            raise ValueError(f"unreadable image {batch.unreadable[0]!r}")
        return batch.images[0], int(batch.labels[0])

    def _load(self, path: str) -> Tensor:
        from PIL import Image
        from torchvision.transforms import v2

        with Image.open(path) as img:
            img = img.convert("L" if self.in_chans == 1 else "RGB")
        return v2.functional.pil_to_tensor(img)

    def __getitems__(self, key: BatchKey) -> Batch:
        images, labels, bad = [], [], []
        for j, i in enumerate(key.indices):
            path, label = self.samples[i]
            try:
                img = self._load(path)
            except (OSError, ValueError, SyntaxError) as e:  # PIL's errors for broken or non-image files
                bad.append(f"{path} ({type(e).__name__}: {e})")
                continue
            with torch.random.fork_rng(devices=[]):  # v2 draws from the global generator
                torch.manual_seed(derive_seed(key.seed, j))
                images.append(self.transform(img))
            labels.append(label)
        shape = (0, self.in_chans, self.size, self.size)
        stacked = torch.stack(images) if images else torch.empty(shape, dtype=torch.uint8)
        return Batch(stacked, torch.tensor(labels, dtype=torch.long), tuple(bad))


# --------------------------------------------------------------------------------------------- file formats


_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST / Fashion-MNIST format), gzipped or raw.

    Raises:
        ValueError: naming the file, if it is truncated, corrupt or not an IDX file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0)
            raw = gzip.decompress(f.read()) if head == b"\x1f\x8b" else f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise ValueError(f"{str(path)!r} is a truncated or corrupt gzip file ({e}); fetch the dataset again") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{str(path)!r} is not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    start = 4 + 4 * ndim
    if len(raw) < start:
        raise ValueError(f"{str(path)!r} is truncated: its header is incomplete")
    dims = struct.unpack(f">{ndim}I", raw[4:start])
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    need = math.prod(dims) * dtype.itemsize
    if len(raw) - start != need:
        raise ValueError(
            f"{str(path)!r} is truncated or corrupt: its header promises {need} bytes of data for shape {dims}, "
            f"the file has {len(raw) - start}; fetch the dataset again"
        )
    return np.frombuffer(raw, dtype, offset=start).reshape(dims).astype(dtype.newbyteorder("="))


class _NumpyOnly(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays, lists, dicts, strings and numbers, and refuses every other object
    (a crafted pickle would otherwise run code)."""

    @staticmethod
    def _dtype(*args: Any) -> np.dtype:
        dtype = np.dtype(*args)
        if dtype.hasobject:
            raise pickle.UnpicklingError("refusing an array of Python objects")
        return dtype

    _reconstruct = np.empty(0).__reduce__()[0]  # numpy's array rebuilder, whatever module numpy keeps it in

    def find_class(self, module: str, name: str) -> Any:
        allowed = {
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): self._dtype,
            ("numpy.core.multiarray", "_reconstruct"): self._reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): self._reconstruct,
            ("_codecs", "encode"): codecs.encode,  # how Python 3 pickles bytes at protocol 2
        }
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        return allowed[module, name]


def read_cifar_batch(path: str | os.PathLike) -> dict[str, Any]:
    """One file of the CIFAR "python" format: a pickled dict of numpy arrays and lists, keys as str.

    Raises:
        ValueError: naming the file, if it is corrupt or holds anything but arrays and plain data.
    """
    try:
        with open(path, "rb") as f:
            obj = _NumpyOnly(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise ValueError(f"{str(path)!r} is not a valid CIFAR batch file: {e}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{str(path)!r} is not a valid CIFAR batch file: it holds a {type(obj).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


# ---------------------------------------------------------------------------------------------------- loading


def _missing(what: str, looked: Sequence[Path], how: str) -> FileNotFoundError:
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
    try:
        for train in (True, False):
            cls(str(root), train=train, download=True)
    except Exception as e:  # URLError, HTTPError, socket errors, checksum failures: all one message
        raise FileNotFoundError(f"could not download {dataset} into {root}: {str(e).splitlines()[0]}") from None


def _fashion_mnist(data_dir: str | None, download: bool) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], tuple]:
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
        raise _missing(
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
        splits[split] = (images[:, None], labels)
    return splits, FASHION_MNIST_CLASSES


def _cifar(name: str, data_dir: str | None, download: bool) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], tuple]:
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
        raise _missing(
            f"{name} ({folder}/{needed[0]}, ...)",
            dirs,
            f"pass --data-dir DIR holding {folder}/ (the 'python version' from cs.toronto.edu/~kriz/cifar.html), "
            "or --download",
        )
    splits = {}
    for split, parts in files.items():
        batches = [read_cifar_batch(found / p) for p in parts]
        try:
            data = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
            labels = np.concatenate([np.asarray(b[label_key], dtype=np.int64) for b in batches])
        except KeyError as e:
            raise ValueError(f"{name} batch files in {found} lack the {e} entry") from None
        splits[split] = (data.reshape(-1, 3, 32, 32), labels)
    classes = (
        tuple(str(c) for c in read_cifar_batch(found / meta_file)[names_key]) if (found / meta_file).is_file() else ()
    )
    num = 10 if name == "cifar10" else 100
    return splits, classes if len(classes) == num else CIFAR10_CLASSES if num == 10 else tuple(map(str, range(num)))


def _subset(n: int, keep: int) -> Tensor | None:
    """A fixed random subset of ``keep`` of ``n`` indices (the same for every run), or None for all."""
    if not keep or keep >= n:
        return None
    return torch.randperm(n, generator=torch.Generator().manual_seed(0))[:keep].sort().values


def _image_folder(
    data_dir: str | None, size: int, in_chans: int, augment: str, subsets: tuple[int, int]
) -> tuple[Dataset, Dataset, DataSpec]:
    if not data_dir:
        raise ValueError("the imagefolder dataset needs --data-dir DIR with train/CLASS/*.jpg and val/CLASS/*.jpg")
    root = Path(data_dir).expanduser()
    if not (root / "train").is_dir() or not (root / "val").is_dir():
        raise _missing(
            "an image folder", [root / "train", root / "val"], "arrange it as train/CLASS/*.jpg, val/CLASS/*.jpg"
        )
    classes = sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
    size = size or 224
    train = ImageFolder(
        root / "train", classes, imagenet_transforms(size, augment == "imagenet"), in_chans=in_chans, size=size
    )
    test = ImageFolder(root / "val", classes, imagenet_transforms(size, False), in_chans=in_chans, size=size)
    mean, std = _STATS["imagefolder"]
    if in_chans == 1:
        mean, std = (sum(mean) / 3,), (sum(std) / 3,)
    spec = DataSpec("imagefolder", tuple(classes), in_chans, size, mean, std)
    return _take(train, subsets[0]), _take(test, subsets[1]), spec


def _take(ds: Dataset, keep: int) -> Dataset:
    idx = _subset(len(ds), keep)
    if idx is None:
        return ds
    if isinstance(ds, ImageFolder):
        ds.samples = [ds.samples[i] for i in idx.tolist()]
        return ds
    return TensorImages(ds.images[idx], ds.labels[idx], padding=ds.padding, size=ds.size, erasing=ds.erasing)


def load_datasets(
    name: str,
    *,
    data_dir: str | None = None,
    download: bool = False,
    image_size: int = 0,
    augment: str = "auto",
    crop_padding: int = 4,
    random_erasing: float = 0.0,
    train_subset: int = 0,
    test_subset: int = 0,
    in_chans: int = 3,
) -> tuple[Dataset, Dataset, DataSpec]:
    """The training and test sets of a dataset, and its `DataSpec`.

    Args:
        name: one of `DATASETS`.
        data_dir: where the files are; by default the dataset's usual places (see the module docstring).
        download: fetch the dataset through torchvision if it is not found (needs the network).
        image_size: the side the model sees; 0 for the dataset's own (28, 32, 224 for image folders).
        augment: ``crop-flip`` (pad ``crop_padding`` px, random crop, mirror) for in-memory datasets, ``imagenet``
            (the paper's) for image folders, ``none``, or ``auto`` (the one that applies).
        random_erasing: probability of erasing a random rectangle of each training image (`random_erase`);
            in-memory datasets only.
        train_subset, test_subset: keep a fixed random subset of that many images (0: all).
        in_chans: channels of image-folder and synthetic images (3 RGB, 1 grayscale).

    Raises:
        ValueError: unknown dataset or augmentation, corrupt files.
        FileNotFoundError: no files, with where it looked and how to get them.
    """
    if name not in DATASETS:
        hints = difflib.get_close_matches(name, DATASETS, n=2)
        hint = f" (did you mean {hints[0]!r}?)" if hints else ""
        raise ValueError(f"unknown dataset {name!r}{hint}; choose from {', '.join(DATASETS)}")
    if augment not in AUGMENTATIONS:
        raise ValueError(f"unknown augment {augment!r}; choose from {', '.join(AUGMENTATIONS)}")
    if augment == "auto":
        augment = "imagenet" if name == "imagefolder" else "crop-flip"
    if (augment == "imagenet") != (name == "imagefolder") and augment != "none":
        want = "imagenet" if name == "imagefolder" else "crop-flip"
        raise ValueError(f"augment {augment!r} does not apply to {name}; use {want!r} or 'none'")
    if not 0.0 <= random_erasing <= 1.0:
        raise ValueError(f"random_erasing={random_erasing!r} is a probability; use a value in [0, 1]")
    if name == "imagefolder" and random_erasing:
        raise ValueError("random_erasing applies to in-memory datasets (fashion-mnist, cifar10/100, synthetic) only")
    if name == "imagefolder":
        return _image_folder(data_dir, image_size, in_chans, augment, (train_subset, test_subset))
    if name == "synthetic":
        size = image_size or 32
        g = torch.Generator().manual_seed(0)
        n_train, n_test = train_subset or 10_000, test_subset or 1_000
        images = torch.randint(0, 256, (n_train + n_test, in_chans, size, size), dtype=torch.uint8, generator=g)
        labels = torch.randint(0, 10, (n_train + n_test,), generator=g)
        splits = {"train": (images[:n_train], labels[:n_train]), "test": (images[n_train:], labels[n_train:])}
        classes = tuple(str(i) for i in range(10))
        mean, std = _STATS["synthetic"][0][:in_chans], _STATS["synthetic"][1][:in_chans]
        spec = DataSpec(name, classes, in_chans, size, mean, std)
    else:
        arrays, classes = (
            _fashion_mnist(data_dir, download) if name == "fashion-mnist" else _cifar(name, data_dir, download)
        )
        splits = {k: (torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)) for k, (x, y) in arrays.items()}
        native = splits["train"][0].shape[-1]
        mean, std = _STATS[name]
        spec = DataSpec(name, tuple(classes), splits["train"][0].shape[1], image_size or native, mean, std)
    padding = crop_padding if augment == "crop-flip" else None
    train = TensorImages(*splits["train"], padding=padding, size=spec.image_size, erasing=random_erasing)
    test = TensorImages(*splits["test"], size=spec.image_size)
    bad = int(max(train.labels.max(), test.labels.max()))
    if bad >= spec.num_classes or min(train.labels.min(), test.labels.min()) < 0:
        raise ValueError(f"{name} labels out of range 0..{spec.num_classes - 1} (found {bad})")
    return _take(train, train_subset), _take(test, test_subset), spec
