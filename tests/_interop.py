"""Shared by the interop tests: give a randomly initialised network the BatchNorm state of a trained one."""

import torch


@torch.no_grad()
def trained_like(model: torch.nn.Module, x: torch.Tensor | None = None) -> torch.nn.Module:
    """Random BN scales and shifts and random biases (not the initial 1/0, nor timm's zero-initialised last BN of a
    block, which would hide the block's branch), and BN statistics: those of the batch ``x`` (so activations stay
    well scaled through any depth), or random ones. A swapped or dropped tensor then shows in the outputs.
    Returns the model in eval mode."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.weight.uniform_(0.5, 1.5)
            m.bias.normal_(0, 0.1)
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.momentum = None  # cumulative average: one batch sets its own statistics
            m.num_batches_tracked.zero_()
        elif isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and m.bias is not None:
            m.bias.normal_(0, 0.1)
    if x is not None:
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
        model.train()(x)
    return model.eval()
