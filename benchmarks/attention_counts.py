"""What each attention unit adds to ResNet-50: parameters and multiply-adds, for docs/attention.md.

Each unit in SE's place (after the last BN of each of the 16 bottlenecks, `senet.create_model("se_resnet50",
attention=...)`, the paper's "original" layout, 224² input), as `senet.analysis.presets.PRESETS` uses it, plus the
variants the papers' figures need. Two MAC counts: ``torch.utils.flop_counter`` flops / 2 (convolutions, linear
layers and matrix products only: what the papers' thop / fvcore counts hold), and `senet.profile`'s, which adds one
per element for each pass over a map (SE's squeeze and scale, and each unit's poolings and products; the rule in
`senet.complexity`). Runs in under a minute: ``PYTHONPATH=src python benchmarks/attention_counts.py``.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

import senet
from senet.analysis.presets import PRESETS, preset_options

SIZE = (3, 224, 224)
EXTRA = {  # variants beside the presets: (label, options)
    "ECA, k = 3, 5, 5, 7 (the released ECA-Net50)": {"attention": "eca", "attention_options": {"k_size": [3, 5, 5, 7]}},
    "CBAM with the authors' MLP biases": {"attention": "cbam", "attention_options": {"bias": True}},
    "GE-θ⁻, extent 8": {"attention": "ge", "attention_options": {"extent": 8}},
    "GE-θ, extent 8": {"attention": "ge", "attention_options": {"variant": "theta", "extent": 8}},
    "GC with the authors' W_k bias": {"attention": "gc", "attention_options": {"attn_bias": True}},
    "GC in stages 2-4 only (GCNet's c3-c5)": {"attention": "gc", "se_stages": [2, 3, 4]},
    "coordinate attention, r = 16": {"attention": "coord"},
    "triplet attention, k = 3": {"attention": "triplet", "attention_options": {"kernel_size": 3}},
}


def counts(options: dict) -> tuple[int, int, int]:
    """(parameters, flop-counter MACs, senet MACs) of ResNet-50 with ``options`` (plain ResNet-50 for None)."""
    model = senet.create_model("se_resnet50" if options is not None else "resnet50", **(options or {})).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, *SIZE))
    profile = senet.profile(model, SIZE)
    return profile.params, counter.get_total_flops() // 2, profile.macs


def main() -> None:
    torch.manual_seed(0)
    base = counts(None)
    print(f"ResNet-50 ('original' layout): {base[0]:,} parameters, {base[1]:,} MACs (flop counter and senet)")
    print("\n| unit | added parameters | total (10⁶) | added MACs, flop counter | added MACs, senet |")
    print("|---|---:|---:|---:|---:|")
    rows = {p.label: preset_options("se_resnet50", name, SIZE) for name, p in PRESETS.items()} | EXTRA
    for label, options in rows.items():
        params, flops, macs = counts(options)
        print(f"| {label} | {params - base[0]:,} | {params / 1e6:.3f} | {flops - base[1]:,} | {macs - base[2]:,} |")


if __name__ == "__main__":
    main()
