"""Finding, downloading and validating the Inception weights (all offline, or from 127.0.0.1)."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from brushwork.metrics import weights as w
from brushwork.metrics.features import load_inception
from brushwork.metrics.weights import (
    INCEPTION_FILENAME,
    InceptionWeightsError,
    find_inception_weights,
)


def test_explicit_path_wins_and_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    given = tmp_path / "given.pth"
    given.write_bytes(b"x")
    monkeypatch.setenv(w.WEIGHTS_ENV, str(tmp_path / "other.pth"))
    assert find_inception_weights(given) == given
    with pytest.raises(InceptionWeightsError, match=r"missing\.pth does not exist"):
        find_inception_weights(tmp_path / "missing.pth")


def test_environment_variable_then_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cached = w.default_weights_path()
    assert cached == tmp_path / "torch-home" / "hub" / "checkpoints" / INCEPTION_FILENAME
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    assert find_inception_weights() == cached
    env_file = tmp_path / "env.pth"
    env_file.write_bytes(b"x")
    monkeypatch.setenv(w.WEIGHTS_ENV, str(env_file))
    assert find_inception_weights() == env_file
    monkeypatch.setenv(w.WEIGHTS_ENV, str(tmp_path / "nope.pth"))
    with pytest.raises(InceptionWeightsError, match="BRUSHWORK_INCEPTION_WEIGHTS="):
        find_inception_weights()


def test_offline_and_absent_says_which_file_to_place_where(tmp_path: Path) -> None:
    with pytest.raises(InceptionWeightsError) as info:
        find_inception_weights()
    message = str(info.value)
    assert INCEPTION_FILENAME in message
    assert str(tmp_path / "torch-home" / "hub" / "checkpoints" / INCEPTION_FILENAME) in message
    assert w.INCEPTION_URL in message and "--inception-weights" in message and "downloads are off" in message


@pytest.fixture
def served_file(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    """A file served over HTTP on 127.0.0.1 (stands in for the release asset)."""
    payload = b"pretend inception weights " * 1000
    root = tmp_path / "www"
    root.mkdir()
    (root / INCEPTION_FILENAME).write_bytes(payload)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{INCEPTION_FILENAME}", payload
    finally:
        server.shutdown()
        server.server_close()


def test_download_into_the_hub_cache_checks_the_hash(served_file: tuple[str, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    url, payload = served_file
    monkeypatch.setattr(w, "INCEPTION_URL", url)
    monkeypatch.setattr(w, "INCEPTION_SHA256_PREFIX", "0" * 8)  # wrong on purpose
    with pytest.raises(InceptionWeightsError, match=r"download failed.*SHA-256"):
        find_inception_weights(download=True)
    target = w.default_weights_path()
    assert not target.exists() and not list(target.parent.glob("*.tmp"))  # nothing half-written left
    monkeypatch.setattr(w, "INCEPTION_SHA256_PREFIX", hashlib.sha256(payload).hexdigest()[:8])
    assert find_inception_weights(download=True) == target
    assert target.read_bytes() == payload


def test_download_failure_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(w, "INCEPTION_URL", f"http://127.0.0.1:{port}/{INCEPTION_FILENAME}")
    with pytest.raises(InceptionWeightsError, match=r"download failed .*place it at .*--inception-weights"):
        find_inception_weights(download=True)


def test_unreadable_and_wrongly_shaped_weights_are_clear_errors(tmp_path: Path, inception_weights: Path) -> None:
    junk = tmp_path / "junk.pth"
    junk.write_text("not weights")
    with pytest.raises(InceptionWeightsError, match=r"junk\.pth: not a readable PyTorch weights file"):
        load_inception(junk)
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(InceptionWeightsError, match="state dict of tensors"):
        load_inception(listed)
    state = torch.load(inception_weights, weights_only=True)
    state["fc.weight"] = torch.zeros(10, 2048)
    wrong = tmp_path / "wrong.pth"
    torch.save(state, wrong)
    with pytest.raises(InceptionWeightsError, match=r"wrong\.pth: weights do not fit .*size mismatch for fc\.weight"):
        load_inception(wrong)
    del state["fc.weight"]
    torch.save(state, wrong)
    with pytest.raises(InceptionWeightsError, match=r"1 missing key\(s\) such as fc\.weight"):
        load_inception(wrong)
