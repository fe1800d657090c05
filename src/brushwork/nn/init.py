"""Weight initialisation schemes of the reference implementation."""

from __future__ import annotations

from torch import nn

INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal")


def init_weights(net: nn.Module, *, init_type: str = "normal", gain: float = 0.02) -> nn.Module:
    """Initialise conv/linear weights with ``init_type`` (std or gain ``gain``), biases to 0.

    Batch-norm scales are drawn from N(1, gain) and shifts set to 0, as in the reference.
    """
    if init_type not in INIT_TYPES:
        raise ValueError(f"unknown init_type {init_type!r}; expected one of {', '.join(INIT_TYPES)}")

    def apply(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            if init_type == "normal":
                nn.init.normal_(m.weight, 0.0, gain)
            elif init_type == "xavier":
                nn.init.xavier_normal_(m.weight, gain=gain)
            elif init_type == "kaiming":
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            else:
                nn.init.orthogonal_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)

    net.apply(apply)
    return net
