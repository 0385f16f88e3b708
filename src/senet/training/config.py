"""The training configuration: one dataclass, filled from a recipe (a YAML file; senet's own ship inside the package,
in senet/training/recipes/) and overrides.

Every field can be set in a recipe file and on the command line (``--lr 0.2``, ``--model-options '{r: 8}'``);
a field the dataclass does not have is an error naming it. The resolved configuration is saved with each run as
config.yaml, which is itself a recipe: ``senet train --recipe runs/NAME/config.yaml`` repeats the run.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
import functools
import inspect
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..data import AUGMENTATIONS, DATASETS
from ..factory import LIBRARIES
from ..files import check_folder_name
from ..models import get_entry
from ..retrofit import add_se
from ..validate import (
    MAX_BATCH,
    MAX_CHANNELS,
    MAX_CLASSES,
    MAX_COUNT,
    MAX_EPOCHS,
    MAX_IMAGE_SIDE,
    Either,
    Float,
    Int,
    Json,
    List,
    Map,
    SchemaError,
    Spec,
    Str,
    read_yaml,
)
from .evaluation import TTA
from .finetune import Finetune

__all__ = ["BOUNDS", "OPTIMIZERS", "SCHEDULES", "TrainConfig", "field_type", "find_recipe", "list_recipes"]

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "linear", "step", "plateau", "constant")
AMP = ("none", "bf16", "fp16")

_FRACTION = Float(0.0, 1.0)
_BELOW_ONE = Float(0.0, 1.0, hi_open=True)
_CLASS = Either(Int(0, MAX_CLASSES - 1), Str(max_len=1000), expected="a class's index or name")
# The bounds of every number of a recipe: beyond them a value is a mistake (or a hostile file), not a choice. Every
# float must be finite (a NaN learning rate would train until the loss is NaN). Threads and workers are checked
# against the machine when a run starts (`senet.environment.check_parallelism`).
BOUNDS: dict[str, Spec] = {
    "model_options": Map(others=Json(max_depth=2, max_items=1000), max_len=100),  # option: value or list
    "add_se": List(Map(others=Json(max_depth=2, max_items=1000), max_len=100), max_len=100),  # calls of add_se
    "classes": List(_CLASS, max_len=MAX_CLASSES),
    "train_per_class": Int(0, MAX_COUNT),
    "mean": List(Float(), max_len=MAX_CHANNELS),
    "std": List(Float(0.0, lo_open=True), max_len=MAX_CHANNELS),  # 0 would divide by zero
    "init": Str(max_len=4096),  # a tag, a path
    "backbone_lr": Float(0.0, 1.0, lo_open=True),
    "layer_decay": Float(0.0, 1.0, lo_open=True),
    "image_size": Int(0, MAX_IMAGE_SIDE),
    "crop_padding": Int(0, MAX_IMAGE_SIDE),
    "random_erasing": _FRACTION,
    "train_subset": Int(0, MAX_COUNT),
    "test_subset": Int(0, MAX_COUNT),
    "workers": Int(0, 1024),
    "epochs": Int(1, MAX_EPOCHS),
    "batch_size": Int(1, MAX_BATCH),
    "accum_steps": Int(1, MAX_BATCH),
    "lr": Float(0.0, lo_open=True),
    "lr_batch": Int(1, MAX_COUNT),
    "momentum": _BELOW_ONE,
    "weight_decay": Float(0.0, 1.0),  # more than 1 shrinks the weights faster than any gradient moves them
    "warmup_epochs": Float(0.0, MAX_EPOCHS),
    "min_lr": _BELOW_ONE,
    "milestones": List(Int(0, MAX_EPOCHS), max_len=1000),
    "gamma": Float(0.0, lo_open=True),
    "patience": Int(0, MAX_EPOCHS),
    "label_smoothing": _BELOW_ONE,
    "ema_decay": _BELOW_ONE,
    "threads": Int(0, 4096),
    "seed": Int(0, 2**63 - 1),
    "checkpoint_every": Int(0, MAX_COUNT),
    "eval_every": Int(1, MAX_EPOCHS),
}


def option(default: Any, help: str) -> Any:
    """A `TrainConfig` field: its default and a short help (unit, choices), which ``senet train --help`` shows."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Everything that decides a training run. Learning rates are per ``lr_batch`` images and scale linearly with
    the global batch (batch_size × accum_steps × processes), as the paper's 0.6 per 1024 (§5)."""

    # model
    model: str = option("se_resnet20", "a registered model (senet models), or torchvision:NAME / timm:NAME")
    model_options: dict[str, Any] = option({}, "create_model options, e.g. {r: 8}; a builder's arguments")
    add_se: list[dict[str, Any]] = option([], "senet.add_se calls made on the built model, e.g. [{r: 16}]")
    # data
    dataset: str = option("fashion-mnist", "fashion-mnist, cifar10, cifar100, imagefolder, synthetic")
    data_dir: str | None = option(None, "None: the dataset's usual places")
    download: bool = option(False, "fetch through torchvision when missing (needs the network)")
    image_size: int = option(0, "pixels; 0: the dataset's own")
    in_chans: int = option(3, "channels of image-folder and synthetic images (others have their own)")
    augment: str = option(
        "auto", "auto, none, crop-flip (small images), imagenet (image folders); auto: the one that applies"
    )
    crop_padding: int = option(4, "pixels of zero padding before the random crop (crop-flip; 0: flips only)")
    random_erasing: float = option(0.0, "probability of erasing a random rectangle per training image (in-memory data)")
    classes: list[int | str] = option(
        [], "keep these classes only (indices or names), relabelled 0..k-1 in that order, in training and test; []: all"
    )
    train_per_class: int = option(0, "train on this many images per class, the same for every run; 0: all")
    train_subset: int = option(0, "train on a fixed random subset of this many images; 0: all")
    test_subset: int = option(0, "evaluate on a fixed random subset; 0: all")
    tta: str = option(
        "none", "test-time augmentation of every evaluation: none, or flip (mean of image and mirror image)"
    )
    mean: list[float] = option([], "input normalisation per channel; []: the init weights', else the dataset's")
    std: list[float] = option([], "with mean; []: the init weights', else the dataset's (image folders: measured)")
    skip_bad_images: bool = option(False, "image folders: skip and count unreadable files instead of stopping")
    workers: int = option(0, "data-loading processes per training process")
    data_on_device: bool = option(
        False, "in-memory data: hold the images and their augmentation on the training device (no loader, no workers)"
    )
    # transfer (docs/transfer.md)
    init: str = option("", "start from: DEFAULT or a published tag, MODEL.TAG, a run folder or a weights file")
    freeze: str = option("none", "none, backbone (all but the head), stem, layerN (the stem and stages 1..N)")
    freeze_bn: str = option("frozen", "BatchNorm layers keeping their statistics: frozen (the frozen part), all, none")
    backbone_lr: float = option(1.0, "lr factor of everything but the head, in (0, 1]")
    layer_decay: float = option(1.0, "lr factor per stage from the head back to the stem, in (0, 1]")
    # optimisation
    epochs: int = option(10, "training epochs")
    batch_size: int = option(128, "images per process and per step (before accumulation)")
    accum_steps: int = option(1, "micro-batches per optimizer step")
    optimizer: str = option("sgd", "sgd (momentum) or adamw")
    lr: float = option(0.1, "peak learning rate per lr_batch images")
    lr_batch: int = option(256, "images per step at which lr applies")
    momentum: float = option(0.9, "SGD momentum; AdamW's beta1")
    nesterov: bool = option(False, "Nesterov momentum (SGD)")
    weight_decay: float = option(5e-4, "L2 weight decay (decoupled for AdamW)")
    no_decay_norm_bias: bool = option(False, "no weight decay on BatchNorm weights and biases")
    schedule: str = option("cosine", "cosine, linear (to min_lr), step (× gamma at milestones), plateau, constant")
    warmup_epochs: float = option(0.0, "linear warm-up from 0, in epochs (fractions allowed)")
    min_lr: float = option(0.0, "final fraction of the peak lr (cosine, linear)")
    milestones: list[int] = option([30, 60, 90], "step: epochs at which lr *= gamma")
    gamma: float = option(0.1, "step and plateau decay factor")
    patience: int = option(2, "plateau: epochs without a better test loss before lr *= gamma")
    label_smoothing: float = option(0.0, "label smoothing of the cross-entropy, in [0, 1)")
    ema_decay: float = option(0.0, "exponential moving average of the weights; 0: off. Evaluated and saved when on")
    # speed
    amp: str = option("none", "none, bf16 (CPU or CUDA), fp16 (CUDA, with a gradient scaler)")
    channels_last: bool = option(False, "NHWC memory layout")
    compile: bool = option(False, "torch.compile the model")
    sync_bn: bool = option(False, "SyncBatchNorm across processes")
    device: str = option("auto", "auto (CUDA when present), cpu, cuda")
    threads: int = option(0, "CPU threads per process; 0: cores / processes")
    # reproducibility and output
    seed: int = option(0, "the run's seed: initialisation, data order, augmentation, dropout")
    deterministic: bool = option(False, "deterministic kernels only (bit-identical reruns and resumes)")
    out_dir: str = option("runs", "the folder that holds run folders")
    name: str = option("", 'run folder under out_dir; "": MODEL-DATASET-sSEED')
    checkpoint_every: int = option(0, "also checkpoint every N optimizer steps (0: at epoch ends only)")
    eval_every: int = option(1, "epochs between test-set evaluations (the last epoch is always evaluated)")
    tensorboard: bool | None = option(
        None, "TensorBoard events in RUN/tb: true (needs tensorboard) or false; null: when it is installed"
    )
    progress: str = option("auto", "auto (a bar on a terminal, one line per epoch otherwise), bar, epoch, none")

    def __post_init__(self) -> None:
        # stored absolute: the run's config and weights find their data from any working folder (senet eval RUN)
        if isinstance(self.data_dir, str) and self.data_dir:
            self.data_dir = str(Path(self.data_dir).expanduser().absolute())
        self.validate()

    # -- construction ------------------------------------------------------------------------------------------

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def field_help(cls) -> dict[str, str]:
        """Each field's help (its unit, choices or meaning): the command line's ``--FIELD`` help."""
        return {f.name: f.metadata["help"] for f in dataclasses.fields(cls)}

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> TrainConfig:
        """Build from a mapping, checking every key and converting each value to its field's type."""
        types_ = _type_hints(cls)
        kwargs = {}
        for key, value in values.items():
            if key not in types_:
                hints = difflib.get_close_matches(str(key), types_, n=3)
                hint = f"; did you mean {', '.join(hints)}?" if hints else f"; valid fields: {', '.join(types_)}"
                raise ValueError(f"unknown field {key!r} in {source}{hint}")
            kwargs[key] = _convert(value, types_[key], f"{key} (in {source})")
        return cls(**kwargs)

    @classmethod
    def from_recipe(cls, recipe: str | Path | None = None, **overrides: Any) -> TrainConfig:
        """A recipe (a name from `list_recipes` or a YAML path; None for the defaults) with ``overrides`` on top."""
        values: dict[str, Any] = {}
        source = "overrides"
        if recipe is not None:
            path = find_recipe(recipe)
            loaded = read_yaml(path, "recipe")
            cls.from_dict(loaded, source=str(path))  # name the file in errors about its own fields
            values.update(loaded)
        values.update(overrides)
        return cls.from_dict(values, source=source if not overrides else "command line or overrides")

    def replace(self, **changes: Any) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes}, source="replace()")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @property
    def run_name(self) -> str:
        return self.name or f"{self.model.replace(':', '-')}-{self.dataset}-s{self.seed}"

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.run_name

    # -- checks --------------------------------------------------------------------------------------------------

    def validate(self) -> None:
        """Raise ValueError naming the first field with a value out of its range."""
        choices = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "amp": AMP}
        choices |= {"device": ("auto", "cpu", "cuda"), "progress": ("auto", "bar", "epoch", "none"), "tta": TTA}
        for key, options in choices.items():
            if getattr(self, key) not in options:
                raise ValueError(f"{key}={getattr(self, key)!r}; choose from {', '.join(options)}")
        for key, spec in BOUNDS.items():
            try:
                spec.check(getattr(self, key), key)
            except SchemaError as e:
                raise ValueError(f"{e.where}={e.value!r}: expected {e.expected}") from None
        if ":" in self.model:  # another library's builder: its name is checked when the model is built
            if self.model.partition(":")[0] not in LIBRARIES:
                raise ValueError(f"model={self.model!r}: the library before ':' must be one of {', '.join(LIBRARIES)}")
        else:
            get_entry(self.model)  # unknown names fail here, with close matches
        if self.dataset not in DATASETS:
            hints = difflib.get_close_matches(self.dataset, DATASETS, n=1)
            hint = f" (did you mean {hints[0]!r}?)" if hints else ""
            raise ValueError(f"unknown dataset {self.dataset!r}{hint}; choose from {', '.join(DATASETS)}")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment={self.augment!r}; choose from {', '.join(AUGMENTATIONS)}")
        if self.in_chans not in (1, 3):
            raise ValueError(f"in_chans={self.in_chans!r}: 1 (grayscale) or 3 (RGB)")
        if self.data_on_device and self.dataset == "imagefolder":
            raise ValueError(
                "data_on_device holds in-memory datasets (fashion-mnist, cifar10, cifar100, synthetic); image folders "
                "are decoded per batch: use data_on_device=false"
            )
        check_folder_name(self.name, "name")
        Finetune(self.freeze, self.freeze_bn, self.backbone_lr, self.layer_decay)  # checks the four
        takes = [p for p in inspect.signature(add_se).parameters if p != "model"]
        for call in self.add_se:
            unknown = [k for k in call if k not in takes]
            if unknown:
                raise ValueError(
                    f"add_se: {unknown[0]!r} is not an argument of senet.add_se; it takes {', '.join(takes)}"
                )
        if len(self.mean) != len(self.std):  # each value's bounds: BOUNDS
            raise ValueError(f"mean={self.mean!r} and std={self.std!r}: give one value per channel in each")


def field_type(name: str) -> tuple[Any, bool]:
    """A TrainConfig field's type, and whether it may be None (``str | None`` → (str, True))."""
    return _unwrap(_type_hints(TrainConfig)[name])


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """A config class's type hints, resolved once (``typing.get_type_hints`` evaluates every annotation on each call:
    the command line asks for each field's type to build its parser). Read-only: the dict is shared."""
    return typing.get_type_hints(cls)


def _unwrap(hint: Any) -> tuple[Any, bool]:
    args = typing.get_args(hint)
    if type(None) not in args:
        return hint, False
    (inner,) = [a for a in args if a is not type(None)]
    return inner, True


def _convert(value: Any, hint: Any, what: str) -> Any:
    """Check ``value`` against a field's type hint, allowing int for float; return it converted."""
    hint, optional = _unwrap(hint)
    if value is None and optional:
        return None
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):  # the first type that takes the value
        for arm in typing.get_args(hint):
            with contextlib.suppress(ValueError):
                return _convert(value, arm, what)
        names = " or ".join(getattr(a, "__name__", str(a)) for a in typing.get_args(hint))
        raise ValueError(f"{what} must be {names}, got {value!r}")
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 5e-4 (no dot) as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif hint is str:
        ok = isinstance(value, str)
    elif origin is list:
        ok = isinstance(value, (list, tuple))
        (item,) = typing.get_args(hint)
        value = [_convert(v, item, what) for v in value] if ok else value
    elif origin is dict:
        ok = isinstance(value, dict)
    else:  # pragma: no cover - a field of a type this function does not know
        raise TypeError(f"field {what} has an unsupported type {hint}")
    if not ok:
        name = getattr(hint, "__name__", str(hint))
        raise ValueError(f"{what} must be {name}, got {value!r}")
    return value


def _recipe_dirs() -> list[Path]:
    """Where recipes are looked for by name: ./recipes (a user's own), then the ones that ship with senet."""
    return [Path.cwd() / "recipes", Path(__file__).resolve().parent / "recipes"]


def list_recipes() -> list[str]:
    """Names of the recipes senet can find: recipes/*.yaml in the working folder, and senet's own."""
    return sorted({p.stem for d in _recipe_dirs() if d.is_dir() for p in d.glob("*.yaml")})


def find_recipe(recipe: str | Path) -> Path:
    """A recipe file: a path to a YAML file, or a name from `list_recipes`."""
    path = Path(recipe)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"no recipe file at {str(path)!r}")
        return path
    for d in _recipe_dirs():
        if (d / f"{recipe}.yaml").is_file():
            return d / f"{recipe}.yaml"
    names = list_recipes()
    hints = difflib.get_close_matches(str(recipe), names, n=3)
    hint = f"close matches: {', '.join(hints)}" if hints else f"available: {', '.join(names) or 'none'}"
    raise ValueError(f"unknown recipe {str(recipe)!r}; {hint}; or pass a path to a YAML file")
