"""String -> layer factories shared by the networks (norms, padding)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NORMS = ("instance", "batch", "none")
PADDINGS = ("reflect", "replicate", "zero")

NormFactory = Callable[[int], nn.Module]


class InstanceNorm2d(nn.InstanceNorm2d):
    """``nn.InstanceNorm2d`` (same state) with faster kernels for the cases brushwork runs.

    torch's instance norm views the batch as one batch-norm sample of N x C channels, which makes
    a channels_last input contiguous (a full copy in and out, and the next convolution converts
    back). Two other kernels compute the same statistics (biased variance over H x W for each
    channel of each sample) faster, measured in docs/benchmarks.md:

    - without gradients (inference), ``group_norm`` with one group per channel: 3-9x faster than
      torch's instance norm on the CPU, in both layouts;
    - training on a channels_last input, batch norm one sample at a time: no layout copy (the
      group-norm backward is slow in channels_last).

    Training in NCHW, and the running-statistics variant, take torch's own path.
    """

    def forward(self, x: Tensor) -> Tensor:
        if self.track_running_stats or x.dim() != 4:
            return super().forward(x)
        needs_grad = torch.is_grad_enabled() and (x.requires_grad or (self.weight is not None and self.weight.requires_grad))
        if not needs_grad:
            return F.group_norm(x, x.shape[1], self.weight, self.bias, self.eps)
        if x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
            return super().forward(x)
        parts = [F.batch_norm(s, None, None, self.weight, self.bias, training=True, eps=self.eps) for s in x.split(1)]
        return parts[0] if len(parts) == 1 else torch.cat(parts)


def norm_factory(norm: str) -> NormFactory:
    """Return a callable ``channels -> norm layer``.

    Instance norm follows the CycleGAN reference: no affine parameters and no running
    statistics, so it contributes no state-dict entries. Batch norm is affine with running
    statistics (pix2pix).
    """
    if norm == "instance":
        return lambda c: InstanceNorm2d(c, affine=False, track_running_stats=False)
    if norm == "batch":
        return lambda c: nn.BatchNorm2d(c, affine=True, track_running_stats=True)
    if norm == "none":
        return lambda c: nn.Identity()
    raise ValueError(f"unknown norm {norm!r}; expected one of {', '.join(NORMS)}")


def conv_bias(norm: str) -> bool:
    """Convolutions carry a bias unless a batch norm follows (its shift makes the bias redundant)."""
    return norm != "batch"


def padding_layers(padding: str, size: int) -> tuple[list[nn.Module], int]:
    """Explicit padding layers and the conv's own ``padding`` argument for ``padding`` mode."""
    if padding == "reflect":
        return [nn.ReflectionPad2d(size)], 0
    if padding == "replicate":
        return [nn.ReplicationPad2d(size)], 0
    if padding == "zero":
        return [], size
    raise ValueError(f"unknown padding {padding!r}; expected one of {', '.join(PADDINGS)}")
