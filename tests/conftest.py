import os

# Triton's interpreter runs senet.fused's kernels on CPU tensors (tests/test_triton.py). It must be chosen before
# triton is first imported: triton's own library functions are built for the interpreter or the GPU at import time.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch

# Two cores: keep intra-op threads at what the machine has, and results repeatable.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
