"""How batch norm and dropout behave at test time: plain ``eval``, or the pix2pix authors' ``train_like``.

The authors' ``test.py`` calls ``model.eval()`` only when ``--eval`` is given. By default their
networks are tested in train mode, and for pix2pix (batch norm, dropout 0.5 in the U-Net's inner
blocks) that means two things, both intended ("we apply dropout at test time", Isola et al. 2017,
section 3.1, the generator's only source of noise):

- batch norm normalises with the statistics of the test batch, which ``test.py`` fixes at one
  image: per-image statistics, as instance norm with the batch norm's affine weights would;
- dropout is active.

``train_like`` reproduces that without putting any module in train mode:

- batch norm layers compute per-image statistics (``group_norm`` with one group per channel, the
  same numbers as a train-mode batch norm on a batch of one), so *any* batch size gives each
  image exactly what it gets alone, and the running statistics are neither used nor updated;
- dropout masks come from a seeded CPU generator keyed on (seed, image index, dropout layer), so
  the k-th image a model processes after :func:`apply_test_mode` gets the same noise on every
  device and at every batch size, and different seeds give different noise. Torch's global
  random state is never touched.

``eval`` is ``model.eval()``: running statistics, no dropout, deterministic. For CycleGAN's
generators (instance norm without running statistics, no dropout) the two modes agree.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

TEST_MODES = ("eval", "train_like")

# Other dropout layers would stay silently inactive in train_like; refuse them instead.
_UNSUPPORTED_DROPOUT = (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)

_APPLIED: weakref.WeakKeyDictionary[nn.Module, AppliedTestMode] = weakref.WeakKeyDictionary()


def check_test_mode(mode: str) -> str:
    if mode not in TEST_MODES:
        raise ValueError(f"unknown test mode {mode!r}; expected one of {', '.join(TEST_MODES)}")
    return mode


def authors_test_mode(architecture: Mapping[str, Any]) -> str:
    """The mode the authors' ``test.py`` runs a generator in by default (train mode, no ``--eval``).

    Train mode differs from eval only where there is batch norm or dropout; elsewhere (the
    CycleGAN generators) this says ``eval``, which computes the same thing.
    """
    return "train_like" if architecture.get("norm") == "batch" or architecture.get("dropout") else "eval"


def _batch_norm_per_image(module: nn.Module, args: tuple[Any, ...], output: Tensor) -> Tensor:
    """Forward hook: replace the eval-mode output with per-image statistics (batch norm on a batch of one)."""
    assert isinstance(module, nn.BatchNorm2d)
    x = args[0]
    return F.group_norm(x, x.shape[1], module.weight, module.bias, module.eps)


class AppliedTestMode:
    """What :func:`apply_test_mode` installed on a model: the mode, the seed and an image counter.

    ``images_seen`` counts the images of every forward call of the model; dropout noise for an
    image depends on (seed, its index in that count, the dropout layer). :meth:`reset` starts
    the count again (the next image is image 0); :meth:`remove` takes the hooks off, leaving
    the model in plain eval mode.
    """

    def __init__(self, mode: str, seed: int) -> None:
        self.mode = mode
        self.seed = seed
        self.images_seen = 0
        self._batch_start = 0
        self._handles: list[RemovableHandle] = []

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.seed = _check_seed(seed)
        self.images_seen = 0
        self._batch_start = 0

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _install(self, model: nn.Module) -> None:
        self._handles.append(model.register_forward_pre_hook(self._count_images, with_kwargs=True))
        dropout_layers = 0
        for name, m in model.named_modules():
            if isinstance(m, _UNSUPPORTED_DROPOUT):
                raise ValueError(f"train_like test mode handles nn.Dropout only; {name or 'the model'} is a {type(m).__name__}")
            if isinstance(m, nn.BatchNorm2d):
                self._handles.append(m.register_forward_hook(_batch_norm_per_image))
            elif isinstance(m, nn.Dropout):
                self._handles.append(m.register_forward_hook(self._dropout_hook(dropout_layers)))
                dropout_layers += 1

    def _count_images(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        x = args[0] if args else next(iter(kwargs.values()))
        self._batch_start = self.images_seen
        self.images_seen += int(x.shape[0])

    def _dropout_hook(self, layer: int) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Tensor) -> Tensor:
            assert isinstance(module, nn.Dropout)
            return output * self.dropout_mask(output, layer, module.p)

        return hook

    def dropout_mask(self, output: Tensor, layer: int, p: float) -> Tensor:
        """The mask (0 or 1 / (1 - p), as ``nn.Dropout`` scales) for the batch now in the forward pass."""
        keep = 1.0 - p
        if keep <= 0.0:
            return torch.zeros_like(output)
        masks = []
        for k in range(output.shape[0]):
            generator = torch.Generator().manual_seed(_mask_seed(self.seed, self._batch_start + k, layer))
            # uniform draws from torch's own CPU generator, moved afterwards: the same masks on every device
            masks.append(torch.rand(output.shape[1:], generator=generator) < keep)
        return (torch.stack(masks).float() / keep).to(device=output.device, dtype=output.dtype)


def _check_seed(seed: int) -> int:
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return seed


def _mask_seed(seed: int, image: int, layer: int) -> int:
    """A 63-bit generator seed mixed from (seed, image, layer) by numpy's SeedSequence (no collisions in practice)."""
    state = np.random.SeedSequence([seed, image, layer]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def apply_test_mode(model: nn.Module, mode: str, *, seed: int = 0) -> AppliedTestMode:
    """Put ``model`` in eval mode and, for ``train_like``, install the authors' test-time behaviour.

    Contract for the caller (the inference pipeline):

    - call it on the module that will run, after copying, casting, moving and converting it to
      channels_last (hooks are per module object), and before ``torch.compile``;
    - batches of any size are fine: statistics are per image, and dropout noise depends on an
      image's position in the sequence of images the model has processed (call ``reset()`` to
      make a new request start at image 0), not on how they were batched;
    - tiles are images: tiling an image under ``train_like`` gives each tile its own statistics
      and noise, which does not match the untiled result, so do not tile in this mode;
    - applying a mode again replaces the previous one (hooks are never stacked).

    ``eval`` leaves only ``model.eval()``.
    """
    check_test_mode(mode)
    _check_seed(seed)
    previous = _APPLIED.pop(model, None)
    if previous is not None:
        previous.remove()
    model.eval()
    applied = AppliedTestMode(mode, seed)
    if mode == "train_like":
        try:
            applied._install(model)
        except ValueError:
            applied.remove()
            raise
        _APPLIED[model] = applied
    return applied


__all__ = ["TEST_MODES", "AppliedTestMode", "apply_test_mode", "authors_test_mode", "check_test_mode"]
