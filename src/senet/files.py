"""Files: atomic writes, weights as safetensors with senet's metadata, and safe loading of other formats.

A senet weights file is a safetensors file whose metadata holds one JSON entry, ``"senet"``: the model name and
options that rebuild it (``create_model``), and facts about the weights such as the input normalisation and class
names. Nothing here unpickles arbitrary objects: ``torch.load`` is only ever called with ``weights_only=True``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "FolderBusyError",
    "atomic_write",
    "check_folder_name",
    "folder_lock",
    "read_weights",
    "refuse_overwrite",
    "safe_torch_load",
    "save_weights",
]

_META_KEY = "senet"


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Write a file so that a crash leaves either the old file or the new one, never a torn one.

    ``write(tmp)`` writes the content to a temporary path in the same folder; it is then flushed to disk and
    renamed over ``path``, and the folder entry synced. The file gets the permissions an ordinary ``open`` would
    give it (0o666 less the umask), not the owner-only ones of a temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the kernel applies the umask
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))  # reports hold ±, −, →


def check_folder_name(name: str, flag: str = "--name") -> str:
    """``name`` if it is one plain folder name ("" too: the caller's default), else ValueError.

    Names are joined to an output folder; a separator, ``.`` or ``..`` would put the result outside it.
    """
    seps = {"/", os.sep, os.altsep or "/"}
    if any(sep in name for sep in seps) or name in (".", "..") or "\0" in name:
        raise ValueError(f"{flag} {name!r} must be a plain folder name (no '/', not '.' or '..'); it is created "
                         "under the output folder (--out-dir)")  # fmt: skip
    return name


def refuse_overwrite(out: str | os.PathLike, inputs: Mapping[str, str | os.PathLike], flag: str = "--out") -> Path:
    """``out`` as a Path, unless it is one of the ``inputs`` (label → path): ValueError naming both.

    Compares the files themselves where both exist (links and other spellings of one path included).
    """
    out = Path(out)
    for label, path in inputs.items():
        path = Path(path)
        same = out.exists() and path.exists() and os.path.samefile(out, path)
        if same or out.resolve() == path.resolve():
            raise ValueError(f"{flag} {str(out)!r} is the {label} itself and would be replaced; choose another {flag}")
    return out


class FolderBusyError(ValueError):
    """Another process holds the folder's lock (`folder_lock`)."""


LOCK_FILE = ".senet.lock"


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "folder") -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (created if missing) while the block runs; a second holder is refused.

    The lock is the kernel's ``flock`` on ``folder/.senet.lock``, so it ends with the process that holds it, however
    that process ends (a SIGKILL leaves no stale lock). The file keeps the holder's pid, host and start time, which
    the refusal names. Where ``fcntl`` is missing (Windows), nothing is locked.

    Raises:
        FolderBusyError: another process holds the lock.
    """
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield folder
        return
    lock = folder / LOCK_FILE
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            raise FolderBusyError(
                f"{str(folder)!r} is in use by {holder}; wait for it to end, or choose another {what}"
            ) from None
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"senet pid {os.getpid()} on {socket.gethostname()} since {stamp}\n".encode(), 0)
        try:
            yield folder
        except BaseException:
            if created and [p.name for p in folder.iterdir()] == [LOCK_FILE]:  # failed before writing anything
                lock.unlink()
                folder.rmdir()
            raise
    finally:
        os.close(fd)  # releases the lock


def save_weights(path: str | os.PathLike, model_or_state: nn.Module | Mapping[str, Tensor], metadata: dict) -> Path:
    """Save weights as safetensors with ``metadata`` (JSON-serialisable) under the ``"senet"`` key, atomically."""
    from safetensors.torch import save

    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    # safetensors refuses shared or strided storage: give it contiguous copies.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    meta = {_META_KEY: json.dumps(metadata, sort_keys=True, allow_nan=False)}
    # The bytes, written by atomic_write itself: safetensors' own file writer renames a temporary file of its own
    # (".tmpXXXXXX", mode 0600) over the path it is given, which a kill would leave behind under a name that
    # clean_partial_writes does not know, and which would give the weights owner-only permissions.
    data = save(tensors, metadata=meta)
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def read_weights(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Tensors and senet metadata of a safetensors file ({} if it has none).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a complete safetensors file (truncated, corrupt or another format).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {str(path)!r}")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(_META_KEY)
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        hint = " (a pickle? convert it with `senet convert`)" if looks_like_pickle(path) else ""
        raise ValueError(f"{str(path)!r} is not a valid safetensors file{hint}: truncated or corrupt ({e})") from None
    return tensors, (json.loads(raw) if raw else {})


def looks_like_pickle(path: Path) -> bool:
    """Whether ``path`` holds a raw pickle or torch's zip archive rather than safetensors."""
    with open(path, "rb") as f:
        head = f.read(9)
    if head[8:9] == b"{":  # safetensors: the header's length (8 bytes, little-endian), then the JSON header
        return False  # (whose length may start with the byte 0x80 that also starts a pickle)
    return head[:1] == b"\x80" or head[:2] == b"PK"


def safe_torch_load(path: str | os.PathLike) -> Any:
    """``torch.load`` that refuses anything but tensors and plain containers (never runs pickled code)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # torch raises UnpicklingError or RuntimeError depending on the content
        raise ValueError(
            f"refusing to load {str(path)!r}: it is not a plain weights file (it holds objects that would run code "
            f"when unpickled, or it is corrupt). Only load pickles you trust; prefer safetensors. Detail: "
            f"{str(e).splitlines()[0]}"
        ) from None
