"""The training loop: `train(config) -> RunResult`, crash-safe and resumable, on one or many processes.

The paper trains with synchronous SGD, momentum 0.9, a step schedule and the usual augmentation (§5); this loop
runs that recipe and the short ones that ship with senet (senet/training/recipes/). A run lives in its folder
(``out_dir/name``):

    config.yaml        the resolved configuration (a recipe that repeats the run)
    metrics.csv        one row per epoch (senet.training.outputs.METRICS); tb/ with TensorBoard when installed
    curves.png         loss and accuracy per epoch
    state.safetensors  everything ``resume`` needs (senet.training.checkpoint), at epoch ends and every
                       checkpoint_every steps; state.good.safetensors: the last state known to be usable
    last.safetensors   the weights at the last epoch, best.safetensors at the best test accuracy
    summary.json       the `RunResult`, written when the run completes

Exact resumption: the data order and augmentation of each batch are derived from (seed, epoch, batch) (see
senet.data.EpochBatches) and the global generator is re-seeded from (seed, rank, step) before every step, so after
restoring the weights, optimizer, scaler, EMA and counters a resumed run computes exactly what an uninterrupted
one would: with ``deterministic`` on a CPU the final weights are bit-identical.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from ..complexity import profile
from ..constants import CONFIG_FILE, METRICS_FILE, SUMMARY_FILE
from ..data import Batch, DataSpec, EpochBatches, ResidentImages, dataset_channels, derive_seed, load_datasets
from ..environment import check_parallelism, usable_cores
from ..factory import check_rebuilds, create_model, model_metadata
from ..files import atomic_write_text, folder_lock, save_weights
from ..models import get_entry
from ..transfer import init_options, load_init, resolve_init
from ..validate import MAX_EPOCHS, Float, Int, Json, List, Map, Str, json_text, read_json
from . import distributed
from .checkpoint import (
    BEST_FILE,
    GOOD_STATE_FILE,
    LAST_FILE,
    STATE_FILE,
    TrainingState,
    load_state,
    mark_good,
    roll_back,
    save_state,
)
from .config import TrainConfig
from .evaluation import Inputs, check_readable, evaluate, loader
from .finetune import Finetune, train_mode
from .outputs import (
    HISTORY_ROW,
    Progress,
    TensorBoard,
    plot_curves,
    require_tensorboard,
    tensorboard_installed,
    write_metrics_csv,
)
from .schedule import LRSchedule

__all__ = ["NonFiniteLossError", "RunResult", "train"]

# What --init loaded (senet.transfer.LoadReport), written when a run starts, with what a resumed run takes from it
# instead of reading the source again: the source's preprocessing and the model options its weights needed.
INIT_FILE = "init.json"
INIT_SCHEMA = Map(
    {"source": Str(), "model": Str(), "taken": Int(0, 10**9), "new": Map(others=Str()), "skipped": Map(others=Str()),
     "notes": List(Str(), max_len=100), "preprocess": Map(others=Json(max_depth=3, max_items=100)),
     "model_options": Map(others=Json(max_depth=4, max_items=10_000))},
    required=("new",),
)  # fmt: skip


def recorded_init(init: str) -> str:
    """``init`` as a run records it: a file or folder that exists as an absolute path (a resumed run, or a rerun
    from another working directory, names the same file); a published tag as it is."""
    path = Path(init).expanduser()
    return str(path.absolute()) if init and path.exists() else init


def _same_init(saved: str, now: str) -> bool:
    """Whether ``now`` names the init ``saved`` records (a relative path to it, even after the file went)."""
    return saved == now or (bool(now) and os.path.isabs(saved) and saved == str(Path(now).expanduser().absolute()))


def _preprocess(config: TrainConfig, given: dict[str, Any]) -> dict[str, Any]:
    """The preprocessing a run fixes rather than takes from its data: ``mean`` and ``std`` from the config or else
    from the init weights (``given``: pretrained features expect their own normalisation), and for image folders
    the init weights' input size, crop and interpolation."""
    pre = dict(given)
    if config.mean:
        pre |= {"mean": config.mean, "std": config.std}
    if len(pre.get("mean", ())) != dataset_channels(config.dataset, config.in_chans) and not config.mean:
        pre = {k: v for k, v in pre.items() if k not in ("mean", "std")}  # weights for other input: the stem says
    keep = (
        ("mean", "std")
        if config.dataset != "imagefolder"
        else ("mean", "std", "input_size", "crop_pct", "interpolation")
    )
    return {k: v for k, v in pre.items() if k in keep}


def _check_finetune(config: TrainConfig, given: nn.Module | None) -> None:
    """Refuse a ``freeze`` or ``layer_decay`` the model cannot take before the init source is read or downloaded:
    checked on the model given, or on the config's model built on the meta device (the stages are the model's,
    whatever options the init weights add); a model that does not build is left to the build that follows."""
    finetune = Finetune(config.freeze, config.freeze_bn, config.backbone_lr, config.layer_decay)
    if finetune.freeze in ("none", "backbone") and finetune.layer_decay == 1.0:
        return
    if given is None:
        try:
            with torch.device("meta"):
                given = create_model(config.model, num_classes=2, add_se=config.add_se, **config.model_options)
        except (ValueError, TypeError):
            return
    finetune.frozen(given)
    finetune.lr_scales(given)


# What summary.json holds (`RunResult.to_dict`), as `RunResult.load` checks it; a NaN is written as null.
_ACC = Float(0.0, 1.0)
SUMMARY_SCHEMA = Map(
    {
        "config": Map(others=Json(max_depth=4, max_items=10_000)),
        "history": List(HISTORY_ROW, max_len=MAX_EPOCHS, min_len=1),
        "test_acc": _ACC,
        "best_acc": _ACC,
        "params": Int(0, 2**53),
        "macs": Int(0, 2**62),
        "wall_s": Float(0.0),
        "images_per_s": Float(0.0),
        "fingerprints": List(Str(max_len=100), max_len=100_000),
        "skipped_images": Int(0, 2**53),
    },
    required=("config", "history", "test_acc", "best_acc", "params", "macs", "wall_s", "images_per_s"),
)


class NonFiniteLossError(ValueError):
    """The training loss or weights became NaN or infinite; the run stopped, its checkpoint back at the last state
    known to be usable (`senet.training.checkpoint.GOOD_STATE_FILE`)."""


@dataclass
class RunResult:
    """What a finished run reports (also saved as summary.json in its folder)."""

    run_dir: Path
    config: TrainConfig
    history: list[dict[str, Any]]  # one row per epoch, the columns of metrics.csv
    test_acc: float  # top-1 test accuracy after the last epoch
    best_acc: float
    params: int
    macs: int  # multiply-adds per image at the training size
    wall_s: float  # training wall time, all sessions of a resumed run together
    images_per_s: float  # training throughput, all processes together: the median over epochs
    fingerprints: list[str] = field(default_factory=list)  # SHA-256 of each process's final weights
    skipped_images: int = 0

    @property
    def weights(self) -> Path:
        return self.run_dir / LAST_FILE

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "run_dir": str(self.run_dir), "config": self.config.to_dict()}

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> RunResult:
        """The result of a completed run from its folder (FileNotFoundError if it has not completed)."""
        path = Path(run_dir) / SUMMARY_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{str(run_dir)!r} holds no completed run (no {SUMMARY_FILE})")
        fix = f"it was altered or damaged: delete it and run `senet train --resume {run_dir}` to write it again"
        d = read_json(path, SUMMARY_SCHEMA, "summary of a run", fix)
        d = {k: v for k, v in d.items() if k in {f.name for f in dataclasses.fields(cls)}}
        return cls(**{**d, "run_dir": Path(run_dir), "config": TrainConfig.from_dict(d["config"], source=str(path))})


class ModelEMA:
    """An exponential moving average of a model's weights (buffers copied), with the usual warm-up of the decay
    so that early averages are not dominated by the random initialisation."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for ema_t, t in zip(self.module.state_dict().values(), model.state_dict().values(), strict=True):
            if ema_t.dtype.is_floating_point:
                ema_t.lerp_(t, 1 - d)
            else:
                ema_t.copy_(t)


def _set_threads(config: TrainConfig) -> None:
    check_parallelism(config.threads, config.workers)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    torch.set_num_threads(config.threads or max(1, usable_cores() // local))


def _set_deterministic(on: bool) -> None:
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    if on != torch.are_deterministic_algorithms_enabled():
        torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.deterministic = on


def _optimizer(config: TrainConfig, model: nn.Module, lr: float, scales: dict[str, float]) -> torch.optim.Optimizer:
    """The optimizer over the parameters ``scales`` names (the trainable ones), one group per weight decay and
    learning-rate factor (``lr_scale``, which the schedule multiplies in)."""
    groups: dict[tuple[bool, float], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if name in scales:
            no_decay = config.no_decay_norm_bias and (p.ndim <= 1 or name.endswith(".bias"))
            groups.setdefault((no_decay, scales[name]), []).append(p)
    groups = [
        {"params": ps, "weight_decay": 0.0 if no_decay else config.weight_decay, "lr_scale": scale}
        for (no_decay, scale), ps in groups.items()
    ]
    # foreach: one call per group for all parameters rather than a few per parameter. PyTorch picks it on CUDA only;
    # on CPU it made SE-ResNet-20 and ResNet-20 steps (batch 128, bf16) about 4% faster on 2 cores.
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=config.momentum, nesterov=config.nesterov, foreach=True)
    return torch.optim.AdamW(groups, lr=lr, betas=(config.momentum, 0.999), foreach=True)


# Fields that change how a run executes, not what it computes: free to differ when a run resumes.
RUNTIME_FIELDS = (
    "data_dir", "download", "workers", "data_on_device", "threads", "device", "out_dir", "name", "progress",
    "tensorboard",
)  # fmt: skip


def config_changes(saved: dict[str, Any], config: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """Fields of ``config`` that differ from a saved configuration, as name → (saved, now), runtime fields aside."""
    now, defaults = config.to_dict(), TrainConfig().to_dict()  # a field newer than the saved config: its default
    keys = [k for k in now if k not in RUNTIME_FIELDS]
    changes = {k: (saved.get(k, defaults[k]), now[k]) for k in keys if saved.get(k, defaults[k]) != now[k]}
    if "init" in changes and _same_init(*changes["init"]):
        del changes["init"]
    if "model_options" in changes and saved.get("model") == now["model"] and ":" not in now["model"]:
        # {"r": 16} and {} are one network
        canonical = get_entry(now["model"]).non_default_options
        if canonical(saved.get("model_options") or {}) == canonical(now["model_options"]):
            del changes["model_options"]
    return changes


def _describe(changes: dict[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{k} {a!r} → {b!r}" for k, (a, b) in changes.items())


def _check_resumable(state: TrainingState, model: nn.Module, path: Path) -> None:
    want, have = json.loads(json.dumps(model.model_config)), state.model_config
    if {k: have.get(k) for k in want} != want:
        raise ValueError(
            f"cannot resume from {str(path)!r}: it holds {have.get('name')} {have.get('options')} "
            f"({have.get('num_classes')} classes, {have.get('in_chans')} channels); this run trains "
            f"{want['name']} {want['options']} ({want['num_classes']} classes, {want['in_chans']} channels)"
        )


@dataclass
class Totals:
    """What the epoch has added up so far, over all processes: the training loss summed over images, the images
    classified right, the images seen and the unreadable files skipped. Checkpointed, so a resumed epoch goes on."""

    loss_sum: float = 0.0
    correct: float = 0.0
    seen: float = 0.0
    skipped: float = 0.0

    def add(self, loss_sum: float, correct: float, seen: float, skipped: float) -> None:
        self.loss_sum, self.correct = self.loss_sum + loss_sum, self.correct + correct
        self.seen, self.skipped = self.seen + seen, self.skipped + skipped

    @property
    def loss(self) -> float:
        return self.loss_sum / self.seen

    @property
    def acc(self) -> float:
        return self.correct / self.seen

    @classmethod
    def restore(cls, saved: dict[str, float] | list[float]) -> Totals:
        """From a checkpoint (a list in the order of the fields in states written before the totals had names)."""
        return cls(*saved) if isinstance(saved, list) else cls(**saved)


class _Run:
    """One training session of a run folder: `__init__` builds data, model and optimizer from the config and
    restores the folder's checkpoint; `fit` trains the remaining epochs."""

    def __init__(
        self,
        config: TrainConfig,
        dist: distributed.Dist,
        resume: bool | Literal["auto"],
        model: nn.Module | None = None,
    ) -> None:
        self.t0 = time.monotonic()
        self.config = cfg = config
        self.dist = dist
        self.run_dir = cfg.run_dir
        self.progress = Progress(cfg.progress if dist.main else "none")

        # where the weights start: a run to resume, the init source (docs/transfer.md), or fresh. A resumed run
        # never reads the source again (it may have moved or changed): its checkpoint, config and INIT_FILE say all.
        self.fresh = not (self.run_dir / STATE_FILE).is_file()
        if not self.fresh:
            self.config = cfg = self._keep_init(cfg)
        self.saved_init = self._read_init_file() if cfg.init and not self.fresh else {}
        _check_finetune(cfg, model)  # a stage the model lacks: refused before the init source is read or downloaded
        old = cfg.init and not self.fresh and "preprocess" not in self.saved_init  # started before INIT_FILE said it
        self.source = resolve_init(cfg.init, cfg.model) if cfg.init and (self.fresh or old) else None

        # data: the training and test sets, and how a batch reaches the model
        pre = _preprocess(cfg, self.source.preprocess if self.source else self.saved_init.get("preprocess", {}))
        size = pre.pop("input_size", 0)
        size = cfg.image_size or size  # the run's own size, else the init weights' (image folders)
        train_set, self.test_set, self.spec = load_datasets(
            cfg.dataset, data_dir=cfg.data_dir, download=cfg.download and dist.main, image_size=size,
            augment=cfg.augment, crop_padding=cfg.crop_padding, random_erasing=cfg.random_erasing,
            train_subset=cfg.train_subset, test_subset=cfg.test_subset, in_chans=cfg.in_chans,
            classes=cfg.classes or None, train_per_class=cfg.train_per_class, preprocess=pre,
        )  # fmt: skip
        if cfg.data_on_device:  # batches become gathers on the device (senet.data.resident)
            train_set, self.test_set = (
                ResidentImages(train_set, dist.device),
                ResidentImages(self.test_set, dist.device),
            )
        self.inputs = Inputs(dist.device, self.spec.mean, self.spec.std, cfg.channels_last, cfg.amp)
        self.sampler = EpochBatches(
            len(train_set), cfg.batch_size, shuffle=True, seed=cfg.seed, rank=dist.rank, world=dist.world
        )
        self.train_loader = loader(train_set, self.sampler, cfg.workers, dist.device.type == "cuda")
        self.batches = len(self.sampler) // cfg.accum_steps * cfg.accum_steps  # per epoch: whole optimizer steps
        if self.batches == 0:
            raise ValueError(f"an epoch has {len(self.sampler)} batches, fewer than accum_steps={cfg.accum_steps}; "
                             "lower accum_steps or batch_size")  # fmt: skip

        # the model, what trains in it, its EMA, and what runs it (DistributedDataParallel, torch.compile)
        self.model = self._build_model(model)
        finetune = Finetune(cfg.freeze, cfg.freeze_bn, cfg.backbone_lr, cfg.layer_decay)
        self.kept_bn = finetune.apply(self.model, self._new_tensors())  # BatchNorm layers whose statistics stay
        self.ema = ModelEMA(self.model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        net: nn.Module = self.model
        if dist.enabled:
            ids = [dist.device.index] if dist.device.type == "cuda" else None
            net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.net = torch.compile(net) if cfg.compile else net

        # optimisation: lr scaled with the global batch (the paper's 0.6 per 1024, §5), the schedule over steps
        steps_per_epoch = self.batches // cfg.accum_steps
        global_batch = cfg.batch_size * cfg.accum_steps * dist.world
        self.base_lr = cfg.lr * global_batch / cfg.lr_batch
        self.optimizer = _optimizer(cfg, self.model, self.base_lr, finetune.lr_scales(self.model))
        self.scaler = torch.amp.GradScaler(dist.device.type, enabled=cfg.amp == "fp16")
        self.schedule = LRSchedule(
            cfg.schedule, total_steps=steps_per_epoch * cfg.epochs, steps_per_epoch=steps_per_epoch,
            warmup_epochs=cfg.warmup_epochs, min_lr=cfg.min_lr, milestones=cfg.milestones, gamma=cfg.gamma,
            patience=cfg.patience,
        )  # fmt: skip
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

        # where the run stands: epoch and batch within it, optimizer steps, the epoch's totals, per-epoch history
        self.epoch, self.batch, self.step = 0, 0, 0
        self.totals = Totals()
        self.elapsed_before, self.best_acc = 0.0, -1.0
        self.history: list[dict[str, Any]] = []
        self._start(resume)

    def _new_tensors(self) -> set[str]:
        """The model's tensors the init source did not give (they train even where ``freeze`` covers them): from this
        run's load report, or, resumed, from the report it wrote when it started (INIT_FILE)."""
        if self.init_report is not None:
            return set(self.init_report.new)
        return set(self.saved_init.get("new", {}))

    def _read_init_file(self) -> dict[str, Any]:
        """What the run wrote about its init when it started (INIT_FILE), which every run started from an init
        source writes before its first checkpoint: without it the run's record is incomplete, and the source (which
        may have changed since) is not read in its place. A run older than INIT_FILE's ``preprocess`` has the file."""
        path = self.run_dir / INIT_FILE
        if not path.is_file():
            raise ValueError(f"{str(self.run_dir)!r} started from init {self.config.init!r} but its {INIT_FILE} is "
                             "missing, so the run's record is incomplete (the source is not read again in its place); "
                             "start the run again in a new folder")  # fmt: skip
        return read_json(path, INIT_SCHEMA, f"{INIT_FILE} of the run", "start the run again in a new folder")

    def _keep_init(self, cfg: TrainConfig) -> TrainConfig:
        """A resumed run's config with the init its folder records (config.yaml): the run started from it, and its
        weights now come from the checkpoint; another one given is named and not used."""
        path = self.run_dir / CONFIG_FILE
        saved = TrainConfig.from_recipe(path).init if path.is_file() else cfg.init
        if _same_init(saved, cfg.init):
            return cfg.replace(init=saved)
        if cfg.init:
            self.progress.message(f"init: {self.run_dir} started from {saved or 'fresh weights'}; resumed, it goes "
                                  f"on from its checkpoint, not from {cfg.init}")  # fmt: skip
        return cfg.replace(init=saved)

    def _build_model(self, given: nn.Module | None) -> nn.Module:
        """The model of the config for the data (or ``given``, the model the config describes), with the init
        source's weights in a fresh run, on the device; its cost counted on the meta device."""
        cfg, spec, device = self.config, self.spec, self.dist.device
        external = ":" in cfg.model  # torchvision's or timm's: the init weights are named as the model names them
        if "model_options" in self.saved_init:  # resumed: the options the run was built with (a change is refused
            options = {**self.saved_init["model_options"], **cfg.model_options}  # by the checkpoint if it differs)
        elif self.source and not external:
            options = init_options(self.source, cfg.model, cfg.model_options)
        else:
            options = cfg.model_options
        self.model_options = options
        torch.manual_seed(derive_seed(cfg.seed, "init"))
        kwargs = {"num_classes": spec.num_classes, "in_chans": spec.in_chans, "add_se": cfg.add_se, **options}
        model = given if given is not None else create_model(cfg.model, **kwargs)
        have = model.model_config["num_classes"], model.model_config["in_chans"]
        if have != (spec.num_classes, spec.in_chans):
            want = f"num_classes={spec.num_classes}, in_chans={spec.in_chans}"
            raise ValueError(f"the model has {have[0]} classes and {have[1]} input channels, the data "
                             f"{spec.num_classes} and {spec.in_chans}: build it with {want}")  # fmt: skip
        if spec.image_size < getattr(model, "min_size", 1):
            raise ValueError(f"{cfg.model} needs images of at least {model.min_size} px; the data has "
                             f"{spec.image_size}: pass --image-size {model.min_size} or more (the images are resized), "
                             "or choose a model for small images")  # fmt: skip
        self.init_report = None
        if self.source is not None and self.fresh:  # a resumed run's weights come from its checkpoint
            if not self.dist.main:  # after rank 0, which downloads published weights into the cache others read
                self.dist.barrier()
            self.init_report = load_init(model, self.source, spec.classes, layout="senet" if external else None)
            if self.dist.main:
                self.dist.barrier()
            for line in self.init_report.lines():
                self.progress.message(line)
        with torch.device("meta"):  # count parameters and multiply-adds without a second set of weights
            meta = create_model(cfg.model, **kwargs)
        self.cost = profile(meta, (spec.in_chans, spec.image_size, spec.image_size))
        if self.dist.enabled and cfg.sync_bn:
            if device.type != "cuda":
                raise ValueError("sync_bn needs CUDA devices: PyTorch's SyncBatchNorm runs on GPUs only")
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return model.to(device, memory_format=torch.channels_last if cfg.channels_last else torch.preserve_format)

    # -- training ------------------------------------------------------------------------------------------------

    def fit(self) -> RunResult:
        """Train the remaining epochs: each one's batches, then its evaluation, checkpoint and outputs."""
        cfg, dist = self.config, self.dist
        tb = cfg.tensorboard if dist.main else False
        if tb and not self.fresh and not tensorboard_installed():  # runs recorded before the default was null said
            self.progress.message(  # true for "when installed": a resumed run goes on without events, and says so
                "tensorboard is not installed: this resumed run writes no TensorBoard events "
                "(pip install 'senet[tensorboard]', or --tensorboard false)"
            )
            tb = None
        self.tb = TensorBoard(self.run_dir, tb)
        try:
            while self.epoch < cfg.epochs:
                self.sampler.set_epoch(self.epoch, start=self.batch)  # a resumed epoch skips what it has done
                train_mode(self.net, self.kept_bn)
                self.progress.start_epoch(self.batch)
                started, seen_before = time.monotonic(), self.totals.seen
                for i, batch in enumerate(self.train_loader, start=self.batch):
                    if i >= self.batches:
                        break
                    self._train_step(i, batch)
                    self.batch = i + 1
                    speed = (self.totals.seen - seen_before) / max(time.monotonic() - started, 1e-9)
                    totals = self.totals
                    self.progress.step(
                        self.epoch + 1, cfg.epochs, self.batch, self.batches, totals.loss, totals.acc, speed
                    )
                    stepped = self.batch % cfg.accum_steps == 0
                    if (
                        cfg.checkpoint_every
                        and stepped
                        and self.step % cfg.checkpoint_every == 0
                        and i + 1 < self.batches
                    ):
                        self._save_state()  # (the epoch's end saves anyway)
                self._end_epoch(time.monotonic() - started, self.totals.seen - seen_before)
        finally:
            self.tb.close()
        return self._result()

    def _train_step(self, i: int, batch: Batch) -> None:
        """Micro-batch ``i`` of the epoch: forward, loss and backward; after every ``accum_steps`` micro-batches,
        one optimizer step at the schedule's learning rate."""
        cfg, dist = self.config, self.dist
        last_micro = (i + 1) % cfg.accum_steps == 0
        skipped = check_readable(batch, cfg.skip_bad_images)
        torch.manual_seed(derive_seed(cfg.seed, "step", dist.rank, self.epoch, i))  # dropout & co., resume-exact
        x, y = self.inputs.prepare(batch.images), batch.labels.to(dist.device, non_blocking=True)
        # Gradients are averaged across processes at the last micro-batch of a step only.
        with contextlib.nullcontext() if last_micro or not dist.enabled else self.net.no_sync():
            with self.inputs.autocast():
                logits = self.net(x)
                loss = self.criterion(logits, y)
            self.scaler.scale(loss / cfg.accum_steps).backward()
        loss_sum, correct, seen, skipped = dist.sum(
            [loss.item() * len(y), (logits.argmax(1) == y).sum().item(), len(y), skipped]
        )
        if not math.isfinite(loss_sum):
            where = f"step {self.step + 1} (epoch {self.epoch + 1}, batch {i + 1})"
            raise self._stop_non_finite(f"training loss is {loss_sum / seen} at {where}")
        self.totals.add(loss_sum, correct, seen, skipped)
        if last_micro:
            for group in self.optimizer.param_groups:
                group["lr"] = self.base_lr * self.schedule(self.step) * group.get("lr_scale", 1.0)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            if self.ema is not None:
                self.ema.update(self.model, self.step)

    def _end_epoch(self, spent_s: float, images: float) -> None:
        """Evaluate (every ``eval_every`` epochs and at the last), record the epoch, checkpoint, write the outputs."""
        cfg, totals = self.config, self.totals
        row: dict[str, Any] = {
            "epoch": self.epoch + 1,
            "step": self.step,
            "lr": self.base_lr * self.schedule(max(self.step - 1, 0)),
            "train_loss": totals.loss,
            "train_acc": totals.acc,
            "test_loss": "",
            "test_acc": "",
            "test_acc5": "",
            "images_per_s": images / max(spent_s, 1e-9),
            "skipped": totals.skipped,
        }
        model = self.ema.module if self.ema else self.model
        self.dist.sync_buffers(model)
        if (self.epoch + 1) % cfg.eval_every == 0 or self.epoch + 1 == cfg.epochs:
            test = evaluate(
                model, self.test_set, self.inputs, batch_size=2 * cfg.batch_size, workers=cfg.workers, dist=self.dist,
                skip_bad_images=cfg.skip_bad_images, tta=cfg.tta,
            )  # fmt: skip
            row |= {"test_loss": test.loss, "test_acc": test.acc, "test_acc5": test.acc5, "test_images": test.n}
            row["skipped"] += test.skipped
            if not math.isfinite(test.loss):
                raise self._stop_non_finite(f"the test loss after epoch {self.epoch + 1} is {test.loss}")
            self.schedule.observe(test.loss)
        row["elapsed_s"] = self._elapsed()
        row["epoch_s"] = row["elapsed_s"] - (self.history[-1]["elapsed_s"] if self.history else 0.0)
        self.history.append(row)
        self.epoch, self.batch, self.totals = self.epoch + 1, 0, Totals()
        self._save_state()
        if self.dist.main:
            if row["test_acc"] != "":  # evaluated with a finite loss: a state to go back to
                mark_good(self.run_dir)
            self._write_outputs(row, model)
        self.progress.end_epoch(row, cfg.epochs)

    def _write_outputs(self, row: dict[str, Any], model: nn.Module) -> None:
        if row["test_acc"] != "":
            save_weights(self.run_dir / LAST_FILE, model, self._metadata(row))
            if row["test_acc"] > self.best_acc:
                self.best_acc = row["test_acc"]
                save_weights(self.run_dir / BEST_FILE, model, self._metadata(row))
        write_metrics_csv(self.run_dir / METRICS_FILE, self.history)
        plot_curves(self.run_dir / "curves.png", {self.config.model: self.history}, title=str(self.run_dir))
        self.tb.log(row)

    def _result(self) -> RunResult:
        last = self.history[-1]
        model = self.ema.module if self.ema else self.model
        result = RunResult(
            run_dir=self.run_dir,
            config=self.config,
            history=self.history,
            test_acc=last["test_acc"],
            best_acc=max(r["test_acc"] for r in self.history if r["test_acc"] != ""),
            params=self.cost.params,
            macs=self.cost.macs,
            wall_s=last["elapsed_s"],
            images_per_s=statistics.median(r["images_per_s"] for r in self.history),
            fingerprints=self.dist.fingerprints(model),
            skipped_images=int(last["skipped"]),
        )
        if self.dist.main:
            atomic_write_text(self.run_dir / SUMMARY_FILE, json_text(result.to_dict()))
        self.dist.barrier()
        return result

    # -- the run folder ------------------------------------------------------------------------------------------

    def _start(self, resume: bool | Literal["auto"]) -> None:
        state_path = self.run_dir / STATE_FILE
        exists = state_path.is_file()
        if resume is False and exists:
            raise ValueError(
                f"{str(self.run_dir)!r} already holds a run; resume it with --resume, or choose another --name"
            )
        if exists:  # (folder_lock removed what a killed writer left)
            self._restore(load_state(state_path), state_path, strict=resume == "auto")
        if self.dist.main:
            atomic_write_text(self.run_dir / CONFIG_FILE, self.config.to_yaml())
            if self.init_report is not None:
                record = {**self.init_report.to_dict(), "preprocess": self.source.preprocess,
                          "model_options": self.model_options}  # fmt: skip
                atomic_write_text(self.run_dir / INIT_FILE, json_text(record))
        if not exists:  # the first good state: a diverging run can always go back to its start
            self._save_state()
            if self.dist.main:
                mark_good(self.run_dir)
        self.dist.barrier()

    def _restore(self, state: TrainingState, path: Path, strict: bool) -> None:
        """Load a checkpoint; ``strict`` refuses one whose configuration differs (beyond `RUNTIME_FIELDS` and
        epochs), as a cache of runs must."""
        _check_resumable(state, self.model, path)
        extra = state.extra
        changed = config_changes(extra["config"], self.config)
        if strict and set(changed) - {"epochs"}:
            raise ValueError(f"{str(self.run_dir)!r} holds a run of another configuration ({_describe(changed)})")
        try:  # load_state checked the file against its schema; these check their own parts
            self.model.load_state_dict(state.model)
            if self.ema is not None:
                self.ema.module.load_state_dict(state.ema if state.ema is not None else state.model)
            self.optimizer.load_state_dict(extra["optimizer"])
            self.scaler.load_state_dict(extra["scaler"])
            self.schedule.load_state_dict(extra["schedule"])
            self.totals = Totals.restore(extra["totals"] if "totals" in extra else extra["sums"])
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:
            detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(
                f"cannot resume from {str(path)!r}: its weights or optimizer state do not fit the run ({detail}); "
                f"restore it from {GOOD_STATE_FILE} beside it, or start the run again in a new folder"
            ) from None
        if extra["batch"] >= self.batches:
            raise ValueError(
                f"cannot resume from {str(path)!r}: it stands at batch {extra['batch']} of an epoch of {self.batches} "
                "batches; resume with the batch size and subset it was trained with"
            )
        self.epoch, self.batch, self.step = extra["epoch"], extra["batch"], extra["step"]
        self.elapsed_before, self.best_acc = extra["elapsed_s"], extra["best_acc"]
        self.history = extra["history"]
        note = f"; changed: {_describe(changed)}" if changed else ""
        self.progress.message(f"resuming {self.run_dir} at epoch {self.epoch + 1}, batch {self.batch}{note}")

    def _elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.t0

    def _stop_non_finite(self, what: str) -> NonFiniteLossError:
        """The error that stops a run whose loss or weights are no longer finite. The run folder's state goes back
        to the last good one (`senet.training.checkpoint.roll_back`): checkpoints taken just before a divergence can
        hold finite weights that diverge again at any learning rate."""
        state = roll_back(self.run_dir) if self.dist.main else self.run_dir / STATE_FILE
        self.dist.barrier()
        if state is None:
            return NonFiniteLossError(f"{what}; stopped before any checkpoint. Lower lr or add warmup_epochs")
        extra = load_state(state).extra
        when = (
            f"the end of epoch {extra['epoch']} (step {extra['step']}, the last one evaluated with a finite loss)"
            if extra["epoch"]
            else "the start of the run (step 0: no epoch ended with a finite loss)"
        )
        return NonFiniteLossError(
            f"{what}; stopped. The run's checkpoint {state} is back at {when}; resume it with a lower learning rate "
            f"(senet train --resume "
            f"{self.run_dir} --lr LR), add warmup_epochs, or use amp=none"
        )

    def _save_state(self) -> None:
        # Every process checks (their weights are equal), so that all stop together; never replace a good
        # checkpoint with a poisoned one.
        bad = [k for k, t in self.model.state_dict().items() if t.is_floating_point() and not t.isfinite().all()]
        bad += [f"optimizer state {i}" for i, st in self.optimizer.state_dict()["state"].items()
                if any(isinstance(t, torch.Tensor) and not t.isfinite().all() for t in st.values())]  # fmt: skip
        if bad:
            raise self._stop_non_finite(
                f"{len(bad)} tensors hold NaN or Inf after step {self.step} (e.g. {', '.join(bad[:3])})"
            )
        if not self.dist.main:
            return
        extra = {
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "schedule": self.schedule.state_dict(),
            "epoch": self.epoch,
            "batch": self.batch,
            "step": self.step,
            "totals": dataclasses.asdict(self.totals),
            "elapsed_s": self._elapsed(),
            "best_acc": self.best_acc,
            "history": self.history,
            "config": self.config.to_dict(),
        }
        ema = self.ema.module.state_dict() if self.ema else None
        save_state(self.run_dir, TrainingState(self.model.state_dict(), ema, extra, self.model.model_config))

    def _metadata(self, row: dict[str, Any]) -> dict[str, Any]:
        s: DataSpec = self.spec
        return model_metadata(
            self.model, dataset=s.dataset, classes=list(s.classes), **s.preprocess.metadata(),
            recipe=self.config.to_dict(), epoch=row["epoch"], test_acc=row["test_acc"],
        )  # fmt: skip


def train(config: TrainConfig, *, model: nn.Module | None = None, resume: bool | Literal["auto"] = False) -> RunResult:
    """Train ``config.model`` on ``config.dataset`` in the run folder ``config.run_dir``.

    Args:
        config: the run's configuration (`TrainConfig.from_recipe`).
        model: train this model, as it is, instead of building ``config.model``: any network `senet.create_model`
            made (a senet model, or ``"torchvision:NAME"`` / ``"timm:NAME"``), after `senet.add_se` or not, so that
            its weights files rebuild it (`senet.factory.check_rebuilds`). Its record replaces the config's
            ``model``, ``model_options`` and ``add_se``, so the run's config.yaml describes it.
        resume: True continues the run in ``config.run_dir`` from its last checkpoint (FileNotFoundError if it has
            none); False refuses a folder that already holds a run; "auto" returns a completed run's result,
            resumes an interrupted one and starts a new one otherwise (how studies cache their runs).

    Raises:
        ValueError: a bad configuration, data or checkpoint, or a non-finite loss (`NonFiniteLossError`).
        FileNotFoundError: missing data (the message says where it looked and how to get it).
    """
    if model is not None:
        check_rebuilds(model)
        record = model.model_config
        config = config.replace(model=record["name"], model_options=record["options"], add_se=record.get("add_se", []))
    if config.init:
        config = config.replace(init=recorded_init(config.init))
    if config.tensorboard and not (resume and (config.run_dir / STATE_FILE).is_file()):
        require_tensorboard()  # a fresh run that asks for events: refused before any work where tensorboard is missing
    if resume == "auto" and (config.run_dir / SUMMARY_FILE).is_file():
        done = RunResult.load(config.run_dir)
        changed = config_changes(done.config.to_dict(), config)
        if set(changed) - {"epochs"}:
            raise ValueError(f"{str(config.run_dir)!r} holds a run of another configuration ({_describe(changed)})")
        if done.config.epochs == config.epochs:
            return done
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    cudnn = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    _set_threads(config)
    _set_deterministic(config.deterministic)
    if resume is True and not (config.run_dir / STATE_FILE).is_file():
        raise FileNotFoundError(f"nothing to resume: no {STATE_FILE} in {str(config.run_dir)!r}")
    dist = distributed.setup(config.device)
    try:
        # One writer per run folder: a second process is refused rather than interleaving its files with ours.
        with folder_lock(config.run_dir, "--name") if dist.main else contextlib.nullcontext():
            return _Run(config, dist, resume, model).fit()
    finally:  # leave the caller's process as it was
        if dist.owner:
            distributed.teardown()
        torch.set_num_threads(threads)
        _set_deterministic(deterministic)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
