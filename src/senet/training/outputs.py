"""What a run shows while and after it trains: the progress line, metrics.csv, TensorBoard events, curves.png."""

from __future__ import annotations

import csv
import io
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from ..files import atomic_write, atomic_write_text
from ..validate import MAX_EPOCHS, Float, Int, Json, Map, Maybe

__all__ = ["HISTORY_ROW", "METRICS", "Progress", "TensorBoard", "count", "mean_std", "plot_curves", "write_metrics_csv"]

# The columns of metrics.csv, one row per epoch.
METRICS = (
    "epoch", "step", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "test_acc5",
    "images_per_s", "epoch_s", "elapsed_s", "skipped",
)  # fmt: skip
# A row of the history that training states and summary.json keep (`METRICS`; the test columns are "" in an epoch
# without evaluation), as the readers of those files check it.
_SHARE, _UNTESTED = Float(0.0, 1.0), ""
HISTORY_ROW = Map(
    {
        "epoch": Int(1, MAX_EPOCHS), "step": Int(0, 2**53), "lr": Float(0.0), "train_loss": Float(0.0),
        "train_acc": _SHARE, "test_loss": Maybe(Float(0.0), _UNTESTED), "test_acc": Maybe(_SHARE, _UNTESTED),
        "test_acc5": Maybe(_SHARE, _UNTESTED), "images_per_s": Float(0.0), "epoch_s": Float(), "elapsed_s": Float(0.0),
        "skipped": Float(0.0),
    },
    required=METRICS,
    others=Json(max_depth=1),
)  # fmt: skip


class Progress:
    """A one-line progress bar (loss, accuracy, images/s, time left) on a terminal; one line per epoch otherwise.

    ``mode``: ``auto`` (a bar if ``stream`` is a terminal), ``bar``, ``epoch`` or ``none``.
    """

    def __init__(self, mode: str = "auto", stream: TextIO | None = None, every_s: float = 0.5) -> None:
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if getattr(self.stream, "isatty", lambda: False)() else "epoch"
        self.mode, self.every_s, self._last = mode, every_s, 0.0

    def step(self, epoch: int, epochs: int, done: int, total: int, loss: float, acc: float, ips: float) -> None:
        now = time.monotonic()
        if self.mode != "bar" or (now - self._last < self.every_s and done < total):
            return
        self._last = now
        width = 24
        fill = int(width * done / max(total, 1))
        left = (total - done) * (now - self._start) / max(done - self._done0, 1) if done > self._done0 else 0
        self.stream.write(
            f"\repoch {epoch}/{epochs} [{'#' * fill}{'.' * (width - fill)}] {done}/{total} loss {loss:.4f} "
            f"acc {100 * acc:5.2f}% {ips:6.0f} img/s eta {int(left) // 60}:{int(left) % 60:02d} "
        )
        self.stream.flush()

    def start_epoch(self, done: int) -> None:
        self._start, self._done0 = time.monotonic(), done

    def end_epoch(self, row: Mapping[str, Any], epochs: int) -> None:
        if self.mode == "none":
            return
        if self.mode == "bar":
            self.stream.write("\r\033[K")
        test = (
            f" test loss {row['test_loss']:.4f} acc {100 * row['test_acc']:.2f}%" if row.get("test_acc") != "" else ""
        )
        self.stream.write(
            f"epoch {row['epoch']}/{epochs} train loss {row['train_loss']:.4f} acc {100 * row['train_acc']:.2f}%"
            f"{test} | {row['images_per_s']:.0f} img/s, {row['epoch_s']:.0f} s\n"
        )
        self.stream.flush()

    def message(self, text: str) -> None:
        if self.mode != "none":
            self.stream.write(text + "\n")
            self.stream.flush()


def write_metrics_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """metrics.csv: one row per epoch (`METRICS`), rewritten whole and atomically after each epoch."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRICS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def count(n: int, noun: str) -> str:
    """``1 epoch``, ``3 epochs``: a count with its noun."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def over_seeds(what: str, seeds: int) -> str:
    """A header for results over ``seeds`` seeds that says what its cells are: ``what (mean ± std, 3 seeds)``; of one
    seed ``what (1 seed)``, a single result (no mean, no spread)."""
    return f"{what} (1 seed)" if seeds <= 1 else f"{what} (mean ± std, {seeds} seeds)"


def mean_std(values: Sequence[float], seeds: int = 0) -> str:
    """``mean ± std`` (the sample standard deviation) of results over seeds, to two decimals, as every table of
    seeds shows them; one result alone is ``value (n=1)``: one seed measures no spread, and ``± 0.00`` would say
    it is nil. ``seeds``: the seeds of the table's header (`over_seeds`); where that is 1, the header says it and one
    result is the plain value. Empty: ``–``."""
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.2f}" if seeds == 1 else f"{values[0]:.2f} (n=1)"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"


def plot_curves(path: Path, runs: Mapping[str, Sequence[Mapping[str, Any]]], title: str = "") -> Path:
    """Loss and test accuracy per epoch of one or more runs (label → metric rows) on one PNG, as the paper's
    training curves (Fig. 4): train loss solid, test loss dashed; test top-1 accuracy on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (label, rows) in enumerate(runs.items()):
        color = f"C{i}"
        epochs = [r["epoch"] for r in rows]
        # markers: a run of one epoch is one point per curve, which a line alone does not draw
        ax_loss.plot(epochs, [r["train_loss"] for r in rows], "o-", color=color, ms=3, label=f"{label} train")
        tested = [r for r in rows if r.get("test_loss", "") != ""]
        ax_loss.plot(
            [r["epoch"] for r in tested], [r["test_loss"] for r in tested], "s--", color=color, ms=3,
            label=f"{label} test",
        )  # fmt: skip
        ax_acc.plot([r["epoch"] for r in tested], [100 * r["test_acc"] for r in tested], "o-", color=color, label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss (train solid, test dashed)")
    ax_acc.set(xlabel="epoch", ylabel="top-1 accuracy (%)", title="test accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return path


class TensorBoard:
    """Scalars to TensorBoard event files under ``run_dir/tb``. ``enabled``: True needs tensorboard
    (`require_tensorboard` refuses a run without it), None writes them when it is installed, False never."""

    def __init__(self, run_dir: Path, enabled: bool | None) -> None:
        self.writer = None
        if enabled is False:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            if enabled:
                require_tensorboard()
            return
        self.writer = SummaryWriter(str(run_dir / "tb"))

    def log(self, row: Mapping[str, Any]) -> None:
        if self.writer is None:
            return
        for key in METRICS[2:]:
            if row.get(key, "") != "":
                self.writer.add_scalar(key, row[key], row["epoch"])
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def tensorboard_installed() -> bool:
    """Whether the tensorboard package, which `torch.utils.tensorboard` needs, can be imported (not importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec("tensorboard") is not None
    except ValueError:  # a None entry in sys.modules: as if not installed
        return False


def require_tensorboard() -> None:
    """Import torch.utils.tensorboard, or raise `MissingExtraError` naming ``pip install 'senet[tensorboard]'``."""
    from ..environment import require

    require("torch.utils.tensorboard", "tensorboard", "tensorboard=true (TensorBoard events in RUN/tb)", "tensorboard")
