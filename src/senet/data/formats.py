"""File formats of the datasets, read defensively: IDX (MNIST, Fashion-MNIST) and the CIFAR "python" batches, the
latter with an unpickler that builds numpy arrays and plain data and nothing else."""

from __future__ import annotations

import codecs
import contextlib
import gzip
import math
import os
import pickle
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..validate import MAX_IMAGE_PIXELS

__all__ = ["UnreadableImage", "cifar_images", "read_cifar_batch", "read_idx", "read_image"]


_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# Deflate (gzip) expands data by at most about 1032 to 1: a 258-byte match costs at least two bits. An IDX header
# that promises more data than that of its gzip file is false, and is refused before anything is decompressed.
_DEFLATE_MAX_RATIO = 1032
_CHUNK = 1 << 20


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST / Fashion-MNIST format), gzipped or raw.

    The header declares the array's shape; no more than that many bytes are ever read or decompressed, so a gzip
    bomb (a small file that expands to gigabytes) is refused at the first byte beyond the declared size.

    Raises:
        ValueError: naming the file, if it is truncated, corrupt, larger than its header says, or not an IDX file.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as raw_file:
        gzipped = raw_file.read(2) == b"\x1f\x8b"
        raw_file.seek(0)
        try:
            with gzip.GzipFile(fileobj=raw_file) if gzipped else contextlib.nullcontext(raw_file) as f:
                return _read_idx_stream(f, path, size, gzipped)
        except (EOFError, gzip.BadGzipFile, zlib.error) as e:
            raise ValueError(
                f"{str(path)!r} is a truncated or corrupt gzip file ({e}); fetch the dataset again"
            ) from None


def _read_idx_stream(f: Any, path: Path, size: int, gzipped: bool) -> np.ndarray:
    head = f.read(4)
    if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in _IDX_TYPES:
        raise ValueError(f"{str(path)!r} is not an IDX file (bad magic number {head.hex()})")
    ndim = head[3]
    dims_raw = f.read(4 * ndim)
    if len(dims_raw) < 4 * ndim:
        raise ValueError(f"{str(path)!r} is truncated: its header is incomplete")
    dims = struct.unpack(f">{ndim}I", dims_raw)
    dtype = np.dtype(_IDX_TYPES[head[2]])
    need = math.prod(dims) * dtype.itemsize
    most = size * _DEFLATE_MAX_RATIO if gzipped else size - 4 - 4 * ndim
    if need > most:
        raise ValueError(
            f"{str(path)!r} is truncated or corrupt: its header promises {need:,} bytes of data for shape {dims}, "
            f"more than a file of {size:,} bytes can hold; fetch the dataset again"
        )
    data = np.empty(need, np.uint8)  # pages are committed only as data arrives
    view, got = memoryview(data), 0
    while got < need:
        n = f.readinto(view[got : got + _CHUNK])
        if not n:
            break
        got += n
    extra = len(f.read(1))
    if got != need or extra:
        found = f"{got:,}" if not extra else "more"
        raise ValueError(
            f"{str(path)!r} is truncated or corrupt: its header promises {need:,} bytes of data for shape {dims}, "
            f"the file has {found}; fetch the dataset again"
        )
    return data.view(dtype).reshape(dims).astype(dtype.newbyteorder("="))


class _ArrayType:
    """What a CIFAR pickle gets for ``numpy.ndarray``: a marker that `_NumpyOnly._reconstruct` accepts, and that
    cannot be called to allocate an array of any size the pickle asks for."""


class _NumpyOnly(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays, lists, dicts, strings and numbers, and refuses every other object
    (a crafted pickle would otherwise run code), and any array larger than the file it comes from (whose data must
    be in the file)."""

    def __init__(self, file: Any, *, limit: int, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.limit = limit

    @staticmethod
    def _dtype(*args: Any) -> np.dtype:
        dtype = np.dtype(*args)
        if dtype.hasobject:
            raise pickle.UnpicklingError("refusing an array of Python objects")
        return dtype

    def _reconstruct(self, cls: Any, shape: Any, dtype: Any) -> np.ndarray:
        if cls is not _ArrayType:
            raise pickle.UnpicklingError(f"refusing to rebuild an array of {cls!r}")
        shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
        itemsize = np.dtype(dtype).itemsize if isinstance(dtype, (np.dtype, str, bytes)) else 0
        if not all(isinstance(n, int) and n >= 0 for n in shape) or math.prod(shape) * itemsize > self.limit:
            raise pickle.UnpicklingError(f"an array of shape {shape} and dtype {dtype!r} is larger than the file")
        return _RECONSTRUCT(np.ndarray, shape, dtype)

    def find_class(self, module: str, name: str) -> Any:
        allowed = {
            ("numpy", "ndarray"): _ArrayType,
            ("numpy", "dtype"): self._dtype,
            ("numpy.core.multiarray", "_reconstruct"): self._reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): self._reconstruct,
            ("_codecs", "encode"): codecs.encode,  # how Python 3 pickles bytes at protocol 2
        }
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        return allowed[module, name]


_RECONSTRUCT = np.empty(0).__reduce__()[0]  # numpy's array rebuilder, whatever module numpy keeps it in


def read_cifar_batch(path: str | os.PathLike) -> dict[str, Any]:
    """One file of the CIFAR "python" format: a pickled dict of numpy arrays and lists, keys as str.

    Raises:
        ValueError: naming the file, if it is corrupt, holds anything but arrays and plain data, or declares an
            array larger than itself.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            obj = _NumpyOnly(f, limit=path.stat().st_size, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, RecursionError, OverflowError, struct.error) as e:  # fmt: skip
        raise ValueError(f"{str(path)!r} is not a valid CIFAR batch file: {e}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{str(path)!r} is not a valid CIFAR batch file: it holds a {type(obj).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def cifar_images(batch: dict[str, Any], label_key: str, path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR batch's images as uint8 (N, 3, 32, 32) and labels (N,) int64, every value checked: pixels are whole
    numbers from 0 to 255 (a cast would wrap 256 to 0 silently), one label per image.

    Raises:
        ValueError: naming the file and the entry.
    """
    where = f"{str(path)!r} is not a valid CIFAR batch file"
    if "data" not in batch or label_key not in batch:
        missing = "data" if "data" not in batch else label_key
        raise ValueError(f"{where}: it lacks the {missing!r} entry")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        shape = data.shape if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{where}: its data is {shape}, not an array of N rows of 3072 pixel values")
    outside = data.dtype.kind not in "iu" or (data.size and (data.min() < 0 or data.max() > 255))
    if data.dtype != np.uint8 and outside:
        lo, hi = (data.min(), data.max()) if data.size and data.dtype.kind in "iuf" else ("?", "?")
        raise ValueError(f"{where}: its pixel values ({data.dtype}, {lo} to {hi}) are not whole numbers from 0 to 255")
    labels = batch[label_key]
    try:
        labels = np.asarray(labels)
    except (ValueError, TypeError):
        labels = np.asarray([None])
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(data):
        raise ValueError(f"{where}: its {label_key!r} are not {len(data)} whole numbers, one per image")
    return data.astype(np.uint8).reshape(-1, 3, 32, 32), labels.astype(np.int64)


class UnreadableImage(ValueError):
    """An image file that cannot be decoded: ``path`` and the ``reason``."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f"unreadable image {self.path!r} ({reason})")


def read_image(path: str | os.PathLike, in_chans: int, max_pixels: int = MAX_IMAGE_PIXELS) -> Any:
    """An image file as a uint8 tensor (C, H, W), grey (1 channel) or RGB (3), decoded with PIL.

    The size an image file declares is checked before it is decoded: a decompression bomb (a small PNG that
    declares 100,000 × 100,000 pixels) is refused, not decoded into gigabytes.

    Raises:
        UnreadableImage: a ValueError naming the file: not an image, truncated, corrupt, or more than
            ``max_pixels`` pixels.
    """
    import warnings

    from PIL import Image
    from torchvision.transforms import v2

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, by our own bound
            with Image.open(path) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise ValueError(f"{width} × {height} pixels, more than the {max_pixels:,} senet decodes: a "
                                     "decompression bomb? Resize the image")  # fmt: skip
                img = img.convert("L" if in_chans == 1 else "RGB")
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        # PIL's errors for missing, broken, non-image or oversized files
        raise UnreadableImage(path, f"{type(e).__name__}: {e}") from None
    return v2.functional.pil_to_tensor(img)
