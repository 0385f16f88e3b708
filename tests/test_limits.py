"""Resource bounds (docs/reliability.md): threads and workers bounded by the machine, workers that die with their
parent, downloads with a timeout and retries, and readers that never allocate more than a file can hold: an IDX gzip
bomb, a CIFAR batch that declares an enormous array, an image file that declares gigapixels."""

import contextlib
import gzip
import hashlib
import http.server
import io
import pickle
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc

import numpy as np
import pytest
import torch
from conftest import fast_first, slow
from test_bad_input import _png_declaring
from test_cli_train import _fails, _ok
from test_data import write_idx

from senet.data import load_datasets, read_cifar_batch, read_idx
from senet.environment import usable_cores
from senet.weights import KnownWeights, fetch

TINY = ["--dataset", "synthetic", "--model", "resnet20", "--image-size", "8", "--train-subset", "32", "--test-subset",
        "16", "--batch-size", "16", "--epochs", "1", "--progress", "none", "--tensorboard", "false"]  # fmt: skip


# -- threads and workers ----------------------------------------------------------------------------------------------


@slow
def test_threads_and_workers_beyond_the_machine_are_refused_naming_its_cores(tmp_path, capsys):
    cores = usable_cores()
    out = ["--out-dir", str(tmp_path), "--name", "r"]
    for flag in ("--threads", "--workers"):
        err = _fails(capsys, "train", *TINY, flag, str(cores + 1), *out)
        assert f"{flag.strip('-')}={cores + 1} is more than the {cores} CPU core(s)" in err
        assert f"at most {cores}" in err
        assert "must not be" not in err and not (tmp_path / "r").exists()
        err = _fails(capsys, "train", *TINY, flag, "1000000", *out)  # beyond any machine: the recipe's own bound
        assert flag.strip("-") in err and "expected a whole number" in err
    _ok(capsys, "train", *TINY, "--threads", str(cores), "--workers", "1", *out)  # the machine's own cores are fine
    err = _fails(capsys, "eval", str(tmp_path / "r"), "--workers", str(cores + 1))
    assert f"workers={cores + 1} is more than the {cores} CPU core(s)" in err
    err = _fails(capsys, "cost", "resnet20", "--threads", str(cores + 1), "--no-train", "--repeats", "1")
    assert f"--threads={cores + 1} is more than the {cores} CPU core(s)" in err


_ORPHAN = textwrap.dedent("""
    import sys, time
    import torch
    from senet.data import EpochBatches
    from senet.training.evaluation import loader

    class Slow(torch.utils.data.Dataset):  # a batch takes a minute: the workers are busy, not waiting for work
        def __len__(self):
            return 64
        def __getitems__(self, key):
            time.sleep(60)

    it = iter(loader(Slow(), EpochBatches(64, 8, shuffle=False), 2, False))
    print(*(w.pid for w in it._workers), flush=True)
    next(it)
""")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has died
    except FileNotFoundError:
        return False


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
@slow
def test_data_loading_workers_die_with_their_parent():
    """SIGKILL the training process (as the OOM killer does) while its workers are busy: they go with it, instead of
    finishing their minute of work; PyTorch's own watchdog only looks while a worker waits for work."""
    proc = subprocess.Popen([sys.executable, "-c", _ORPHAN], stdout=subprocess.PIPE, text=True)
    workers = [int(p) for p in proc.stdout.readline().split()]
    assert len(workers) == 2 and all(_alive(p) for p in workers)
    time.sleep(1)  # the workers are inside their minute-long batch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 20  # far less than the minute they would otherwise live
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in workers), "workers outlived their parent"


# -- downloads --------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _in_thread(run, stop):
    """Run ``run`` in a thread while the block runs; then ``stop()`` it and wait for it."""
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop()
        thread.join()


@contextlib.contextmanager
def _silent_server():
    """A server that accepts connections and never says a word: the connection that hangs a download forever."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    held, stop = [], threading.Event()

    def accept():
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(server.accept()[0])

    try:
        with _in_thread(accept, stop.set):
            yield f"http://127.0.0.1:{server.getsockname()[1]}", held
    finally:
        for c in held:
            c.close()
        server.close()


@contextlib.contextmanager
def _flaky_server(payload: bytes, failures: int):
    """An HTTP server whose first ``failures`` connections are dropped before any answer, then serves ``payload``."""
    count = {"n": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            count["n"] += 1
            if count["n"] <= failures:
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    try:
        with _in_thread(httpd.serve_forever, httpd.shutdown):
            yield f"http://127.0.0.1:{httpd.server_address[1]}", count
    finally:
        httpd.server_close()


def test_a_silent_download_of_weights_times_out_after_its_attempts(tmp_path, monkeypatch):
    monkeypatch.setenv("SENET_DOWNLOAD_TIMEOUT", "0.1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    with _silent_server() as (url, held):
        spec = KnownWeights("se_resnet50", "test", f"{url}/se_resnet50-ce0d4300.pth", "caffe", "a test")
        with pytest.raises(ConnectionError) as e:
            fetch(spec, progress=False)
    text = str(e.value)
    assert "3 attempts failed, the last with: no data for 0.1 s" in text and "SENET_DOWNLOAD_TIMEOUT" in text
    assert "se_resnet50.test" in text and "Copy the file" in text and len(held) == 3
    assert not list((tmp_path / "hub").rglob("*.pth"))


@slow
def test_a_download_that_fails_twice_succeeds_on_the_third_attempt(tmp_path, monkeypatch):
    monkeypatch.setenv("SENET_DOWNLOAD_TIMEOUT", "5")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    buf = io.BytesIO()
    torch.save({"w": torch.arange(4.0)}, buf)
    payload = buf.getvalue()
    digest = hashlib.sha256(payload).hexdigest()[:8]
    with _flaky_server(payload, failures=2) as (url, count):
        spec = KnownWeights("se_resnet50", "test", f"{url}/weights-{digest}.pth", "caffe", "a test")
        path = fetch(spec, progress=False)
    assert count["n"] == 3 and path.read_bytes() == payload


@slow
def test_dataset_download_with_a_silent_server_is_one_line(tmp_path, capsys, monkeypatch):
    import torchvision

    monkeypatch.setenv("SENET_DOWNLOAD_TIMEOUT", "0.3")
    with _silent_server() as (url, _):
        monkeypatch.setattr(torchvision.datasets.FashionMNIST, "mirrors", [f"{url}/"])
        err = _fails(capsys, "train", *TINY, "--dataset", "fashion-mnist", "--data-dir", str(tmp_path / "data"),
                     "--download", "--out-dir", str(tmp_path), "--name", "r")  # fmt: skip
    assert "cannot download fashion-mnist" in err and "3 attempts failed" in err and "no data for 0.3 s" in err


def test_download_timeout_setting_is_checked(monkeypatch):
    from senet.files import download_retrying

    monkeypatch.setenv("SENET_DOWNLOAD_TIMEOUT", "forever")
    with pytest.raises(ValueError, match=r"SENET_DOWNLOAD_TIMEOUT='forever' must be seconds"):
        download_retrying(lambda: None, "x")


# -- readers that allocate no more than the file holds ----------------------------------------------------------------


def test_an_idx_gzip_bomb_is_refused_before_it_is_decompressed(tmp_path):
    """A gzip file of a few hundred KB whose header declares 10 images, followed by 256 MB of zeros."""
    header = bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 10, 28, 28)
    with gzip.open(tmp_path / "bomb.gz", "wb", compresslevel=9) as f:
        f.write(header + bytes(10 * 784))
        for _ in range(256):
            f.write(bytes(1 << 20))
    assert (tmp_path / "bomb.gz").stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"7,840 bytes of data for shape \(10, 28, 28\), the file has more"):
            read_idx(tmp_path / "bomb.gz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"{peak / 2**20:.0f} MiB allocated to refuse it"


def test_an_idx_header_that_promises_more_than_its_file_can_hold_is_refused_unread(tmp_path):
    header = bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 60000, 28, 28)
    (tmp_path / "raw").write_bytes(header + bytes(100))
    (tmp_path / "small.gz").write_bytes(gzip.compress(header + bytes(100)))
    for name in ("raw", "small.gz"):
        with pytest.raises(ValueError, match=r"promises 47,040,000 bytes .* more than a file of"):
            read_idx(tmp_path / name)
    write_idx(tmp_path / "ok", np.arange(24, dtype=np.uint8).reshape(2, 3, 4), gz=True)  # a valid file still reads
    assert read_idx(tmp_path / "ok").shape == (2, 3, 4)


def _pickle_of_array(declared: tuple[int, ...], dtype: str = "|u1", shape: tuple[int, ...] = (4, 4)) -> bytes:
    """numpy's own pickle of an array (protocol 2 opcodes, as CIFAR's files hold), whose rebuilder is asked for an
    array of shape ``declared`` and ``dtype`` (numpy asks for (0,) and int8) and whose state holds ``shape``, uint8,
    and 16 bytes of data."""
    p = pickle

    def glob(module: str, name: str) -> bytes:
        return p.GLOBAL + f"{module}\n{name}\n".encode()

    def ints(values: tuple[int, ...]) -> bytes:
        return p.MARK + b"".join(_int(n) for n in values) + p.TUPLE

    def dt(name: str) -> bytes:
        text = p.BINUNICODE + struct.pack("<I", len(name)) + name.encode()
        return glob("numpy", "dtype") + text + p.NEWFALSE + p.NEWTRUE + p.TUPLE3 + p.REDUCE

    array = glob("numpy.core.multiarray", "_reconstruct") + glob("numpy", "ndarray") + ints(declared) + dt(dtype)
    array += p.TUPLE3 + p.REDUCE
    state = p.MARK + _int(1) + ints(shape) + dt("|u1") + p.NEWFALSE + p.SHORT_BINBYTES + b"\x10" + bytes(16) + p.TUPLE
    body = p.EMPTY_DICT + p.BINUNICODE + struct.pack("<I", 4) + b"data" + array + state + p.BUILD + p.SETITEM
    return p.PROTO + b"\x02" + body + p.STOP


def _int(n: int) -> bytes:
    data = n.to_bytes((n.bit_length() + 8) // 8 or 1, "little", signed=True)
    return pickle.LONG1 + bytes([len(data)]) + data


def test_a_cifar_batch_declaring_an_enormous_array_is_refused(tmp_path):
    ok = _write(tmp_path / "ok", _pickle_of_array((0,)))
    assert pickle.loads(ok.read_bytes())["data"].shape == (4, 4)  # numpy's opcodes: the honest one loads
    assert read_cifar_batch(ok)["data"].shape == (4, 4)
    cases = [((10**12,), "|u1", "larger than the file"), ((2**20, 2**20), "|u1", "larger than the file"),
             ((1,), "|V1000000000", "larger than the file"), ((0,), "|u1", "buffer size does not match")]  # fmt: skip
    for declared, dtype, why in cases:
        shape = (10**12,) if why.startswith("buffer") else (4, 4)  # the last declares it in the array's state
        path = _write(tmp_path / "huge", _pickle_of_array(declared, dtype, shape))
        tracemalloc.start()
        try:
            with pytest.raises(ValueError, match=f"huge' is not a valid CIFAR batch file: .*{why}"):
                read_cifar_batch(path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 1 << 20, (declared, dtype)


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _cifar_with(tmp_path, data) -> str:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for p in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        batch = {"data": data if p == "data_batch_2" else np.zeros((4, 3072), np.uint8), "labels": [1, 2, 3, 4]}
        (folder / p).write_bytes(pickle.dumps(batch, protocol=2))
    return str(tmp_path)


def test_cifar_pixels_outside_0_to_255_are_refused_not_wrapped(tmp_path):
    bad = np.full((4, 3072), 300, np.int16)  # uint8 would wrap 300 to 44
    with pytest.raises(
        ValueError, match=r"data_batch_2' is not a valid CIFAR batch file: its pixel values \(int16, 300"
    ):
        load_datasets("cifar10", data_dir=_cifar_with(tmp_path / "a", bad))
    with pytest.raises(ValueError, match=r"pixel values \(float64"):
        load_datasets("cifar10", data_dir=_cifar_with(tmp_path / "b", np.full((4, 3072), 0.5)))
    whole = np.full((4, 3072), 255, np.int64)  # whole numbers within 0..255 in a wider type are the same pixels
    train, _, _ = load_datasets("cifar10", data_dir=_cifar_with(tmp_path / "c", whole))
    assert int(train.images.max()) == 255 and train.images.dtype == torch.uint8


@pytest.mark.parametrize("where", fast_first(["train", "eval", "predict"]))
def test_a_decompression_bomb_image_is_named_or_skipped(tmp_path, capsys, where):
    """A PNG of a few KB declaring 100,000 × 100,000 pixels (30 GB decoded): refused by name, or skipped and counted
    with --skip-bad-images; never decoded."""
    from PIL import Image

    root = tmp_path / "imgs"
    for split in ("train", "val"):
        for c in ("cat", "dog"):
            (root / split / c).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (20, 20), (40 * i, 100 if c == "cat" else 200, 0)).save(root / split / c / f"{i}.png")
    bomb = root / ("val" if where == "eval" else "train") / "dog" / "bomb.png"
    bomb.write_bytes(_png_declaring(100_000, 100_000))
    assert bomb.stat().st_size < 10_000
    base = ["--dataset", "imagefolder", "--data-dir", str(root), "--model", "resnet20", "--image-size", "16",
            "--batch-size", "4", "--epochs", "1", "--progress", "none", "--tensorboard", "false", "--out-dir",
            str(tmp_path)]  # fmt: skip
    if where == "train":
        err = _fails(capsys, "train", *base, "--name", "a")
        assert "unreadable image" in err and "bomb.png" in err and "decompression bomb" in err
        assert "--skip-bad-images" in err
        assert "skipped 1 unreadable image(s)" in _ok(capsys, "train", *base, "--name", "b", "--skip-bad-images")
        return
    bomb.rename(tmp_path / "bomb.png")  # train without it
    _ok(capsys, "train", *base, "--name", "r")
    if where == "eval":
        bomb.write_bytes((tmp_path / "bomb.png").read_bytes())
        err = _fails(capsys, "eval", str(tmp_path / "r"))
        assert "bomb.png" in err and "decompression bomb" in err
        assert '"skipped": 1' in _ok(capsys, "eval", str(tmp_path / "r"), "--skip-bad-images")
    else:
        err = _fails(capsys, "predict", str(tmp_path / "r"), str(tmp_path / "bomb.png"))
        assert "unreadable image" in err and "bomb.png" in err and "decompression bomb" in err


def test_absurd_sizes_are_refused_before_anything_is_allocated(tmp_path, capsys):
    out = ["--out-dir", str(tmp_path), "--name", "r"]
    for flag, value in [("--image-size", "1000000000"), ("--batch-size", "1000000000"), ("--epochs", "10000000000")]:
        err = _fails(capsys, "train", *TINY, flag, value, *out)
        assert flag.strip("-").replace("-", "_") in err and "expected a whole number from" in err
    assert "whole number from 1 to 8,192" in _fails(capsys, "profile", "resnet20", "--input-size", "100000")
    assert "whole number from 1 to 65,536" in _fails(capsys, "cost", "resnet20", "--batch", "10000000")
    assert not (tmp_path / "r").exists()


def test_read_image_checks_the_declared_size_before_decoding(tmp_path):
    from senet.data import UnreadableImage, read_image

    assert read_image(_write(tmp_path / "ok.png", _png_declaring(64, 32)), 1).shape == (
        1,
        32,
        64,
    )  # (and its imports are done before the measurement)
    for (w, h), needle in [((9000, 9000), "9000 × 9000 pixels, more than the 67,108,864 senet decodes"),
                           ((100_000, 100_000), "could be decompression bomb")]:  # fmt: skip
        path = _write(tmp_path / f"{w}.png", _png_declaring(w, h))
        tracemalloc.start()
        try:
            with pytest.raises(UnreadableImage, match=needle) as e:
                read_image(path, 3)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert e.value.path == str(path) and peak < 16 << 20
