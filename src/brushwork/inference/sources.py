"""Where a generator comes from: release folders, training runs, official ``.pth`` files, names.

:func:`load_source` turns any of these into ``(generator, ReleaseConfig)``:

- a release folder (``config.json`` + ``model.safetensors``);
- a training run folder (``config.yaml`` + ``checkpoints/``) plus a direction (``AtoB``/``BtoA``);
- a bare state dict in the official CycleGAN/pix2pix/CUT layout (``latest_net_G_A.pth``,
  ``latest_net_G.pth``, published models): a ResNet (plain or CUT's anti-aliased one) or U-Net
  generator whose architecture is read from its keys and shapes (:func:`infer_architecture`);
- the name of a published CycleGAN model (``horse2zebra``, ``style_monet``...), pix2pix model
  (``pix2pix_facades_label2photo``...) or CUT/FastCUT model (``cut_horse2zebra``...), taken
  from the local cache (``$BRUSHWORK_CACHE``, else ``~/.cache/brushwork``) and downloaded when
  missing.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import ssl
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from torch import Tensor, nn

from brushwork.inference.cut_checkpoints import CutCheckpointError, infer_cut_architecture
from brushwork.nn.modes import authors_test_mode, check_test_mode
from brushwork.release import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    ReleaseConfig,
    build_from_architecture,
    load_release,
    release_config_for,
    save_release,
)
from brushwork.utils.cache import cache_dir
from brushwork.utils.files import atomic_path, atomic_write_text, file_sha256
from brushwork.utils.torchfile import UnreadableTorchFile, load_weights_only

log = logging.getLogger(__name__)

#: Published CycleGAN generators (one direction each), served by the authors as ``<name>.pth``.
CYCLEGAN_MODELS: tuple[str, ...] = (
    "apple2orange", "orange2apple", "summer2winter_yosemite", "winter2summer_yosemite",
    "horse2zebra", "zebra2horse", "monet2photo", "style_monet", "style_cezanne", "style_ukiyoe",
    "style_vangogh", "sat2map", "map2sat", "cityscapes_photo2label", "cityscapes_label2photo",
    "facades_photo2label", "facades_label2photo", "iphone2dslr_flower",
)  # fmt: skip
PUBLISHED_URL = "https://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/"
#: Published pix2pix generators (unet_256, batch norm, trained with dropout), the names the
#: authors' scripts/download_pix2pix_model.sh lists. Three share a name with a CycleGAN model,
#: so brushwork calls them ``pix2pix_<name>``; the server's file is ``<name>.pth``.
PIX2PIX_MODELS: tuple[str, ...] = ("edges2shoes", "sat2map", "map2sat", "facades_label2photo", "day2night")
PIX2PIX_PREFIX = "pix2pix_"
PIX2PIX_URL = "https://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch/"
#: Published CUT and FastCUT generators (Park et al. 2020): one tar archive holds all six, each as
#: ``checkpoints/<data>_<mode>_pretrained/latest_net_G.pth``; brushwork calls them ``<mode>_<data>``.
CUT_DATASETS: tuple[str, ...] = ("horse2zebra", "cat2dog", "cityscapes")
CUT_MODES: tuple[str, ...] = ("cut", "fastcut")
CUT_MODELS: tuple[str, ...] = tuple(f"{mode}_{data}" for data in CUT_DATASETS for mode in CUT_MODES)
CUT_ARCHIVE_URL = "https://efrosgans.eecs.berkeley.edu/CUT/pretrained_models.tar"
#: The archive's name on a mirror ($BRUSHWORK_MODEL_URL), flat beside the other files.
CUT_ARCHIVE_MIRROR_NAME = "cut_pretrained_models.tar"
#: The authors trained their cityscapes CUT models label -> photo, B -> A in the data set's layout.
_PUBLISHED_DIRECTIONS = {"cut_cityscapes": "BtoA", "fastcut_cityscapes": "BtoA"}
#: Every published name brushwork downloads: CycleGAN's as the authors name them, then pix2pix's, then CUT's.
PUBLISHED_MODELS: tuple[str, ...] = CYCLEGAN_MODELS + tuple(PIX2PIX_PREFIX + name for name in PIX2PIX_MODELS) + CUT_MODELS
#: Environment variables: the cache folder, and a mirror of the published models (tests use one).
URL_ENV = "BRUSHWORK_MODEL_URL"
DIRECTIONS = ("AtoB", "BtoA")


class ModelSourceError(ValueError):
    """A model source cannot be resolved or read; the message names it and what was found."""


class DirectionRequiredError(ModelSourceError):
    """A training run holds several generators and no (valid) direction was given.

    The message names no command-line flag: each front end says how it takes a direction.
    """

    def __init__(self, message: str, run_dir: Path, directions: tuple[str, ...]) -> None:
        super().__init__(message)
        self.run_dir = run_dir
        self.directions = directions


class DownloadError(OSError):
    """A published model could not be downloaded; the message names the URL and the reason."""


class ChecksumError(ModelSourceError):
    """A cached published model no longer has the sha256 recorded when it was downloaded."""


# ---------------------------------------------------------------------------------------------
# Official state dicts: architecture from keys and shapes

_RESNET_KEY = re.compile(r"model\.(\d+)\.(?:conv_block\.(\d+)\.)?(weight|bias|running_mean|running_var|num_batches_tracked)")
# The official U-Net nests one UnetSkipConnectionBlock per level: the outermost block's
# Sequential is ``model.model``, its submodule sits at index 1, every deeper block's at index 3.
_UNET_KEY = re.compile(r"model\.model\.((?:\d+\.model\.)*)(\d+)\.(weight|bias|running_mean|running_var|num_batches_tracked)")
_NORM_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
#: Layer indices holding convolutions, per U-Net level kind (the layers between are activations and norms).
_UNET_CONVS = {"outermost": (0, 3), "middle": (1, 5), "innermost": (1, 3)}
MIN_UNET_LEVELS = 5  # the official UnetGenerator: innermost + (num_downs - 5) + 4 outer levels


@dataclass(frozen=True)
class InferredArchitecture:
    """What :func:`infer_architecture` read from a state dict."""

    architecture: dict[str, Any]  # {"name": ..., **generator kwargs}
    dropped_keys: tuple[str, ...] = ()  # instance-norm running statistics of old PyTorch versions
    assumed: tuple[str, ...] = ()  # settings the keys cannot show, taken from defaults ("norm", "dropout")


def _shape(state: dict[str, Tensor], key: str) -> tuple[int, ...] | None:
    value = state.get(key)
    return tuple(value.shape) if isinstance(value, Tensor) else None


def _describe(state: dict[str, Any], limit: int = 4) -> str:
    keys = list(state)
    shown = ", ".join(keys[:limit])
    return f"{len(keys)} keys ({shown}{', ...' if len(keys) > limit else ''})"


def infer_architecture(state: dict[str, Tensor], *, norm: str | None = None, dropout: bool | None = None,
                       where: str = "state dict") -> InferredArchitecture:
    """Read a generator's architecture from a state dict in the authors' layout: ResNet or U-Net.

    Keys ``model.<i>...`` with anti-aliasing filters (``model.<i>.filt``) are CUT's ResNet
    generator (:func:`~brushwork.inference.cut_checkpoints.infer_cut_architecture`), without
    them CycleGAN's (:func:`_infer_resnet`), keys ``model.model...`` the pix2pix U-Net
    (:func:`_infer_unet`). Instance norm has no parameters
    and cannot be seen, so it is assumed unless ``norm`` says otherwise; batch norm is recognised
    by its running statistics and bias-free convolutions. ``dropout`` is read from the keys of a
    ResNet (given, it must agree) and assumed for a U-Net, where it leaves no trace.
    """
    if not state:
        raise ModelSourceError(f"{where}: the state dict is empty")
    prefixed = [k for k in state if k.startswith(("module.", "_orig_mod."))]
    if prefixed:
        raise ModelSourceError(
            f"{where}: keys carry a wrapper prefix ({prefixed[0]!r}); save the unwrapped network's "
            "state_dict (net.module / net._orig_mod)"
        )
    try:
        cut = infer_cut_architecture(state, norm=norm, where=where)
    except CutCheckpointError as exc:
        raise ModelSourceError(str(exc)) from None
    if cut is not None:
        if dropout is not None and dropout != cut["dropout"]:
            raise ModelSourceError(f"{where}: the residual blocks' layout shows dropout={cut['dropout']}, but dropout={dropout} was given")
        # Old PyTorch versions stored running statistics for InstanceNorm; the reference drops them too.
        dropped = tuple(k for k in state if k.rsplit(".", 1)[-1] in _NORM_BUFFERS) if cut["norm"] == "instance" else ()
        assumed = ("norm",) if norm is None and cut["norm"] == "instance" else ()
        return InferredArchitecture(architecture=cut, dropped_keys=dropped, assumed=assumed)
    if any(k.startswith("model.model.") for k in state):
        return _infer_unet(state, norm=norm, dropout=dropout, where=where)
    return _infer_resnet(state, norm=norm, dropout=dropout, where=where)


def _read_norm(state: dict[str, Tensor], first_conv: str, norm: str | None, where: str) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """(norm, dropped keys, assumed settings): batch norm leaves running statistics and bias-free convolutions."""
    has_buffers = any(k.rsplit(".", 1)[-1] in _NORM_BUFFERS for k in state)
    found_norm = "batch" if has_buffers and f"{first_conv}.bias" not in state else "instance"
    assumed: tuple[str, ...] = ()
    if norm is None:
        norm = found_norm
        assumed = ("norm",) if found_norm == "instance" else ()
    elif norm != found_norm and found_norm == "batch":
        raise ModelSourceError(f"{where}: holds batch-norm statistics and bias-free convolutions, but norm={norm!r} was given")
    # Old PyTorch versions stored running statistics for InstanceNorm; the reference drops them too.
    dropped = tuple(k for k in state if k.rsplit(".", 1)[-1] in _NORM_BUFFERS) if norm == "instance" else ()
    return norm, dropped, assumed


def _infer_resnet(state: dict[str, Tensor], *, norm: str | None, dropout: bool | None, where: str) -> InferredArchitecture:
    """CycleGAN's ResNet generator: ``n_blocks`` is the number of distinct ``model.<i>.conv_block``
    indices; ``ngf`` and the channel counts come from the first and last convolutions; dropout
    shifts each block's second convolution from ``conv_block.5`` to ``conv_block.6``."""
    unknown = [k for k in state if not _RESNET_KEY.fullmatch(k)]
    if unknown:
        raise ModelSourceError(
            f"{where}: keys match no known generator layout (expected model.<i>.weight and "
            f"model.<i>.conv_block.<j>.weight as in a CycleGAN ResNet generator, or model.model.* as in "
            f"a pix2pix U-Net); unexpected key {unknown[0]!r} among {_describe(state)}"
        )
    first = _shape(state, "model.1.weight")
    if first is None or len(first) != 4 or first[2:] != (7, 7):
        raise ModelSourceError(
            f"{where}: no 7x7 input convolution at model.1.weight (found shape {first}); "
            f"not a CycleGAN ResNet generator. Found {_describe(state)}"
        )
    ngf, in_channels = first[0], first[1]
    blocks: dict[int, set[int]] = {}
    top: set[int] = set()
    for key in state:
        m = _RESNET_KEY.fullmatch(key)
        assert m is not None
        if m.group(2) is not None:
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
        else:
            top.add(int(m.group(1)))
    n_blocks = len(blocks)
    # Each block's two convolutions sit at conv_block.(1, 5) with reflection padding, (1, 6) when
    # a dropout layer precedes the second one; zero padding has no pad layers: (0, 3) or (0, 4).
    layouts = {(1, 5): ("reflect", False), (1, 6): ("reflect", True), (0, 3): ("zero", False), (0, 4): ("zero", True)}
    conv_positions = {
        tuple(sorted(j for j in js if len(state[f"model.{i}.conv_block.{j}.weight"].shape) == 4
                     if f"model.{i}.conv_block.{j}.weight" in state))
        for i, js in blocks.items()
    }
    padding, found_dropout = "reflect", False
    if n_blocks:
        if len(conv_positions) != 1 or next(iter(conv_positions)) not in layouts:
            raise ModelSourceError(
                f"{where}: residual blocks have convolutions at conv_block positions {sorted(conv_positions)}; "
                "expected (1, 5) (no dropout) or (1, 6) (dropout) as in a CycleGAN ResNet generator"
            )
        padding, found_dropout = layouts[next(iter(conv_positions))]
    if dropout is not None and dropout != found_dropout and n_blocks:
        raise ModelSourceError(f"{where}: the residual blocks' layout shows dropout={found_dropout}, but dropout={dropout} was given")
    norm, dropped, assumed = _read_norm(state, "model.1", norm, where)

    expected_blocks = list(range(10, 10 + n_blocks))
    if sorted(blocks) != expected_blocks:
        raise ModelSourceError(
            f"{where}: residual blocks at model indices {sorted(blocks)}; expected {expected_blocks[:3]}... "
            "(a CycleGAN ResNet generator has 3 encoder stages before its blocks)"
        )
    last_conv = 10 + n_blocks + 7
    last = _shape(state, f"model.{last_conv}.weight")
    if last is None or len(last) != 4 or last[2:] != (7, 7):
        raise ModelSourceError(
            f"{where}: expected the 7x7 output convolution at model.{last_conv}.weight for {n_blocks} "
            f"residual blocks, found shape {last}"
        )
    architecture = {
        "name": f"resnet_{n_blocks}blocks",
        "in_channels": int(in_channels),
        "out_channels": int(last[0]),
        "ngf": int(ngf),
        "norm": norm,
        "dropout": found_dropout,
        "padding": padding,
    }
    return InferredArchitecture(architecture=architecture, dropped_keys=dropped, assumed=assumed)


def _unet_prefix(level: int) -> str:
    """The Sequential of U-Net level ``level`` (0 = outermost): model.model., model.model.1.model., ...3.model."""
    return "model.model." + ("1.model." if level else "") + "3.model." * max(level - 1, 0)


def _infer_unet(state: dict[str, Tensor], *, norm: str | None, dropout: bool | None, where: str) -> InferredArchitecture:
    """The pix2pix U-Net: ``num_downs`` is the nesting depth, ``ngf`` and the channels come from the
    outermost convolutions (down: ngf x in x 4 x 4; up, transposed: 2 ngf x out x 4 x 4).

    Dropout cannot be read from the keys, and needs not be: the official block appends its
    ``nn.Dropout`` at the *end* of a middle level's Sequential, after the layers that hold
    weights, so the indices do not move. Unless ``dropout`` is given it follows the defaults of
    the method the norm points to: with batch norm pix2pix, trained with dropout (as every
    published pix2pix model was); with instance norm CycleGAN's ``--netG unet_256``, whose
    default is ``--no_dropout``. It matters only for the ``train_like`` test mode
    (:mod:`brushwork.nn.modes`).
    """
    levels: dict[int, set[int]] = {}
    for key in state:
        m = _UNET_KEY.fullmatch(key)
        if m is None:
            raise ModelSourceError(
                f"{where}: a U-Net state dict (keys model.model.*) with a key outside the official layout: {key!r} "
                f"among {_describe(state)}"
            )
        path = [int(i) for i in m.group(1).split(".model.") if i] if m.group(1) else []
        level = len(path)
        if path != [1, *[3] * (level - 1)][:level]:
            raise ModelSourceError(
                f"{where}: U-Net key {key!r} nests through layer indices {path}; the official U-Net nests each level's "
                f"inner block at index 1 of the outermost level and index 3 below ({_unet_prefix(3)}...): corrupted nesting"
            )
        levels.setdefault(level, set()).add(int(m.group(2)))
    depth = max(levels) + 1
    missing = sorted(set(range(depth)) - set(levels))
    if missing:
        raise ModelSourceError(f"{where}: U-Net of {depth} levels has no weights at level(s) {missing} ({_unet_prefix(missing[0])}*)")
    if depth < MIN_UNET_LEVELS:
        raise ModelSourceError(
            f"{where}: U-Net of {depth} levels; the official U-Net has at least {MIN_UNET_LEVELS} (unet_32). Found {_describe(state)}"
        )
    for level in range(depth):
        kind = "outermost" if level == 0 else "innermost" if level == depth - 1 else "middle"
        for index in _UNET_CONVS[kind]:
            key = f"{_unet_prefix(level)}{index}.weight"
            shape = _shape(state, key)
            if shape is None or len(shape) != 4 or shape[2:] != (4, 4):
                raise ModelSourceError(
                    f"{where}: the {kind} U-Net level {level} of {depth} should hold a 4x4 convolution at {key}, found shape {shape}"
                )
    down, up = _shape(state, "model.model.0.weight"), _shape(state, "model.model.3.weight")
    assert down is not None and up is not None
    norm, dropped, assumed = _read_norm(state, "model.model.0", norm, where)
    if dropout is None:
        dropout, assumed = norm == "batch", (*assumed, "dropout")
    architecture = {
        "name": f"unet_{2**depth}",
        "in_channels": int(down[1]),
        "out_channels": int(up[1]),  # ConvTranspose2d weights are (in, out, kh, kw)
        "ngf": int(down[0]),
        "norm": norm,
        "dropout": bool(dropout),
    }
    return InferredArchitecture(architecture=architecture, dropped_keys=dropped, assumed=assumed)


def load_state_dict_file(path: Path) -> dict[str, Tensor]:
    """Load a bare state dict (``.pth``/``.pt``) safely (``weights_only``) with clear errors."""
    if not path.is_file():
        raise ModelSourceError(f"model file {path} does not exist")
    if path.stat().st_size == 0:
        raise ModelSourceError(f"model file {path} is empty (0 bytes)")
    try:
        obj = load_weights_only(path)
    except UnreadableTorchFile as exc:
        raise ModelSourceError(f"model file {path} is not a readable PyTorch state dict ({exc})") from None
    if isinstance(obj, dict) and "networks" in obj and "format_version" in obj:
        raise ModelSourceError(
            f"{path} is a brushwork training checkpoint; load its run folder with a direction (AtoB or BtoA) instead, "
            f"or write release folders with: brushwork export RUN --checkpoint {path}"
        )
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ModelSourceError(f"model file {path} holds a {type(obj).__name__}, not a state dict (a mapping of names to tensors)")
    not_tensors = [k for k, v in obj.items() if not isinstance(v, Tensor)]
    if not_tensors:
        raise ModelSourceError(
            f"model file {path} is not a state dict: {not_tensors[0]!r} is a {type(obj[not_tensors[0]]).__name__}, not a tensor"
        )
    return dict(obj)


def _load_official(state: dict[str, Tensor], *, norm: str | None, dropout: bool | None, where: str) -> tuple[nn.Module, InferredArchitecture]:
    inferred = infer_architecture(state, norm=norm, dropout=dropout, where=where)
    if inferred.dropped_keys:
        log.info("%s: ignoring %d instance-norm running statistics (saved by an old PyTorch)", where, len(inferred.dropped_keys))
        state = {k: v for k, v in state.items() if k not in set(inferred.dropped_keys)}
    if "dropout" in inferred.assumed:
        log.info("%s: U-Net dropout cannot be read from the keys; assuming dropout=%s (the default of %s)", where,
                 inferred.architecture["dropout"], "pix2pix" if inferred.architecture["dropout"] else "CycleGAN's U-Net")
    model = build_from_architecture(inferred.architecture, where)
    try:
        # A plain dict carries no ``_metadata``, so the batch norms of files saved before PyTorch
        # 0.4.1 (no ``num_batches_tracked``) take torch's backward-compatible path and start it at 0.
        model.load_state_dict(dict(state), strict=True)
    except RuntimeError as exc:
        detail = str(exc).strip().splitlines()
        raise ModelSourceError(
            f"{where}: weights do not fit the inferred architecture {inferred.architecture}: "
            f"{' '.join(line.strip() for line in detail[:3])}"
        ) from None
    return model.eval(), inferred


def generator_from_state_dict(state: dict[str, Tensor], *, norm: str | None = None, dropout: bool | None = None,
                              where: str = "state dict") -> tuple[nn.Module, dict[str, Any]]:
    """Build the generator (ResNet, CUT's anti-aliased ResNet, U-Net) an official-layout state dict describes and load it strictly."""
    model, inferred = _load_official(state, norm=norm, dropout=dropout, where=where)
    return model, inferred.architecture


def _pth_provenance(inferred: InferredArchitecture, file_name: str, published: str | None) -> dict[str, Any]:
    arch = inferred.architecture
    unet = arch["name"].startswith("unet_")
    kind = "pix2pix U-Net" if unet else "CUT" if arch.get("antialias") or arch.get("antialias_up") else "CycleGAN"
    provenance: dict[str, Any] = {
        "converted_from": f"official {kind} state dict",
        "source_file": file_name,
        "norm_assumed": "norm" in inferred.assumed,
    }
    if unet:
        provenance["dropout_assumed"] = "dropout" in inferred.assumed
    if published is not None:
        provenance["published_name"] = published
    return provenance


def import_pth(path: Path, out_dir: Path, *, norm: str | None = None, dropout: bool | None = None, train_size: int = 256,
               direction: str = "AtoB", name: str | None = None, test_mode: str | None = None) -> Path:
    """Convert an official CycleGAN/pix2pix/CUT ``.pth`` into a release folder; the source's sha256 is recorded.

    ``test_mode`` (see :mod:`brushwork.nn.modes`) defaults to what the authors' test.py does:
    ``train_like`` for a network with batch norm or dropout (pix2pix), else ``eval``.
    """
    state = load_state_dict_file(path)
    model, inferred = _load_official(state, norm=norm, dropout=dropout, where=str(path))
    arch = inferred.architecture
    provenance = {**_pth_provenance(inferred, path.name, name), "source_sha256": file_sha256(path)}
    source, target = (("A", "B") if direction == "AtoB" else ("B", "A"))
    config = release_config_for(arch, direction=direction, source=source, target=target, train_size=train_size,
                                provenance=provenance, test_mode=check_test_mode(test_mode or authors_test_mode(arch)))
    return save_release(model, out_dir, config)


# ---------------------------------------------------------------------------------------------
# Published models: cache and download


def published_path(name: str, root: Path | None = None) -> Path:
    return (root or cache_dir()) / "pretrained" / f"{name}.pth"


def checksum_path(path: Path) -> Path:
    """Where the sha256 of a cached file is recorded: ``<file>.sha256``, in ``sha256sum`` format."""
    return path.with_name(path.name + ".sha256")


def record_checksum(path: Path, digest: str) -> None:
    atomic_write_text(checksum_path(path), f"{digest}  {path.name}\n")


def verify_cached(name: str, path: Path) -> None:
    """Check a cached published model against the sha256 recorded when it was downloaded.

    The authors publish no checksums, so this detects a cache file changed or corrupted after
    the download, not a server that served the wrong file. A file with no record (put there by
    hand, or by an older brushwork) has its sha256 recorded now and checked from then on.
    """
    digest = file_sha256(path)
    record = checksum_path(path)
    if not record.is_file():
        log.warning("%s: no sha256 recorded (not downloaded by brushwork); recording %s and checking it from now on", path, digest)
        record_checksum(path, digest)
        return
    fields = record.read_text(errors="replace").split()
    expected = fields[0].lower() if fields else ""
    if digest != expected:
        found = f"recorded {expected!r}" if re.fullmatch(r"[0-9a-f]{64}", expected) else f"unreadable record {record}"
        raise ChecksumError(
            f"{path}: sha256 {digest} does not match the {found} at download; the cached file was changed or "
            f"corrupted. Fetch it again with: brushwork models download {name} --force"
        )


def published_url(name: str) -> str:
    """The authors' URL of published model ``name``, or ``$BRUSHWORK_MODEL_URL/<name>.pth`` on a mirror.

    A mirror holds the files under brushwork's names, which are unique (``pix2pix_sat2map.pth``
    beside CycleGAN's ``sat2map.pth``); the authors' servers name pix2pix files without the prefix.
    A CUT model comes out of the authors' one archive (:data:`CUT_ARCHIVE_URL`, on a mirror
    ``cut_pretrained_models.tar``): this is the archive's URL.
    """
    check_published_name(name)
    mirror = os.environ.get(URL_ENV)
    if name in CUT_MODELS:
        return mirror.rstrip("/") + f"/{CUT_ARCHIVE_MIRROR_NAME}" if mirror else CUT_ARCHIVE_URL
    if mirror:
        return mirror.rstrip("/") + f"/{name}.pth"
    if name.startswith(PIX2PIX_PREFIX):
        return f"{PIX2PIX_URL}{name.removeprefix(PIX2PIX_PREFIX)}.pth"
    return f"{PUBLISHED_URL}{name}.pth"


def published_family(name: str) -> str:
    """``"pix2pix"``, ``"cut"``, ``"fastcut"`` or ``"cyclegan"``: whose published model ``name`` is."""
    check_published_name(name)
    if name in CUT_MODELS:
        return name.split("_", 1)[0]
    return "pix2pix" if name.startswith(PIX2PIX_PREFIX) else "cyclegan"


def published_direction(name: str) -> str:
    """The direction a published generator maps in its data set's A/B layout (``BtoA`` for CUT's cityscapes ones)."""
    check_published_name(name)
    return _PUBLISHED_DIRECTIONS.get(name, "AtoB")


def cut_archive_member(name: str) -> str:
    """The path of CUT model ``name`` inside the authors' archive: ``checkpoints/<data>_<mode>_pretrained/latest_net_G.pth``."""
    if name not in CUT_MODELS:
        raise ModelSourceError(f"{name!r} is not a published CUT model; CUT names: {', '.join(CUT_MODELS)}")
    mode, data = name.split("_", 1)
    return f"checkpoints/{data}_{mode}_pretrained/latest_net_G.pth"


def check_published_name(name: str) -> None:
    if name not in PUBLISHED_MODELS:
        raise ModelSourceError(f"unknown published model {name!r}; valid names: {', '.join(PUBLISHED_MODELS)}")


Progress = Callable[[int, int | None], None]  # (bytes so far, total bytes or None)


def download_published(name: str, *, root: Path | None = None, force: bool = False, timeout: float = 30.0,
                       progress: Progress | None = None) -> Path:
    """Download ``<name>.pth`` into the cache unless it is there (then it is checked, see :func:`verify_cached`).

    The download goes to a temporary file that replaces the cache entry only when complete: it
    must have exactly the ``Content-Length`` the server announced. Its sha256 is recorded beside
    it (``<name>.pth.sha256``) and checked on every later use. A CUT model is read out of the
    authors' archive as it streams in (:func:`_extract_from_tar`; the archive itself is not
    kept), and complete means the member has the size its tar header gives.
    """
    check_published_name(name)
    target = published_path(name, root)
    if target.is_file() and not force:
        verify_cached(name, target)
        return target
    url = published_url(name)
    if not url.startswith("https://"):
        log.warning("downloading over plain %s: only the length of the file is checked in transit", url.split(":", 1)[0])
    log.info("downloading %s", url)
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, atomic_path(target) as tmp:
            total = response.headers.get("Content-Length")
            total_bytes = int(total) if total and total.isdigit() else None
            if name in CUT_MODELS:
                _extract_from_tar(response, cut_archive_member(name), tmp, digest, url=url, total=total_bytes, progress=progress)
            else:
                _copy_response(response, tmp, digest, url=url, total=total_bytes, progress=progress)
            checksum_path(target).unlink(missing_ok=True)  # the old record must not outlive the old file
        record_checksum(target, digest.hexdigest())  # a crash before this leaves no record: recorded on first use
    except DownloadError:
        raise
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"cannot download {name!r} from {url}: the server answered HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ssl.SSLError):
            raise DownloadError(f"cannot download {name!r} from {url}: the secure connection failed ({exc.reason})") from None
        raise DownloadError(
            f"cannot download {name!r} from {url}: server unreachable ({exc.reason}); check the connection, "
            f"or set {URL_ENV} to a mirror, or put the file at {target}"
        ) from None
    except (TimeoutError, ConnectionError, ssl.SSLError, http.client.HTTPException) as exc:
        raise DownloadError(f"cannot download {name!r} from {url}: the connection broke ({type(exc).__name__}: {exc}); "
                            "nothing was saved, try again") from None
    except OSError as exc:  # the cache folder: full disk, no permission
        raise DownloadError(f"cannot save {name!r} to {target}: {exc.strerror or exc}") from None
    log.info("%s: sha256 %s recorded in %s", target, digest.hexdigest(), checksum_path(target))
    return target


def _copy_hashed(source: IO[bytes], tmp: Path, digest: Any, *, total: int | None = None, progress: Progress | None = None) -> int:
    """Copy ``source`` into the file ``tmp`` in 1 MiB chunks, hashing them into ``digest``; the bytes copied."""
    done = 0
    with open(tmp, "wb") as fh:
        while chunk := source.read(1 << 20):
            fh.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    return done


def _copy_response(response: IO[bytes], tmp: Path, digest: Any, *, url: str, total: int | None, progress: Progress | None) -> None:
    """Copy the whole response into ``tmp``; it must have the announced length."""
    done = _copy_hashed(response, tmp, digest, total=total, progress=progress)
    if total is None:
        log.warning("%s sent no Content-Length: the download's completeness cannot be checked", url)
    elif done != total:
        raise DownloadError(f"download of {url} stopped after {done} of {total} bytes; nothing was saved, try again")


class _CountingReader:
    """A file-like view of a response that reports the bytes read so far to ``progress``."""

    def __init__(self, raw: IO[bytes], total: int | None, progress: Progress | None) -> None:
        self.raw, self.total, self.progress, self.done = raw, total, progress, 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.done += len(data)
        if self.progress is not None:
            self.progress(self.done, self.total)
        return data


def _extract_from_tar(response: IO[bytes], member: str, tmp: Path, digest: Any, *, url: str, total: int | None,
                      progress: Progress | None) -> None:
    """Stream a tar archive and copy the regular file ``member`` into ``tmp``.

    The member is matched by its last two path parts (``<data>_<mode>_pretrained/latest_net_G.pth``),
    so the archive's top folder (``checkpoints/``, ``./checkpoints/``, none) does not matter.
    Only the member's bytes are written, never a path from the archive, so member names cannot
    escape the cache. Reading stops once the member is complete; a stream that ends inside it
    is an error (tarfile checks the size its header announces).
    """
    tail = "/".join(member.split("/")[-2:])
    reader = _CountingReader(response, total, progress)
    try:
        with tarfile.open(fileobj=reader, mode="r|") as archive:  # type: ignore[call-overload]
            for info in archive:
                if not info.isfile() or not (info.name == tail or info.name.endswith("/" + tail)):
                    continue
                source = archive.extractfile(info)
                assert source is not None  # a regular file
                written = _copy_hashed(source, tmp, digest)  # progress: counted by the reader
                if written != info.size:
                    raise DownloadError(f"{url}: {member} stopped after {written} of {info.size} bytes; nothing was saved, try again")
                return
    except tarfile.TarError as exc:
        raise DownloadError(f"cannot read {member} from {url} ({exc}): the download broke off or is not a tar archive; "
                            "nothing was saved, try again") from None
    raise DownloadError(f"{url} is a tar archive without {member}; nothing was saved (is it the authors' CUT pretrained_models.tar?)")


# ---------------------------------------------------------------------------------------------
# One entry point for every kind of source


def _is_run_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.yaml").is_file() and not (path / CONFIG_NAME).is_file()


def load_source(source: str | Path, *, direction: str | None = None, norm: str | None = None,
                checkpoint: Path | None = None, download: bool = True) -> tuple[nn.Module, ReleaseConfig]:
    """Resolve ``source`` (see module docstring) to an eval-mode generator and its release config."""
    path = Path(source).expanduser()
    if path.is_dir():
        if (path / CONFIG_NAME).is_file():
            model, config = load_release(path)
            if direction is not None and direction != config.direction:
                raise ModelSourceError(f"{path} is a release of direction {config.direction}, not {direction}")
            return model, config
        if _is_run_folder(path):
            from brushwork.runs import load_run_generator

            return load_run_generator(path, direction, checkpoint)
        release = path / "release"
        hint = f"; its release folders: {', '.join(sorted(p.name for p in release.iterdir()))}" if release.is_dir() else ""
        raise ModelSourceError(f"{path} is neither a release folder (config.json) nor a training run (config.yaml){hint}")
    if path.is_file():
        if path.name == WEIGHTS_NAME or path.name == CONFIG_NAME:
            raise ModelSourceError(f"{path} is part of a release folder; pass the folder {path.parent} instead")
        state = load_state_dict_file(path)
        model, inferred = _load_official(state, norm=norm, dropout=None, where=str(path))
        return model, _config_for_pth(inferred, path.name, direction)
    name = str(source)
    if name in PUBLISHED_MODELS:
        cached = published_path(name)
        if not cached.is_file() and not download:
            raise ModelSourceError(f"published model {name!r} is not in the cache ({cached}); run: brushwork models download {name}")
        download_published(name)  # checks the recorded sha256 of a cached file
        state = load_state_dict_file(cached)
        model, inferred = _load_official(state, norm=norm, dropout=None, where=str(cached))
        return model, _config_for_pth(inferred, f"{name}.pth", direction or published_direction(name), published=name)
    looks_like_path = any(sep in name for sep in ("/", "\\")) or Path(name).suffix != ""
    if looks_like_path:
        raise ModelSourceError(f"model {name} does not exist")
    raise ModelSourceError(
        f"model {name!r} is not a folder, a file or a published model name; published names: {', '.join(PUBLISHED_MODELS)}"
    )


def _config_for_pth(inferred: InferredArchitecture, file_name: str, direction: str | None, published: str | None = None) -> ReleaseConfig:
    if direction is not None and direction not in DIRECTIONS:
        raise ModelSourceError(f"direction {direction!r} is not valid; expected {' or '.join(DIRECTIONS)}")
    direction = direction or "AtoB"
    source, target = (("A", "B") if direction == "AtoB" else ("B", "A"))
    arch = inferred.architecture
    return release_config_for(arch, direction=direction, source=source, target=target, train_size=256,
                              provenance=_pth_provenance(inferred, file_name, published), test_mode=authors_test_mode(arch))


__all__ = [
    "CUT_MODELS", "CYCLEGAN_MODELS", "PIX2PIX_MODELS", "PUBLISHED_MODELS", "ChecksumError", "DirectionRequiredError", "DownloadError",
    "InferredArchitecture", "ModelSourceError", "cache_dir", "cut_archive_member", "download_published", "generator_from_state_dict",
    "import_pth", "infer_architecture", "load_source", "load_state_dict_file", "published_direction", "published_family",
    "published_path", "published_url",
]  # fmt: skip
