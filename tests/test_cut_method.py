"""CUT and FastCUT as training methods: the loss against the paper's formula, the defaults, the
head's set-up, flip equivariance from the seeded RNG, settings checks, flags, mixed precision.

The trainer-level checks (a short run, SIGKILL-free resume with identical losses, releases that
load) are in tests/test_methods.py, which runs every registered method.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from torch import Tensor

from brushwork.config import ConfigError, TrainConfig, resolve_train_config
from brushwork.methods import build_method
from brushwork.methods.cut import CUT
from brushwork.nn import feature_channels
from brushwork.training.trainer import Trainer
from tests._inference_helpers import cli_fixture
from tests.conftest import one_thread, write_tiny_data

CLI = Callable[[list[str]], tuple[int, str, str]]
_ = cli_fixture

LAYERS = (0, 4, 8, 12)  # the anti-aliased resnet_2blocks: padded input, both down convs, block 1
PATCHES = 6


def tiny_config(method: str, **objective: Any) -> TrainConfig:
    return resolve_train_config(overrides={
        "method": method,
        "data": {"root": "unused", "load_size": 32, "crop_size": 32},
        "model": {"generator": "resnet_2blocks", "ngf": 4, "ndf": 4, "netf_nc": 8, "init_gain": 0.3},
        "objective": {"nce_layers": ",".join(map(str, LAYERS)), "num_patches": PATCHES, **objective},
    })  # fmt: skip


def tiny_method(method: str, **objective: Any) -> tuple[CUT, dict[str, Tensor]]:
    torch.manual_seed(0)
    cut = build_method(tiny_config(method, **objective))
    assert isinstance(cut, CUT)
    g = torch.Generator().manual_seed(1)
    batch = {k: torch.rand(2, 3, 32, 32, generator=g) * 2 - 1 for k in ("A", "B")}
    cut.setup(batch)
    return cut, batch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Networks this small run faster on one thread; two wait on each other on a busy machine."""
    with one_thread():
        yield


def seed_with_flip(flip: bool) -> int:
    """A seed after which the first ``torch.rand(())`` is below 0.5 (flip) or not."""
    for seed in range(100):
        torch.manual_seed(seed)
        if (float(torch.rand(())) < 0.5) == flip:
            return seed
    raise AssertionError("no seed found")


# ---------------------------------------------------------------------------------------------
# The loss, computed again from the paper's formula with nothing of the method but its networks


def _features(cut: CUT, x: Tensor) -> list[Tensor]:
    model = cut.networks["G"].model
    return [model[: i + 1](x) for i in LAYERS]


def _project(cut: CUT, layer: int, feat: Tensor, ids: Tensor) -> Tensor:
    """H_l of eq. (3): the MLP of layer ``layer`` on the features at ``ids``, L2-normalised; float64."""
    mlp = getattr(cut.networks["H"], f"mlp_{layer}")
    w0, b0, w2, b2 = (t.detach().double() for t in (mlp[0].weight, mlp[0].bias, mlp[2].weight, mlp[2].bias))
    x = feat.detach().double().flatten(2)[:, :, ids].transpose(1, 2)  # (B, P, C)
    x = torch.relu(x @ w0.T + b0) @ w2.T + b2
    return x / (x.norm(dim=-1, keepdim=True) + 1e-7)


def _info_nce(q: Tensor, k: Tensor, tau: float) -> Tensor:
    """Eq. (2) per patch, negatives from the same image; the self-pair among the negatives counts as -10 (official mask)."""
    losses = []
    for qb, kb in zip(q, k, strict=True):
        sim = qb @ kb.T  # (P, P): query i against key j
        for i in range(sim.shape[0]):
            negatives = torch.cat([sim[i, :i], torch.tensor([-10.0], dtype=sim.dtype), sim[i, i + 1:]])
            denominator = torch.exp(sim[i, i] / tau) + torch.exp(negatives / tau).sum()
            losses.append(-torch.log(torch.exp(sim[i, i] / tau) / denominator))
    return torch.stack(losses).mean()


def _patch_nce(cut: CUT, src: Tensor, tgt: Tensor, *, flipped: bool, tau: float) -> Tensor:
    keys, queries = _features(cut, src), _features(cut, tgt)
    per_layer = []
    for layer, (k, q) in enumerate(zip(keys, queries, strict=True)):
        if flipped:
            q = torch.flip(q, dims=(3,))
        ids = torch.randperm(k.shape[2] * k.shape[3])[:PATCHES]  # the same draws as the method, in its order
        per_layer.append(_info_nce(_project(cut, layer, q, ids), _project(cut, layer, k, ids), tau))
    return torch.stack(per_layer).mean()


@pytest.mark.parametrize(
    ("method", "objective", "flip"),
    [
        ("cut", {}, False),  # the defaults: identity term, no flip
        ("fastcut", {}, True),  # the defaults: no identity term, flip drawn
        ("fastcut", {}, False),  # flip equivariance on, not drawn this time
        ("fastcut", {"nce_idt": True, "lambda_gan": 0.5}, True),  # both terms flipped back
        ("cut", {"lambda_nce": 0.0}, False),  # no PatchNCE: no identity term either, as in the official code
        ("cut", {"direction": "BtoA"}, False),  # x from B, y from A
    ],
)
def test_losses_are_the_papers_formula(method: str, objective: dict[str, Any], flip: bool) -> None:
    cut, batch = tiny_method(method, **objective)
    settings = tiny_config(method, **objective).objective
    real_a, real_b = (batch["A"], batch["B"]) if settings.direction == "AtoB" else (batch["B"], batch["A"])  # x, y
    G, D = cut.networks["G"], cut.networks["D"]
    seed = seed_with_flip(flip)

    torch.manual_seed(seed)
    ctx: dict[str, Any] = {}
    loss_d, parts_d = cut.phase_loss("discriminator", batch, ctx)
    loss_g, parts_g = cut.phase_loss("generator", batch, ctx)

    torch.manual_seed(seed)
    flipped = settings.flip_equivariance and float(torch.rand(())) < 0.5
    assert ctx["flipped"] == flipped == (flip and settings.flip_equivariance)
    x = torch.flip(real_a, dims=(3,)) if flipped else real_a
    with torch.no_grad():
        fake_b = G(x)
        assert torch.allclose(ctx["fake"], fake_b, atol=1e-6)  # G saw the flipped input
        expected_d = 0.5 * ((D(fake_b) ** 2).mean() + ((D(real_b) - 1) ** 2).mean())  # LSGAN, eq. (1)
        expected_g = settings.lambda_gan * ((D(fake_b) - 1) ** 2).mean().double()
        nce_terms = []
        if settings.lambda_nce > 0:
            nce_terms.append(settings.lambda_nce * _patch_nce(cut, real_a, fake_b, flipped=flipped, tau=settings.nce_t))
            if settings.nce_idt:
                idt_b = G(torch.flip(real_b, dims=(3,)) if flipped else real_b)
                nce_terms.append(settings.lambda_nce * _patch_nce(cut, real_b, idt_b, flipped=flipped, tau=settings.nce_t))
            expected_g = expected_g + torch.stack(nce_terms).mean()  # (NCE + NCE_Y) / 2 with the identity term
    assert loss_d.item() == pytest.approx(expected_d.item(), rel=1e-5)
    assert loss_g.item() == pytest.approx(expected_g.item(), rel=1e-5)
    assert set(parts_d) == {"D_real", "D_fake"}
    names = {"G_GAN"} | ({"NCE"} if nce_terms else set()) | ({"NCE_Y"} if len(nce_terms) == 2 else set())
    assert set(parts_g) == names
    for name, value in zip(("NCE", "NCE_Y"), nce_terms, strict=False):
        assert parts_g[name].item() == pytest.approx(value.item(), rel=1e-5)  # logged as the official loss_NCE, loss_NCE_Y
    loss_g.backward()
    assert all(p.grad is not None for p in cut.networks["H"].parameters()) == bool(nce_terms)


def test_defaults_are_the_official_ones() -> None:
    cut = resolve_train_config(overrides={"method": "cut", "data": {"root": "d"}})
    fast = resolve_train_config(overrides={"method": "fastcut", "data": {"root": "d"}})
    for cfg in (cut, fast):
        m = cfg.model
        assert (m.generator, m.discriminator, m.ngf, m.ndf, m.norm, m.dropout, m.antialias, m.antialias_up) == (
            "resnet_9blocks", "basic", 64, 64, "instance", False, True, True)
        assert (m.init_type, m.init_gain, m.netf, m.netf_nc) == ("xavier", 0.02, "mlp_sample", 256)
        o = cfg.objective
        assert (o.gan_mode, o.lambda_gan, o.nce_layers, o.nce_t, o.num_patches, o.nce_negatives, o.direction) == (
            "lsgan", 1.0, "0,4,8,12,16", 0.07, 256, "image", "AtoB")
        assert (cfg.optim.lr, cfg.optim.beta1, cfg.optim.beta2, cfg.optim.lr_policy) == (2e-4, 0.5, 0.999, "linear")
        assert (cfg.data.load_size, cfg.data.crop_size, cfg.data.batch_size, cfg.data.flip) == (286, 256, 1, True)
    assert (cut.objective.lambda_nce, cut.objective.nce_idt, cut.objective.flip_equivariance) == (1.0, True, False)
    assert (fast.objective.lambda_nce, fast.objective.nce_idt, fast.objective.flip_equivariance) == (10.0, False, True)
    assert (cut.optim.epochs, cut.optim.epochs_decay, fast.optim.epochs, fast.optim.epochs_decay) == (200, 200, 150, 50)
    assert (cut.run.out, fast.run.out) == ("runs/cut", "runs/fastcut")


def test_networks_head_and_release() -> None:
    cut, batch = tiny_method("cut")
    assert list(cut.networks) == ["G", "D", "H"]
    H = cut.networks["H"]
    assert list(H.channels) == feature_channels(cut.networks["G"], LAYERS) == [3, 8, 16, 16]
    cut.setup(batch)  # a second call keeps the head (and its weights)
    assert cut.networks["H"] is H
    assert "model.7.filt" in cut.networks["G"].state_dict() and "model.2.filt" in cut.networks["D"].state_dict()
    assert [p.name for p in cut.phases()] == ["discriminator", "generator"]
    assert cut.phases()[0].forward == ("G",) and cut.phases()[1].networks == ("G", "H")
    spec = cut.release_specs()["AtoB"]
    assert spec.network == "G" and spec.architecture["antialias"] is True and spec.architecture["antialias_up"] is True
    assert list(cut.visuals(batch)) == ["real_A", "fake_B", "real_B", "idt_B"]
    back = build_method(tiny_config("cut", direction="BtoA"))
    assert list(back.release_specs()) == ["BtoA"] and back.release_specs()["BtoA"].source_domain == "B"
    assert list(back.visuals(batch)) == ["real_B", "fake_A", "real_A", "idt_A"]
    plain = build_method(resolve_train_config(overrides={
        "method": "fastcut", "data": {"root": "d", "load_size": 32, "crop_size": 32},
        "model": {"generator": "resnet_1blocks", "ngf": 4, "ndf": 4, "antialias": False, "antialias_up": False,
                  "discriminator": "pixel", "netf": "sample"}, "objective": {"nce_layers": "0,4"}}))  # fmt: skip
    plain.setup(batch)
    assert not any(k.endswith("filt") for k in plain.networks["G"].state_dict()) and not list(plain.networks["H"].parameters())


@pytest.mark.parametrize(
    ("model", "layers", "message"),
    [
        ({}, "0,4,30", "objective.nce_layers='0,4,30' names module 30, but model.generator=resnet_2blocks (antialias=True, antialias_up=True) has modules 0..24"),
        ({"antialias": False, "antialias_up": False}, "0,21", "objective.nce_layers='0,21' names module 21, but model.generator=resnet_2blocks (antialias=False, antialias_up=False) has modules 0..20"),
        ({}, "4,0", "objective.nce_layers='4,0' is not valid; expected increasing module indices of G, comma-separated"),
        ({}, "0;4", "objective.nce_layers='0;4' is not valid"),
        ({}, "", "objective.nce_layers='' is not valid"),
        ({"generator": "unet_256"}, "0", "model.generator='unet_256' has no encoder layers for PatchNCE; CUT needs a resnet_<N>blocks generator"),
    ],
)
def test_nce_layers_are_checked_against_the_generator(model: dict[str, Any], layers: str, message: str) -> None:
    with pytest.raises(ConfigError, match="^" + re.escape(message)) as info:
        resolve_train_config(overrides={"method": "cut", "data": {"root": "d", "crop_size": 256},
                                        "model": {"generator": "resnet_2blocks", **model}, "objective": {"nce_layers": layers}})  # fmt: skip
    assert "\n" not in str(info.value)


def test_bad_settings_name_themselves() -> None:
    base = {"method": "fastcut", "data": {"root": "d"}}
    with pytest.raises(ConfigError, match=r"objective.gan_mode='wgangp' is not valid; expected one of lsgan, vanilla"):
        resolve_train_config(overrides={**base, "objective": {"gan_mode": "wgangp"}})
    with pytest.raises(ConfigError, match=r"objective.lambda_gan and objective.lambda_nce are both 0"):
        resolve_train_config(overrides={**base, "objective": {"lambda_gan": 0, "lambda_nce": 0}})
    with pytest.raises(ConfigError, match=r"model.netf='reshape' is not valid"):
        resolve_train_config(overrides={**base, "model": {"netf": "reshape"}})
    with pytest.raises(ConfigError, match=r"data.crop_size=30 does not suit model.generator=resnet_9blocks"):
        resolve_train_config(overrides={**base, "data": {"root": "d", "crop_size": 30}})
    with pytest.raises(ConfigError, match=r"unknown config key objective.lambda_a; valid keys of objective: direction, flip_equivariance"):
        resolve_train_config(overrides={**base, "objective": {"lambda_a": 10}})


def test_flip_is_drawn_from_the_seeded_global_rng() -> None:
    cut, batch = tiny_method("fastcut")
    batch = {k: v[:1] for k, v in batch.items()}

    def draws(seed: int) -> list[bool]:
        torch.manual_seed(seed)
        flips = []
        for _ in range(12):
            ctx: dict[str, Any] = {}
            cut.phase_loss("discriminator", batch, ctx)  # where the official code flips: before G, once per iteration
            flips.append(ctx["flipped"])
        return flips

    first = draws(5)
    assert first == draws(5) and 0 < sum(first) < len(first)  # the same stream from the same seed, and both outcomes
    torch.manual_seed(5)
    assert first == [bool(torch.rand(()) < 0.5) for _ in range(12)]  # one draw of the global CPU RNG per iteration


def test_mixed_precision_and_channels_last_keep_the_nce_in_fp32(tmp_path: Path) -> None:
    cut, batch = tiny_method("cut")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fake = cut.networks["G"](batch["A"])
        assert fake.dtype == torch.bfloat16
        (nce,) = cut.nce_losses([(batch["A"], fake)])
    assert nce.dtype == torch.float32
    cfg = tiny_config("cut")
    cfg = resolve_train_config(overrides={**cfg.to_dict(), "run": {"out": str(tmp_path), "precision": "bf16", "channels_last": True}})
    torch.manual_seed(0)
    trainer = Trainer(build_method(cfg), cfg, None, device=torch.device("cpu"))
    for _ in range(2):
        values = trainer.train_step(batch)
    assert set(values) == {"D_real", "D_fake", "G_GAN", "NCE", "NCE_Y"}
    assert trainer.memory_format == torch.channels_last and trainer.autocast_dtype == torch.bfloat16


def test_train_flags(cli: CLI, tmp_path: Path) -> None:
    data = write_tiny_data(tmp_path / "data")
    out = tmp_path / "run"
    code, _, err = cli(["train", "--method", "fastcut", "--lambda-nce", "5", "--data", str(data), "--out", str(out),
                             "--steps", "1", "--generator", "resnet_1blocks", "--ngf", "4", "--ndf", "4", "--netf-nc", "8",
                             "--nce-layers", "0,4,8", "--num-patches", "8", "--load-size", "36", "--crop-size", "32",
                             "--workers", "0", "--no-progress", "--no-tensorboard", "--no-export-at-end"])  # fmt: skip
    assert code == 0, err
    from brushwork.runs import load_run_config

    cfg = load_run_config(out)
    assert cfg.method == "fastcut" and cfg.objective.lambda_nce == 5.0 and cfg.objective.nce_idt is False
    assert cfg.objective.nce_layers == "0,4,8" and cfg.optim.epochs == 150
    code, _, err = cli(["train", "--method", "cut", "--lambda-a", "5", "--data", str(data), "--out", str(tmp_path / "r2")])
    assert code == 2 and "--lambda-a does not apply to method cut (settings of cyclegan)" in err
    assert not (tmp_path / "r2").exists()


def test_trains_on_real_photos_and_paintings(tmp_path: Path, shared_data: Path) -> None:
    """Monet paintings (A) -> photos (B) from the shared data set: a few steps, finite losses, a release that stylises."""
    from brushwork.inference import Stylizer
    from brushwork.training.run import run_training

    cfg = resolve_train_config(overrides={
        "method": "cut",
        "data": {"root": str(shared_data), "load_size": 40, "crop_size": 32, "max_dataset_size": 3, "num_workers": 0},
        "model": {"generator": "resnet_1blocks", "ngf": 4, "ndf": 4, "netf_nc": 8},
        "objective": {"nce_layers": "0,4,8,12", "num_patches": 16},
        "optim": {"max_steps": 3},
        "run": {"out": str(tmp_path / "run"), "progress": False, "tensorboard": False, "sample_every": 3, "log_every": 1},
    })  # fmt: skip
    result = run_training(cfg)
    assert result.step == 3 and (tmp_path / "run" / "samples" / "step_00000003.png").is_file()
    photo = sorted((shared_data / "testB").glob("*.jpg"))[0]
    out = Stylizer.from_pretrained(result.releases["AtoB"], device="cpu", precision="fp32")(photo)
    with Image.open(photo) as image:
        assert out.size == image.size


def test_a_zero_feature_vector_gives_finite_gradients() -> None:
    """A patch whose head ReLUs are all off maps to the zero vector; its normalisation must not make NaN gradients."""
    from brushwork.nn.patchnce import l2_normalize

    x = torch.zeros(1, 2, 4)
    x[0, 1] = torch.tensor([3.0, 4.0, 0.0, 0.0])
    x.requires_grad_(True)
    y = l2_normalize(x)
    assert torch.allclose(y.detach()[0, 1], torch.tensor([0.6, 0.8, 0.0, 0.0]), atol=1e-6) and not y.detach()[0, 0].any()
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.timeout(400)
@pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()), reason="no gloo backend")
def test_two_processes_under_torchrun_keep_every_network_equal(tmp_path: Path) -> None:
    """Under DDP the head is called through its wrapper, so its gradients are averaged: the trainer's
    check after the first step (every parameter equal on both ranks) passes."""
    from tests.conftest import torchrun_brushwork

    data = write_tiny_data(tmp_path / "data")
    proc = torchrun_brushwork(["train",
                              "--method", "cut", "--data", str(data), "--out", str(tmp_path / "run"), "--steps", "2", "--crop-size", "32",
                              "--load-size", "36", "--generator", "resnet_1blocks", "--ngf", "4", "--ndf", "4", "--netf-nc", "8",
                              "--nce-layers", "0,4,8", "--num-patches", "8", "--workers", "0", "--no-progress", "--no-tensorboard",
                              "--no-export-at-end"])  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "done: 2 steps" in proc.stdout
