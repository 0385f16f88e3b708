"""Data for training and evaluating SE networks (paper §5 and docs/reference.md §5–6).

Every dataset yields *uint8* image batches, (B, C, H, W), and int64 labels; the conversion to float and the
normalisation by the dataset's mean and std happen on the training device (`normalize`), so a GPU receives a
quarter of the bytes. All randomness of a batch comes from the seed the sampler hands it (`BatchKey`).

* `senet.data.sampling`: batch order and seeds (`EpochBatches`, `derive_seed`).
* `senet.data.transforms`: augmentation and normalisation.
* `senet.data.datasets`: the datasets and `load_datasets`.
* `senet.data.resident`: an in-memory dataset held on the training device (`ResidentImages`).
* `senet.data.formats`: IDX and CIFAR files, read defensively.
* `senet.data.sources`: where each dataset's files are looked for, and downloads.
"""

from .datasets import (
    AUGMENTATIONS,
    DATASETS,
    DataSpec,
    ImageFolder,
    TensorImages,
    class_indices,
    dataset_channels,
    load_datasets,
    measure_mean_std,
)
from .formats import UnreadableImage, read_cifar_batch, read_idx, read_image
from .resident import ResidentImages
from .sampling import Batch, BatchKey, EpochBatches, collate_batch, derive_seed
from .sources import FASHION_MNIST_DIR, default_root
from .transforms import (
    INTERPOLATIONS,
    Draws,
    Preprocess,
    apply_augmentation,
    draw_augmentation,
    image_transforms,
    normalize,
    random_crop_flip,
    random_erase,
)

__all__ = [
    "AUGMENTATIONS",
    "DATASETS",
    "FASHION_MNIST_DIR",
    "INTERPOLATIONS",
    "Batch",
    "BatchKey",
    "DataSpec",
    "Draws",
    "EpochBatches",
    "ImageFolder",
    "Preprocess",
    "ResidentImages",
    "TensorImages",
    "UnreadableImage",
    "apply_augmentation",
    "class_indices",
    "collate_batch",
    "dataset_channels",
    "default_root",
    "derive_seed",
    "draw_augmentation",
    "image_transforms",
    "load_datasets",
    "measure_mean_std",
    "normalize",
    "random_crop_flip",
    "random_erase",
    "read_cifar_batch",
    "read_idx",
    "read_image",
]
