"""The contract between a training method and the trainer.

A method is one module that registers a :class:`MethodSpec`: its settings (a ``model`` and an
``objective`` dataclass with its own defaults, plus overrides of the shared sections' defaults),
the kind of data it trains on, and a builder. The built :class:`Method` owns its networks and
says, per optimisation phase, which networks that phase trains, with which optimiser settings,
and what its loss is. It may look at the first batch before training (:meth:`Method.setup`),
and names the generators it releases. The trainer owns everything else: devices, optimisers,
schedules, mixed precision, gradient switching, distribution, logging, samples, evaluation,
checkpoints and releases. During a phase only that phase's networks require gradients (so, for
CycleGAN, the discriminators are frozen while the generators are updated).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from brushwork.nn.modes import authors_test_mode
from brushwork.registry import Registry
from brushwork.release import ReleaseConfig, build_from_architecture, release_config_for

if TYPE_CHECKING:
    from brushwork.config import TrainConfig


@dataclass(frozen=True)
class Phase:
    """One optimisation phase: the named networks it trains, updated by one Adam.

    ``lr`` and ``betas`` override the run's ``optim.lr`` / ``optim.beta1, beta2`` for this phase
    (None: the run's); the learning-rate schedule applies to every phase alike. ``forward``
    names networks that run with gradients in this phase although it does not update them: a
    later phase's loss goes through the graph they build here (pix2pix and DCGAN update D first
    on G's output, then G on the same output, as their authors' code does). Their gradients
    from this phase's loss, if any, are discarded when their own phase starts.
    """

    name: str
    networks: tuple[str, ...]
    lr: float | None = None
    betas: tuple[float, float] | None = None
    forward: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReleaseSpec:
    """What a release artifact needs to rebuild and describe one generator.

    ``source_domain`` is None for a generator of noise (its pipeline is ``noise-sampler``).
    """

    network: str  # key in Method.networks
    architecture: dict[str, Any]  # {"name": registry name, **constructor kwargs}
    source_domain: str | None
    target_domain: str
    pipeline: str = "image-to-image"
    #: the pixel range the released network takes and returns
    input_range: tuple[float, float] = (-1.0, 1.0)
    #: input sides must be a multiple of this (None: what the generator named in ``architecture`` needs)
    size_multiple: int | None = None

    def release_config(self, direction: str, *, train_size: int, provenance: dict[str, Any]) -> ReleaseConfig:
        """The ``config.json`` of this generator's release folder."""
        return release_config_for(
            self.architecture, direction=direction, source=self.source_domain or "noise", target=self.target_domain,
            train_size=train_size, pipeline=self.pipeline, input_range=self.input_range, size_multiple=self.size_multiple,
            test_mode=authors_test_mode(self.architecture),  # pix2pix: the authors' train-mode test (brushwork.nn.modes)
            provenance=provenance,
        )  # fmt: skip


class Method(ABC):
    """Base class of training methods (CycleGAN, CUT, pix2pix, DCGAN, ...)."""

    #: every trainable network, keyed by name; the trainer moves, wraps and checkpoints them
    networks: nn.ModuleDict

    def setup(self, batch: dict[str, Tensor]) -> None:  # noqa: B027 - optional hook
        """Called once with a batch of training data before the optimisers are built.

        A method may create networks here whose shape depends on the data (CUT's projection
        head). It runs on every start, resumed or not, before a checkpoint is loaded, and must
        create the same networks from any batch of the run's data.
        """

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

    def frozen_networks(self) -> Mapping[str, nn.Module]:
        """Networks the method runs but never trains (AdaIN's VGG encoder), keyed by name.

        The trainer moves them to the device and memory format with the others, keeps them in
        eval mode without gradients (a loss still back-propagates *through* them), never wraps
        them in DDP or compiles them, and keeps their weights in checkpoints, so that a resume or
        an export uses exactly the weights the run was trained with.
        """
        return {}

    def release_specs(self) -> dict[str, ReleaseSpec]:
        """Generators worth releasing for inference, keyed by release name (``AtoB``, ``generator``)."""
        return {}

    def release_state(self, name: str, states: Mapping[str, Mapping[str, Tensor]]) -> dict[str, Tensor]:
        """The state dict of release ``name``'s network (built from its spec's ``architecture``).

        ``states`` holds the state dict of every network and frozen network by name, from the
        live method or from a checkpoint. By default the release is the spec's network as it is;
        a method whose released network combines several (AdaIN: encoder + decoder) overrides this.
        """
        return dict(states[self.release_specs()[name].network])

    def release_network(self, name: str, states: Mapping[str, Mapping[str, Tensor]], where: str) -> nn.Module:
        """Release ``name``'s network rebuilt from its spec's architecture and loaded strictly with
        :meth:`release_state`, in eval mode. Rebuilding it, rather than saving the trained module,
        proves that a release folder rebuilds the network it holds."""
        net = build_from_architecture(self.release_specs()[name].architecture, where)
        net.load_state_dict(self.release_state(name, states), strict=True)
        return net.eval()

    def release_provenance(self) -> dict[str, Any]:
        """What a release records of the method's state besides the run's config (AdaIN: the
        source of its encoder's weights). Called after :meth:`load_extra_state` when exporting
        from a checkpoint."""
        return {}

    def extra_state(self) -> dict[str, Any]:
        """State besides the networks that a resume needs (e.g. an image pool)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        del state

    def train(self, mode: bool = True) -> None:
        self.networks.train(mode)


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its settings types, its data kind, its defaults and its builder.

    ``defaults`` override the shared sections' defaults for this method (``{"optim": {"epochs":
    150}}``); the resolution order is dataclass defaults < ``defaults`` < YAML < flags < --set.
    ``check`` validates settings that span sections (e.g. a size the generator needs).
    """

    name: str
    summary: str
    model: type
    objective: type
    data_kind: str  # a name in brushwork.data.builders.DATASETS
    build: Callable[[TrainConfig], Method]
    defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    check: Callable[[TrainConfig], None] = lambda config: None


METHODS: Registry[MethodSpec] = Registry("method")


def register_method(spec: MethodSpec) -> MethodSpec:
    METHODS.add(spec.name, spec)
    return spec


def method_spec(name: str) -> MethodSpec:
    return METHODS.entry(name)


def build_method(config: TrainConfig) -> Method:
    return method_spec(config.method).build(config)
