import os

# Triton's interpreter runs senet.fused's kernels on CPU tensors (tests/test_triton.py). It must be chosen before
# triton is first imported: triton's own library functions are built for the interpreter or the GPU at import time.
os.environ.setdefault("TRITON_INTERPRET", "1")

import http.server
import threading
from functools import partial

import pytest
import torch
from pytest import ParameterSet

# Two cores: keep intra-op threads at what the machine has, and results repeatable; under pytest-xdist (`make test`
# and `make test-fast` run one worker per core) each worker takes its share of the cores.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1) // _WORKERS))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# The fast tier (`make test-fast`, `pytest -m "not slow"`) runs everything but what is marked slow: runs of real
# training (in subprocesses, and in-process runs of more than a second), the repetition of a per-model check over
# every registered model, of which it keeps one model per family, and the repetition of one assertion over many
# cases, of which it keeps the first (`fast_first`). A test that takes more than about a second on 2 cores is slow.
slow = pytest.mark.slow


def fast_first(values: list, n: int = 1) -> list:
    """``values`` of a parametrize as pytest params: the first ``n`` in the fast tier, the others marked slow, for the
    checks that repeat one assertion over many cases (the full suite runs every case). As with several argnames, a
    tuple is one value per argument."""
    out = []
    for i, v in enumerate(values):
        if i < n:
            out.append(v)
        elif isinstance(v, ParameterSet):
            out.append(pytest.param(*v.values, marks=(*v.marks, slow), id=v.id))
        else:
            out.append(pytest.param(*(v if isinstance(v, tuple) else (v,)), marks=slow))
    return out


# Families whose smallest network is too large for the fast tier: VGG-16's 138M parameters take seconds in any
# check that computes or exports (17 s for ONNX export on 2 cores); the full suite runs them.
HEAVY_FAMILIES = {"vgg"}


def one_per_family(names: list[str], others: bool = True) -> list:
    """``names`` as pytest params: the first SE model of each family (in registration order, the smallest) in the
    fast tier, except the heavy families; every other model marked slow (``others``) or left out."""
    import senet

    fast = {}
    for n in senet.list_models(se=True, sort=False):
        fast.setdefault(senet.get_entry(n).family, n)
    keep = {n for family, n in fast.items() if family not in HEAVY_FAMILIES}
    return [pytest.param(n, marks=() if n in keep else slow) for n in names if others or n in fast.values()]


# Known weights served over HTTP from a local folder, exactly as a download would be (tests/test_weights.py,
# tests/test_transfer.py); torch.hub's cache in a fresh folder.


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    return tmp_path / "hub" / "checkpoints"
