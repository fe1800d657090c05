"""DCGAN: its losses against the hand formula, the D-first order against a hand-written loop,
its settings, and ``brushwork generate`` (training, resume and release loading are covered for
every method in test_methods.py)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from brushwork.config import ConfigError, TrainConfig, resolve_train_config
from brushwork.methods import build_method
from brushwork.training.run import run_training
from brushwork.training.trainer import Trainer
from tests._inference_helpers import cli_fixture, tiny_release
from tests.conftest import write_images

CLI = Callable[[list[str]], tuple[int, str, str]]
_ = cli_fixture


def tiny(root: Path, out: Path, **objective: object) -> TrainConfig:
    """A dcgan_64 of width 4 on a few images, fp32 NCHW eager, so that a hand-written loop can match it bit for bit."""
    return resolve_train_config(overrides={
        "method": "dcgan",
        "data": {"root": str(root), "num_workers": 0, "batch_size": 3},
        "model": {"ngf": 4, "ndf": 4},
        "objective": objective,
        "optim": {"max_steps": 2},
        "run": {"out": str(out), "progress": False, "tensorboard": False, "precision": "fp32", "channels_last": False,
                "gemm_weight_grad": False, "compile": False, "sample_every": 1000},
    })  # fmt: skip


def real_batch(n: int = 3, seed: int = 0) -> Tensor:
    return torch.rand(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_defaults_are_the_papers() -> None:
    cfg = resolve_train_config(overrides={"method": "dcgan", "data": {"root": "d"}})
    assert (cfg.model.image_size, cfg.model.latent_dim, cfg.model.ngf, cfg.model.ndf) == (64, 100, 64, 64)
    assert (cfg.model.init_type, cfg.model.init_gain, cfg.objective.gan_mode) == ("normal", 0.02, "vanilla")
    assert (cfg.data.batch_size, cfg.data.load_size, cfg.data.crop_size, cfg.data.flip) == (128, 64, 64, False)
    assert (cfg.optim.lr, cfg.optim.beta1, cfg.optim.beta2) == (2e-4, 0.5, 0.999)
    assert (cfg.optim.epochs, cfg.optim.epochs_decay, cfg.optim.lr_policy, cfg.run.out) == (25, 0, "constant", "runs/dcgan")
    big = resolve_train_config(overrides={"method": "dcgan", "data": {"root": "d", "load_size": 128, "crop_size": 128},
                                          "model": {"image_size": 128, "ngf": 4, "ndf": 4}})  # fmt: skip
    G = build_method(big).networks["G"]
    assert G(torch.zeros(1, 100, 1, 1)).shape == (1, 3, 128, 128)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"data": {"crop_size": 32}}, r"^data.crop_size=32 does not match model.image_size=64; .* --crop-size 64 --load-size 64$"),
        ({"model": {"image_size": 128}}, r"^data.crop_size=64 does not match model.image_size=128"),
        ({"model": {"image_size": 32}}, r"^model.image_size=32 is not valid; expected one of 64, 128$"),
        ({"data": {"preprocess": "scale_width"}}, r"^data.preprocess='scale_width' does not give every image the same size"),
        ({"objective": {"gan_mode": "wgangp"}}, r"^objective.gan_mode='wgangp' is not valid; expected one of lsgan, vanilla$"),
    ],
)
def test_bad_settings_are_one_line_errors_naming_them(overrides: dict[str, dict[str, object]], message: str) -> None:
    values: dict[str, object] = {"method": "dcgan", "data": {"root": "d", **overrides.get("data", {})}}
    values.update({k: v for k, v in overrides.items() if k != "data"})
    with pytest.raises(ConfigError, match=message) as info:
        resolve_train_config(overrides=values)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("gan_mode", ["vanilla", "lsgan"])
def test_losses_equal_the_hand_formula(gan_mode: str, tmp_path: Path) -> None:
    method = build_method(tiny(tmp_path, tmp_path / "run", gan_mode=gan_mode))
    G, D = method.networks["G"], method.networks["D"]
    real = real_batch()
    torch.manual_seed(7)
    ctx: dict[str, object] = {}
    loss_d, parts_d = method.phase_loss("discriminator", {"images": real}, ctx)
    loss_g, parts_g = method.phase_loss("generator", {"images": real}, ctx)

    torch.manual_seed(7)
    z = torch.randn(3, 100, 1, 1)  # the same draw from the global generator
    with torch.no_grad():  # train-mode batch norm: the same outputs on a second pass
        fake = G(z)
        d_real, d_fake = D(real), D(fake)
    if gan_mode == "vanilla":  # BCE on logits: -log sigmoid(d) for real, -log(1 - sigmoid(d)) for fake
        expect_real, expect_fake = -F.logsigmoid(d_real).mean(), -F.logsigmoid(-d_fake).mean()
        expect_g = -F.logsigmoid(d_fake).mean()
    else:
        expect_real, expect_fake, expect_g = ((d_real - 1) ** 2).mean(), (d_fake**2).mean(), ((d_fake - 1) ** 2).mean()
    torch.testing.assert_close(parts_d["D_real"], expect_real)
    torch.testing.assert_close(parts_d["D_fake"], expect_fake)
    torch.testing.assert_close(loss_d, expect_real + expect_fake)  # the sum, as the paper's code: no 0.5
    torch.testing.assert_close(loss_g, expect_g)  # D has not stepped here: the same D(G(z))
    assert set(parts_g) == {"G"}


def _reference_steps(G: nn.Module, D: nn.Module, batches: list[Tensor], *, g_sees_updated_d: bool = True) -> list[float]:
    """The PyTorch DCGAN example's loop, written out: D on real and G(z).detach(), then G on D(G(z))."""
    bce = nn.BCEWithLogitsLoss()
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999), fused=True)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999), fused=True)
    losses = []
    for real in batches:
        z = torch.randn(real.shape[0], 100, 1, 1)
        fake = G(z)
        d_before = copy.deepcopy(D)
        err_d = bce(D(real), torch.ones(real.shape[0])) + bce(D(fake.detach()), torch.zeros(real.shape[0]))
        opt_d.zero_grad()
        err_d.backward()
        opt_d.step()
        judge = D if g_sees_updated_d else d_before
        err_g = bce(judge(fake), torch.ones(real.shape[0]))
        opt_g.zero_grad()
        err_g.backward()
        opt_g.step()
        losses += [err_d.item(), err_g.item()]
    return losses


def test_discriminator_first_then_generator_through_the_updated_discriminator(tmp_path: Path) -> None:
    config = tiny(tmp_path, tmp_path / "run")
    method = build_method(config)
    G0, D0 = copy.deepcopy(method.networks["G"]), copy.deepcopy(method.networks["D"])
    trainer = Trainer(method, config, None, device=torch.device("cpu"))
    batches = [real_batch(seed=1), real_batch(seed=2)]
    torch.manual_seed(3)
    ours = []
    for real in batches:
        values = trainer.train_step({"images": real})
        ours += [values["D_real"] + values["D_fake"], values["G"]]

    G, D = copy.deepcopy(G0), copy.deepcopy(D0)
    torch.manual_seed(3)
    reference = _reference_steps(G, D, batches)
    np.testing.assert_allclose(ours, reference, rtol=1e-5)
    for name, ref in (("G", G), ("D", D)):
        for (key, a), b in zip(method.networks[name].state_dict().items(), ref.state_dict().values(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=f"{name}.{key}")

    # the comparison can tell the orders apart: G stepping against the D of before its update differs
    G_old, D_old = copy.deepcopy(G0), copy.deepcopy(D0)
    torch.manual_seed(3)
    _reference_steps(G_old, D_old, batches, g_sees_updated_d=False)
    weight = next(iter(G0.state_dict()))
    assert not torch.allclose(G_old.state_dict()[weight], method.networks["G"].state_dict()[weight], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# brushwork generate


@pytest.fixture(scope="module")
def dcgan_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dcgan_64 run folder after one step (its release in RUN/release/generator)."""
    root = tmp_path_factory.mktemp("dcgan")
    write_images(root / "images", 4, size=(48, 40), seed=3)
    config = tiny(root / "images", root / "run")
    run_training(resolve_train_config(overrides={**config.to_dict(), "optim": {"max_steps": 1}}))
    return root / "run"


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_generate_writes_n_images_and_a_grid_the_same_for_any_n_and_batch(cli: CLI, dcgan_run: Path, tmp_path: Path) -> None:
    code, out, err = cli(["generate", "--model", str(dcgan_run), "-n", "5", "--seed", "3", "--out", str(tmp_path / "a"),
                          "--device", "cpu", "--batch-size", "2", "--no-progress"])  # fmt: skip
    assert code == 0, err
    assert "5 images and grid.png written" in out
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [f"{i:05d}.png" for i in range(5)] + ["grid.png"]
    assert Image.open(tmp_path / "a" / "grid.png").size == (3 * 64 + 4 * 2, 2 * 64 + 3 * 2)  # ceil(sqrt(5)) = 3 per row
    # the release folder, fewer images, another batch size, no grid: the same first images
    code, _, err = cli(["generate", "--model", str(dcgan_run / "release" / "generator"), "-n", "3", "--seed", "3",
                        "--out", str(tmp_path / "b"), "--device", "cpu", "--batch-size", "3", "--no-grid", "--no-progress"])  # fmt: skip
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["00000.png", "00001.png", "00002.png"]
    for i in range(3):
        assert np.array_equal(_pixels(tmp_path / "a" / f"{i:05d}.png"), _pixels(tmp_path / "b" / f"{i:05d}.png"))
    assert not np.array_equal(_pixels(tmp_path / "a" / "00000.png"), _pixels(tmp_path / "a" / "00001.png"))
    code, _, err = cli(["generate", "--model", str(dcgan_run), "-n", "1", "--seed", "4", "--out", str(tmp_path / "c"),
                        "--device", "cpu", "--no-progress"])  # fmt: skip
    assert code == 0, err
    assert not np.array_equal(_pixels(tmp_path / "a" / "00000.png"), _pixels(tmp_path / "c" / "00000.png"))  # another seed


def test_generate_refuses_earlier_outputs_unless_overwrite(cli: CLI, dcgan_run: Path, tmp_path: Path) -> None:
    args = ["generate", "--model", str(dcgan_run), "--out", str(tmp_path), "--device", "cpu", "--no-progress"]
    (tmp_path / "notes.txt").write_text("mine")
    assert cli([*args, "-n", "4"])[0] == 0
    before = _pixels(tmp_path / "00003.png")
    code, _, err = cli([*args, "-n", "2", "--seed", "1"])
    assert code == 2
    assert f"error: output folder {tmp_path} already holds generated images (00000.png and 4 more); pass --overwrite" in err
    assert np.array_equal(_pixels(tmp_path / "00003.png"), before)  # untouched
    assert cli([*args, "-n", "2", "--seed", "1", "--overwrite", "--no-grid"])[0] == 0
    # the earlier set is gone (its images beyond -n and its grid too); other files are left alone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00000.png", "00001.png", "notes.txt"]


def test_generate_refuses_an_image_to_image_model(cli: CLI, tmp_path: Path) -> None:
    release = tiny_release(tmp_path / "cyclegan")
    code, _, err = cli(["generate", "--model", str(release), "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert code == 2
    assert err.strip().splitlines() == [
        f"error: {release} is not a generator of noise (its pipeline is image-to-image, resnet_2blocks); "
        "brushwork generate needs one, such as a DCGAN run; use brushwork stylize for it"
    ]
    assert not (tmp_path / "out").exists()


def test_train_flags_of_another_method_are_refused(cli: CLI, tmp_path: Path) -> None:
    code, _, err = cli(["train", "--data", str(tmp_path), "--latent-dim", "8", "--out", str(tmp_path / "r")])
    assert code == 2
    assert "--latent-dim does not apply to method cyclegan (settings of dcgan)" in err
    code, _, err = cli(["train", "--method", "dcgan", "--data", str(tmp_path), "--lambda-a", "5", "--out", str(tmp_path / "r")])
    assert code == 2
    assert "--lambda-a does not apply to method dcgan (settings of cyclegan)" in err
    assert not (tmp_path / "r").exists()
