"""The contract between a training method and the trainer.

A method owns its networks and says, per optimisation phase, which networks that phase trains
and what its loss is. The trainer owns everything else: devices, optimisers, schedules, mixed
precision, gradient switching, distribution, logging and checkpoints. During a phase only the
parameters of that phase's networks require gradients (so, for CycleGAN, the discriminators are
frozen while the generators are updated).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from brushwork.registry import Registry

if TYPE_CHECKING:
    from brushwork.config import TrainConfig


@dataclass(frozen=True)
class Phase:
    """One optimisation phase: the named networks it trains, updated by one optimiser."""

    name: str
    networks: tuple[str, ...]


@dataclass(frozen=True)
class ReleaseSpec:
    """What a release artifact needs to rebuild and describe one generator."""

    network: str  # key in Method.networks
    architecture: dict[str, Any]  # {"name": registry name, **constructor kwargs}
    source_domain: str
    target_domain: str


class Method(ABC):
    """Base class of training methods (CycleGAN, ...)."""

    #: every trainable network, keyed by name; the trainer moves, wraps and checkpoints them
    networks: nn.ModuleDict
    #: the kind of training data it needs (a name in ``brushwork.data.builders.DATASETS``)
    dataset_kind: str = "unpaired"

    @abstractmethod
    def phases(self) -> list[Phase]:
        """The optimisation phases of one iteration, in order."""

    @abstractmethod
    def phase_loss(self, phase: str, batch: dict[str, Tensor], ctx: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss of ``phase`` and its named parts (detached copies are fine).

        ``ctx`` lives for one iteration and carries results from earlier phases to later ones.
        """

    @abstractmethod
    def visuals(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Images for a sample grid, each (N, 3, H, W) in [-1, 1], in display order."""

    def release_specs(self) -> dict[str, ReleaseSpec]:
        """Generators worth releasing for inference, keyed by direction name (``AtoB``)."""
        return {}

    def extra_state(self) -> dict[str, Any]:
        """State besides the networks that a resume needs (e.g. an image pool)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        del state

    def train(self, mode: bool = True) -> None:
        self.networks.train(mode)


METHODS: Registry[Method] = Registry("method")

MethodBuilder = Callable[["TrainConfig"], Method]


def build_method(config: TrainConfig) -> Method:
    return METHODS.build(config.method, config=config)
