"""The HTTP service: the API through FastAPI's test client and raw ASGI calls, every bad input,
the queue and the timeout, the CLI, and one live uvicorn server."""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import logging
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
pytest.importorskip("python_multipart", reason="the serve extra (python-multipart) is not installed")

from fastapi.testclient import TestClient

from brushwork.data.imageio import MAX_PIXELS_ENV
from brushwork.inference import Stylizer
from brushwork.serve import create_app
from brushwork.serve.imaging import JPEG_QUALITY
from tests._inference_helpers import cli_fixture, tiny_release
from tests._serve_helpers import (
    Broken,
    Gate,
    Invert,
    asgi_request,
    decoded,
    encoded,
    live_server,
    multipart,
    random_rgb,
    wait_until,
)
from tests.test_image_limits import no_decode, png_claiming

CLI = Callable[[list[str]], tuple[int, str, str]]
_ = (cli_fixture, no_decode)  # fixtures used by name


@pytest.fixture
def invert() -> Invert:
    return Invert()


@pytest.fixture
def client(invert: Invert) -> Iterator[TestClient]:
    with TestClient(create_app({"invert": invert, "second": Invert()})) as test_client:
        yield test_client


def post_image(client: TestClient, data: bytes, ctype: str = "image/png", **fields: str) -> Any:
    return client.post("/v1/stylize", files={"image": ("photo.png", data, ctype)}, data=fields)


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """A JSON error of the given status and code, with a request id and no trace of a traceback."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == code, body
    assert body["detail"] and "\n" not in body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text and 'File "' not in response.text
    return body


# ---------------------------------------------------------------------------------------------
# The endpoints


def test_models_health_page_and_docs(client: TestClient) -> None:
    models = client.get("/v1/models").json()
    assert models["default"] == "invert"
    assert [(m["name"], m["default"]) for m in models["models"]] == [("invert", True), ("second", False)]
    assert models["models"][0]["description"] == "inverts every channel"
    assert models["limits"]["max_upload_bytes"] == 20_000_000
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert health.json()["pool"]["in_flight"] == 0

    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'name="viewport"' in page.text and 'id="strength"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "http://" not in page.text and "https://" not in page.text  # nothing from elsewhere: offline-safe
    for name, ctype in (("app.js", "text/javascript"), ("style.css", "text/css")):
        asset = client.get(f"/static/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(ctype) and asset.content
        assert "http://" not in asset.text and "https://" not in asset.text
    for bad in ("/static/index.htm", "/static/..%2fapp.py", "/static/%2e%2e%2f__init__.py", "/nowhere"):
        assert_error(client.get(bad), 404, "not_found")

    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    form = schema["paths"]["/v1/stylize"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert set(form["properties"]) == {"image", "model", "strength", "format"} and form["required"] == ["image"]


def test_stylize_returns_the_model_output(client: TestClient, invert: Invert) -> None:
    source = random_rgb(40, 30, seed=1)
    response = post_image(client, encoded(source))
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.headers["x-model"] == "invert" and response.headers["x-strength"] == "1"
    np.testing.assert_array_equal(decoded(response.content), 255 - np.asarray(source))
    assert invert.calls == 1


@pytest.mark.parametrize(("fmt", "ctype", "pil"), [("png", "image/png", "PNG"), ("jpeg", "image/jpeg", "JPEG"),
                                                   ("jpg", "image/jpeg", "JPEG"), ("webp", "image/webp", "WEBP")])
def test_output_format(client: TestClient, fmt: str, ctype: str, pil: str) -> None:
    response = post_image(client, encoded(random_rgb(24, 16)), format=fmt)
    assert response.status_code == 200 and response.headers["content-type"] == ctype
    with Image.open(io.BytesIO(response.content)) as img:
        assert img.format == pil and img.size == (24, 16)


def test_default_format_is_the_uploads(client: TestClient) -> None:
    response = post_image(client, encoded(random_rgb(24, 16), "JPEG"), "image/jpeg")
    assert response.headers["content-type"] == "image/jpeg"
    response = post_image(client, encoded(random_rgb(24, 16), "BMP"), "image/bmp")
    assert response.headers["content-type"] == "image/png"  # no BMP writer in the API: PNG


def test_strength_zero_returns_the_input_pixels(client: TestClient, invert: Invert) -> None:
    source = random_rgb(33, 21, seed=2)
    # PNG in, PNG out: lossless both ways, so the pixels are exactly the input's
    response = post_image(client, encoded(source), strength="0")
    np.testing.assert_array_equal(decoded(response.content), np.asarray(source))
    # JPEG in, JPEG out: the one loss is the server's re-encoding at JPEG_QUALITY. The tolerance
    # is that round trip itself, done here with the same Pillow: equal to it exactly.
    jpeg = encoded(source, "JPEG", quality=90)
    response = post_image(client, jpeg, "image/jpeg", strength="0")
    with Image.open(io.BytesIO(jpeg)) as img:
        reference = decoded(encoded(img.convert("RGB"), "JPEG", quality=JPEG_QUALITY))
    np.testing.assert_array_equal(decoded(response.content), reference)
    assert invert.calls == 0  # at strength 0 the model is not run


def test_strength_blends_output_with_input(client: TestClient) -> None:
    source = np.asarray(random_rgb(31, 17, seed=3)).astype(np.float64)
    data = encoded(Image.fromarray(source.astype(np.uint8)))
    for strength in (0.25, 0.5, 0.73):
        response = post_image(client, data, strength=str(strength))
        expected = np.rint(source + strength * ((255 - source) - source)).astype(np.uint8)
        np.testing.assert_array_equal(decoded(response.content), expected)


def test_alpha_and_orientation_are_kept(client: TestClient) -> None:
    rgba = np.asarray(random_rgb(20, 12, seed=4).convert("RGBA")).copy()
    rgba[..., 3] = np.arange(20, dtype=np.uint8)[None, :] * 12
    response = post_image(client, encoded(Image.fromarray(rgba, "RGBA")), strength="0.5")
    out = decoded(response.content)
    assert out.shape == (12, 20, 4)
    np.testing.assert_array_equal(out[..., 3], rgba[..., 3])
    # EXIF orientation 6 (rotate 90 degrees): the result is upright, as the web page shows it
    exif = Image.Exif()
    exif[0x0112] = 6
    jpeg = encoded(random_rgb(40, 20, seed=5), "JPEG", exif=exif.tobytes())
    with Image.open(io.BytesIO(post_image(client, jpeg, "image/jpeg").content)) as img:
        assert img.size == (20, 40)


def test_a_second_model_and_a_real_generator(tmp_path: Path) -> None:
    stylizer = Stylizer.from_pretrained(tiny_release(tmp_path / "tiny"), device="cpu")
    source = random_rgb(36, 28, seed=6)
    with TestClient(create_app({"invert": Invert(), "tiny": stylizer})) as client:
        response = post_image(client, encoded(source), model="tiny")
    assert response.headers["x-model"] == "tiny"
    np.testing.assert_array_equal(decoded(response.content), np.asarray(stylizer(source)))


# ---------------------------------------------------------------------------------------------
# Bad input: each gets a 4xx JSON error that names the problem


def test_bad_uploads(client: TestClient, invert: Invert) -> None:
    jpeg = encoded(random_rgb(64, 48, seed=7), "JPEG")
    assert_error(post_image(client, b""), 400, "empty_image")
    assert_error(post_image(client, b"just some words\n", "text/plain"), 415, "unsupported_media_type")
    body = assert_error(post_image(client, b"%PDF-1.4 not an image", "image/png"), 415, "not_an_image")
    assert "PNG, JPEG" in body["detail"]
    body = assert_error(post_image(client, jpeg[: len(jpeg) // 2], "image/jpeg"), 422, "corrupt_image")
    assert "truncated" in body["detail"]
    assert invert.calls == 0


def test_decompression_bomb_is_refused_without_decoding(client: TestClient, no_decode: list[str]) -> None:
    bomb = png_claiming(100_000, 100_000)
    assert len(bomb) < 200
    body = assert_error(post_image(client, bomb), 413, "too_many_pixels")
    assert "100000x100000 = 10,000,000,000 pixels" in body["detail"] and body["limit_pixels"] == 400_000_000
    assert no_decode == []


def test_pixel_limit_from_the_environment(monkeypatch: pytest.MonkeyPatch, no_decode: list[str]) -> None:
    monkeypatch.setenv(MAX_PIXELS_ENV, "1000")
    with TestClient(create_app({"invert": Invert()})) as client:
        body = assert_error(post_image(client, encoded(random_rgb(40, 30))), 413, "too_many_pixels")
        assert "40x30 = 1,200 pixels" in body["detail"] and "limit of 1,000 pixels" in body["detail"]
        assert no_decode == []
        assert post_image(client, encoded(random_rgb(40, 25))).status_code == 200  # exactly at the limit


def test_bad_requests(client: TestClient) -> None:
    png = encoded(random_rgb(16, 16))
    assert_error(client.post("/v1/stylize", json={"image": "x"}), 415, "unsupported_media_type")
    assert_error(client.post("/v1/stylize", data={"model": "invert"}), 415, "unsupported_media_type")  # urlencoded
    assert_error(client.post("/v1/stylize", content=png, headers={"content-type": "image/png"}), 415,
                 "unsupported_media_type")
    assert_error(client.post("/v1/stylize", content=b"x", headers={"content-type": "multipart/form-data"}), 400,
                 "malformed_multipart")
    body, ctype = multipart({"model": "invert"}, [("image", png, "image/png")])
    assert_error(client.post("/v1/stylize", content=body[:-10], headers={"content-type": ctype}), 400,
                 "malformed_multipart")
    assert_error(client.post("/v1/stylize", files={"other": ("a.png", png, "image/png")}), 422, "missing_image")
    assert_error(client.post("/v1/stylize", files={"x": ("", b"", "")}, data={"image": "text"}), 422, "missing_image")
    two, ctype = multipart({}, [("image", png, "image/png"), ("image", png, "image/png")])
    assert_error(client.post("/v1/stylize", content=two, headers={"content-type": ctype}), 422, "too_many_images")
    long_field, ctype = multipart({"model": "m" * 5000}, [("image", png, "image/png")])
    assert_error(client.post("/v1/stylize", content=long_field, headers={"content-type": ctype}), 413, "field_too_large")
    assert_error(client.get("/v1/stylize"), 405, "method_not_allowed")


def test_bad_fields(client: TestClient) -> None:
    png = encoded(random_rgb(16, 16))
    body = assert_error(post_image(client, png, model="monet"), 422, "unknown_model")
    assert body["valid"] == ["invert", "second"] and "invert, second" in body["detail"]
    for strength in ("1.5", "-0.1", "nan", "inf", "strong"):
        body = assert_error(post_image(client, png, strength=strength), 422, "invalid_strength")
        assert repr(strength) in body["detail"]
    body = assert_error(post_image(client, png, format="gif"), 422, "invalid_format")
    assert body["valid"] == ["png", "jpeg", "webp"]


def test_too_small_for_a_real_generator(tmp_path: Path) -> None:
    stylizer = Stylizer.from_pretrained(tiny_release(tmp_path / "tiny"), device="cpu")
    with TestClient(create_app({"tiny": stylizer})) as client:
        body = assert_error(post_image(client, encoded(random_rgb(3, 40))), 422, "image_too_small")
    assert "3x40" in body["detail"]


def test_internal_errors_stay_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    with TestClient(create_app({"broken": Broken()})) as client, caplog.at_level(logging.ERROR):
        response = post_image(client, encoded(random_rgb(16, 16)))
    body = assert_error(response, 500, "internal_error")
    assert "secret" not in response.text and "/srv" not in response.text and "RuntimeError" not in response.text
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert body["request_id"] in logged
    assert any(r.exc_info and "secret internal detail" in str(r.exc_info[1]) for r in caplog.records)


# ---------------------------------------------------------------------------------------------
# The size limit holds while the body streams in


def test_oversize_upload_is_refused(invert: Invert) -> None:
    with TestClient(create_app({"invert": invert}, max_upload_bytes=10_000)) as client:
        big = encoded(random_rgb(100, 100, seed=8))  # ~30 KB of noise
        assert len(big) > 10_000
        body = assert_error(post_image(client, big), 413, "upload_too_large")  # with a Content-Length
        assert body["limit_bytes"] == 10_000 and "Content-Length" in body["detail"]

        def chunked() -> Iterator[bytes]:  # no Content-Length: counted while streaming
            data, _ = multipart({}, [("image", big, "image/png")])
            for i in range(0, len(data), 4096):
                yield data[i : i + 4096]

        ctype = multipart()[1]
        response = client.post("/v1/stylize", content=chunked(), headers={"content-type": ctype})
        assert "content-length" not in response.request.headers
        assert_error(response, 413, "upload_too_large")
        assert post_image(client, encoded(random_rgb(16, 16))).status_code == 200
    assert invert.calls == 1


def test_oversize_stream_is_not_read_to_the_end() -> None:
    app = create_app({"invert": Invert()}, max_upload_bytes=5_000)
    body, ctype = multipart({}, [("image", b"x" * 100_000, "image/png")])
    chunks = [body[i : i + 1000] for i in range(0, len(body), 1000)]  # 1 kB at a time, no Content-Length

    async def scenario() -> None:
        streamed = await asgi_request(app, "POST", "/v1/stylize", headers={"content-type": ctype}, chunks=chunks)
        assert streamed.status == 413 and streamed.json()["error"] == "upload_too_large"
        assert streamed.chunks_read == 6  # stopped at the first chunk past 5 000 bytes
        assert streamed.headers["connection"] == "close"
        declared = await asgi_request(app, "POST", "/v1/stylize", chunks=chunks,
                                      headers={"content-type": ctype, "content-length": "100000"})
        assert declared.status == 413 and declared.chunks_read == 0  # refused from the header alone
        bad = await asgi_request(app, "POST", "/v1/stylize", chunks=chunks,
                                 headers={"content-type": ctype, "content-length": "lots"})
        assert bad.status == 400 and bad.json()["error"] == "bad_content_length" and bad.chunks_read == 0

    asyncio.run(scenario())
    app.state.pool.shutdown()


def test_uploads_never_touch_the_disk(monkeypatch: pytest.MonkeyPatch, client: TestClient, tmp_path: Path) -> None:
    def no_disk(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an upload was spooled to a temporary file")

    for name in ("SpooledTemporaryFile", "NamedTemporaryFile", "TemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, no_disk)
    big = encoded(random_rgb(700, 700, seed=9))  # ~1.5 MB: above Starlette's 1 MB spooling threshold
    assert len(big) > 1 << 20
    monkeypatch.chdir(tmp_path)
    assert post_image(client, big, strength="0").status_code == 200
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Concurrency: a bounded queue, and a timeout per request


def test_full_queue_answers_503_with_retry_after() -> None:
    gate = Gate()
    app = create_app({"gate": gate}, workers=1, queue_size=1)
    pool = app.state.pool
    body, ctype = multipart({}, [("image", encoded(random_rgb(16, 16)), "image/png")])

    def post() -> Any:
        return asgi_request(app, "POST", "/v1/stylize", headers={"content-type": ctype}, chunks=[body])

    async def scenario() -> None:
        running = asyncio.ensure_future(post())
        await asyncio.to_thread(gate.started.wait, 30)  # the one worker is busy
        queued = asyncio.ensure_future(post())
        await wait_until(lambda: pool.stats()["in_flight"] == 2, "the second request to be queued")
        refused = await post()
        assert refused.status == 503 and refused.json()["error"] == "busy"
        assert int(refused.headers["retry-after"]) >= 1 and refused.json()["retry_after_s"] >= 1
        health = await asgi_request(app, "GET", "/healthz")
        assert health.json()["pool"] == {**health.json()["pool"], "in_flight": 2, "running": 1}
        gate.release.set()
        assert (await running).status == 200 and (await queued).status == 200
        await wait_until(lambda: pool.stats()["in_flight"] == 0, "the slots to be given back")
        assert (await post()).status == 200  # room again

    try:
        asyncio.run(scenario())
    finally:
        gate.release.set()
        pool.shutdown()
    assert gate.entered == 3


def test_junk_is_refused_without_waiting_for_a_busy_worker() -> None:
    gate = Gate()
    app = create_app({"gate": gate}, workers=1, queue_size=4)
    good, ctype = multipart({}, [("image", encoded(random_rgb(16, 16)), "image/png")])
    junk = {"empty_image": b"", "not_an_image": b"<html>hello</html>", "too_many_pixels": png_claiming(90_000, 90_000)}

    async def scenario() -> None:
        running = asyncio.ensure_future(asgi_request(app, "POST", "/v1/stylize", headers={"content-type": ctype},
                                                     chunks=[good]))
        await asyncio.to_thread(gate.started.wait, 30)  # the only worker is busy until the gate opens
        for code, data in junk.items():
            body, _ = multipart({}, [("image", data, "image/png")])
            refused = await asgi_request(app, "POST", "/v1/stylize", headers={"content-type": ctype}, chunks=[body])
            assert refused.json()["error"] == code
        assert app.state.pool.stats()["in_flight"] == 1  # none of them took a place for long
        gate.release.set()
        assert (await running).status == 200

    try:
        asyncio.run(scenario())
    finally:
        gate.release.set()
        app.state.pool.shutdown()
    assert gate.entered == 1


def test_timeout_answers_504_and_cancels_queued_work() -> None:
    gate = Gate()
    app = create_app({"gate": gate}, workers=1, queue_size=1, request_timeout_s=1.0)
    pool = app.state.pool
    body, ctype = multipart({}, [("image", encoded(random_rgb(16, 16)), "image/png")])

    def post() -> Any:
        return asgi_request(app, "POST", "/v1/stylize", headers={"content-type": ctype}, chunks=[body])

    async def scenario() -> None:
        first = asyncio.ensure_future(post())
        await asyncio.to_thread(gate.started.wait, 30)
        second = await post()  # waits behind the blocked first job until its own timeout
        assert second.status == 504 and second.json()["error"] == "timeout"
        assert "waiting for a worker and was cancelled" in second.json()["detail"]
        first_result = await first
        assert first_result.status == 504 and "still running" in first_result.json()["detail"]
        assert pool.stats()["in_flight"] == 1  # the running job keeps its slot until it really ends
        gate.release.set()
        await wait_until(lambda: pool.stats()["in_flight"] == 0, "the running job to finish")

    try:
        asyncio.run(scenario())
    finally:
        gate.release.set()
        pool.shutdown()
    assert gate.entered == 1  # the queued job never ran


def test_config_is_validated() -> None:
    for kwargs, message in (({"workers": 0}, "workers"), ({"queue_size": -1}, "queue_size"),
                            ({"request_timeout_s": 0}, "request_timeout_s"), ({"max_upload_bytes": 0}, "max_upload_bytes"),
                            ({"default": "nope"}, "default model 'nope'")):
        with pytest.raises(ValueError, match=message):
            create_app({"invert": Invert()}, **kwargs)
    with pytest.raises(ValueError, match="model name"):
        create_app({"bad name/..": Invert()})
    with pytest.raises(ValueError, match="at least one model"):
        create_app({})


# ---------------------------------------------------------------------------------------------
# The command line, and a real server on a socket


def test_serve_cli_loads_models_and_runs_uvicorn(tmp_path: Path, cli: CLI, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    runs: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: runs.append({"app": app, **kw}))
    first, second = tiny_release(tmp_path / "monet"), tiny_release(tmp_path / "other", seed=1)
    code, _, err = cli(["serve", "--model", str(first), "--model", f"sepia={second}", "--port", "8123",
                        "--workers", "2", "--queue", "3", "--timeout", "9", "--max-upload-mb", "1.5",
                        "--device", "cpu"])
    assert code == 0, err
    (run,) = runs
    assert run["host"] == "127.0.0.1" and run["port"] == 8123
    app = run["app"]
    assert list(app.state.models) == ["monet", "sepia"]
    config = app.state.config
    assert (config.workers, config.queue_size, config.request_timeout_s, config.max_upload_bytes) == (2, 3, 9.0, 1_500_000)
    assert "serving monet, sepia on http://127.0.0.1:8123/" in err
    app.state.pool.shutdown()


def test_serve_cli_errors_are_one_line(tmp_path: Path, cli: CLI, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: pytest.fail("the server should not start"))
    model = tiny_release(tmp_path / "m")
    code, _, err = cli(["serve", "--model", str(model), "--model", str(model), "--device", "cpu"])
    assert code == 2 and "two models are named 'm'" in err and "NAME=SOURCE" in err
    code, _, err = cli(["serve", "--model", str(tmp_path / "missing"), "--device", "cpu"])
    assert code == 2 and "Traceback" not in err
    code, _, err = cli(["serve", "--model", str(model), "--workers", "0"])
    assert code == 2 and "--workers" in err


def test_model_names_from_sources() -> None:
    from brushwork.cli.serve import default_model_name, parse_model_spec

    assert parse_model_spec("monet=runs/monet/release/BtoA") == ("monet", "runs/monet/release/BtoA")
    assert parse_model_spec("runs/a=b/release") == (None, "runs/a=b/release")  # '/' is not in a name
    assert parse_model_spec("style_monet") == (None, "style_monet")
    assert default_model_name("weights/latest_net_G_A.pth") == "latest_net_G_A"
    assert default_model_name("runs/monet/release/BtoA/") == "BtoA"
    assert default_model_name("style monet") == "style-monet"


def test_live_server_refuses_a_huge_upload_from_its_header() -> None:
    with live_server(create_app({"invert": Invert()})) as url:
        host, port = url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        # the headers promise 1 GB; not a byte of it is sent, and the answer comes anyway
        conn.putrequest("POST", "/v1/stylize")
        conn.putheader("Content-Type", multipart()[1])
        conn.putheader("Content-Length", str(10**9))
        conn.endheaders()
        response = conn.getresponse()
        assert response.status == 413 and json.loads(response.read())["error"] == "upload_too_large"
        conn.close()
        body, ctype = multipart({"strength": "0"}, [("image", encoded(random_rgb(16, 16)), "image/png")])
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("POST", "/v1/stylize", body=body, headers={"Content-Type": ctype})
        response = conn.getresponse()
        assert response.status == 200 and response.getheader("Content-Type") == "image/png"
        np.testing.assert_array_equal(decoded(response.read()), np.asarray(random_rgb(16, 16)))
        conn.close()
