"""Start a network from weights trained elsewhere: what ``--init SOURCE`` loads, and a report of every tensor.

The paper's SE networks are most often used through their ImageNet weights, adapted to a new task; and SE can be
added to a trained plain network (paper §4: SE units go into existing architectures). `resolve_init` reads a source,
`init_options` gives the model options its weights need, and `load_init` loads it into a model built for the new
data, returning a `LoadReport` that names every tensor it did not take from the source:

* **new**: tensors of the model that keep their initialisation, either the classifier (a new head, when the source's
  classes are not the data's) or the SE units (when the source is the SE model's plain twin: a retrofit; with
  ``se_init="identity"`` every new unit starts as the identity, so the SE network computes what the plain one does);
* **skipped**: tensors of the source that the model does not use, which can only be the replaced head.

Anything else that does not fit (a tensor of the source that has no place in the model, one the model needs that the
source lacks, another shape) is an error naming the first such tensor and, where one can be found, the model the
weights do fit. A source is one of:

* a published weights tag: ``DEFAULT`` or a tag of the model (`senet.list_weights`), or a full name
  ``MODEL.TAG``, which may be the plain twin's (``resnet50.tv_in1k`` into ``se_resnet50``);
* a run folder (its ``last.safetensors``) or a senet weights file, which say which model and classes they hold;
* a ``.pth`` / ``.safetensors`` state dict of any layout `senet.weights.convert` reads (read with
  ``weights_only=True``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .factory import weights_file
from .layers import SqueezeExcite
from .models import SE_OPTIONS, build_model, get_entry, list_models
from .retrofit import SEAfter
from .validate import check_weights_metadata
from .weights import (
    ConversionError,
    convert_state_dict,
    detect_layout,
    fetch,
    get_layout,
    get_weights,
    list_weights,
    model_options,
    read_source,
    senet_name,
)

__all__ = ["InitSource", "LoadReport", "classifier_name", "init_options", "load_init", "resolve_init"]

_PREPROCESS_KEYS = ("mean", "std", "input_size", "crop_pct", "interpolation")


@dataclass
class InitSource:
    """A resolved ``--init``: what the weights are and how to read their tensors (``read()``, on demand: a
    published file is fetched only when its tensors are loaded)."""

    given: str  # as the user wrote it
    what: str  # how messages name it
    layout: str  # the names of its tensors (senet.weights.convert.LAYOUTS)
    model: str | None  # the senet model the weights were made for, where the source says
    options: dict[str, Any]  # create_model options that model was built with (senet files, published weights)
    classes: tuple[str, ...] | None  # its classes by name, where the source says
    preprocess: dict[str, Any]  # mean, std, input_size, crop_pct, interpolation where the source says
    read: Callable[[], dict[str, Tensor]] = field(repr=False)
    state: dict[str, Tensor] | None = field(default=None, repr=False)  # the tensors, where already read (a file)
    add_se: list[dict[str, Any]] = field(default_factory=list)  # senet.add_se calls the source's model had made


def _is_published(source: str, model: str) -> bool:
    tags = {n.partition(".")[2] for n in list_weights(model)} if ":" not in model else set()
    return source == "DEFAULT" or source in set(list_weights()) | tags


def resolve_init(source: str, model: str) -> InitSource:
    """What ``source`` (see the module docstring) holds, for a run of the registered ``model``.

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: a name that is neither a path nor known weights; a file that is not a weights file.
    """
    if not isinstance(source, str) or not source:
        raise ValueError(f"init={source!r}: give a published weights tag, a run folder or a weights file")
    path = Path(source).expanduser()
    if not path.exists() and source == "DEFAULT" and ":" in model:
        raise ValueError(f"init='DEFAULT' for {model}: library models (torchvision:/timm:) have no published senet "
                         "weights; give a weights file or a run folder")  # fmt: skip
    if not path.exists() and _is_published(source, model):
        owner, _, tag = source.rpartition(".") if source != "DEFAULT" and "." in source else ("", "", source)
        spec = get_weights(owner or model, tag)
        meta = spec.metadata()
        return InitSource(
            source, f"published weights {spec.name}", spec.layout, spec.model, spec.options, spec.classes,
            {k: meta[k] for k in _PREPROCESS_KEYS}, lambda: read_source(fetch(spec))[0],
        )  # fmt: skip
    if not path.exists():
        if path.suffix or os.sep in source:
            raise FileNotFoundError(f"init: no weights file or run folder at {source!r}")
        tags = ", ".join(n.partition(".")[2] for n in list_weights(model)) if ":" not in model else ""
        raise ValueError(f"init={source!r} is neither a file, a run folder, nor weights known for {model} "
                         f"({tags or 'none'}; senet weights); give DEFAULT, a tag, MODEL.TAG, a run folder or a "
                         "weights file")  # fmt: skip
    file = weights_file(path)
    if not file.is_file():
        raise FileNotFoundError(f"init: {source!r} is a folder without {file.name}; is it a finished run folder?")
    state, meta = read_source(file)  # the readers of senet convert: weights_only=True, safetensors checked
    if meta:  # a senet weights file: it says which model, options, classes and preprocessing
        meta = check_weights_metadata(meta, repr(source))
        pre = {k: meta[k] for k in _PREPROCESS_KEYS if k in meta}
        if "image_size" in meta:
            pre.setdefault("input_size", meta["image_size"])
        classes = tuple(meta["classes"]) if "classes" in meta else None
        return InitSource(source, f"{'run folder' if path.is_dir() else 'weights file'} {source}", "senet",
                          meta["name"], dict(meta.get("options", {})), classes, pre, lambda: state,
                          add_se=[dict(c) for c in meta.get("add_se", [])])  # fmt: skip
    if detect_layout(state) is None:
        raise ValueError(f"init: cannot tell whose weights {source!r} holds (keys start {list(state)[:3]}); "
                         "convert it first with senet convert --from LAYOUT")  # fmt: skip
    layout = get_layout("auto", list(state))  # refuses the files no senet model reproduces, with the reason
    return InitSource(source, f"weights file {source}", layout.name, layout.model, {}, None,
                      {k: v for k, v in layout.input.items() if k in _PREPROCESS_KEYS},
                      lambda: state, state=state)  # fmt: skip


def init_options(source: InitSource, model: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` (the run's model options) with those the source's weights need added; a conflict is an error.

    The weights' own options decide the architecture: their layout's strides and pooling (`model_options`), and,
    for a senet source, the options it was built with (all of them for the same model; the architecture options,
    not the SE ones, when the source is the plain twin). Options that only set the initialisation are the run's.
    """
    entry = get_entry(model)
    if source.layout != "senet":
        need = model_options(model, source.layout, source.state)
    elif source.model in (model, entry.twin):
        src_entry = get_entry(source.model)
        decides = [k for k in entry.options if k != "se_init" and (source.model == model or k not in SE_OPTIONS)]
        defaults = src_entry.defaults()
        need = {k: source.options.get(k, defaults.get(k)) for k in decides if k in source.options or k in defaults}
    else:
        return dict(options)  # another network: load_init says which tensor does not fit
    out, defaults = dict(options), entry.defaults()
    for key, value in need.items():
        if key in options and _plain(options[key]) != _plain(value):
            raise ValueError(f"init {source.given!r} holds weights built with {key}={value!r}; model_options sets "
                             f"{key}={options[key]!r}: drop it or use weights built that way")  # fmt: skip
        if key not in out and (key not in defaults or _plain(value) != _plain(defaults[key])):
            out[key] = value
    return out


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def classifier_name(model: nn.Module) -> str:
    """The dotted name of ``model``'s classifier: ``get_classifier()`` where the model has it (senet, timm),
    else its last linear layer (torchvision: ``fc``, ``classifier.6``, ``classifier.1``, ...)."""
    modules = dict(model.named_modules())
    if hasattr(model, "get_classifier"):
        head = model.get_classifier()
        found = [n for n, m in modules.items() if m is head and n]
        if found:
            return found[0]
    linears = [n for n, m in modules.items() if isinstance(m, nn.Linear) and not _inside_se(n, modules)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no linear classifier to replace; give it get_classifier()")
    return linears[-1]


def _inside_se(name: str, modules: dict[str, nn.Module]) -> bool:
    parts = name.split(".")
    return any(isinstance(modules.get(".".join(parts[:i])), SqueezeExcite) for i in range(1, len(parts)))


@dataclass
class LoadReport:
    """What `load_init` did: tensors ``taken`` from the source, ``new`` ones of the model (name → why) and ``skipped``
    ones of the source (name → why)."""

    what: str
    model: str
    taken: list[str]
    new: dict[str, str]
    skipped: dict[str, str]
    notes: list[str] = field(default_factory=list)  # what the load assumed (a head kept for unnamed classes)

    def lines(self) -> list[str]:
        """The report as printed before training: each new and each skipped tensor named, grouped by the reason."""
        out = [f"init: {self.what} into {self.model}: {len(self.taken)} tensors taken"]
        for label, named in (("new (as initialised)", self.new), ("skipped from the source", self.skipped)):
            groups: dict[str, list[str]] = {}
            for name, why in named.items():
                groups.setdefault(why, []).append(name)
            out += [f"  {label}, {why} ({len(names)}): {', '.join(names)}" for why, names in groups.items()]
        if not self.new and not self.skipped:
            out.append("  every tensor of the model from the source, every tensor of the source used")
        return out + [f"  note: {note}" for note in self.notes]

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.what, "model": self.model, "taken": len(self.taken), "new": self.new,
                "skipped": self.skipped, "notes": self.notes}  # fmt: skip


def _se_after_names(model: nn.Module) -> list[str]:
    """Modules that `senet.add_se` wrapped (``bn2`` → ``bn2.module`` + ``bn2.se``), whose tensors moved."""
    return [n for n, m in model.named_modules() if isinstance(m, SEAfter)]


def load_init(model: nn.Module, source: InitSource, classes: Sequence[str], *, layout: str | None = None) -> LoadReport:
    """Load ``source`` into ``model``, built for data of ``classes``; return the report (see the module docstring).

    Args:
        layout: the names of the source's tensors, if not the source's own (``"senet"`` for a model made by a
            builder of another library, whose tensors are named as the model names them).

    Raises:
        ValueError: a tensor that does not fit (the first one named, and a model the weights fit where found).
    """
    layout = layout or source.layout
    tensors = source.read()
    wrapped = _se_after_names(model)
    if wrapped:  # add_se wrapped a module: its own tensors moved under .module
        tensors = {_into_wrapper(k, wrapped): v for k, v in tensors.items()}
    names = {senet_name(k, layout) or k: k for k in tensors}
    head = classifier_name(model) + "."
    target = model.state_dict()
    model_name = getattr(model, "model_name", "") or type(model).__name__
    _check_channels(source, model_name, target, {n: tensors[k] for n, k in names.items()})
    src_head = [n for n in names if n.startswith(head)]
    src_classes = next((tensors[names[n]].shape[0] for n in src_head if n.endswith("weight")), None)
    if source.classes is not None:
        new_head = tuple(source.classes) != tuple(classes)
        why_head = f"a new head: the source's {_few(source.classes)} are not the data's {_few(classes)}"
    else:
        new_head = src_classes != len(classes)
        why_head = (
            f"a new head: the source has {src_classes} classes, the data {len(classes)}"
            if src_classes
            else f"a new head: the source has none (its features only), the data {len(classes)} classes"
        )
    se_units = [n + "." for n, m in model.named_modules() if isinstance(m, SqueezeExcite)]
    retrofit = bool(se_units) and not any(n.startswith(tuple(se_units)) for n in names)
    skip = (head,) * new_head + tuple(se_units) * retrofit
    try:
        state = convert_state_dict(tensors, model, layout, skip=skip, what=source.what)
    except ConversionError as e:
        added = list((getattr(model, "model_config", None) or {}).get("add_se", []))
        raise ValueError(_does_not_fit(e, source, model_name, tensors, layout, added)) from None
    model.load_state_dict(state, strict=True)
    new: dict[str, str] = {}
    starts = {u: "identity" if _is_identity(model.get_submodule(u[:-1])) else "random" for u in se_units}
    for name in target:
        if name.startswith(head) and new_head:
            new[name] = why_head
        elif retrofit and name.startswith(tuple(se_units)):
            unit = next(u for u in se_units if name.startswith(u))
            new[name] = f"SE units, which the plain network's weights lack ({starts[unit]} start)"
    skipped = {names[n] if names[n] == n else f"{names[n]} (as {n})": "the replaced head"
               for n in src_head if new_head}  # fmt: skip
    taken = [n for n in target if n not in new and not (n.endswith("num_batches_tracked") and n not in names)]
    notes = []
    if source.classes is None and not new_head:
        notes.append(f"the head kept: the source does not name its classes; its {src_classes} outputs are taken as "
                     f"the data's {_few(classes)} in this order")  # fmt: skip
    return LoadReport(source.what, model_name, taken, new, skipped, notes)


def _check_channels(source: InitSource, model: str, target: Mapping[str, Tensor], given: Mapping[str, Tensor]) -> None:
    """Refuse weights whose stem (the model's first convolution) reads another number of input channels than the
    data has: RGB weights for grayscale data or the reverse. senet does not adapt a stem across channels: summing
    the RGB filters (timm's ``adapt_input_conv``) computes the RGB network on the grey image repeated, but normalised
    with one mean and std instead of the three per-channel ones the weights were trained with."""
    stem = next((k for k, v in target.items() if v.ndim == 4), None)
    if stem is None or stem not in given or given[stem].ndim != 4:
        return
    have, want = tuple(given[stem].shape), tuple(target[stem].shape)
    if have[1] == want[1] or (have[0], *have[2:]) != (want[0], *want[2:]):
        return
    fix = (
        "train on RGB images (image folders or synthetic data with --in-chans 3, or CIFAR; Fashion-MNIST has "
        "grayscale images only) or start from weights trained on grayscale images"
        if have[1] == 3
        else f"train on {have[1]}-channel images (--in-chans {have[1]} for image folders and synthetic data) or start "
        f"from weights trained on {want[1]}-channel images"
    )
    raise ValueError(f"init {source.what} does not fit {model} for this data: the weights' stem ({stem}) takes "
                     f"{have[1]} input channel{'s' * (have[1] != 1)}, the data has {want[1]}; senet does not adapt a "
                     f"stem to other channels: {fix}")  # fmt: skip


def _into_wrapper(key: str, wrapped: list[str]) -> str:
    for w in wrapped:
        if key.startswith(w + ".") and not key.startswith((w + ".module.", w + ".se.")):
            return f"{w}.module.{key[len(w) + 1 :]}"
    return key


@torch.no_grad()
def _is_identity(unit: SqueezeExcite) -> bool:
    """Whether the unit's gate is exactly 1 whatever its input (`SqueezeExcite.reset_to_identity`)."""
    bias = unit.fc2.bias
    return bool(bias is not None and unit.fc2.weight.eq(0).all() and unit.gate(bias).eq(1).all())


def _few(classes: Sequence[str]) -> str:
    shown = ", ".join(map(str, classes[:3]))
    return f"{len(classes)} classes ({shown}{', ...' if len(classes) > 3 else ''})"


def _does_not_fit(
    e: ConversionError, source: InitSource, model: str, tensors: dict[str, Tensor], layout: str, added: list[Any]
) -> str:
    """One line: the first tensor that does not fit, how many more, and which model the weights would fit (``added``:
    the model's `senet.add_se` calls)."""

    def pick(names: list[str]) -> str:  # a weight rather than a counter or statistic, where there is one
        return next((n for n in names if n.split(" ")[0].endswith(".weight")), names[0])

    if e.mismatched:
        first = pick(e.mismatched)
    elif e.unexpected:
        first = f"{pick(e.unexpected)} of the source has no place in the model"
    else:
        first = f"{pick(e.missing)} of the model is not in the source"
    more = len(e.mismatched) + len(e.unexpected) + len(e.missing) - 1
    text = f"init {source.what} does not fit {model}: first {first}" + (f" (and {more} more)" if more else "")
    if source.model is not None:  # the source says which network it is, with the add_se calls made on it
        plain_twin = ":" not in model and get_entry(model).has_se and source.model == get_entry(model).twin
        same = source.model == model and source.add_se in ([], added)  # (none: a retrofit by add_se)
        if same or (plain_twin and not source.add_se):  # the plain twin's weights into the SE model: a retrofit
            return text
        calls = json.dumps(source.add_se, sort_keys=True)
        whose = source.model + (f" with add_se {calls}" if source.add_se else "")
        options = f" --model-options '{json.dumps(source.options, sort_keys=True)}'" if source.options else ""
        add = f" --add-se '{calls}'" if source.add_se else ""
        return f"{text}; the weights are {whose}'s: train --model {source.model}{options}{add}"
    if ":" in model:  # another library's model: senet's registry cannot say what would fit
        return text
    fits, retrofits = fitting_models(tensors, layout)
    also = f"; {', '.join(retrofits[:3])} as a retrofit" if retrofits else ""
    if fits or retrofits:
        return f"{text}; they fit {', '.join(fits[:3]) or 'no model as they are'} (--model NAME{also})"
    return f"{text}; no registered model fits them"


def fitting_models(tensors: Mapping[str, Tensor], layout: str) -> tuple[list[str], list[str]]:
    """Registered models whose tensors (the classifier aside) have exactly the names and shapes of ``tensors``, built
    with the options ``layout`` needs; and the SE models that take them as a retrofit (all but their SE units)."""
    have = _shapes({senet_name(k, layout) or k: v for k, v in tensors.items()})
    found: tuple[list[str], list[str]] = ([], [])
    for name in list_models():
        entry = get_entry(name)
        try:
            with torch.device("meta"):
                m = build_model(name, **model_options(name, layout))
                # the input channels the weights' stem reads: the model's own first convolution, found by name
                # (a file's order is not the model's: safetensors sorts the names)
                stem = next((k for k, v in m.state_dict().items() if v.ndim == 4), None)
                in_chans = have[stem][1] if stem in have and len(have[stem]) == 4 else None
                if in_chans is not None and in_chans != m.state_dict()[stem].shape[1]:
                    m = build_model(name, in_chans=in_chans, **model_options(name, layout))
        except (ValueError, TypeError):
            continue
        head = classifier_name(m) + "."
        want = _shapes(m.state_dict())
        retrofit = entry.has_se and not any(".se." in k for k in have)
        if retrofit:
            want = {k: s for k, s in want.items() if ".se." not in k}
        if {k: s for k, s in want.items() if not k.startswith(head)} == {
            k: s for k, s in have.items() if not k.startswith(head)
        }:
            found[retrofit].append(name)
    return found


def _shapes(state: Mapping[str, Tensor]) -> dict[str, tuple[int, ...]]:
    """Name → shape, counters aside; SE FCs as linear layers (their 1×1-convolution form holds the same weights)."""
    out = {}
    for k, v in state.items():
        if not k.endswith("num_batches_tracked"):
            shape = tuple(v.shape)
            out[k] = shape[:2] if ".se." in k and shape[2:] == (1, 1) else shape
    return out
