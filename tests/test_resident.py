"""``data_on_device``: the in-memory dataset held on the training device (`senet.data.ResidentImages`).

What "the same first steps" means here: the device path draws each batch's augmentation from the same seed with the
same host generator as the host path (`TensorImages.draws`) and only applies it elsewhere, so its batches are equal to
the host path's *with augmentation on* (crop, flip, erasing, resize), and a whole run with deterministic kernels on
the CPU ends with bit-identical weights and metrics. A CPU test cannot run CUDA kernels; there the same draws meet
other kernels, whose results are equal up to floating-point order.
"""

import pytest
import torch
from conftest import slow
from test_cli_train import kill_mid_epoch_and_resume, metrics_without_times, same_weights, train_run
from test_data import needs_fmnist

from senet.data import BatchKey, EpochBatches, ResidentImages, TensorImages, draw_augmentation, load_datasets
from senet.training import TrainConfig
from senet.training.checkpoint import LAST_FILE, STATE_FILE, load_state


def _images(n=40, c=3, side=12):
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, c, side, side), dtype=torch.uint8, generator=g)
    return images, torch.randint(0, 10, (n,), generator=g)


@pytest.mark.parametrize(
    "augment", [dict(padding=4, erasing=0.5), dict(padding=0), dict(padding=None), dict(padding=2, size=16)]
)
def test_device_batches_equal_the_host_batches_with_augmentation_on(augment):
    host = TensorImages(*_images(), **augment)
    resident = ResidentImages(host, "cpu")
    for shuffle in (True, False):  # training epochs (two, different orders), and evaluation with a ragged last batch
        sampler = EpochBatches(len(host), 16, shuffle=shuffle, seed=3)
        for epoch in (0, 1):
            sampler.set_epoch(epoch, start=epoch)  # epoch 1 resumes after its first batch
            keys = list(sampler)
            got = list(resident.batches(sampler))
            assert len(got) == len(keys) == len(resident.batches(sampler)) > 0
            for key, batch in zip(keys, got, strict=True):
                want = host.__getitems__(key)
                assert torch.equal(batch.images, want.images) and torch.equal(batch.labels, want.labels)


def test_the_augmentation_crops_mirrors_and_erases_as_drawn():
    """Every augmented image is the window of the padded image at its drawn offset, mirrored when drawn so, and the
    draws cover every offset and both mirrors."""
    images, labels = _images(n=64, c=1, side=6)
    host = TensorImages(images, labels, padding=2)
    draws = host.draws(7, images.shape)
    out = host.__getitems__(BatchKey(7, list(range(64)))).images
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for i, (dy, dx, flip) in enumerate(draws.crop.tolist()):
        window = padded[i, :, dy : dy + 6, dx : dx + 6]
        assert torch.equal(out[i], window.flip(-1) if flip else window)
    assert set(draws.crop[:, 0].tolist()) == set(range(5)) == set(draws.crop[:, 1].tolist())
    assert 16 < draws.crop[:, 2].sum() < 48
    erased = draw_augmentation(torch.Generator().manual_seed(0), (200, 1, 6, 6), None, 0.25)
    assert erased.crop is None and erased.noise.shape == (200, 1, 6, 6) and erased.noise.dtype == torch.uint8
    y0, eh, x0, ew, on = erased.box.unbind(1)
    assert (y0 >= 0).all() and (y0 + eh <= 6).all() and (x0 >= 0).all() and (x0 + ew <= 6).all() and (eh >= 1).all()
    assert 25 < on.sum() < 75  # p = 0.25 of 200


def test_image_folders_are_refused():
    with pytest.raises(ValueError, match=r"data_on_device holds in-memory datasets .* use data_on_device=false"):
        TrainConfig(dataset="imagefolder", data_on_device=True)
    with pytest.raises(TypeError, match=r"in-memory datasets .* not list"):
        ResidentImages([], "cpu")


@slow
@needs_fmnist
def test_the_resident_test_set_is_the_host_test_set():
    _, test, _ = load_datasets("fashion-mnist", test_subset=300)
    resident = ResidentImages(test, "cpu")
    sampler = EpochBatches(len(test), 128, shuffle=False)
    host = torch.cat([test.__getitems__(k).images for k in sampler])
    assert torch.equal(torch.cat([b.images for b in resident.batches(sampler)]), host)


@pytest.fixture(scope="module")
def host_run(tmp_path_factory):
    """test_cli_train's uninterrupted run on the host path."""
    return train_run(tmp_path_factory.mktemp("host"), "ref")


@slow
@needs_fmnist
def test_a_device_run_is_the_host_run_bit_for_bit_and_resumes_bit_identically_after_sigkill(tmp_path, host_run):
    """The run of test_cli_train (ResNet-20, real Fashion-MNIST subset, crop + flip, 2 epochs, deterministic) with
    data_on_device: SIGKILLed mid-epoch and resumed, it ends with the host run's weights and metrics, bit for bit."""
    kill_mid_epoch_and_resume(tmp_path / "d", "--data-on-device")
    assert load_state(tmp_path / "d" / STATE_FILE).extra["config"]["data_on_device"] is True
    assert same_weights(tmp_path / "d" / LAST_FILE, host_run / LAST_FILE)
    assert metrics_without_times(tmp_path / "d") == metrics_without_times(host_run)
    assert {"summary.json", "best.safetensors", "curves.png", "config.yaml"} <= {
        p.name for p in (tmp_path / "d").iterdir()
    }
