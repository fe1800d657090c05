"""Tiny generators and image files shared by the inference tests."""

from __future__ import annotations

import functools
import http.server
import shutil
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from brushwork.nn import build_generator, init_weights
from brushwork.release import ReleaseConfig, release_config_for, save_release


def tiny_arch(n_blocks: int = 2, ngf: int = 4, **overrides: Any) -> dict[str, Any]:
    arch = {"name": f"resnet_{n_blocks}blocks", "in_channels": 3, "out_channels": 3, "ngf": ngf,
            "norm": "instance", "dropout": False, "padding": "reflect"}
    arch.update(overrides)
    return arch


def tiny_generator(seed: int = 0, gain: float = 0.2, **arch_kw: Any) -> tuple[nn.Module, ReleaseConfig]:
    """A small ResNet generator with weights large enough that its output is not flat."""
    arch = tiny_arch(**arch_kw)
    torch.manual_seed(seed)
    net = init_weights(build_generator(**arch), gain=gain).eval()
    config = release_config_for(arch, direction="AtoB", source="A", target="B", train_size=64, provenance={})
    return net, config


def tiny_release(folder: Path, seed: int = 0, **arch_kw: Any) -> Path:
    net, config = tiny_generator(seed, **arch_kw)
    return save_release(net, folder, config)


@contextmanager
def serve_folder(folder: Path, *, tls: tuple[Path, Path] | None = None, truncate: bool = False) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 over HTTP, or HTTPS with ``tls`` = (certificate, key); yields
    the base URL. With ``truncate`` every file is announced at its full length, half of it is sent."""
    handler = functools.partial(_TruncatingHandler if truncate else _QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*map(str, tls))
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _TruncatingHandler(_QuietHandler):
    def copyfile(self, source: Any, outputfile: Any) -> None:
        data = source.read()
        outputfile.write(data[: len(data) // 2])


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with the openssl tool (the test skips without it)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)  # fmt: skip
    return cert, key


@pytest.fixture(name="cli")
def cli_fixture(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[[list[str]], tuple[int, str, str]]:
    """Run ``brushwork ARGS`` in-process through the console entry point; returns (exit code, stdout, stderr)."""
    from brushwork.cli import main

    def run(args: list[str]) -> tuple[int, str, str]:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["brushwork", *args])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
