"""The web page in a real headless browser: Debian's chromium driven by Playwright.

Loads the page, uploads a photo, waits for the output, moves the strength slider with the
keyboard, checks that the blended picture and the download equal the server's own blend at that
strength, that the page fits a phone's width, and that the console stayed free of errors.
Screenshots are kept in test-artifacts/ (git-ignored). Skipped, with the reason, where Playwright
or chromium is missing (``apt-get install chromium``; never ``playwright install``, which
downloads a browser build).
"""

from __future__ import annotations

import base64
import http.client
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) is not installed")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")

from brushwork.inference import Stylizer  # noqa: E402
from brushwork.serve import create_app  # noqa: E402
from brushwork.utils.files import atomic_write_bytes  # noqa: E402
from tests._inference_helpers import tiny_release  # noqa: E402
from tests._serve_helpers import Invert, decoded, live_server, multipart, random_rgb  # noqa: E402
from tests.conftest import REPO, SHARED_DATA  # noqa: E402

ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def chromium_path() -> str:
    for candidate in (os.environ.get("BRUSHWORK_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.skip("Debian's chromium is not installed (apt-get install -y chromium; .ci/run does it)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    with sync_api.sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        except sync_api.Error as exc:
            pytest.skip(f"chromium at {executable} does not start headless: {str(exc).splitlines()[0]}")
        try:
            yield launched
        finally:
            launched.close()


def photo(folder: Path) -> Path:
    """A real photo from the shared data (or a generated picture without it), as a PNG without an ICC profile,
    so the browser shows its pixels unconverted and the page's blend can be compared with the server's."""
    files = sorted((SHARED_DATA / "testB").glob("*.jpg")) if (SHARED_DATA / "testB").is_dir() else []
    if files:
        with Image.open(files[0]) as img:
            picture = img.convert("RGB").resize((192, 144), Image.Resampling.LANCZOS)
    else:
        yy, xx = np.mgrid[0:144, 0:192]
        smooth = np.stack([xx * 255 // 191, yy * 255 // 143, (xx + yy) * 255 // 334], axis=-1).astype(np.uint8)
        picture = Image.fromarray(np.clip(smooth.astype(int) + np.asarray(random_rgb(192, 144)) // 8, 0, 255).astype(np.uint8))
    path = folder / "photo.png"
    picture.save(path)
    return path


def server_blend(url: str, data: bytes, strength: str, model: str) -> np.ndarray:
    host, port = url.removeprefix("http://").split(":")
    body, ctype = multipart({"strength": strength, "model": model, "format": "png"}, [("image", data, "image/png")])
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request("POST", "/v1/stylize", body=body, headers={"Content-Type": ctype})
        response = conn.getresponse()
        assert response.status == 200
        return decoded(response.read())
    finally:
        conn.close()


def canvas_pixels(page: Any, selector: str) -> np.ndarray:
    url = page.eval_on_selector(selector, "c => c.toDataURL('image/png')")
    return decoded(base64.b64decode(url.split(",", 1)[1]))


def test_page_stylizes_blends_and_downloads(browser: Any, tmp_path: Path) -> None:
    stylizer = Stylizer.from_pretrained(tiny_release(tmp_path / "tiny", ngf=8), device="cpu")
    image = photo(tmp_path)
    problems: list[str] = []
    with live_server(create_app({"tiny": stylizer, "invert": Invert()})) as url:
        context = browser.new_context(viewport={"width": 1100, "height": 720}, accept_downloads=True)
        page = context.new_page()
        page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type in ("error", "warning") else None)
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        page.on("requestfailed", lambda req: problems.append(f"request failed: {req.url}"))
        page.goto(url + "/")
        page.wait_for_function("() => document.querySelectorAll('#model option').length === 2")
        assert page.eval_on_selector("#model", "s => s.value") == "tiny"

        page.set_input_files("#file", str(image))
        page.wait_for_function("() => document.getElementById('status').dataset.kind === 'done'", timeout=60_000)
        assert page.eval_on_selector("#output", "c => [c.width, c.height]") == [192, 144]
        full = canvas_pixels(page, "#output")
        np.testing.assert_array_equal(full[..., :3], np.asarray(stylizer(Image.open(image).convert("RGB"))))

        # move the slider as a person does: focus it, step it down from 1.00 to 0.35
        page.focus("#strength")
        for _ in range(65):
            page.keyboard.press("ArrowLeft")
        assert page.text_content("#strength-value") == "0.35" and page.is_enabled("#download")
        data = image.read_bytes()
        expected = server_blend(url, data, "0.35", "tiny")
        np.testing.assert_array_equal(canvas_pixels(page, "#output")[..., :3], expected)  # the page's blend == the server's

        with page.expect_download() as download:
            page.click("#download")
        saved = tmp_path / "download.png"
        download.value.save_as(saved)
        assert download.value.suggested_filename == "stylized-tiny-0.35.png"
        np.testing.assert_array_equal(decoded(saved.read_bytes())[..., :3], expected)

        ARTIFACTS.mkdir(exist_ok=True)
        atomic_write_bytes(ARTIFACTS / "serve-page.png", page.screenshot(full_page=True))

        # another model re-runs the upload; the slider position is kept
        page.select_option("#model", "invert")
        page.wait_for_function("() => document.getElementById('status').textContent.includes('invert')"
                               " && document.getElementById('status').dataset.kind === 'done'", timeout=60_000)
        np.testing.assert_array_equal(canvas_pixels(page, "#output")[..., :3], server_blend(url, data, "0.35", "invert"))
        context.close()

        # a phone: the page fits the width, the panes stack
        phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                    has_touch=True)
        small = phone.new_page()
        small.on("pageerror", lambda exc: problems.append(f"phone page error: {exc}"))
        small.goto(url + "/")
        small.wait_for_function("() => document.querySelectorAll('#model option').length === 2")
        small.set_input_files("#file", str(image))
        small.wait_for_function("() => document.getElementById('status').dataset.kind === 'done'", timeout=60_000)
        assert small.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
        boxes = [small.eval_on_selector(f"#{pane}", "c => c.getBoundingClientRect().toJSON()") for pane in ("input", "output")]
        assert boxes[1]["top"] >= boxes[0]["bottom"]  # stacked, not squeezed side by side
        atomic_write_bytes(ARTIFACTS / "serve-page-phone.png", small.screenshot(full_page=True))
        phone.close()
    assert problems == []


def test_page_shows_server_errors(browser: Any, tmp_path: Path) -> None:
    text = tmp_path / "notes.png"
    text.write_bytes(b"this is not a picture\n")
    with live_server(create_app({"invert": Invert()})) as url:
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url + "/")
        page.wait_for_function("() => document.querySelectorAll('#model option').length === 1")
        page.set_input_files("#file", str(text))
        page.wait_for_function("() => document.getElementById('status').dataset.kind === 'error'", timeout=60_000)
        assert "not an image" in page.text_content("#status")
        assert page.is_disabled("#download")
        page.close()
    assert errors == []  # the 415 is shown to the person, not thrown


def test_tiff_the_browser_cannot_show_is_decoded_by_the_server(browser: Any, tmp_path: Path) -> None:
    source = random_rgb(48, 32, seed=11)
    tiff = tmp_path / "scan.tiff"
    source.save(tiff)
    with live_server(create_app({"invert": Invert()})) as url:
        page = browser.new_page()
        page.goto(url + "/")
        page.wait_for_function("() => document.querySelectorAll('#model option').length === 1")
        page.set_input_files("#file", str(tiff))
        page.wait_for_function("() => document.getElementById('status').dataset.kind === 'done'", timeout=60_000)
        np.testing.assert_array_equal(canvas_pixels(page, "#input")[..., :3], np.asarray(source))
        np.testing.assert_array_equal(canvas_pixels(page, "#output")[..., :3], 255 - np.asarray(source))
        page.close()
