"""AdaIN: the operation, the authors' decoder and encoder files, release folders, the training loss, the pipeline.

All on randomly initialised networks (no trained AdaIN decoder exists offline): they test the
mechanics and the file layouts, not the pictures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from brushwork.inference import Stylizer, load_pipeline
from brushwork.inference.stylizer import ImageTooSmallError, PipelineKindError
from brushwork.nn.adain import ENCODER_LAYERS, AdaINDecoder, AdaINNet, adain, mean_std
from brushwork.style import (
    TRAINING,
    AdaINModelError,
    adain_loss,
    adain_training_step,
    from_style,
    learning_rate,
    lr_factor,
)
from brushwork.style.adain import load_adain_model, save_adain_release
from brushwork.style.colour import rgb_to_yiq
from brushwork.style.pipelines import AdaINPipeline
from brushwork.style.weights import VGGWeights, load_into
from tests._style_helpers import (
    kaiming_,
    no_downloads,
    one_torch_thread,
    random_vgg_state,
    smooth_image,
)
from tests.test_style_vgg import authors_vgg, authors_vgg_state

_ = (one_torch_thread, no_downloads)

#: The authors' decoder, (in, out) of each 3x3 conv with "U" for a nearest x2 upsampling: their layout,
#: written out here independently of brushwork.nn.adain.
AUTHORS_DECODER = [(512, 256), "U", (256, 256), (256, 256), (256, 256), (256, 128), "U", (128, 128), (128, 64), "U", (64, 64), (64, 3)]


def authors_decoder() -> nn.Sequential:
    layers: list[nn.Module] = []
    convs = [item for item in AUTHORS_DECODER if item != "U"]
    for item in AUTHORS_DECODER:
        if item == "U":
            layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
            continue
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(*item, 3)]  # type: ignore[misc]
        if item is not convs[-1]:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def authors_adain(c: torch.Tensor, s: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """AdaIN as the authors' port computes it (unbiased variance + eps, then sqrt)."""
    n, ch = c.shape[:2]
    cm, sm = c.view(n, ch, -1).mean(2).view(n, ch, 1, 1), s.view(n, ch, -1).mean(2).view(n, ch, 1, 1)
    cs, ss = (c.view(n, ch, -1).var(2) + eps).sqrt().view(n, ch, 1, 1), (s.view(n, ch, -1).var(2) + eps).sqrt().view(n, ch, 1, 1)
    return (c - cm) / cs * ss + sm


def test_decoder_keys_and_shapes_are_the_authors() -> None:
    ours = AdaINDecoder()
    expected = {"1": (256, 512), "5": (256, 256), "8": (256, 256), "11": (256, 256), "14": (128, 256), "18": (128, 128),
                "21": (64, 128), "25": (64, 64), "28": (3, 64)}  # fmt: skip
    shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert shapes == {**{f"{i}.weight": (*oi, 3, 3) for i, oi in expected.items()}, **{f"{i}.bias": (oi[0],) for i, oi in expected.items()}}
    assert sum(p.numel() for p in ours.parameters()) == 3_505_219
    reference = authors_decoder()
    assert list(reference.state_dict()) == list(ours.state_dict())
    ours.load_state_dict(reference.state_dict(), strict=True)
    t = torch.randn(1, 512, 3, 4)
    with torch.no_grad():
        torch.testing.assert_close(ours(t), reference(t), rtol=0, atol=0)


def test_adain_matches_style_statistics_and_the_authors_formula() -> None:
    gen = torch.Generator().manual_seed(0)
    c, s = torch.randn(2, 5, 6, 7, generator=gen) * 3 + 1, torch.randn(1, 5, 4, 4, generator=gen) * 0.5 - 2
    out = adain(c, s)
    torch.testing.assert_close(out, authors_adain(c, s.expand(2, -1, -1, -1)), rtol=1e-5, atol=1e-5)
    om, os_ = mean_std(out)
    sm, ss = mean_std(s)
    torch.testing.assert_close(om, sm.expand_as(om), atol=1e-5, rtol=0)
    # std(out) = sqrt(var_c / (var_c + eps) * (var_s + eps) + eps): within eps / var of the style's
    torch.testing.assert_close(os_, ss.expand_as(os_), rtol=1e-4, atol=0)
    with pytest.raises(ValueError, match="same C"):
        adain(c, torch.randn(1, 4, 3, 3))


def write_authors_files(folder: Path, seed: int = 0) -> tuple[Path, Path, nn.Sequential, nn.Sequential]:
    folder.mkdir(parents=True, exist_ok=True)
    enc_state = authors_vgg_state(seed)
    torch.manual_seed(seed)
    dec = authors_decoder()
    torch.save(enc_state, folder / "vgg_normalised.pth")
    torch.save(dec.state_dict(), folder / "decoder.pth")
    return folder / "decoder.pth", folder / "vgg_normalised.pth", authors_vgg(enc_state), dec.eval()


def test_authors_files_give_the_authors_result(tmp_path: Path) -> None:
    """decoder.pth + vgg_normalised.pth in their layout: our pipeline's network equals their forward pass
    (their encoder with the 1x1 conv, their AdaIN, their decoder) to fp32 rounding, odd sizes included."""
    decoder_path, _, ref_enc, ref_dec = write_authors_files(tmp_path / "models")
    net, config = load_adain_model(decoder_path)
    assert config.pipeline == "reference-style" and config.provenance["decoder_file"] == "decoder.pth"
    content, style = torch.rand(1, 3, 37, 45), torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        expected = ref_dec(authors_adain(ref_enc(content), ref_enc(style)))[..., :37, :45]
        got = net(content, style)
    assert got.shape == (1, 3, 37, 45)
    assert float((got - expected).abs().max() / expected.abs().max()) < 1e-4


def test_authors_decoder_needs_their_encoder(tmp_path: Path) -> None:
    decoder_path, enc_path, _, _ = write_authors_files(tmp_path / "models")
    enc_path.unlink()
    with pytest.raises(AdaINModelError, match="vgg_normalised.pth") as info:
        load_adain_model(decoder_path)
    assert "\n" not in str(info.value)
    torch.save({"1.weight": torch.zeros(3)}, tmp_path / "bad.pth")
    with pytest.raises(AdaINModelError, match="not an AdaIN decoder in the authors' layout"):
        load_adain_model(tmp_path / "bad.pth")
    with pytest.raises(AdaINModelError, match="does not exist"):
        load_adain_model(tmp_path / "nowhere.pth")


@pytest.fixture
def random_net() -> AdaINNet:
    torch.manual_seed(0)
    net = AdaINNet()
    kaiming_(net.decoder)
    load_into(net.encoder, VGGWeights(random_vgg_state(1, last="relu4_1"), "random VGG-19 (test)"))
    return net.eval()


def test_release_folder_round_trip_through_load_pipeline(tmp_path: Path, random_net: AdaINNet) -> None:
    folder = save_adain_release(random_net, tmp_path / "adain", encoder_source="random VGG-19 (test)")
    painting = Image.fromarray(smooth_image(40, 40, 1))
    pipe = load_pipeline(folder, style=painting, device="cpu", precision="fp32", style_size=48)
    assert isinstance(pipe, AdaINPipeline) and "random VGG-19 (test)" in pipe.describe()
    photo = smooth_image(24, 40, 2)
    out = pipe(photo)
    assert out.shape == photo.shape and out.dtype == np.uint8
    style = torch.from_numpy(np.asarray(painting).copy()).permute(2, 0, 1)[None].float() / 255
    style = F.interpolate(style, size=(48, 48), mode="bicubic", antialias=False, align_corners=False).clamp(0, 1)
    with torch.no_grad():
        direct = random_net(torch.from_numpy(photo.copy()).permute(2, 0, 1)[None].float() / 255, style)
    expected = direct.clamp(0, 1).mul(255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1  # the same network, batched differently
    with pytest.raises(PipelineKindError, match="style"):
        Stylizer.from_pretrained(folder)
    empty = load_pipeline(folder, device="cpu")
    with pytest.raises(Exception, match="no style image"):
        empty(photo)
    assert empty.with_style(painting)(photo).shape == photo.shape


def test_alpha_interpolation_and_preserve_colour(tmp_path: Path, random_net: AdaINNet) -> None:
    folder = save_adain_release(random_net, tmp_path / "adain", encoder_source="random")
    a, b = Image.fromarray(smooth_image(32, 32, 3)), Image.fromarray(smooth_image(32, 32, 4))
    photo = smooth_image(32, 32, 5)
    common = {"model": folder, "device": "cpu", "precision": "fp32", "style_size": None}
    only_a = from_style(a, method="adain", **common)(photo)
    assert np.array_equal(from_style([(a, 1.0), (b, 0.0)], method="adain", **common)(photo), only_a)
    mixed = from_style([(a, 0.5), (b, 0.5)], method="adain", **common)(photo)
    assert not np.array_equal(mixed, only_a)
    # alpha 0: the photo's own features decoded
    x = torch.from_numpy(photo.copy()).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        recon = random_net.decode(random_net.encode(x)["relu4_1"], (32, 32)).clamp(0, 1).mul(255).round().to(torch.uint8)
    zero = from_style(a, method="adain", strength=0.0, **common)(photo)
    assert np.abs(zero.astype(int) - recon[0].permute(1, 2, 0).numpy().astype(int)).max() <= 1
    kept = from_style(a, method="adain", preserve_colour=True, **common)(photo)
    yiq_kept = rgb_to_yiq(torch.from_numpy(kept.copy()).permute(2, 0, 1).double() / 255)
    yiq_photo = rgb_to_yiq(torch.from_numpy(photo.copy()).permute(2, 0, 1).double() / 255)
    inside = torch.from_numpy(((kept > 0) & (kept < 255)).all(-1))
    assert (yiq_kept[1:, inside] - yiq_photo[1:, inside]).abs().max() < 0.6 * 1.5 / 255 + 1e-9
    with pytest.raises(ImageTooSmallError):
        from_style(a, method="adain", **common)(smooth_image(8, 40))


def test_adain_without_a_decoder_says_how_to_get_one() -> None:
    with pytest.raises(AdaINModelError, match="decoder.pth") as info:
        from_style(Image.fromarray(smooth_image(20, 20)), method="adain")
    assert "\n" not in str(info.value)


def test_training_loss_is_the_papers(random_net: AdaINNet) -> None:
    content, style = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    terms = adain_loss(random_net.encoder, random_net.decoder, content, style)
    enc = random_net.encoder
    with torch.no_grad():
        fs = enc(style)
        t = adain(enc(content)["relu4_1"], fs["relu4_1"])
        g = random_net.decoder(t)
        fg = enc(g)
        loss_c = ((fg["relu4_1"] - t) ** 2).mean()
        loss_s = sum(((mean_std(fg[k])[0] - mean_std(fs[k])[0]) ** 2).mean() + ((mean_std(fg[k])[1] - mean_std(fs[k])[1]) ** 2).mean()
                     for k in ENCODER_LAYERS)  # fmt: skip
    torch.testing.assert_close(terms["content"], loss_c, rtol=1e-5, atol=0)
    torch.testing.assert_close(terms["style"], loss_s, rtol=1e-5, atol=0)
    torch.testing.assert_close(terms["total"], loss_c + 10 * loss_s, rtol=1e-5, atol=0)


def test_training_step_trains_the_decoder_only(random_net: AdaINNet) -> None:
    random_net.train()
    content, style = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    opt = torch.optim.Adam(random_net.decoder.parameters(), lr=TRAINING.lr)
    losses = []
    for _ in range(4):  # one fixed batch: the loss must fall
        opt.zero_grad()
        loss, parts = adain_training_step(random_net.encoder, random_net.decoder, content, style)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        assert set(parts) == {"loss_content", "loss_style", "loss_total"} and not parts["loss_total"].requires_grad
    assert losses[-1] < losses[0]
    assert all(p.grad is None for p in random_net.encoder.parameters())
    assert all(p.grad is not None for p in random_net.decoder.parameters())


def test_training_defaults_are_the_authors() -> None:
    assert (TRAINING.lr, TRAINING.lr_decay, TRAINING.batch_size, TRAINING.iterations) == (1e-4, 5e-5, 8, 160_000)
    assert (TRAINING.style_weight, TRAINING.content_weight, TRAINING.load_size, TRAINING.crop_size) == (10.0, 1.0, 512, 256)
    assert learning_rate(0) == 1e-4 and learning_rate(20_000) == pytest.approx(1e-4 / 2)
    assert lr_factor(20_000) == pytest.approx(0.5)

