"""String -> layer factories shared by the networks (norms, padding)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

NORMS = ("instance", "batch", "none")
PADDINGS = ("reflect", "replicate", "zero")

NormFactory = Callable[[int], nn.Module]


def norm_factory(norm: str) -> NormFactory:
    """Return a callable ``channels -> norm layer``.

    Instance norm follows the CycleGAN reference: no affine parameters and no running
    statistics, so it contributes no state-dict entries. Batch norm is affine with running
    statistics (pix2pix).
    """
    if norm == "instance":
        return lambda c: nn.InstanceNorm2d(c, affine=False, track_running_stats=False)
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
