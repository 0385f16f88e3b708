"""Files: atomic writes, weights as safetensors with senet's metadata, and safe loading of other formats.

A senet weights file is a safetensors file whose metadata holds one JSON entry, ``"senet"``: the model name and
options that rebuild it (``create_model``), and facts about the weights such as the input normalisation and class
names. Nothing here unpickles arbitrary objects: ``torch.load`` is only ever called with ``weights_only=True``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import socket
import time
import urllib.error
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from .constants import RUN_FILES

__all__ = [
    "DiskFullError",
    "FolderBusyError",
    "atomic_write",
    "check_folder_name",
    "clean_partial_writes",
    "download_retrying",
    "folder_lock",
    "read_weights",
    "refuse_busy",
    "refuse_overwrite",
    "safe_torch_load",
    "save_weights",
]

_META_KEY = "senet"
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # no space, over quota, over the size limit


class DiskFullError(OSError):
    """A write found no space on its device; the file's previous version, if any, is intact."""

    def __str__(self) -> str:
        return str(self.strerror)  # the message alone, without "[Errno 28]"


def temporary_path(path: Path) -> Path:
    """Where `atomic_write` writes ``path`` before the rename: ``.NAME.HEX.tmp`` beside it, the pattern that
    `clean_partial_writes` removes after a crash."""
    return path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"


def clean_partial_writes(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files (`temporary_path`) that a process killed while writing left in ``folder``;
    return them. Only safe while no other process writes there: `folder_lock` calls it once it holds the lock."""
    stale = sorted(Path(folder).glob(".*.tmp"))
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Write a file so that a crash leaves either the old file or the new one, never a torn one.

    ``write(tmp)`` writes the content to a temporary path in the same folder; it is then flushed to disk and
    renamed over ``path``, and the folder entry synced. The file gets the permissions an ordinary ``open`` would
    give it (0o666 less the umask), not the owner-only ones of a temporary file.

    Raises:
        DiskFullError: the device is full (or the quota spent); the temporary file is removed, ``path`` unchanged.
    """
    path = Path(path)
    tmp = temporary_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the kernel applies the umask
        try:
            write(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as e:
        if e.errno not in _FULL:
            raise
        kept = "its previous version is kept" if path.exists() else "nothing was written"
        raise DiskFullError(e.errno, f"no space left on the device to write {str(path)!r} ({kept}); free space "
                            "and run the command again (a training run continues with --resume)") from None  # fmt: skip
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
    if len(name.encode()) > 255:  # the longest file name Linux, macOS and Windows file systems take
        raise ValueError(f"{flag} {name[:20]!r}... is {len(name.encode())} bytes long; a folder name may have at "
                         "most 255: choose a shorter one")  # fmt: skip
    return name


def refuse_overwrite(out: str | os.PathLike, inputs: Mapping[str, str | os.PathLike], flag: str = "--out") -> Path:
    """``out`` as a Path, unless writing it would destroy something: ValueError naming it and the fix.

    Refused: ``out`` is one of the ``inputs`` (label → path; links and other spellings of one path included), a
    file inside an input that is a folder (a run folder given to eval or export), one of a run folder's own files
    (`senet.constants.RUN_FILES`, in any folder with a `LOCK_FILE`), or a path in a folder that a running senet
    process holds (`folder_lock`).
    """
    out = Path(out)
    for label, path in inputs.items():
        path = Path(path)
        same = out.exists() and path.exists() and os.path.samefile(out, path)
        if same or out.resolve() == path.resolve():
            raise ValueError(f"{flag} {str(out)!r} is the {label} itself and would be replaced; choose another {flag}")
        if path.is_dir() and out.exists() and out.resolve().is_relative_to(path.resolve()):
            raise ValueError(f"{flag} {str(out)!r} is a file of the {label} {str(path)!r} and would be replaced; "
                             f"choose a new name or another folder for {flag}")  # fmt: skip
    folder = out.parent
    if (folder / LOCK_FILE).is_file():
        if out.name in RUN_FILES:
            raise ValueError(f"{flag} {str(out)!r} is the {out.name} of the run in {str(folder)!r}, which senet reads "
                             f"back; choose another name or folder for {flag}")  # fmt: skip
        refuse_busy(folder, flag)
    return out


def refuse_busy(folder: str | os.PathLike, flag: str = "--out") -> None:
    """FolderBusyError if a running process holds ``folder``'s lock (`folder_lock`): it may replace what we write."""
    lock = Path(folder) / LOCK_FILE
    try:
        import fcntl

        fd = os.open(lock, os.O_RDONLY)
    except (ImportError, OSError):  # no lock file (or no fcntl): nobody holds it
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # shared: succeeds unless a writer holds it
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
        raise FolderBusyError(f"{flag}: {str(folder)!r} is in use by {holder}; wait for it to end, or write "
                              "elsewhere") from None  # fmt: skip
    finally:
        os.close(fd)  # releases the shared lock at once


class FolderBusyError(ValueError):
    """Another process holds the folder's lock (`folder_lock`)."""


LOCK_FILE = ".senet.lock"


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "folder") -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (created if missing) while the block runs; a second holder is refused.

    The lock is the kernel's ``flock`` on ``folder/.senet.lock``, so it ends with the process that holds it, however
    that process ends (a SIGKILL leaves no stale lock). The file keeps the holder's pid, host and start time, which
    the refusal names. Once the lock is held, the temporary files of a writer killed earlier are removed
    (`clean_partial_writes`). Where ``fcntl`` is missing (Windows), nothing is locked.

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
        clean_partial_writes(folder)  # the folder is ours: what a killed writer left is stale
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
    meta = {_META_KEY: json.dumps(metadata, sort_keys=True, allow_nan=False)} if metadata else None  # {}: no key
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
    if raw is None:  # no senet metadata: a plain state dict (senet writes none for empty metadata)
        return tensors, {}
    try:
        meta = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"{str(path)!r} has malformed senet metadata: not JSON ({str(e).splitlines()[0]}); the file "
                         "was not written by senet, or was altered") from None  # fmt: skip
    if not isinstance(meta, dict) or not meta:
        what = "an empty object" if isinstance(meta, dict) else f"a JSON {type(meta).__name__}, not an object"
        raise ValueError(f"{str(path)!r} has malformed senet metadata: {what}; the file was not written by senet, or "
                         "was altered")  # fmt: skip
    return tensors, meta


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def looks_like_pickle(path: Path) -> bool:
    """Whether ``path`` holds a raw pickle or torch's zip archive rather than safetensors."""
    with open(path, "rb") as f:
        head = f.read(9)
    if head[8:9] == b"{":  # safetensors: the header's length (8 bytes, little-endian), then the JSON header
        return False  # (whose length may start with the byte 0x80 that also starts a pickle)
    return head[:1] == b"\x80" or head[:2] == b"PK"


T = TypeVar("T")
DOWNLOAD_ATTEMPTS = 3


def download_timeout() -> float:
    """Seconds a download may wait for the next bytes before the attempt is given up: ``$SENET_DOWNLOAD_TIMEOUT``,
    default 60."""
    text = os.environ.get("SENET_DOWNLOAD_TIMEOUT", "60")
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise ValueError(f"SENET_DOWNLOAD_TIMEOUT={text!r} must be seconds from 0 (excluded) to 3600")
    return value


def download_retrying(action: Callable[[], T], what: str, attempts: int = DOWNLOAD_ATTEMPTS) -> T:
    """Run ``action`` (a download through urllib: torch.hub's, torchvision's) with a timeout on every socket it
    opens and up to ``attempts`` tries, with a pause between them; a server that answers with an HTTP error is not
    asked again.

    Neither torch.hub nor torchvision sets a timeout, so a connection that goes silent would hang for as long as
    the operating system keeps it (minutes to hours). The timeout is the process-wide socket default while
    ``action`` runs.

    Raises:
        ConnectionError: no attempt succeeded; naming ``what``, the attempts, the timeout and the last reason.
    """
    timeout = download_timeout()
    reason: Any = None
    for attempt in range(1, attempts + 1):
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(timeout)
        try:
            return action()
        except urllib.error.HTTPError as e:  # the server answered: asking again gives the same answer
            raise ConnectionError(f"cannot download {what}: the server answered {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError) as e:  # refused, reset, unreachable, or silent (TimeoutError)
            reason = getattr(e, "reason", None) or e
            if isinstance(reason, TimeoutError) or isinstance(e, TimeoutError):
                reason = f"no data for {timeout:g} s"
        finally:
            socket.setdefaulttimeout(previous)
        if attempt < attempts:
            time.sleep(min(timeout, float(attempt)))  # 1 s, then 2 s
    raise ConnectionError(
        f"cannot download {what}: {attempts} attempts failed, the last with: {reason}. Check the network, or set "
        "SENET_DOWNLOAD_TIMEOUT (seconds, default 60) for a slow connection"
    )


def safe_torch_load(path: str | os.PathLike) -> Any:
    """``torch.load`` that refuses anything but tensors and plain containers (never runs pickled code)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, IsADirectoryError):
        raise
    except Exception as e:  # torch raises UnpicklingError or RuntimeError depending on the content
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0]  # an empty file: a bare EOFError
        raise ValueError(
            f"refusing to load {str(path)!r}: it is not a plain weights file (it holds objects that would run code "
            f"when unpickled, or it is corrupt). Only load pickles you trust; prefer safetensors. Detail: {detail}"
        ) from None
