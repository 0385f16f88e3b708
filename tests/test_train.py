"""The trainer: configuration and recipes, schedules, checkpoint packing, a real short run on Fashion-MNIST with
everything it writes, resumption rules, a non-finite loss, EMA and gradient accumulation."""

import csv
import json
import sys
import types

import pytest
import torch
from conftest import slow
from test_data import needs_fmnist

import senet
from senet.factory import load_model
from senet.files import read_weights
from senet.training import Inputs, NonFiniteLossError, RunResult, TrainConfig, evaluate, list_recipes, train
from senet.training.checkpoint import LAST_FILE, STATE_FILE, load_state, pack_state, unpack_state
from senet.training.schedule import LRSchedule

# A few seconds each on 2 cores: ResNet-20 on a fixed subset of the real Fashion-MNIST.
TINY = dict(model="resnet20", train_subset=512, test_subset=256, batch_size=64, lr=0.4, epochs=1, progress="none")


def tiny(tmp_path, **changes) -> TrainConfig:
    return TrainConfig.from_dict({**TINY, "out_dir": str(tmp_path), **changes})


# -- configuration -------------------------------------------------------------------------------------------


def test_unknown_field_is_named_with_a_hint(tmp_path):
    with pytest.raises(ValueError, match=r"unknown field 'learning_rate' in overrides; valid fields: model, "):
        TrainConfig.from_dict({"learning_rate": 0.1}, source="overrides")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: se_resnet20\nbatchsize: 64\n")
    with pytest.raises(ValueError, match=r"unknown field 'batchsize' in .*r\.yaml; did you mean batch_size"):
        TrainConfig.from_recipe(recipe)


def test_field_types_and_ranges():
    assert TrainConfig.from_dict({"weight_decay": "5e-4", "lr": 1}).weight_decay == 5e-4  # YAML reads 5e-4 as text
    with pytest.raises(ValueError, match=r"epochs .* must be int, got 'ten'"):
        TrainConfig.from_dict({"epochs": "ten"})
    with pytest.raises(ValueError, match=r"schedule='cosin'; choose from cosine"):
        TrainConfig(schedule="cosin")
    with pytest.raises(ValueError, match=r"label_smoothing=1\.5: expected a finite number, at least 0 and below 1"):
        TrainConfig(label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"random_erasing=-0\.1: expected a finite number, at least 0 and at most 1"):
        TrainConfig(random_erasing=-0.1)


def test_recipes_load_and_saved_config_is_a_recipe(tmp_path):
    assert {"fmnist-fast", "cifar", "imagenet"} <= set(list_recipes())
    paper = TrainConfig.from_recipe("imagenet")
    assert (paper.lr, paper.lr_batch, paper.milestones, paper.epochs) == (0.6, 1024, [30, 60, 90], 100)
    fast = TrainConfig.from_recipe("fmnist-fast", epochs=3, model_options={"r": 8})
    (tmp_path / "c.yaml").write_text(fast.to_yaml())
    assert TrainConfig.from_recipe(tmp_path / "c.yaml") == fast
    with pytest.raises(ValueError, match="unknown recipe 'fmnist'; close matches: fmnist-fast"):
        TrainConfig.from_recipe("fmnist")


def test_schedules():
    cos = LRSchedule("cosine", total_steps=100, steps_per_epoch=10, warmup_epochs=1, min_lr=0.1)
    assert cos(0) == pytest.approx(0.1) and cos(9) == 1.0 and cos(10) == 1.0 and cos(99) == pytest.approx(0.1, abs=1e-3)
    lin = LRSchedule("linear", total_steps=100, steps_per_epoch=10)
    assert lin(50) == pytest.approx(0.5)
    step = LRSchedule("step", total_steps=100, steps_per_epoch=10, milestones=[3, 6], gamma=0.1)
    assert [step(29), step(30), step(60)] == pytest.approx([1.0, 0.1, 0.01])
    plateau = LRSchedule("plateau", total_steps=100, steps_per_epoch=10, patience=1, gamma=0.5)
    for loss in (1.0, 0.9, 0.95, 0.95):
        plateau.observe(loss)
    assert plateau(0) == 0.5
    plateau2 = LRSchedule("plateau", total_steps=100, steps_per_epoch=10)
    plateau2.load_state_dict(json.loads(json.dumps(plateau.state_dict())))
    assert plateau2(0) == 0.5


@pytest.mark.parametrize("opt", ["sgd", "adamw"])
def test_optimizer_state_survives_packing(opt):
    model = senet.create_model("resnet20", num_classes=3, in_chans=1)
    o = (
        torch.optim.SGD(model.parameters(), 0.1, momentum=0.9)
        if opt == "sgd"
        else torch.optim.AdamW(model.parameters())
    )
    model(torch.randn(4, 1, 8, 8)).sum().backward()
    o.step()
    tensors = {}
    packed = json.loads(json.dumps(pack_state(o.state_dict(), "opt", tensors)))  # through JSON, as on disk
    o2 = type(o)(model.parameters(), 0.5)
    o2.load_state_dict(unpack_state(packed, tensors))
    for p in model.parameters():  # int-keyed optimizer state must come back under int keys, or torch drops it
        for k, v in o.state[p].items():
            assert torch.equal(o2.state[p][k], v)


# -- training runs ---------------------------------------------------------------------------------------------


@needs_fmnist
@slow
def test_short_run_learns_and_writes_its_folder(tmp_path):
    cfg = tiny(tmp_path, model="se_resnet20", epochs=2, train_subset=2048, model_options={"r": 4}, amp="bf16")
    result = train(cfg)
    d = cfg.run_dir
    assert {p.name for p in d.iterdir()} >= {
        "config.yaml",
        "metrics.csv",
        "curves.png",
        STATE_FILE,
        LAST_FILE,
        "best.safetensors",
        "summary.json",
    }
    rows = list(csv.DictReader((d / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and int(rows[-1]["step"]) == 2 * (2048 // 64)
    assert float(rows[1]["train_loss"]) < float(rows[0]["train_loss"])
    assert result.test_acc > 0.6  # 10 classes: chance is 0.1; two short epochs of real learning get well past it
    assert result.test_acc == pytest.approx(float(rows[-1]["test_acc"]))
    assert (
        result.params
        == senet.profile(senet.create_model("se_resnet20", num_classes=10, in_chans=1, r=4), (1, 28, 28)).params
    )
    # the weights rebuild themselves and reproduce the reported accuracy
    model, meta = load_model(result.weights)
    assert meta["name"] == "se_resnet20" and meta["options"] == {"r": 4} and meta["classes"][9] == "Ankle boot"
    assert meta["recipe"]["lr"] == cfg.lr and meta["image_size"] == 28
    _, test, _ = senet.data.load_datasets("fashion-mnist", test_subset=256)
    again = evaluate(model, test, Inputs(torch.device("cpu"), tuple(meta["mean"]), tuple(meta["std"]), amp="bf16"))
    assert again.n == 256 and again.acc == pytest.approx(result.test_acc)
    assert RunResult.load(d).test_acc == result.test_acc


@needs_fmnist
@slow
def test_flip_tta_takes_the_mean_probability_of_image_and_mirror_image():
    torch.manual_seed(0)
    model = senet.create_model("se_resnet20", num_classes=10, in_chans=1).eval()
    _, test, spec = senet.data.load_datasets("fashion-mnist", test_subset=96)
    inputs = Inputs(torch.device("cpu"), spec.mean, spec.std)
    got = evaluate(model, test, inputs, batch_size=40, tta="flip")  # uneven batches
    images, labels = test.images, test.labels
    with torch.no_grad():
        p = (model(inputs.prepare(images)).softmax(1) + model(inputs.prepare(images.flip(-1))).softmax(1)) / 2
    assert got.n == 96 and got.acc == pytest.approx((p.argmax(1) == labels).double().mean().item())
    assert got.acc5 == pytest.approx((p.topk(5).indices == labels[:, None]).any(1).double().mean().item())
    assert got.loss == pytest.approx(-p[torch.arange(96), labels].log().mean().item(), rel=1e-5)
    assert evaluate(model, test, inputs).loss != pytest.approx(got.loss)  # the mirror image did count
    with pytest.raises(ValueError, match="tta='flips'; choose from none, flip"):
        evaluate(model, test, inputs, tta="flips")
    with pytest.raises(ValueError, match="tta='crops'; choose from none, flip"):
        TrainConfig(tta="crops")


@needs_fmnist
@slow
def test_resume_rules_and_run_cache(tmp_path):
    cfg = tiny(tmp_path)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(cfg, resume=True)
    first = train(cfg)
    with pytest.raises(ValueError, match="already holds a run; resume it with --resume"):
        train(cfg)
    assert train(cfg, resume="auto").fingerprints == first.fingerprints  # cached: read back, not retrained
    with pytest.raises(ValueError, match=r"holds a run of another configuration \(lr 0\.4 → 0\.2\)"):
        train(cfg.replace(lr=0.2), resume="auto")
    longer = train(cfg.replace(epochs=2), resume="auto")  # more epochs: continues the same run
    assert [r["epoch"] for r in longer.history] == [1, 2] and longer.history[0] == first.history[0]


@needs_fmnist
@slow
def test_checkpoint_from_another_model_is_refused(tmp_path):
    train(tiny(tmp_path, name="run"))
    with pytest.raises(
        ValueError, match=r"cannot resume from .*state\.safetensors.: it holds resnet20 .*this run trains se_resnet20"
    ):
        train(tiny(tmp_path, name="run", model="se_resnet20"), resume=True)


@needs_fmnist
@slow
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = tiny(tmp_path, lr=1e38, checkpoint_every=1)  # weights of 1e37 overflow float32 in the next step
    with pytest.raises(
        NonFiniteLossError, match=r"training loss is (nan|inf) at step (\d+) \(epoch 1, batch \2\); stopped"
    ) as e:
        train(cfg)
    step = int(str(e.value).split("at step ")[1].split()[0])
    assert step >= 2
    # The checkpoints of steps 1..step-1 hold finite weights of 1e37 that diverge at any learning rate: the run's
    # checkpoint goes back to the last one evaluated with a finite loss, here the start of the run.
    state = load_state(cfg.run_dir)
    assert state.extra["step"] == 0 and "is back at the start of the run (step 0" in str(e.value)
    assert all(torch.isfinite(t).all() for t in state.model.values() if t.dtype.is_floating_point)


@needs_fmnist
@slow
def test_ema_weights_are_the_ones_saved_and_evaluated(tmp_path):
    cfg = tiny(tmp_path, ema_decay=0.9)
    train(cfg)
    state = load_state(cfg.run_dir)
    weights, _ = read_weights(cfg.run_dir / LAST_FILE)
    assert state.ema is not None and all(torch.equal(weights[k], state.ema[k]) for k in weights)
    assert not all(torch.equal(state.model[k], state.ema[k]) for k in weights)


@needs_fmnist
@slow
def test_gradient_accumulation_counts_optimizer_steps(tmp_path):
    result = train(tiny(tmp_path, batch_size=32, accum_steps=2))
    assert result.history[-1]["step"] == 512 // 64  # 16 micro-batches of 32, one optimizer step per two


@slow
def test_tensorboard_events_when_installed(tmp_path, monkeypatch):
    # tensorboard is optional and absent here: stand in for its SummaryWriter to check what the trainer logs.
    logged = []

    class SummaryWriter:
        def __init__(self, log_dir):
            logged.append(("dir", log_dir))

        def add_scalar(self, tag, value, step):
            logged.append((tag, step))

        def flush(self):
            pass

        def close(self):
            logged.append(("closed", None))

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=SummaryWriter))
    cfg = TrainConfig(dataset="synthetic", model="resnet20", image_size=8, train_subset=64, test_subset=16,
                      batch_size=32, epochs=2, progress="none", out_dir=str(tmp_path))  # fmt: skip
    train(cfg)
    assert logged[0] == ("dir", str(cfg.run_dir / "tb")) and logged[-1] == ("closed", None)
    assert ("test_acc", 1) in logged and ("test_acc", 2) in logged and ("train_loss", 2) in logged
