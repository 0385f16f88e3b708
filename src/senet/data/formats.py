"""File formats of the datasets, read defensively: IDX (MNIST, Fashion-MNIST) and the CIFAR "python" batches, the
latter with an unpickler that builds numpy arrays and plain data and nothing else."""

from __future__ import annotations

import codecs
import gzip
import math
import os
import pickle
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["read_cifar_batch", "read_idx"]


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
