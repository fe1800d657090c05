"""Finding the Inception-v3 weights that FID, KID and the Inception Score are defined with.

The published numbers of the field use the TensorFlow Inception graph of 2015-12-05. torch-fidelity
distributes it converted to a PyTorch state dict, ``weights-inception-2015-12-05-6726825d.pth``
(the suffix is the start of its SHA-256). It is looked for, in order:

1. an explicit path (``--inception-weights PATH``),
2. the environment variable ``BRUSHWORK_INCEPTION_WEIGHTS``,
3. torch hub's checkpoint cache (``$TORCH_HOME/hub/checkpoints/``), where torch-fidelity and
   torchmetrics also download it, so a file fetched by either is found,
4. a download into that cache (checked against the hash prefix) when downloading is allowed.

When all of that fails, :class:`InceptionWeightsError` says which file to put where.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from brushwork.utils.files import (
    file_sha256 as file_sha256,  # re-exported for metrics.features and the tests
)

log = logging.getLogger(__name__)

INCEPTION_FILENAME = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILENAME}"
INCEPTION_SHA256_PREFIX = "6726825d"
WEIGHTS_ENV = "BRUSHWORK_INCEPTION_WEIGHTS"
OFFLINE_ENV = "BRUSHWORK_OFFLINE"


class InceptionWeightsError(RuntimeError):
    """The Inception weights are missing, unreadable or of the wrong shape; the message says what to do."""


def hub_checkpoint_dir() -> Path:
    """torch hub's checkpoint cache (``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch/...``)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def default_weights_path() -> Path:
    return hub_checkpoint_dir() / INCEPTION_FILENAME


def _how_to_fix() -> str:
    return (
        f"download {INCEPTION_FILENAME} from {INCEPTION_URL} and place it at {default_weights_path()}, "
        f"or pass --inception-weights PATH, or set {WEIGHTS_ENV}=PATH"
    )


def find_inception_weights(path: str | Path | None = None, *, download: bool | None = None) -> Path:
    """The path of the Inception weights file; downloads it into torch hub's cache if allowed.

    ``download=None`` means "yes, unless the environment variable BRUSHWORK_OFFLINE is set".
    """
    if path is not None:
        explicit = Path(path).expanduser()
        if not explicit.is_file():
            raise InceptionWeightsError(f"Inception weights file {explicit} does not exist; {_how_to_fix()}")
        return explicit
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        from_env = Path(env).expanduser()
        if not from_env.is_file():
            raise InceptionWeightsError(f"{WEIGHTS_ENV}={env}: no such file; {_how_to_fix()}")
        return from_env
    cached = default_weights_path()
    if cached.is_file():
        return cached
    if download is None:
        download = not os.environ.get(OFFLINE_ENV)
    if not download:
        raise InceptionWeightsError(f"Inception weights not found (downloads are off); {_how_to_fix()}")
    return _download(cached)


def _download(target: Path, timeout: float = 60.0) -> Path:
    import urllib.request

    from brushwork.utils.files import atomic_path

    log.info("downloading the Inception weights from %s to %s", INCEPTION_URL, target)
    try:
        # Written beside ``target`` and moved into place only when the SHA-256 prefix matches, so an
        # interrupted or corrupt download never lands in the cache.
        with atomic_path(target) as tmp:
            digest = hashlib.sha256()
            request = urllib.request.Request(INCEPTION_URL, headers={"User-Agent": "brushwork"})
            with urllib.request.urlopen(request, timeout=timeout) as response, open(tmp, "wb") as fh:
                while block := response.read(1 << 20):
                    digest.update(block)
                    fh.write(block)
            if not digest.hexdigest().startswith(INCEPTION_SHA256_PREFIX):
                raise ValueError(f"downloaded file has SHA-256 {digest.hexdigest()[:16]}..., expected {INCEPTION_SHA256_PREFIX}...")
    except Exception as exc:  # URLError, HTTPError, timeouts, hash mismatch, disk full
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InceptionWeightsError(
            f"Inception weights not found and the download failed ({reason}); {_how_to_fix()}"
        ) from None
    return target



