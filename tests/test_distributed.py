"""Data-parallel training under torchrun (gloo, 2 CPU processes of 1 thread): equivalence with one
process, elastic restart after a lost worker, rank 0 alone writing; plus the pieces in-process.

The torchrun runs are small CycleGANs (resnet_2blocks, ngf 8, crop 32) of a few steps, started
with ``--standalone`` (rendezvous on a free local port, no network).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from brushwork.checkpoints import checkpoint_path, list_checkpoints
from brushwork.config import ConfigError, resolve_train_config
from brushwork.data.sampling import ShuffledSampler
from brushwork.methods import build_method
from brushwork.training.distributed import FAULT_ENV, init_distributed, rank_seed
from brushwork.training.logger import read_log
from brushwork.training.run import run_training

from .conftest import REPO, one_thread, write_tiny_data

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="torch.distributed with the gloo backend is not available"
)

# COLUMNS: wide log lines, so that paths in them are not folded
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "BRUSHWORK_SPEED_PROBE": "0", "COLUMNS": "400"}
for _name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RESTART_COUNT", FAULT_ENV):
    ENV.pop(_name, None)
AUDITED = Path(__file__).with_name("_audited_brushwork.py")
LR = 2e-4  # optim.lr (default)


def _args(data: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return [
        "train", "--data", str(data), "--out", str(out), "--steps", str(steps), "--crop-size", "32", "--load-size", "36",
        "--generator", "resnet_2blocks", "--ngf", "8", "--ndf", "8", "--workers", "0", "--log-every", "1",
        "--sample-every", "1000", "--epochs", "1", "--epochs-decay", "2", "--no-progress", "--no-tensorboard", *extra,
    ]  # fmt: skip


def _torchrun(args: list[str], *, restarts: int = 0, env: dict[str, str] | None = None, script: Path | None = None) -> str:
    """Run ``brushwork ARGS`` (or ``script ARGS``) in 2 processes under torchrun; its output."""
    entry = [str(script)] if script else ["-m", "brushwork"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "--max-restarts", str(restarts), *entry, *args]  # fmt: skip
    proc = subprocess.run(cmd, env={**ENV, **(env or {})}, capture_output=True, text=True, timeout=240)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    return output


def _losses(run: Path) -> list[dict[str, object]]:
    return [{k: v for k, v in r.items() if k != "it_per_s"} for r in read_log(run / "log.jsonl")]


def _normalised_away(net: nn.Module) -> set[str]:
    """Biases of convolutions that an instance norm without affine parameters follows.

    InstanceNorm subtracts each channel's mean, so the network's output does not depend on
    these biases and their true gradient is exactly 0. What backpropagation computes for them
    is rounding noise, which Adam divides by its own magnitude: they take steps of about lr in
    directions that depend on the summation order. They are left out of the comparison.
    """
    found = set()
    for prefix, module in net.named_modules():
        if isinstance(module, nn.Sequential):
            children = list(module.named_children())
            for (name, layer), (_, following) in itertools.pairwise(children):
                if (isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)) and layer.bias is not None
                        and isinstance(following, nn.InstanceNorm2d) and not following.affine):  # fmt: skip
                    found.add(f"{prefix}.{name}.bias" if prefix else f"{name}.bias")
    return found


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """In-process runs use one thread, as each torchrun process does. On a busy 2-core machine two
    threads of such tiny operations wait on each other: 5 steps took 20 s instead of 1 s here."""
    with one_thread():
        yield


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_data(tmp_path_factory.mktemp("ddp") / "data")  # trainA 6, trainB 9: 9 keys per epoch


# ---------------------------------------------------------------------------------------------
# in-process


@pytest.mark.parametrize(("length", "world"), [(9, 2), (10, 2), (7, 3), (1, 2)])
def test_shards_are_equal_in_length_and_cover_the_epoch(length: int, world: int) -> None:
    """Every process gets ceil(length / world) keys (the epoch's first keys fill the last round), and together all."""
    keys = ShuffledSampler(length, seed=3).epoch_keys(5)
    shares = []
    for rank in range(world):
        sampler = ShuffledSampler(length, seed=3)
        sampler.shard(rank, world)
        sampler.set_epoch(5)
        shares.append(list(sampler))
        assert len(shares[-1]) == len(sampler) == -(-length // world)
    interleaved = [shares[r][i] for i in range(len(shares[0])) for r in range(world)]
    assert interleaved[:length] == keys
    assert interleaved[length:] == [keys[i % length] for i in range(len(interleaved) - length)]
    sampler = ShuffledSampler(length, seed=3)
    sampler.shard(world - 1, world)
    sampler.set_epoch(5, skip=1)
    assert list(sampler) == shares[-1][1:]


def test_rank_seeds() -> None:
    assert rank_seed(7, 0) == 7  # rank 0 draws what a single process would
    seeds = {rank_seed(7, r) for r in range(1, 64)} | {rank_seed(8, r) for r in range(1, 64)}
    assert len(seeds) == 126 and all(0 <= s < 2**63 for s in seeds)
    assert rank_seed(7, 3) == rank_seed(7, 3)


def test_one_process_is_not_distributed(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    with caplog.at_level(logging.WARNING):
        info, device = init_distributed("cpu", sync_bn=True)
    assert not info.enabled and info.world == 1 and device.type == "cpu"
    assert "--sync-bn ignored" in caplog.text  # asked for with one process: said, not an error
    assert info.broadcast(5) == 5 and info.gather("x") == ["x"] and info.mean({"a": 1.0}) == {"a": 1.0}


def test_sync_bn_on_the_cpu_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """SyncBatchNorm runs on GPUs only (torch raises in its forward on CPU tensors): say so before anything starts."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(ConfigError, match="--sync-bn needs CUDA"):
        init_distributed("cpu", sync_bn=True)
    assert not dist.is_initialized()


# ---------------------------------------------------------------------------------------------
# torchrun


@pytest.mark.timeout(400)
def test_two_processes_at_batch_1_train_as_one_at_batch_2(data: Path, tmp_path: Path) -> None:
    """CycleGAN, pool off, no dropout: DDP's averaged gradients are the batch-2 mean's, step for step.

    Instance norm normalises each image on its own and every loss is a mean over equally sized
    per-image parts, so the batch-2 loss is the mean of the two per-image losses and its gradient
    the mean of theirs, which is what DDP's allreduce computes. Rank r takes keys r, r+2, ... of
    the epoch, so step i sees the same two images as the batch-2 step i. Only float32 summation
    order differs. Adam then moves a weight by at most about lr per step, and a reduction error
    (a rank's own gradient instead of the average) shows as differences of that order; rounding
    differences reach Adam's update only scaled by lr / eps for gradients near 0 (measured: at
    most 5e-7 after 3 steps, 0.1 % of lr per step). The tolerance, 1 % of lr per step, sits a
    decade from each.
    """
    steps = 3
    single = run_training(resolve_train_config(overrides={
        "data": {"root": str(data), "load_size": 36, "crop_size": 32, "num_workers": 0, "batch_size": 2},
        "model": {"generator": "resnet_2blocks", "ngf": 8, "ndf": 8},
        "objective": {"pool_size": 0},
        "optim": {"epochs": 1, "epochs_decay": 2, "max_steps": steps},
        "run": {"out": str(tmp_path / "one"), "progress": False, "tensorboard": False, "log_every": 1,
                "sample_every": 1000, "export_at_end": False},
    }))  # fmt: skip
    assert single.step == steps
    _torchrun(_args(data, tmp_path / "two", steps, "--pool-size", "0", "--batch-size", "1", "--no-export-at-end"))

    one = torch.load(checkpoint_path(tmp_path / "one", steps), weights_only=False)
    two = torch.load(checkpoint_path(tmp_path / "two", steps), weights_only=False)
    assert two["world_size"] == 2 and len(two["other_ranks"]) == 1
    method = build_method(resolve_train_config(config_file=tmp_path / "two" / "config.yaml"))
    tol, compared, skipped = 1e-2 * LR * steps, 0, 0
    for name, net in method.networks.items():
        away = _normalised_away(net)
        for key, value in one["networks"][name].items():
            if key in away:
                skipped += 1
                continue
            diff = (value - two["networks"][name][key]).abs().max().item()
            assert diff <= tol, f"{name}.{key} differs by {diff:.3g} (tolerance {tol:.3g})"
            compared += 1
    assert compared > skipped > 0
    # the logged losses are the means over both processes: the batch-2 losses
    for a, b in zip(_losses(tmp_path / "one"), _losses(tmp_path / "two"), strict=True):
        assert a.keys() == b.keys() and a["step"] == b["step"]
        for key, value in a.items():
            if isinstance(value, float):
                assert b[key] == pytest.approx(value, rel=1e-4), (a["step"], key)


RESTART_STEPS = 10  # 5 steps per epoch per process (9 keys, padded to 10, in 2 shares): crosses an epoch
KILL_AT = 8  # rank 1 dies before step 8; the newest checkpoint then is step 6, mid-epoch


@pytest.fixture(scope="module")
def uninterrupted(data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 2-process run with image pools of 2 (so that per-rank RNG draws matter), audited: (run, audit folder)."""
    root = tmp_path_factory.mktemp("whole")
    run, audit = root / "run", root / "audit"
    audit.mkdir()
    _torchrun(_args(data, run, RESTART_STEPS, "--pool-size", "2", "--checkpoint-every", "3"),
              script=AUDITED, env={"AUDIT_ROOT": str(run), "AUDIT_OUT": str(audit)})  # fmt: skip
    return run, audit


@pytest.mark.timeout(400)
def test_a_killed_worker_restarts_the_group_which_finishes_as_if_never_killed(
    data: Path, uninterrupted: tuple[Path, Path], tmp_path: Path
) -> None:
    whole, _ = uninterrupted
    killed = tmp_path / "killed"
    output = _torchrun(_args(data, killed, RESTART_STEPS, "--pool-size", "2", "--checkpoint-every", "3"),
                       restarts=1, env={FAULT_ENV: f"1:{KILL_AT}"})  # fmt: skip
    assert f"rank 1 kills itself before step {KILL_AT}" in output
    assert "torchrun restart 1: resuming from the newest checkpoint" in output and "step_00000006.pt" in output
    assert f"done: {RESTART_STEPS} steps" in output

    a = torch.load(checkpoint_path(whole, RESTART_STEPS), weights_only=False)
    b = torch.load(checkpoint_path(killed, RESTART_STEPS), weights_only=False)
    for name, tensors in a["networks"].items():
        for key, value in tensors.items():
            assert torch.equal(value, b["networks"][name][key]), f"{name}.{key}"
    for rank_a, rank_b in zip([a, *a["other_ranks"]], [b, *b["other_ranks"]], strict=True):  # pools and RNG of each rank
        for pool in ("pool_A", "pool_B"):
            images_a, images_b = rank_a["method_state"][pool]["images"], rank_b["method_state"][pool]["images"]
            assert len(images_a) == 2 and all(torch.equal(x, y) for x, y in zip(images_a, images_b, strict=True))
        assert torch.equal(rank_a["rng"]["torch"], rank_b["rng"]["torch"])
    assert not torch.equal(a["rng"]["torch"], a["other_ranks"][0]["rng"]["torch"])  # each rank its own stream
    logged = _losses(killed)
    assert [r["step"] for r in logged] == list(range(1, RESTART_STEPS + 1))  # steps 7 and 8 redone, logged once
    assert logged == _losses(whole)
    assert not list((killed / "checkpoints").glob(".*.tmp"))


def test_only_rank_0_writes_files_and_the_log_has_each_step_once(uninterrupted: tuple[Path, Path]) -> None:
    run, audit = uninterrupted
    reports = {p.name: json.loads(p.read_text()) for p in audit.glob("rank*.json")}
    assert set(reports) == {"rank0-attempt0.json", "rank1-attempt0.json"}
    assert reports["rank1-attempt0.json"] == []
    written = "\n".join(reports["rank0-attempt0.json"])  # the audit sees rank 0's writes, so it would see rank 1's
    for part in ("log.jsonl", "config.yaml", "checkpoints/.step_00000003.pt.", "release/", "samples/step_00000010.png"):
        assert part in written, part
    steps = [r["step"] for r in read_log(run / "log.jsonl")]
    assert steps == list(range(1, RESTART_STEPS + 1))


def test_resuming_with_another_number_of_processes_works_and_says_what_differs(
    uninterrupted: tuple[Path, Path], tmp_path: Path, data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A 2-process checkpoint from mid-epoch (step 6) resumed by one process: it finishes and logs what is not identical."""
    whole, _ = uninterrupted
    run = tmp_path / "alone"
    shutil.copytree(whole, run)
    for path in list_checkpoints(run):
        if path.name != "step_00000006.pt":
            path.unlink()
    config = resolve_train_config(config_file=run / "config.yaml", overrides={"run": {"out": str(run)}})
    with caplog.at_level(logging.WARNING, logger="brushwork"):
        result = run_training(config, resume="latest")
    assert result.step == RESTART_STEPS
    text = " ".join(caplog.text.split())
    assert "resuming a run of 2 process(es) x batch 1 with 1 x 1" in text
    assert "a step now trains on 1 images (1 x 1) instead of 2 (2 x 1)" in text
    assert "the rest of epoch 1 (from key 2 of 9) is split 1 way(s)" in text
    assert "the random streams and method state (image pools) of rank 1 are dropped" in text
    assert [r["step"] for r in read_log(run / "log.jsonl")] == list(range(1, RESTART_STEPS + 1))
