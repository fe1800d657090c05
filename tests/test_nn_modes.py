"""Test-time modes: the pix2pix authors' train-mode inference (per-image batch norm, seeded dropout) and eval."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from brushwork.nn import apply_test_mode, build_generator
from brushwork.nn.modes import authors_test_mode
from brushwork.release import (
    ReleaseConfig,
    ReleaseError,
    load_release,
    release_config_for,
    save_release,
)
from tests.test_pix2pix_sources import tiny_unet


def images(n: int, seed: int = 0, side: int = 32) -> Tensor:
    return torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def run(net: nn.Module, x: Tensor) -> Tensor:
    with torch.inference_mode():
        return net(x)


def test_batch_norm_uses_each_images_own_statistics_like_the_authors_batch_of_one() -> None:
    net = tiny_unet("unet_32", dropout=False)
    authors = copy.deepcopy(net).train()  # their test.py: train mode, batch size 1
    x = images(3)
    with torch.no_grad():
        expected = torch.cat([authors(x[i : i + 1].clone()) for i in range(3)])
    before = {k: v.clone() for k, v in net.state_dict().items()}
    apply_test_mode(net, "train_like")
    torch.testing.assert_close(run(net, x.clone()), expected, rtol=0, atol=1e-5)  # a batch of 3 = three batches of 1
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # running statistics neither used nor updated
    assert not any(m.training for m in net.modules())
    apply_test_mode(net, "eval")
    eval_out = run(net, x.clone())
    assert (eval_out - expected).abs().max() > 0.05  # the running statistics give a different image


def test_dropout_noise_is_seeded_and_independent_of_batching() -> None:
    net = tiny_unet("unet_64", dropout=True)  # one inner block with dropout
    x = images(3, side=64)
    mode = apply_test_mode(net, "train_like", seed=0)
    a = run(net, x.clone())
    assert mode.images_seen == 3
    mode.reset()
    one_by_one = torch.cat([run(net, x[i : i + 1].clone()) for i in range(3)])
    torch.testing.assert_close(one_by_one, a, rtol=0, atol=1e-6)  # image k gets the same noise however batched
    again = run(net, x.clone())  # the count went on: images 3, 4, 5 get new noise
    assert not torch.allclose(again, a)
    mode.reset(seed=1)
    other_seed = run(net, x.clone())
    assert not torch.allclose(other_seed, a)
    apply_test_mode(net, "train_like", seed=0)  # a fresh application starts at image 0 again
    assert torch.equal(run(net, x.clone()), a)


def test_eval_is_deterministic_and_has_no_noise() -> None:
    net = tiny_unet("unet_64", dropout=True)
    x = images(2, side=64)
    apply_test_mode(net, "train_like", seed=3)
    noisy = run(net, x.clone())
    apply_test_mode(net, "eval")  # replaces train_like: the hooks are gone
    plain = run(net, x.clone())
    assert torch.equal(plain, run(net, x.clone()))
    assert torch.equal(plain, run(copy.deepcopy(net).eval(), x.clone()))
    assert not torch.allclose(plain, noisy)


def test_dropout_masks_scale_like_nn_dropout_and_leave_the_global_rng_alone() -> None:
    net = nn.Sequential(nn.Dropout(0.5))
    apply_test_mode(net, "train_like", seed=0)
    apply_test_mode(net, "train_like", seed=0)  # applied twice: still one mask, not two
    state = torch.get_rng_state()
    y = run(net, torch.ones(2, 64, 16, 16))
    assert torch.equal(torch.get_rng_state(), state)
    assert set(y.unique().tolist()) == {0.0, 2.0}
    assert abs(float((y == 0).float().mean()) - 0.5) < 0.03  # 32768 draws: 0.5 +- 0.003 (1 sd)
    assert not torch.equal(y[0], y[1])  # each image draws its own mask


def test_cyclegan_networks_are_the_same_in_both_modes() -> None:
    net = build_generator("resnet_2blocks", ngf=4)
    arch = {"name": "resnet_2blocks", "norm": "instance", "dropout": False}
    assert authors_test_mode(arch) == "eval"
    assert authors_test_mode({**arch, "name": "unet_256", "norm": "batch"}) == "train_like"
    assert authors_test_mode({**arch, "dropout": True}) == "train_like"
    x = images(2, side=24)
    apply_test_mode(net, "eval")
    plain = run(net, x)
    apply_test_mode(net, "train_like")
    assert torch.equal(run(net, x), plain)


def test_bad_modes_and_unsupported_layers() -> None:
    with pytest.raises(ValueError, match="unknown test mode 'train'; expected one of eval, train_like"):
        apply_test_mode(nn.Identity(), "train")
    with pytest.raises(ValueError, match="seed must be >= 0, got -1"):
        apply_test_mode(nn.Identity(), "train_like", seed=-1)
    with pytest.raises(ValueError, match=r"handles nn.Dropout only; 1 is a Dropout2d"):
        apply_test_mode(nn.Sequential(nn.Identity(), nn.Dropout2d()), "train_like")


def test_release_config_records_the_test_mode(tmp_path: Path) -> None:
    net = tiny_unet("unet_32", ngf=1)
    arch = {"name": "unet_32", "in_channels": 3, "out_channels": 3, "ngf": 1, "norm": "batch", "dropout": True}
    config = release_config_for(arch, direction="BtoA", source="B", target="A", train_size=256, provenance={}, test_mode="train_like")
    folder = save_release(net, tmp_path / "rel", config)
    assert json.loads((folder / "config.json").read_text())["test_mode"] == "train_like"
    assert load_release(folder)[1].test_mode == "train_like"
    data = json.loads((folder / "config.json").read_text())
    del data["test_mode"]  # a release written before test modes existed
    assert ReleaseConfig.from_dict(data, "old.json").test_mode == "eval"
    with pytest.raises(ReleaseError, match="bad.json: unknown test_mode 'noisy'; expected one of eval, train_like"):
        ReleaseConfig.from_dict({**data, "test_mode": "noisy"}, "bad.json")
    with pytest.raises(ValueError, match="unknown test mode"):
        release_config_for(arch, direction="AtoB", source="A", target="B", train_size=256, provenance={}, test_mode="noisy")
