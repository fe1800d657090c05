"""Where a generator comes from: release folders, training runs, official ``.pth`` files, names.

:func:`load_source` turns any of these into ``(generator, ReleaseConfig)``:

- a release folder (``config.json`` + ``model.safetensors``);
- a training run folder (``config.yaml`` + ``checkpoints/``) plus a direction (``AtoB``/``BtoA``);
- a bare state dict in the official CycleGAN layout (``latest_net_G_A.pth``, published models),
  whose architecture is read from its keys and shapes (:func:`infer_architecture`);
- the name of a published CycleGAN model (``horse2zebra``, ``style_monet``...), taken from the
  local cache (``$BRUSHWORK_CACHE``, else ``~/.cache/brushwork``) and downloaded when missing.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import pickle
import re
import ssl
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from brushwork import __version__
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

log = logging.getLogger(__name__)

#: Published CycleGAN generators (one direction each), served by the authors as ``<name>.pth``.
PUBLISHED_MODELS: tuple[str, ...] = (
    "apple2orange", "orange2apple", "summer2winter_yosemite", "winter2summer_yosemite",
    "horse2zebra", "zebra2horse", "monet2photo", "style_monet", "style_cezanne", "style_ukiyoe",
    "style_vangogh", "sat2map", "map2sat", "cityscapes_photo2label", "cityscapes_label2photo",
    "facades_photo2label", "facades_label2photo", "iphone2dslr_flower",
)  # fmt: skip
PUBLISHED_URL = "https://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/"
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
_NORM_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


@dataclass(frozen=True)
class InferredArchitecture:
    """What :func:`infer_architecture` read from a state dict."""

    architecture: dict[str, Any]  # {"name": ..., **ResnetGenerator kwargs}
    dropped_keys: tuple[str, ...] = ()  # instance-norm running statistics of old PyTorch versions


def _shape(state: dict[str, Tensor], key: str) -> tuple[int, ...] | None:
    value = state.get(key)
    return tuple(value.shape) if isinstance(value, Tensor) else None


def _describe(state: dict[str, Any], limit: int = 4) -> str:
    keys = list(state)
    shown = ", ".join(keys[:limit])
    return f"{len(keys)} keys ({shown}{', ...' if len(keys) > limit else ''})"


def infer_architecture(state: dict[str, Tensor], *, norm: str | None = None, where: str = "state dict") -> InferredArchitecture:
    """Read a ResNet generator's architecture from an official-layout state dict.

    ``n_blocks`` is the number of distinct ``model.<i>.conv_block`` indices; ``ngf`` and the
    channel counts come from the first and last convolutions; dropout shifts each block's second
    convolution from ``conv_block.5`` to ``conv_block.6``. The norm cannot be seen when it is the
    reference's instance norm (it has no parameters), so ``instance`` is assumed unless ``norm``
    says otherwise; batch norm is recognised by its running statistics.
    """
    if not state:
        raise ModelSourceError(f"{where}: the state dict is empty")
    if any(k.startswith("model.model.") for k in state):
        raise ModelSourceError(
            f"{where}: looks like a U-Net generator (keys model.model.*); only ResNet generators "
            f"(resnet_<N>blocks) can be read from a bare state dict. Found {_describe(state)}"
        )
    prefixed = [k for k in state if k.startswith(("module.", "_orig_mod."))]
    if prefixed:
        raise ModelSourceError(
            f"{where}: keys carry a wrapper prefix ({prefixed[0]!r}); save the unwrapped network's "
            "state_dict (net.module / net._orig_mod)"
        )
    unknown = [k for k in state if not _RESNET_KEY.fullmatch(k)]
    if unknown:
        raise ModelSourceError(
            f"{where}: keys match no known generator layout (expected model.<i>.weight and "
            f"model.<i>.conv_block.<j>.weight as in a CycleGAN ResNet generator); unexpected key "
            f"{unknown[0]!r} among {_describe(state)}"
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
    padding, dropout = "reflect", False
    if n_blocks:
        if len(conv_positions) != 1 or next(iter(conv_positions)) not in layouts:
            raise ModelSourceError(
                f"{where}: residual blocks have convolutions at conv_block positions {sorted(conv_positions)}; "
                "expected (1, 5) (no dropout) or (1, 6) (dropout) as in a CycleGAN ResNet generator"
            )
        padding, dropout = layouts[next(iter(conv_positions))]

    # Norm: batch norm leaves running statistics and convolutions without bias.
    has_buffers = any(k.rsplit(".", 1)[-1] in _NORM_BUFFERS for k in state)
    has_conv_bias = "model.1.bias" in state
    found_norm = "batch" if has_buffers and not has_conv_bias else "instance"
    if norm is None:
        norm = found_norm
    elif norm != found_norm and found_norm == "batch":
        raise ModelSourceError(f"{where}: holds batch-norm statistics and bias-free convolutions, but norm={norm!r} was given")

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
        "dropout": dropout,
        "padding": padding,
    }
    # Old PyTorch versions stored running statistics for InstanceNorm; the reference drops them too.
    dropped: list[str] = []
    if norm == "instance":
        dropped = [k for k in state if k.rsplit(".", 1)[-1] in _NORM_BUFFERS]
    return InferredArchitecture(architecture=architecture, dropped_keys=tuple(dropped))


def load_state_dict_file(path: Path) -> dict[str, Tensor]:
    """Load a bare state dict (``.pth``/``.pt``) safely (``weights_only``) with clear errors."""
    if not path.is_file():
        raise ModelSourceError(f"model file {path} does not exist")
    if path.stat().st_size == 0:
        raise ModelSourceError(f"model file {path} is empty (0 bytes)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelSourceError(f"model file {path} is not a readable PyTorch state dict ({first_line})") from None
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


def generator_from_state_dict(state: dict[str, Tensor], *, norm: str | None = None, where: str = "state dict") -> tuple[nn.Module, dict[str, Any]]:
    """Build the generator an official-layout state dict describes and load it strictly."""
    inferred = infer_architecture(state, norm=norm, where=where)
    if inferred.dropped_keys:
        log.info("%s: ignoring %d instance-norm running statistics (saved by an old PyTorch)", where, len(inferred.dropped_keys))
        state = {k: v for k, v in state.items() if k not in set(inferred.dropped_keys)}
    model = build_from_architecture(inferred.architecture, where)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = str(exc).strip().splitlines()
        raise ModelSourceError(
            f"{where}: weights do not fit the inferred architecture {inferred.architecture}: "
            f"{' '.join(line.strip() for line in detail[:3])}"
        ) from None
    return model.eval(), inferred.architecture


def import_pth(path: Path, out_dir: Path, *, norm: str | None = None, train_size: int = 256,
               direction: str = "AtoB", name: str | None = None) -> Path:
    """Convert an official CycleGAN ``.pth`` into a release folder; the source's sha256 is recorded."""
    state = load_state_dict_file(path)
    model, arch = generator_from_state_dict(state, norm=norm, where=str(path))
    provenance: dict[str, Any] = {
        "converted_from": "official CycleGAN state dict",
        "source_file": path.name,
        "source_sha256": file_sha256(path),
        "norm_assumed": norm is None and arch["norm"] == "instance",
    }
    if name is not None:
        provenance["published_name"] = name
    source, target = (("A", "B") if direction == "AtoB" else ("B", "A"))
    config = release_config_for(arch, direction=direction, source=source, target=target, train_size=train_size,
                                provenance=provenance)
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
    base = os.environ.get(URL_ENV, PUBLISHED_URL)
    return base.rstrip("/") + f"/{name}.pth"


def check_published_name(name: str) -> None:
    if name not in PUBLISHED_MODELS:
        raise ModelSourceError(f"unknown published model {name!r}; valid names: {', '.join(PUBLISHED_MODELS)}")


Progress = Callable[[int, int | None], None]  # (bytes so far, total bytes or None)


def download_published(name: str, *, root: Path | None = None, force: bool = False, timeout: float = 30.0,
                       progress: Progress | None = None) -> Path:
    """Download ``<name>.pth`` into the cache unless it is there (then it is checked, see :func:`verify_cached`).

    The download goes to a temporary file that replaces the cache entry only when complete: it
    must have exactly the ``Content-Length`` the server announced. Its sha256 is recorded beside
    it (``<name>.pth.sha256``) and checked on every later use.
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
            done = 0
            with open(tmp, "wb") as fh:
                while chunk := response.read(1 << 20):
                    fh.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total_bytes)
            if total_bytes is None:
                log.warning("%s sent no Content-Length: the download's completeness cannot be checked", url)
            elif done != total_bytes:
                raise DownloadError(f"download of {url} stopped after {done} of {total_bytes} bytes; nothing was saved, try again")
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
        model, arch = generator_from_state_dict(state, norm=norm, where=str(path))
        return model, _config_for_pth(arch, path.name, direction)
    name = str(source)
    if name in PUBLISHED_MODELS:
        cached = published_path(name)
        if not cached.is_file() and not download:
            raise ModelSourceError(f"published model {name!r} is not in the cache ({cached}); run: brushwork models download {name}")
        download_published(name)  # checks the recorded sha256 of a cached file
        state = load_state_dict_file(cached)
        model, arch = generator_from_state_dict(state, norm=norm, where=str(cached))
        return model, _config_for_pth(arch, f"{name}.pth", direction, published=name)
    looks_like_path = any(sep in name for sep in ("/", "\\")) or Path(name).suffix != ""
    if looks_like_path:
        raise ModelSourceError(f"model {name} does not exist")
    raise ModelSourceError(
        f"model {name!r} is not a folder, a file or a published model name; published names: {', '.join(PUBLISHED_MODELS)}"
    )


def _config_for_pth(arch: dict[str, Any], file_name: str, direction: str | None, published: str | None = None) -> ReleaseConfig:
    if direction is not None and direction not in DIRECTIONS:
        raise ModelSourceError(f"direction {direction!r} is not valid; expected {' or '.join(DIRECTIONS)}")
    direction = direction or "AtoB"
    source, target = (("A", "B") if direction == "AtoB" else ("B", "A"))
    provenance: dict[str, Any] = {"source_file": file_name, "brushwork_version": __version__}
    if published:
        provenance["published_name"] = published
    return release_config_for(arch, direction=direction, source=source, target=target, train_size=256, provenance=provenance)


__all__ = [
    "PUBLISHED_MODELS", "ChecksumError", "DirectionRequiredError", "DownloadError", "InferredArchitecture", "ModelSourceError", "cache_dir",
    "download_published", "generator_from_state_dict", "import_pth", "infer_architecture",
    "load_source", "load_state_dict_file", "published_path", "published_url",
]  # fmt: skip
