"""What each attention unit adds to ResNet-50: parameters and MACs, for docs/attention.md.

One unit after the last BN of each of the 16 bottlenecks (torchvision/senet layout, 224² input): C = 256 at 56²
(3 blocks), 512 at 28² (4), 1024 at 14² (6), 2048 at 7² (3). MACs are ``torch.utils.flop_counter`` flops / 2 for
one image, as in REFERENCE.md: convolutions, linear layers and matrix products; pooling, normalisation, gates and
the scale multiply are not in that count (the "elementwise" column counts C·H·W per block, one pass over the map,
for scale). Runs in a few seconds: ``PYTHONPATH=src python benchmarks/attention_counts.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from senet.attention import (
    CBAM,
    ECA,
    SRM,
    CoordinateAttention,
    EffectiveSE,
    GatherExcite,
    GlobalContext,
    MultiSpectralAttention,
    SimAM,
    TripletAttention,
)
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from senet.layers import SqueezeExcite

# (C, H = W at 224², blocks) per stage of ResNet-50
STAGES = ((256, 56, 3), (512, 28, 4), (1024, 14, 6), (2048, 7, 3))
RESNET50_PARAMS = 25_557_032  # torchvision resnet50, sum(p.numel())

Build = Callable[[int, int, int], nn.Module]  # (C, H, stage index 0..3) → unit

UNITS: dict[str, Build] = {
    "SE r=16 (senet)": lambda c, h, i: SqueezeExcite(c, 16),
    "SE r=16, no FC biases": lambda c, h, i: SqueezeExcite(c, 16, bias=False),
    "ECA, k = ψ(C) = 5,5,5,7": lambda c, h, i: ECA(c),
    "ECA, k = 3,5,5,7 (released)": lambda c, h, i: ECA(c, k_size=(3, 5, 5, 7)[i]),
    "CBAM r=16 (eq. 2, no MLP bias)": lambda c, h, i: CBAM(c),
    "CBAM r=16, MLP biases (authors')": lambda c, h, i: CBAM(c, bias=True),
    "GE-θ⁻ global": lambda c, h, i: GatherExcite(c),
    "GE-θ⁻ e=8": lambda c, h, i: GatherExcite(c, extent=8),
    "GE-θ global": lambda c, h, i: GatherExcite(c, variant="theta", feat_size=h),
    "GE-θ e=8": lambda c, h, i: GatherExcite(c, variant="theta", extent=8),
    "GE-θ⁺ global r=16": lambda c, h, i: GatherExcite(c, variant="theta_plus", feat_size=h),
    "GC r=16 add": lambda c, h, i: GlobalContext(c),
    "GC r=16 add, W_k bias (authors')": lambda c, h, i: GlobalContext(c, attn_bias=True),
    "SRM": lambda c, h, i: SRM(c),
    "Coordinate attention r=32 (paper)": lambda c, h, i: CoordinateAttention(c, 32),
    "Coordinate attention r=16": lambda c, h, i: CoordinateAttention(c, 16),
    "FcaNet r=16, DCT 56/28/14/7": lambda c, h, i: MultiSpectralAttention(c, dct_size=h),
    "eSE": lambda c, h, i: EffectiveSE(c),
    "SimAM": lambda c, h, i: SimAM(c),
    "Triplet k=7": lambda c, h, i: TripletAttention(c),
    "Triplet k=3": lambda c, h, i: TripletAttention(c, kernel_size=3),
}


def macs(unit: nn.Module, c: int, h: int) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        unit.eval()(torch.randn(1, c, h, h))
    return counter.get_total_flops() // 2


def count(build: Build, stages=STAGES) -> tuple[int, int, int]:
    """(parameters, MACs, elementwise C·H·W) that the unit adds over the given stages."""
    params = mac = elementwise = 0
    for i, (c, h, blocks) in enumerate(stages):
        if blocks == 0:
            continue
        unit = build(c, h, i)
        params += blocks * sum(p.numel() for p in unit.parameters())
        mac += blocks * macs(unit, c, h)
        elementwise += blocks * c * h * h
    return params, mac, elementwise


def main() -> None:
    torch.manual_seed(0)
    print("| unit | added parameters | ResNet-50 total (10⁶) | (2²⁰) | added MACs |")
    print("|---|---:|---:|---:|---:|")
    for name, build in UNITS.items():
        params, mac, _ = count(build)
        total = RESNET50_PARAMS + params
        print(f"| {name} | {params:,} | {total / 1e6:.3f} | {total / 2**20:.2f} | {mac:,} |")
    print(f"\nscale pass, C·H·W summed over the 16 blocks: {count(UNITS['SimAM'])[2]:,}")
    c3_c5 = tuple((c, h, b if i else 0) for i, (c, h, b) in enumerate(STAGES))
    for name in ("GC r=16 add", "GC r=16 add, W_k bias (authors')"):
        params = count(UNITS[name], c3_c5)[0]
        print(f"{name} in c3–c5 only: +{params:,} → {(RESNET50_PARAMS + params) / 1e6:.3f}M")


if __name__ == "__main__":
    main()
