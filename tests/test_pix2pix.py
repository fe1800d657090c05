"""pix2pix: the paper's objective, the authors' update order, and its releases' test-time mode."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from brushwork.data.builders import build_training_data
from brushwork.inference import Stylizer
from brushwork.inference.stylizer import ImageTooLargeForModeError
from brushwork.methods import build_method
from brushwork.release import read_release_config
from brushwork.training.run import run_training
from brushwork.training.trainer import Trainer
from tests.test_methods import tiny_config, write_paired

CPU = torch.device("cpu")


def make_trainer(tmp_path: Path, **objective: object) -> Trainer:
    cfg = tiny_config("pix2pix", write_paired(tmp_path / "d"), tmp_path / "run")
    if objective:
        from brushwork.config import resolve_train_config

        values = cfg.to_dict()
        values["objective"].update(objective)
        cfg = resolve_train_config(overrides=values)
    torch.manual_seed(0)
    return Trainer(build_method(cfg), cfg, build_training_data("paired", cfg.data, 0), device=CPU)


def test_losses_are_the_papers_objective(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path)
    m = trainer.method
    G, D = m.networks["G"], m.networks["D"]
    batch = trainer.data.sample_batch  # type: ignore[union-attr]
    torch.manual_seed(1)
    ctx: dict[str, object] = {}
    d_loss, _ = m.phase_loss("discriminator", batch, ctx)
    torch.manual_seed(1)
    fake = G(batch["A"])  # the same dropout draw as the phase's
    assert torch.equal(fake, ctx["fake_y"])
    bce = F.binary_cross_entropy_with_logits
    pf, pr = D(torch.cat([batch["A"], fake], 1)), D(torch.cat([batch["A"], batch["B"]], 1))
    expected_d = 0.5 * (bce(pf, torch.zeros_like(pf)) + bce(pr, torch.ones_like(pr)))
    torch.testing.assert_close(d_loss, expected_d)
    g_loss, parts = m.phase_loss("generator", batch, ctx)
    expected_g = bce(pf, torch.ones_like(pf)) + 100 * (fake - batch["B"]).abs().mean()
    torch.testing.assert_close(g_loss, expected_g)
    assert set(parts) == {"G_gan", "G_L1"}


def test_direction_btoa_translates_b_into_a(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, direction="BtoA")
    assert set(trainer.method.release_specs()) == {"BtoA"}
    assert list(trainer.method.visuals(trainer.data.sample_batch)) == ["real_B", "fake_A", "real_A"]  # type: ignore[union-attr]


def test_discriminator_steps_first_and_the_generator_sees_the_updated_one(tmp_path: Path) -> None:
    """The authors' order: D is updated on G(x), then G on the same G(x) against the new D."""
    trainer = make_trainer(tmp_path)
    m = trainer.method
    batch = next(iter(torch.utils.data.DataLoader(trainer.data.dataset, batch_size=2, sampler=trainer.data.sampler)))  # type: ignore[union-attr]
    d_before = {k: v.clone() for k, v in m.networks["D"].state_dict().items()}
    seen: list[tuple[str, bool]] = []
    original = m.phase_loss

    def spy(phase: str, b: dict[str, torch.Tensor], ctx: dict[str, object]):  # type: ignore[no-untyped-def]
        changed = any(not torch.equal(v, d_before[k]) for k, v in m.networks["D"].state_dict().items())
        seen.append((phase, changed))
        return original(phase, b, ctx)

    m.phase_loss = spy  # type: ignore[method-assign]
    trainer.train_step(batch)
    assert seen == [("discriminator", False), ("generator", True)]


def test_release_runs_as_the_authors_test(tmp_path: Path) -> None:
    """pix2pix releases record train_like: per-image batch norm and dropout noise, seeded."""
    from brushwork.config import resolve_train_config

    values = tiny_config("pix2pix", write_paired(tmp_path / "d", size=72), tmp_path / "run", max_steps=2).to_dict()
    values["model"]["generator"] = "unet_64"  # one inner block with dropout (unet_32 has none)
    values["data"].update(load_size=72, crop_size=64)
    result = run_training(resolve_train_config(overrides=values))
    release = result.releases["AtoB"]
    assert read_release_config(release).test_mode == "train_like"
    x = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    run = lambda **kw: Stylizer.from_pretrained(release, device="cpu", precision="fp32", **kw).translate(x)  # noqa: E731
    assert torch.equal(run(seed=0), run(seed=0))
    assert not torch.equal(run(seed=0), run(seed=1))  # dropout is the generator's noise
    assert torch.equal(run(test_mode="eval"), run(test_mode="eval", seed=1))
    # one image alone gets what it gets in a batch (statistics per image, noise per image index)
    alone = Stylizer.from_pretrained(release, device="cpu", precision="fp32").translate(x[:1])
    assert torch.equal(alone, run(seed=0)[:1])
    with pytest.raises(ImageTooLargeForModeError, match="cannot be tiled"):
        Stylizer.from_pretrained(release, device="cpu", precision="fp32", tile_size=64).translate(
            torch.zeros(1, 3, 128, 128, dtype=torch.uint8))
