"""senet cost: interleaved timing, exact activation memory, the SE / plain table."""

import json

import pytest
import torch
from torch import nn

from senet.analysis.cost import interleaved, markdown_table, measure_cost, saved_activation_bytes
from senet.cli import main


def test_saved_activation_bytes_is_exact():
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU())
    x = torch.randn(4, 10)
    # Linear keeps its input (4×10), ReLU its output (4×20); parameters are not activations.
    assert saved_activation_bytes(model, x) == 4 * (4 * 10 + 4 * 20)


def test_interleaved_times_every_function_each_round():
    calls = []
    times = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=4, warmup=1)
    assert len(times["a"]) == len(times["b"]) == 4
    assert calls[2:] == ["a", "b", "b", "a", "a", "b", "b", "a"]  # order rotates after warm-up
    with pytest.raises(ValueError, match="repeats=0"):
        interleaved({"a": lambda: None}, repeats=0)


def test_measure_cost_pairs_twins_and_writes_table(tmp_path, capsys):
    rows, env = measure_cost(["resnet20"], batch_sizes=(1, 2), train_batch=2, input_size=(1, 8, 8), repeats=2)
    assert [r.model for r in rows] == ["se_resnet20", "resnet20"]
    assert rows[0].params > rows[1].params and rows[0].activation_mb > rows[1].activation_mb
    assert set(rows[0].latency_ms) == {1, 2} and rows[0].train_step_ms > 0
    table = markdown_table(rows, env)
    assert "**SE / plain**" in table and f"{env['threads']} thread" in table
    assert main(["cost", "se_resnet20", "--input-size", "8", "--in-chans", "1", "--batch", "1", "--repeats", "2",
                 "--train-batch", "2", "--out", str(tmp_path)]) == 0  # fmt: skip
    data = json.loads((tmp_path / "cost.json").read_text())
    assert data["env"]["input_size"] == [1, 8, 8] and len(data["rows"]) == 2


def test_a_gather_excite_row_is_named_by_its_variant():
    from senet.analysis.cost import CostRow, _unit_label

    def row(options):
        return CostRow("se_resnet20", "resnet20", 1, 1, {1: 1.0}, None, 8, 0.0, options=options)

    assert _unit_label(row({"attention": "ge", "attention_options": {"variant": "theta_plus"}})) == "GE-θ⁺"
    assert _unit_label(row({"attention": "ge"})) == "GE-θ⁻"
    assert _unit_label(row({})) == "SE"
