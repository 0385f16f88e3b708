"""Weights files: round trip with metadata, atomic writes, truncated and malicious files refused."""

import os
import pickle

import pytest
import torch

import senet
from senet.factory import load_model
from senet.files import atomic_write_text, read_weights, safe_torch_load, save_weights


def test_round_trip_rebuilds_model_with_options(tmp_path):
    model = senet.create_model("se_resnet20", num_classes=5, in_chans=1, r=4, se_stages=[2, 3]).eval()
    path = save_weights(tmp_path / "w.safetensors", model, {**model.model_config, "mean": [0.5], "std": [0.25]})
    loaded, meta = load_model(path)
    assert meta["mean"] == [0.5] and meta["options"]["r"] == 4
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(loaded.eval()(x), model(x))
    assert loaded.layer1[0].se is None and loaded.layer2[0].se.reduced == 8


def test_truncated_safetensors_is_a_clear_error(tmp_path):
    model = senet.create_model("resnet20")
    path = save_weights(tmp_path / "w.safetensors", model, model.model_config)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        read_weights(path)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/senet_pwned",))


def test_malicious_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": _Evil()}, path)
    with pytest.raises(ValueError, match="refusing to load"):
        safe_torch_load(path)
    assert not os.path.exists("/tmp/senet_pwned")
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(ValueError, match="refusing to load"):
        safe_torch_load(raw)
    with pytest.raises(ValueError, match="a pickle"):
        read_weights(path)


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path):
    path = atomic_write_text(tmp_path / "a.txt", "old")

    def boom(tmp):
        tmp.write_text("partial")
        raise RuntimeError("killed")

    from senet.files import atomic_write

    with pytest.raises(RuntimeError):
        atomic_write(path, boom)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_write_gives_the_permissions_of_an_ordinary_file(tmp_path):
    old = os.umask(0o022)
    try:
        written = atomic_write_text(tmp_path / "report.md", "x")
        (tmp_path / "plain.md").write_text("x")
    finally:
        os.umask(old)
    assert written.stat().st_mode & 0o777 == (tmp_path / "plain.md").stat().st_mode & 0o777 == 0o644
