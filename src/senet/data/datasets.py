"""The datasets senet trains and evaluates on, as uint8 batches (B, C, H, W) with int64 labels, and their `DataSpec`.

* ``fashion-mnist``, ``cifar10``, ``cifar100``: held in memory (`TensorImages`), augmented per batch in one gather
  (pad, random crop, mirror; random erasing on request).
* ``imagefolder``: ImageNet-style ``train/CLASS/*.jpg`` and ``val/CLASS/*.jpg`` (`ImageFolder`; the held-out
  folder may also be named ``valid``, ``validation`` or ``test``, the first found in that order), decoded per image
  and transformed with the paper's ImageNet recipe (`image_transforms`) at 224 pixels, or the images' own size when
  they are smaller, normalised with the mean and std measured on the training images unless given.
* ``synthetic``: random images, for smoke runs and speed measurements.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..constants import CIFAR10_MEAN, CIFAR10_STD
from .formats import UnreadableImage, read_image
from .sampling import Batch, BatchKey, derive_seed
from .sources import cifar_arrays, fashion_mnist_arrays, missing_files
from .transforms import Draws, Preprocess, apply_augmentation, draw_augmentation, image_transforms

__all__ = [
    "AUGMENTATIONS", "DATASETS", "DataSpec", "ImageFolder", "TensorImages", "class_indices", "dataset_channels",
    "load_datasets", "measure_mean_std",
]  # fmt: skip

DATASETS = ("fashion-mnist", "cifar10", "cifar100", "imagefolder", "synthetic")
AUGMENTATIONS = ("auto", "none", "crop-flip", "imagenet")  # auto: imagenet for image folders, crop-flip otherwise

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff")
# The names of an image folder's held-out split, in the order they are looked for (val/ is ImageNet's, valid/ Roboflow
# and Kaggle exports', test/ that of sets split in two): the first one present is the test set.
HELD_OUT_FOLDERS = ("val", "valid", "validation", "test")
IMAGENET_SIDE = 224  # the paper's training crop (§6.1), the default side of image folders with larger images

# Per-channel mean and std of the training images, on the 0–1 scale.
_STATS = {
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": (CIFAR10_MEAN, CIFAR10_STD),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "synthetic": ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
}


@dataclass(frozen=True)
class DataSpec:
    """What a model trained on a dataset must know to be used again: stored with its weights."""

    dataset: str
    classes: tuple[str, ...]
    in_chans: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pct: float = 1.0  # evaluation crop of image folders (see Preprocess); in-memory images are used whole
    interpolation: str = "bilinear"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def preprocess(self) -> Preprocess:
        return Preprocess(self.image_size, self.mean, self.std, self.crop_pct, self.interpolation)


class TensorImages(Dataset):
    """Images held in memory as one uint8 tensor (N, C, H, W) with int64 labels (N,).

    ``padding`` turns on the pad-crop-flip augmentation (`random_crop_flip`; 0: flips only, None: off) and
    ``erasing`` random erasing with that probability per image (`random_erase`), both drawn from each batch's seed
    (`draws`; `senet.data.ResidentImages` applies the same draws on the training device);
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
        images = resize(self.images[idx], self.size)
        return Batch(apply_augmentation(images, self.draws(key.seed, images.shape), self.padding), self.labels[idx])

    def draws(self, seed: int, shape: Sequence[int]) -> Draws:
        """The random numbers of the augmentation of a batch of ``shape`` with seed ``seed`` (`draw_augmentation`)."""
        return draw_augmentation(torch.Generator().manual_seed(seed), shape, self.padding, self.erasing)


def resize(images: Tensor, size: int) -> Tensor:
    """uint8 (B, C, H, W) resized to ``size`` × ``size`` (bilinear, antialiased); unchanged if 0 or already so."""
    if not size or size == images.shape[-1]:
        return images
    from torchvision.transforms import v2

    return v2.functional.resize(images, [size, size], antialias=True)


class ImageFolder(Dataset):
    """Images in class folders (``root/CLASS/*.jpg``), decoded per image with PIL and transformed with
    torchvision.transforms.v2. A file that cannot be decoded, or declares more pixels than senet decodes
    (`senet.data.formats.read_image`), is left out of its batch and named in `Batch.unreadable`, so the trainer can
    stop with its name or skip and count it. ``require_all`` (a training set) refuses a class folder without images."""

    def __init__(
        self,
        root: Path,
        classes: Sequence[str],
        transform: torch.nn.Module,
        *,
        in_chans: int,
        size: int,
        require_all: bool = False,
    ) -> None:
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
            raise ValueError(f"{str(root)!r} has class folders the training set lacks: {extra[:5]}; add them, with "
                             "images, to train/ or remove them here")  # fmt: skip
        self.samples: list[tuple[str, int]] = [
            (str(p), index[c])
            for c in self.classes
            if (root / c).is_dir()
            for p in sorted((root / c).rglob("*"))
            if p.suffix.lower() in IMAGE_EXTENSIONS
        ]
        if not self.samples:
            raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {str(root)!r}; put them in one folder "
                             "per class: CLASS/*.jpg")  # fmt: skip
        if require_all:  # a class folder without images would become a class that no image teaches
            empty = sorted(set(self.classes) - {self.classes[label] for _, label in self.samples})
            if empty:
                raise ValueError(f"class folder(s) without images ({', '.join(IMAGE_EXTENSIONS)}) in {str(root)!r}: "
                                 f"{empty[:5]}; add images or remove the folder")  # fmt: skip

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        batch = self.__getitems__(BatchKey(0, [index]))
        if batch.unreadable:
            raise ValueError(f"unreadable image {batch.unreadable[0]!r}")
        return batch.images[0], int(batch.labels[0])

    def __getitems__(self, key: BatchKey) -> Batch:
        images, labels, bad = [], [], []
        for j, i in enumerate(key.indices):
            path, label = self.samples[i]
            try:
                img = read_image(path, self.in_chans)
            except UnreadableImage as e:  # broken, non-image or oversized files
                bad.append(f"{path} ({e.reason})")
                continue
            with torch.random.fork_rng(devices=[]):  # v2 draws from the global generator
                torch.manual_seed(derive_seed(key.seed, j))
                images.append(self.transform(img))
            labels.append(label)
        shape = (0, self.in_chans, self.size, self.size)
        stacked = torch.stack(images) if images else torch.empty(shape, dtype=torch.uint8)
        return Batch(stacked, torch.tensor(labels, dtype=torch.long), tuple(bad))


# Synthetic data is generated whole before the first batch: bounded so an absurd subset is refused, not allocated.
_SYNTHETIC_MAX_BYTES = 4 * 2**30


def _subset(n: int, keep: int) -> Tensor | None:
    """A fixed random subset of ``keep`` of ``n`` indices (the same for every run), or None for all."""
    if not keep or keep >= n:
        return None
    return torch.randperm(n, generator=torch.Generator().manual_seed(0))[:keep].sort().values


def _image_folder(
    data_dir: str | None, size: int, in_chans: int, augment: str, given: Mapping[str, Any]
) -> tuple[Dataset, Dataset, DataSpec]:
    if not data_dir:
        raise ValueError("the imagefolder dataset needs --data-dir DIR with train/CLASS/*.jpg and a held-out folder "
                         f"val/CLASS/*.jpg (or {'/, '.join(HELD_OUT_FOLDERS[1:])}/)")  # fmt: skip
    root = Path(data_dir).expanduser()
    held_out = next((root / name for name in HELD_OUT_FOLDERS if (root / name).is_dir()), None)
    if not (root / "train").is_dir() or held_out is None:
        looked = [root / "train", *(root / name for name in HELD_OUT_FOLDERS)]
        others = "/, ".join(HELD_OUT_FOLDERS[1:])
        raise missing_files("an image folder", looked, f"arrange it as train/CLASS/*.jpg and a held-out folder "
                            f"val/CLASS/*.jpg (or {others}/)")  # fmt: skip
    classes = sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
    # The paper's evaluation crop (224 of 256) unless the weights say otherwise; the normalisation is measured on
    # the training images unless given (the init weights' own, or --mean/--std).
    size = size or min(IMAGENET_SIDE, _typical_side(root / "train", classes))
    pre = {"input_size": size, "mean": (0.5,) * in_chans, "std": (0.5,) * in_chans, "crop_pct": 0.875}
    pre = Preprocess(**{**pre, **given})
    train = ImageFolder(root / "train", classes, image_transforms(pre, augment == "imagenet"), in_chans=in_chans,
                        size=pre.input_size, require_all=True)  # fmt: skip
    test = ImageFolder(held_out, classes, image_transforms(pre, False), in_chans=in_chans, size=pre.input_size)
    spec = DataSpec("imagefolder", tuple(classes), in_chans, pre.input_size, pre.mean, pre.std, pre.crop_pct,
                    pre.interpolation)  # fmt: skip
    return train, test, spec


def measure_mean_std(ds: ImageFolder, pre: Preprocess, limit: int = 2000) -> tuple[tuple[float, ...], ...]:
    """Per-channel mean and standard deviation (0–1 scale) of an image folder's images as the model sees them at
    evaluation (``pre``'s resize and centre crop): over all of them, or a fixed random sample of ``limit``.

    Files that cannot be read are left out of the measure (training names them, or skips and counts them, when it
    meets them). A channel that does not vary over the images (a constant colour) keeps std 1: any scale maps its
    training values to 0, and 1 leaves the deviations of other images as they are instead of dividing by zero."""
    probe = copy.copy(ds)
    probe.transform = image_transforms(pre, False)
    idx = _subset(len(ds), limit)
    order = idx.tolist() if idx is not None else list(range(len(ds)))
    total = torch.zeros(3, ds.in_chans, dtype=torch.float64)  # pixels, sum, sum of squares, per channel
    for start in range(0, len(order), 64):
        batch = probe.__getitems__(BatchKey(0, order[start : start + 64])).images.to(torch.float64) / 255
        total[0] += batch[:, 0].numel()
        total[1] += batch.sum((0, 2, 3))
        total[2] += batch.square().sum((0, 2, 3))
    if not total[0].all():
        raise ValueError(f"none of the training images under {str(ds.root)!r} can be read; cannot measure their mean "
                         "and std")  # fmt: skip
    mean = total[1] / total[0]
    std = (total[2] / total[0] - mean.square()).clamp_min(0).sqrt()
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) or 1.0 for v in std.tolist())


def dataset_channels(name: str, in_chans: int = 3) -> int:
    """The channels of ``name``'s images: ``in_chans`` for image folders and synthetic images, else its own."""
    return in_chans if name in ("imagefolder", "synthetic") else len(_STATS[name][0])


def _labels(ds: Dataset) -> Tensor:
    return torch.tensor([label for _, label in ds.samples]) if isinstance(ds, ImageFolder) else ds.labels


def _keep(ds: Dataset, idx: Tensor, relabel: Tensor | None = None) -> Dataset:
    """The images of ``ds`` at ``idx`` (in that order), their labels mapped through ``relabel`` if given."""
    if isinstance(ds, ImageFolder):
        new = relabel.tolist() if relabel is not None else None
        ds.samples = [(ds.samples[i][0], new[ds.samples[i][1]] if new else ds.samples[i][1]) for i in idx.tolist()]
        return ds
    labels = ds.labels[idx] if relabel is None else relabel[ds.labels[idx]]
    return TensorImages(ds.images[idx], labels, padding=ds.padding, size=ds.size, erasing=ds.erasing)


def _typical_side(folder: Path, classes: Sequence[str], per_class: int = 8) -> int:
    """The median shorter side of the first few images of each class, read from their headers (nothing is decoded):
    the side image folders of small images (64-pixel thumbnails) are trained at, instead of upscaling them."""
    from PIL import Image

    sides = []
    for c in classes:
        files = sorted(p for p in (folder / c).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        for path in files[:per_class]:
            try:
                with Image.open(path) as img:
                    sides.append(min(img.size))
            except (OSError, ValueError, SyntaxError):  # unreadable: the loader names it when it meets it
                continue
    return int(np.median(sides)) if sides else IMAGENET_SIDE


def _take(ds: Dataset, keep: int) -> Dataset:
    idx = _subset(len(ds), keep)
    return ds if idx is None else _keep(ds, idx)


def class_indices(classes: Sequence[int | str], names: Sequence[str], dataset: str) -> list[int]:
    """The dataset's label of each entry of ``classes`` (an index, or a class name), checked: in range, no repeats."""
    if not classes:
        raise ValueError(f"classes=[] selects nothing; give indices 0..{len(names) - 1} or names of {dataset}")
    out = []
    for c in classes:
        if isinstance(c, str) and c in names:
            out.append(names.index(c))
        elif isinstance(c, int) and not isinstance(c, bool) and 0 <= c < len(names):
            out.append(c)
        else:
            shown = ", ".join(f"{i}: {n}" for i, n in enumerate(names[:12])) + (", ..." if len(names) > 12 else "")
            raise ValueError(f"classes: {c!r} is not a class of {dataset}; use indices 0..{len(names) - 1} or "
                             f"names ({shown})")  # fmt: skip
    if len(set(out)) < len(out):
        raise ValueError(f"classes={list(classes)!r} names a class twice")
    return out


def _select_classes(train: Dataset, test: Dataset, spec: DataSpec, classes: Sequence[int | str]):
    """Keep the images of ``classes`` only, relabelled 0..k-1 in the order given."""
    keep = class_indices(classes, spec.classes, spec.dataset)
    relabel = torch.full((spec.num_classes,), -1, dtype=torch.long)
    relabel[keep] = torch.arange(len(keep))
    out = []
    for ds in (train, test):
        idx = (relabel[_labels(ds)] >= 0).nonzero().flatten()
        out.append(_keep(ds, idx, relabel))
    names = tuple(spec.classes[i] for i in keep)
    return out[0], out[1], dataclasses.replace(spec, classes=names)


def _per_class(ds: Dataset, n: int, names: Sequence[str]) -> Dataset:
    """The first ``n`` images of each class in one fixed random order of the training set (the same for every run,
    whatever its seed), in that order."""
    labels = _labels(ds)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(labels, minlength=len(names))
    short = [(names[c], int(k)) for c, k in enumerate(counts.tolist()) if k < n]
    if short:
        raise ValueError(f"train_per_class={n} but class {short[0][0]!r} has {short[0][1]} training images; "
                         "lower train_per_class")  # fmt: skip
    picked = torch.cat([order[labels[order] == c][:n] for c in range(len(names))])
    return _keep(ds, picked.sort().values)


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
    classes: Sequence[int | str] | None = None,
    train_per_class: int = 0,
    preprocess: Mapping[str, Any] | None = None,
) -> tuple[Dataset, Dataset, DataSpec]:
    """The training and test sets of a dataset, and its `DataSpec`.

    Args:
        name: one of `DATASETS`.
        data_dir: where the files are; by default the dataset's usual places (see the module docstring).
        download: fetch the dataset through torchvision if it is not found (needs the network).
        image_size: the side the model sees; 0 for the dataset's own (28, 32; for image folders 224, or the median
            shorter side of the training images where that is smaller).
        augment: ``crop-flip`` (pad ``crop_padding`` px, random crop, mirror) for in-memory datasets, ``imagenet``
            (the paper's) for image folders, ``none``, or ``auto`` (the one that applies).
        random_erasing: probability of erasing a random rectangle of each training image (`random_erase`);
            in-memory datasets only.
        train_subset, test_subset: keep a fixed random subset of that many images (0: all).
        in_chans: channels of image-folder and synthetic images (3 RGB, 1 grayscale).
        classes: keep these classes only (indices into the dataset's classes, or their names), relabelled
            0..k-1 in the order given; the training and the test images of other classes are left out.
        train_per_class: keep this many training images of each (kept) class, the same for every run (0: all);
            before ``train_subset``.
        preprocess: ``mean`` and ``std`` (one value per channel) to normalise with instead of the dataset's (image
            folders: measured on the training images, `measure_mean_std`), and for image folders ``crop_pct`` and
            ``interpolation`` (`Preprocess`); recorded in the `DataSpec`.

    Raises:
        ValueError: unknown dataset or augmentation, corrupt files.
        FileNotFoundError: no files, with where it looked and how to get them.
    """
    for flag, keep in (("train_subset", train_subset), ("test_subset", test_subset)):
        if not isinstance(keep, int) or keep < 0:
            raise ValueError(f"{flag}={keep!r} must be a whole number of images, at least 0 (0: all)")
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
    given = dict(preprocess or {})
    unknown = set(given) - {"mean", "std", "crop_pct", "interpolation"}
    if unknown or ("mean" in given) != ("std" in given):
        raise ValueError(f"preprocess={given!r}: give mean and std together, and crop_pct or interpolation")
    if name == "imagefolder":
        train, test, spec = _image_folder(data_dir, image_size, in_chans, augment, given)
    else:
        train, test, spec = _in_memory(name, data_dir, download, image_size, in_chans, augment, crop_padding,
                                       random_erasing, (train_subset, test_subset))  # fmt: skip
        spec = dataclasses.replace(spec, **{k: tuple(given[k]) for k in ("mean", "std") if k in given})
    if "mean" in given and not len(given["mean"]) == len(given["std"]) == spec.in_chans:
        raise ValueError(f"mean={list(given['mean'])} and std={list(given['std'])} need one value per channel of "
                         f"{name}'s images ({spec.in_chans})")  # fmt: skip
    if classes is not None:
        train, test, spec = _select_classes(train, test, spec, classes)
    if train_per_class:
        train = _per_class(train, train_per_class, spec.classes)
    train, test = _take(train, train_subset), _take(test, test_subset)
    if name == "imagefolder" and "mean" not in given:  # measured on the images this run trains on
        mean, std = measure_mean_std(train, spec.preprocess)
        spec = dataclasses.replace(spec, mean=mean, std=std)
    return train, test, spec


def _in_memory(
    name: str, data_dir: str | None, download: bool, image_size: int, in_chans: int, augment: str, crop_padding: int,
    random_erasing: float, subsets: tuple[int, int],
) -> tuple[TensorImages, TensorImages, DataSpec]:  # fmt: skip
    if name == "synthetic":  # random images, as many as the subsets ask for
        size = image_size or 32
        g = torch.Generator().manual_seed(0)
        n_train, n_test = subsets[0] or 10_000, subsets[1] or 1_000
        nbytes = (n_train + n_test) * in_chans * size * size  # uint8, held in memory
        if nbytes > _SYNTHETIC_MAX_BYTES:
            raise ValueError(f"synthetic data of {n_train + n_test} images of {in_chans}×{size}×{size} would take "
                             f"{nbytes / 2**30:.1f} GiB; lower train_subset / test_subset or image_size")  # fmt: skip
        images = torch.randint(0, 256, (n_train + n_test, in_chans, size, size), dtype=torch.uint8, generator=g)
        labels = torch.randint(0, 10, (n_train + n_test,), generator=g)
        splits = {"train": (images[:n_train], labels[:n_train]), "test": (images[n_train:], labels[n_train:])}
        classes = tuple(str(i) for i in range(10))
        mean, std = _STATS["synthetic"][0][:in_chans], _STATS["synthetic"][1][:in_chans]
        spec = DataSpec(name, classes, in_chans, size, mean, std)
    else:
        if name == "fashion-mnist":
            arrays, classes = fashion_mnist_arrays(data_dir, download)
        else:
            arrays, classes = cifar_arrays(name, data_dir, download)
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
    return train, test, spec
