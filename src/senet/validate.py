"""What senet accepts from outside: bounds for numbers and sizes, schemas for the JSON and YAML of senet's files, and
JSON that stays valid.

Every reader of a file checks what it read against a schema here before it uses a value (the metadata of weights and
training states, recipes and config.yaml, summary.json, compare.json, study.json, exported models' metadata), so a
malformed or hostile file is refused with one line that names the file, the field, the value and the fix, instead of
a traceback, a silent default or an allocation of absurd size. The bounds are generous for real use (a million
classes, 8192-pixel sides, batches of 65,536) and small enough that nothing within them exhausts a machine on its own.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "MAX_BATCH",
    "MAX_CHANNELS",
    "MAX_CLASSES",
    "MAX_COUNT",
    "MAX_EPOCHS",
    "MAX_IMAGE_PIXELS",
    "MAX_IMAGE_SIDE",
    "MAX_JSON_BYTES",
    "MAX_SEEDS",
    "Bool",
    "Either",
    "Float",
    "Int",
    "Json",
    "List",
    "Map",
    "Maybe",
    "SchemaError",
    "Spec",
    "Str",
    "check",
    "check_normalisation",
    "check_weights_metadata",
    "json_text",
    "read_json",
    "read_yaml",
]

MAX_CLASSES = 1_000_000  # ImageNet-21k has 21,841
MAX_CHANNELS = 1024  # input channels (1 grey, 3 RGB, a few more for multispectral images)
MAX_IMAGE_SIDE = 8192  # pixels; the paper's models see 224-320
MAX_IMAGE_PIXELS = MAX_IMAGE_SIDE**2  # of a decoded image file: 64 Mpx, 192 MiB as RGB
MAX_BATCH = 65_536  # images per batch
MAX_EPOCHS = 100_000
MAX_SEEDS = 1_000  # seeds of a comparison or study
MAX_COUNT = 2**31 - 1  # subsets, steps, intervals: anything counted in images or steps
MAX_JSON_BYTES = 256 << 20  # a summary.json of a very long run is a few MB
MAX_YAML_BYTES = 1 << 20  # a recipe is a page


class SchemaError(ValueError):
    """A value that does not fit its schema: ``where`` it is (``num_classes``, ``history[3].epoch``), the value, and
    what was expected."""

    def __init__(self, where: str, value: Any, expected: str) -> None:
        self.where, self.value, self.expected = where, value, expected
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        super().__init__(f"{where or 'the top level'} is {shown}, expected {expected}")


class Spec:
    """A schema: ``check(value, where)`` returns the value (converted where the spec says) or raises SchemaError."""

    def check(self, value: Any, where: str = "") -> Any:  # pragma: no cover - every spec defines it
        raise NotImplementedError


def _join(where: str, key: str | int) -> str:
    return f"{where}[{key}]" if isinstance(key, int) else (f"{where}.{key}" if where else str(key))


class Int(Spec):
    """A whole number (not a bool) in [lo, hi]."""

    def __init__(self, lo: int = 0, hi: int = MAX_COUNT) -> None:
        self.lo, self.hi = lo, hi

    def check(self, value: Any, where: str = "") -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not self.lo <= value <= self.hi:
            raise SchemaError(where, value, f"a whole number from {self.lo:,} to {self.hi:,}")
        return value


class Float(Spec):
    """A finite number from lo to hi (``lo_open`` / ``hi_open``: that end excluded); ints are taken as floats."""

    def __init__(
        self, lo: float = -math.inf, hi: float = math.inf, *, lo_open: bool = False, hi_open: bool = False
    ) -> None:
        self.lo, self.hi, self.lo_open, self.hi_open = lo, hi, lo_open, hi_open

    def check(self, value: Any, where: str = "") -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok:
            value = float(value)
            ok = (value > self.lo if self.lo_open else value >= self.lo) and (
                value < self.hi if self.hi_open else value <= self.hi
            )
        if not ok:
            low = f"{'above' if self.lo_open else 'at least'} {self.lo:g}" if self.lo > -math.inf else ""
            high = f"{'below' if self.hi_open else 'at most'} {self.hi:g}" if self.hi < math.inf else ""
            bounds = " and ".join(x for x in (low, high) if x)
            raise SchemaError(where, value, f"a finite number{', ' + bounds if bounds else ''}")
        return value


class Str(Spec):
    """A string of at most ``max_len`` characters, one of ``choices`` when given."""

    def __init__(self, choices: Sequence[str] | None = None, max_len: int = 1000) -> None:
        self.choices, self.max_len = choices, max_len

    def check(self, value: Any, where: str = "") -> str:
        if not isinstance(value, str) or len(value) > self.max_len:
            raise SchemaError(where, value, f"a string of at most {self.max_len} characters")
        if self.choices is not None and value not in self.choices:
            raise SchemaError(where, value, f"one of {', '.join(map(repr, self.choices))}")
        return value


class Bool(Spec):
    def check(self, value: Any, where: str = "") -> bool:
        if not isinstance(value, bool):
            raise SchemaError(where, value, "true or false")
        return value


class List(Spec):
    """A list (or tuple) of ``min_len`` to ``max_len`` items (exactly ``length`` when given), each fitting ``item``."""

    def __init__(self, item: Spec, max_len: int = 10_000, length: int | None = None, min_len: int = 0) -> None:
        self.item, self.max_len, self.length, self.min_len = item, max_len, length, min_len

    def check(self, value: Any, where: str = "") -> list:
        if not isinstance(value, (list, tuple)):
            raise SchemaError(where, value, "a list")
        if self.length is not None and len(value) != self.length:
            raise SchemaError(where, value, f"a list of {self.length} items")
        if not self.min_len <= len(value) <= self.max_len:
            raise SchemaError(where, f"<{len(value)} items>", f"a list of {self.min_len} to {self.max_len:,} items")
        return [self.item.check(v, _join(where, i)) for i, v in enumerate(value)]


class Map(Spec):
    """A mapping with string keys: the ``fields`` it names are checked (those in ``required`` must be there);
    other keys are kept as they are when ``others`` is None, else checked against ``others``."""

    def __init__(
        self,
        fields: Mapping[str, Spec] | None = None,
        required: Sequence[str] = (),
        others: Spec | None = None,
        max_len: int = 10_000,
    ) -> None:
        self.fields, self.required, self.others, self.max_len = dict(fields or {}), tuple(required), others, max_len

    def check(self, value: Any, where: str = "") -> dict:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise SchemaError(where, value, "an object (a mapping of names to values)")
        if len(value) > self.max_len:
            raise SchemaError(where, f"<{len(value)} entries>", f"at most {self.max_len:,} entries")
        missing = [k for k in self.required if k not in value]
        if missing:
            raise SchemaError(_join(where, missing[0]), "missing", "an entry (it is required)")
        out = {}
        for k, v in value.items():
            spec = self.fields.get(k, self.others)
            out[k] = spec.check(v, _join(where, k)) if spec is not None else v
        return out


class Maybe(Spec):
    """``blank`` (None: JSON null; "" for an empty cell), or a value that fits ``spec``."""

    def __init__(self, spec: Spec, blank: Any = None) -> None:
        self.spec, self.blank = spec, blank

    def check(self, value: Any, where: str = "") -> Any:
        if value == self.blank and type(value) is type(self.blank):
            return value
        try:
            return self.spec.check(value, where)
        except SchemaError as e:
            raise SchemaError(e.where, e.value, f"{e.expected}, or {self.blank!r}") from None


class Either(Spec):
    """A value that fits one of ``specs`` (the first that takes it): a class given by index or by name."""

    def __init__(self, *specs: Spec, expected: str) -> None:
        self.specs, self.expected = specs, expected

    def check(self, value: Any, where: str = "") -> Any:
        for spec in self.specs:
            try:
                return spec.check(value, where)
            except SchemaError:
                continue
        raise SchemaError(where, value, self.expected)


class Json(Spec):
    """Any JSON value whose numbers are finite, at most ``max_depth`` levels deep and ``max_items`` values in all:
    free-form data (a recipe's model options, an optimizer's state) that must still be bounded."""

    def __init__(self, max_depth: int = 32, max_items: int = 1_000_000) -> None:
        self.max_depth, self.max_items = max_depth, max_items

    def check(self, value: Any, where: str = "") -> Any:
        count = 0

        def walk(v: Any, at: str, depth: int) -> None:
            nonlocal count
            count += 1
            if count > self.max_items:
                raise SchemaError(where, "<data>", f"at most {self.max_items:,} values")
            if depth > self.max_depth:
                raise SchemaError(at, "<nested data>", f"at most {self.max_depth} levels of nesting")
            if isinstance(v, float) and not math.isfinite(v):
                raise SchemaError(at, v, "a finite number")
            if isinstance(v, Mapping):
                for k, x in v.items():
                    if not isinstance(k, (str, int)):
                        raise SchemaError(at, k, "string keys")
                    walk(x, _join(at, str(k)), depth + 1)
            elif isinstance(v, (list, tuple)):
                for i, x in enumerate(v):
                    walk(x, _join(at, i), depth + 1)
            elif v is not None and not isinstance(v, (str, int, float, bool)):
                raise SchemaError(at, v, "JSON data (objects, lists, strings, numbers, true, false, null)")

        walk(value, where, 0)
        return value


def check(value: Any, spec: Spec, source: str, fix: str) -> Any:
    """``value`` checked against ``spec``; ValueError "SOURCE: FIELD is VALUE, expected ...; FIX" if it does not fit."""
    try:
        return spec.check(value, "")
    except SchemaError as e:
        raise ValueError(f"{source}: {e}; {fix}") from None


def check_normalisation(mean: Sequence[Any], std: Sequence[Any], channels: int | None, what: str = "") -> None:
    """One finite mean and one finite, positive std per input channel, or ValueError naming the bad one."""
    label = f"{what} " if what else ""
    if channels is not None and not len(mean) == len(std) == channels:
        raise ValueError(f"{label}mean {list(mean)} and std {list(std)} must give one value per input channel "
                         f"({channels})")  # fmt: skip
    for i, v in enumerate(mean):
        try:
            Float().check(v, f"mean[{i}]")
        except SchemaError as e:
            raise ValueError(f"{label}{e}: the mean of the data per channel, on the 0-1 scale") from None
    for i, v in enumerate(std):
        try:
            Float(0.0, lo_open=True).check(v, f"std[{i}]")
        except SchemaError as e:
            raise ValueError(f"{label}{e}: the std of the data per channel (0 would divide by zero)") from None


# The metadata of a senet weights file (`senet.files.save_weights`): what rebuilds the model (written by
# `senet.factory.model_metadata`) and facts about the weights (training, `senet convert`, published weights).
MODEL_CONFIG = {
    "name": Str(max_len=100),
    "options": Map(others=Json(max_depth=3, max_items=1000), max_len=100),
    "num_classes": Int(1, MAX_CLASSES),
    "in_chans": Int(1, MAX_CHANNELS),
}
WEIGHTS_METADATA = Map(
    {
        **MODEL_CONFIG,
        "mean": List(Float(), max_len=MAX_CHANNELS),
        "std": List(Float(0.0, lo_open=True), max_len=MAX_CHANNELS),
        "classes": List(Str(), max_len=MAX_CLASSES),
        "dataset": Str(max_len=100),
        "image_size": Int(1, MAX_IMAGE_SIDE),
        "input_size": Int(1, MAX_IMAGE_SIDE),
        "crop_pct": Float(0.0, 1.0, lo_open=True),  # senet.data.Preprocess
        "interpolation": Str(max_len=20),  # one of senet.data.transforms.INTERPOLATIONS, checked where it is used
        "add_se": List(Map(others=Json(max_depth=2, max_items=1000), max_len=100), max_len=100),  # senet.add_se calls
        "epoch": Int(0, MAX_EPOCHS),
        "test_acc": Float(0.0, 1.0),
        "recipe": Map(others=Json(max_depth=4, max_items=10_000)),
    },
    required=("name", "num_classes", "in_chans"),
    others=Json(max_depth=8, max_items=100_000),
)


def check_weights_metadata(meta: Any, source: str) -> dict[str, Any]:
    """A weights file's senet metadata checked against `WEIGHTS_METADATA`, classes and normalisation counted
    against the model's classes and channels; ValueError naming ``source``, the field and the fix."""
    fix = "the file was not written by senet, or was altered: re-create it (senet train, senet convert)"
    meta = check(meta, WEIGHTS_METADATA, f"{source} has malformed senet metadata", fix)
    if "classes" in meta and len(meta["classes"]) != meta["num_classes"]:
        raise ValueError(f"{source} has malformed senet metadata: {len(meta['classes'])} class names for "
                         f"num_classes={meta['num_classes']}; {fix}")  # fmt: skip
    if "mean" in meta or "std" in meta:
        check_normalisation(meta.get("mean", []), meta.get("std", []), meta["in_chans"], f"{source}:")
    return meta


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def json_text(obj: Any, *, indent: int | None = 1, sort_keys: bool = False) -> str:
    """``obj`` as JSON that every parser reads: a NaN or infinite number (a diverged loss) becomes ``null``; Python's
    json would write the non-standard ``NaN``, which JSON parsers in other languages refuse."""
    return json.dumps(_finite(obj), indent=indent, sort_keys=sort_keys, allow_nan=False)


def _read_bounded(path: str | os.PathLike, limit: int, what: str) -> str:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {str(path)!r}")
    size = path.stat().st_size
    if size > limit:
        raise ValueError(f"{str(path)!r} is {size:,} bytes, more than a {what} can be ({limit:,}); is it the right "
                         "file?")  # fmt: skip
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{str(path)!r} is not a {what}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def read_json(path: str | os.PathLike, spec: Spec, what: str, fix: str) -> Any:
    """The JSON file ``path`` (a ``what``, e.g. "summary.json of a run"), checked against ``spec``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: too large, not JSON, NaN or infinite numbers, or a value that does not fit ``spec``; naming the
            file and ``fix``.
    """

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not a JSON number")

    text = _read_bounded(path, MAX_JSON_BYTES, what)
    try:
        value = json.loads(text, parse_constant=refuse)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"{str(path)!r} is not a valid {what}: {str(e).splitlines()[0]}; {fix}") from None
    return check(value, spec, f"{str(path)!r} is not a valid {what}", fix)


def read_yaml(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """A YAML file of named fields (a recipe, config.yaml) as a dict.

    Raises:
        FileNotFoundError: no such file.
        ValueError: too large, not YAML, nested beyond reason, empty, or not a mapping; naming the file.
    """
    import yaml

    text = _read_bounded(path, MAX_YAML_BYTES, what)
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"{what} {str(path)!r} is not valid YAML: {str(e).splitlines()[0]}") from None
    except RecursionError:
        raise ValueError(f"{what} {str(path)!r} is nested too deeply to be a {what}") from None
    if loaded is None:  # an empty (or truncated) file would silently mean every default
        raise ValueError(f"{what} {str(path)!r} is empty; give at least one field, or no {what} for the defaults")
    if not isinstance(loaded, dict):
        raise ValueError(f"{what} {str(path)!r} must be a mapping of fields, got {type(loaded).__name__}")
    return loaded
