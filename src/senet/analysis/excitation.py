"""Excitation statistics: what the SE gates do across depth and classes (paper §7.2, Figs. 6 and 7).

The paper observes that in early layers the gates are nearly the same for every class (class-agnostic features),
that they become class-specific with depth, and that in the last stage many saturate towards 1 (SE_5_2, SE_5_3)
so that those units act almost as identities. `record_excitations` collects, for chosen SE units, the per-class
mean and spread of every channel's gate over a dataset; `plot_class_means` and `plot_spread` draw the paper's
figures. Two numbers per unit say how class-specific the gates are: `ExcitationStats.class_spread`, how far the
classes' mean gates lie apart (their standard deviation across classes, in gate units, averaged over channels: 0 =
every class gets the same gates), and `ExcitationStats.specificity`, the share of the gates' variance explained by
the class (η², 0 = class-agnostic, 1 = determined by the class). η² is blind to scale: gates that hardly vary at all
can still vary mostly with the class, so the paper's "nearly the same for every class" is read from the spread.
"""

from __future__ import annotations

import csv
import io
import os
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..data import EpochBatches
from ..factory import load_model
from ..files import atomic_write
from ..layers import AttentionUnit, SqueezeExcite
from ..training.evaluation import Inputs, loader, recorded_test_set
from ..validate import MAX_JSON_BYTES

__all__ = ["ExcitationStats", "default_units", "paper_name", "plot_class_means", "plot_spread", "record_excitations"]


def se_units(model: nn.Module) -> list[str]:
    """Names of the model's SE units in execution order of definition."""
    return [n for n, m in model.named_modules() if isinstance(m, SqueezeExcite)]


def paper_name(unit: str) -> str:
    """The paper's name of a ResNet SE unit: ``layer3.5.se`` (conv4_x, 6th block) → ``SE_4_6``."""
    parts = unit.split(".")
    if len(parts) >= 3 and parts[0].startswith("layer") and parts[1].isdigit():
        return f"SE_{int(parts[0][5:]) + 1}_{int(parts[1]) + 1}"
    return unit


def default_units(model: nn.Module) -> list[str]:
    """The paper's choice (Fig. 6): the last SE unit of each stage, and every SE unit of the last stage."""
    units = se_units(model)
    if not units:
        others = sorted({type(m).__name__ for m in model.modules() if isinstance(m, AttentionUnit)})
        why = f" (its units are {', '.join(others)}; this analysis records SE's gates, Figs. 6–7)" if others else ""
        why = why or "; record an SE model (its se_ twin)"
        raise ValueError(f"{getattr(model, 'model_name', type(model).__name__)} has no SE units to record{why}")
    stages: dict[str, list[str]] = {}
    for u in units:
        stages.setdefault(u.split(".")[0], []).append(u)
    groups = list(stages.values())
    chosen = [g[-1] for g in groups[:-1]] + groups[-1]
    return chosen if len(groups) > 1 else units[:: max(1, len(units) // 6)]


@dataclass
class ExcitationStats:
    """Per-unit, per-class moments of the gates. ``mean[u]`` and ``std[u]`` are (classes, channels)."""

    units: list[str]
    classes: list[str]
    counts: np.ndarray  # (classes,) images per class
    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray]
    overall_mean: dict[str, np.ndarray]  # (channels,) over all images

    def _between_within(self, u: str) -> tuple[np.ndarray, np.ndarray]:
        """Per channel: variance of the class means around the overall mean, and mean variance within a class."""
        w = self.counts / self.counts.sum()
        between = (w[:, None] * (self.mean[u] - self.overall_mean[u]) ** 2).sum(0)
        within = (w[:, None] * self.std[u] ** 2).sum(0)
        return between, within

    def specificity(self) -> dict[str, float]:
        """η² per unit: between-class variance of the gates over their total variance, averaged over channels."""
        out = {}
        for u in self.units:
            between, within = self._between_within(u)
            total = between + within
            out[u] = float(np.mean(np.where(total > 0, between / np.maximum(total, 1e-12), 0.0)))
        return out

    def class_spread(self) -> dict[str, float]:
        """Per unit: the standard deviation of the class means of each channel's gate, averaged over channels."""
        return {u: float(np.sqrt(self._between_within(u)[0]).mean()) for u in self.units}

    def save(self, folder: str | os.PathLike) -> list[Path]:
        """Write ``excitations.npz`` (every number) and ``excitations.csv`` (a summary per unit), atomically."""
        folder = Path(folder)
        arrays = {"units": np.array(self.units), "classes": np.array(self.classes), "counts": self.counts}
        for i, u in enumerate(self.units):
            arrays[f"mean_{i}"], arrays[f"std_{i}"] = self.mean[u], self.std[u]
            arrays[f"overall_{i}"] = self.overall_mean[u]

        def write_npz(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **arrays)

        spec, spread = self.specificity(), self.class_spread()
        buf = io.StringIO()
        writer = csv.writer(buf)
        header = ["unit", "paper_name", "channels", "mean_gate", "saturated_share", "class_spread", "class_specificity"]
        writer.writerow(header)
        for u in self.units:
            m = self.overall_mean[u]
            saturated = (m > 0.95).mean()
            writer.writerow(
                [u, paper_name(u), m.size, f"{m.mean():.4f}", f"{saturated:.4f}", f"{spread[u]:.4f}", f"{spec[u]:.4f}"]
            )
        return [
            atomic_write(folder / "excitations.npz", write_npz),
            atomic_write(folder / "excitations.csv", lambda tmp: tmp.write_text(buf.getvalue())),
        ]

    @classmethod
    def load(cls, path: str | os.PathLike) -> ExcitationStats:
        """Read ``excitations.npz`` (`save`), every array's shape checked against the units and classes it names.

        Raises:
            ValueError: naming the file: not an .npz of excitations, damaged, or arrays of another shape.
        """
        try:
            with np.load(path, allow_pickle=False) as z:
                if not isinstance(z, np.lib.npyio.NpzFile):
                    raise ValueError("a single array, not an .npz archive")
                declared = sum(i.file_size for i in z.zip.infolist())
                if declared > MAX_JSON_BYTES * 4:  # what the archive declares; nothing is decompressed before
                    raise ValueError(f"its arrays declare {declared:,} bytes")
                units = [str(u) for u in z["units"]]
                classes = [str(c) for c in z["classes"]]
                stats = cls(
                    units=units,
                    classes=classes,
                    counts=z["counts"],
                    mean={u: z[f"mean_{i}"] for i, u in enumerate(units)},
                    std={u: z[f"std_{i}"] for i, u in enumerate(units)},
                    overall_mean={u: z[f"overall_{i}"] for i, u in enumerate(units)},
                )
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise ValueError(f"{str(path)!r} is not a valid excitations.npz ({e}); record it again") from None
        for u in units:
            channels = stats.overall_mean[u].shape
            if stats.mean[u].shape != stats.std[u].shape or stats.mean[u].shape != (len(classes), *channels):
                raise ValueError(f"{str(path)!r} is not a valid excitations.npz: the arrays of {u!r} disagree in "
                                 "shape; record it again")  # fmt: skip
        if stats.counts.shape != (len(classes),):
            raise ValueError(f"{str(path)!r} is not a valid excitations.npz: {stats.counts.shape} counts for "
                             f"{len(classes)} classes; record it again")  # fmt: skip
        return stats


@torch.no_grad()
def record_excitations(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    *,
    num_classes: int,
    units: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    max_batches: int | None = None,
) -> ExcitationStats:
    """Run ``model`` (eval mode) over ``batches`` of (images, labels) and collect the gates of ``units``.

    ``units`` are module names of SE units (default: `default_units`). Moments are accumulated in float64 per class,
    so the whole test set never has to be held in memory.
    """
    units = list(units) if units is not None else default_units(model)
    modules = dict(model.named_modules())
    bad = [u for u in units if not isinstance(modules.get(u), SqueezeExcite)]
    if bad:
        raise ValueError(f"not SE units of this model: {bad}; choose from {se_units(model)}")
    sums: dict[str, Tensor] = {}
    sumsq: dict[str, Tensor] = {}
    counts = torch.zeros(num_classes, dtype=torch.float64)
    current: dict[str, Tensor] = {}

    def hook(name: str):
        def fn(m: SqueezeExcite, inputs: tuple, out: Tensor) -> None:
            # Recompute the gate from the unit's input: independent of how forward fuses it.
            s = m.excitation(inputs[0].float())
            current[name] = s.mean((2, 3)) if s.shape[2:] != (1, 1) else s.flatten(1)

        return fn

    handles = [modules[u].register_forward_hook(hook(u)) for u in units]
    was_training = model.training
    model.eval()
    try:
        for i, (x, y) in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            current.clear()
            model(x)
            onehot = torch.nn.functional.one_hot(y.long(), num_classes).to(torch.float64)  # (B, K)
            counts += onehot.sum(0)
            for u in units:
                s = current[u].to(torch.float64)  # (B, C)
                sums[u] = sums.get(u, 0) + onehot.T @ s
                sumsq[u] = sumsq.get(u, 0) + onehot.T @ (s * s)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    if counts.sum() == 0:
        raise ValueError("no images were seen: the data is empty")
    n = counts.clamp(min=1)[:, None]
    mean = {u: (sums[u] / n).numpy() for u in units}
    var = {u: (sumsq[u] / n - (sums[u] / n) ** 2).clamp(min=0) for u in units}
    overall = {u: (sums[u].sum(0) / counts.sum()).numpy() for u in units}
    names = list(class_names) if class_names is not None else [str(k) for k in range(num_classes)]
    return ExcitationStats(
        units=units,
        classes=names,
        counts=counts.numpy(),
        mean=mean,
        std={u: v.sqrt().numpy() for u, v in var.items()},
        overall_mean=overall,
    )


def _figure(n: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes.flat


def _save(fig, path: str | os.PathLike) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out = atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return out


def plot_class_means(stats: ExcitationStats, path: str | os.PathLike, classes: Sequence[int] | None = None) -> Path:
    """Paper Fig. 6: mean gate per channel for several classes and for all images, one panel per unit."""
    classes = list(classes) if classes is not None else list(range(min(4, len(stats.classes))))
    spec, spread = stats.specificity(), stats.class_spread()
    fig, axes = _figure(len(stats.units))
    for ax, u in zip(axes, stats.units, strict=False):
        x = np.arange(stats.overall_mean[u].size)
        ax.plot(x, stats.overall_mean[u], color="black", lw=1.2, label="all")
        for k in classes:
            ax.plot(x, stats.mean[u][k], lw=0.8, alpha=0.8, label=stats.classes[k])
        ax.set_title(f"{paper_name(u)} ({u}): class spread {spread[u]:.3f}, η² {spec[u]:.2f}", fontsize=9)
        ax.set_xlabel("channel index")
        ax.set_ylabel("mean activation")
        ax.set_ylim(-0.02, 1.02 if stats.overall_mean[u].max() <= 1 else None)
    axes[0].legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def plot_spread(stats: ExcitationStats, path: str | os.PathLike, class_index: int = 0) -> Path:
    """Paper Fig. 7: mean ± std of each channel's gate over the images of one class, one panel per unit."""
    fig, axes = _figure(len(stats.units))
    for ax, u in zip(axes, stats.units, strict=False):
        m, s = stats.mean[u][class_index], stats.std[u][class_index]
        order = np.argsort(m)
        x = np.arange(m.size)
        ax.plot(x, m[order], color="C0", lw=1, label="mean")
        ax.fill_between(x, (m - s)[order], (m + s)[order], color="C0", alpha=0.3, label="± std")
        ax.set_title(f"{paper_name(u)}: class {stats.classes[class_index]!r}", fontsize=9)
        ax.set_xlabel("channel (sorted by mean)")
        ax.set_ylabel("activation")
    axes[0].legend(fontsize=7)
    return _save(fig, path)


def record_from_weights(
    weights: str | os.PathLike,
    *,
    data_dir: str | None = None,
    units: Sequence[str] | None = None,
    test_subset: int | None = None,
    batch_size: int = 256,
) -> ExcitationStats:
    """`record_excitations` of a trained senet model (a weights file or a run folder) over its dataset's test set.

    The dataset, input size, normalisation and class names come from the weights' metadata; ``test_subset`` (a fixed
    subset of that many test images, 0: all) by default from its recipe, as ``senet eval`` scores a run.
    """
    model, meta = load_model(weights)
    if "dataset" not in meta:
        raise ValueError(f"{str(weights)!r} does not say which dataset it was trained on (no 'dataset' in metadata)")
    test, spec = recorded_test_set(meta, data_dir=data_dir, test_subset=test_subset)
    inputs = Inputs(torch.device("cpu"), spec.mean, spec.std)
    batches = (
        (inputs.prepare(b.images), b.labels)
        for b in loader(test, EpochBatches(len(test), batch_size, shuffle=False), 0, False)
    )
    return record_excitations(
        model, batches, num_classes=spec.num_classes, units=units, class_names=list(meta.get("classes", spec.classes))
    )
