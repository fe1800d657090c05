"""CycleGAN losses, the method-agnostic trainer, checkpoints and exact resumption."""

from __future__ import annotations

import errno
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from brushwork import checkpoints as ckpt
from brushwork.config import OptimConfig, resolve_train_config
from brushwork.data.builders import build_unpaired
from brushwork.methods import build_method
from brushwork.methods.losses import GANLoss, gradient_penalty
from brushwork.methods.pool import ImagePool
from brushwork.training.logger import read_log
from brushwork.training.run import run_training
from brushwork.training.schedulers import build_scheduler, step_scheduler
from brushwork.training.trainer import RunFolderError, Trainer
from tests._inference_helpers import cli_fixture
from tests.conftest import REPO, tiny_overrides, write_tiny_data

CLI = Callable[[list[str]], tuple[int, str, str]]
_ = cli_fixture  # the `cli` fixture: the console entry point run in-process


def make_trainer(data: Path, out: Path, **overrides: object) -> Trainer:
    values = tiny_overrides(data, out)
    for dotted, value in overrides.items():
        section, key = dotted.split("__")
        values.setdefault(section, {})[key] = value  # type: ignore[index]
    cfg = resolve_train_config(overrides=values)
    torch.manual_seed(cfg.run.seed)
    method = build_method(cfg)
    return Trainer(method, cfg, build_unpaired(config=cfg.data, seed=0), device=torch.device("cpu"))


# The generator's adversarial term on D's output p in each mode: MSE to 1, -log sigmoid(p), -p.
G_ADVERSARIAL = {
    "lsgan": lambda p: ((p - 1) ** 2).mean(),
    "vanilla": lambda p: torch.nn.functional.softplus(-p).mean(),
    "wgangp": lambda p: -p.mean(),
}


@pytest.mark.parametrize("gan_mode", sorted(G_ADVERSARIAL))
def test_generator_loss_is_the_papers_objective(tiny_data: Path, tmp_path: Path, gan_mode: str) -> None:
    trainer = make_trainer(tiny_data, tmp_path / "run", objective__gan_mode=gan_mode)
    m = trainer.method
    G, F_, D_A, D_B = (m.networks[k] for k in ("G", "F", "D_A", "D_B"))
    torch.manual_seed(1)
    a, b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    total, parts = m.phase_loss("generators", {"A": a, "B": b}, {})
    adversarial = G_ADVERSARIAL[gan_mode]
    expected = (
        adversarial(D_B(G(a))) + adversarial(D_A(F_(b)))
        + 10 * (F_(G(a)) - a).abs().mean() + 10 * (G(F_(b)) - b).abs().mean()
        + 10 * 0.5 * (G(b) - b).abs().mean() + 10 * 0.5 * (F_(a) - a).abs().mean()
    )  # fmt: skip
    assert torch.allclose(total, expected, rtol=1e-5)
    assert torch.allclose(parts["G_gan"], adversarial(D_B(G(a))), rtol=1e-5)
    assert set(parts) == {"G_gan", "F_gan", "cycle_A", "cycle_B", "idt_A", "idt_B"}


def test_discriminator_loss_is_half_real_plus_fake(tiny_data: Path, tmp_path: Path) -> None:
    trainer = make_trainer(tiny_data, tmp_path / "run", objective__pool_size=0)
    m = trainer.method
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    fa, fb = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    total, parts = m.phase_loss("discriminators", {"A": a, "B": b}, {"fake_a": fa, "fake_b": fb})
    D_A, D_B = m.networks["D_A"], m.networks["D_B"]
    expected_b = 0.5 * (((D_B(b) - 1) ** 2).mean() + (D_B(fb) ** 2).mean())
    expected_a = 0.5 * (((D_A(a) - 1) ** 2).mean() + (D_A(fa) ** 2).mean())
    assert torch.allclose(parts["D_B"], expected_b) and torch.allclose(parts["D_A"], expected_a)
    assert torch.allclose(total, expected_a + expected_b)


def test_discriminators_are_frozen_while_generators_train(tiny_data: Path, tmp_path: Path) -> None:
    trainer = make_trainer(tiny_data, tmp_path / "run")
    seen: dict[str, dict[str, bool]] = {}
    original = trainer.method.phase_loss

    def spy(phase, batch, ctx):  # type: ignore[no-untyped-def]
        seen[phase] = {k: next(n.parameters()).requires_grad for k, n in trainer.method.networks.items()}
        return original(phase, batch, ctx)

    trainer.method.phase_loss = spy  # type: ignore[method-assign]
    before = {k: [p.clone() for p in n.parameters()] for k, n in trainer.method.networks.items()}
    batch = {"A": torch.rand(2, 3, 32, 32) * 2 - 1, "B": torch.rand(2, 3, 32, 32) * 2 - 1}
    losses = trainer.train_step(batch)  # batch size 2
    assert seen["generators"] == {"G": True, "F": True, "D_B": False, "D_A": False}
    assert seen["discriminators"] == {"G": False, "F": False, "D_B": True, "D_A": True}
    for name, net in trainer.method.networks.items():
        assert any(not torch.equal(p0, p1) for p0, p1 in zip(before[name], net.parameters(), strict=True)), name
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_gan_loss_values_by_hand() -> None:
    """Each mode on fixed predictions (float32 over 4 values: rel 1e-6 is some 8 ulps)."""
    values = [-2.0, 0.0, 1.0, 3.0]
    p = torch.tensor(values).reshape(2, 2)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    expected = {
        ("lsgan", True): mean([(v - 1) ** 2 for v in values]), ("lsgan", False): mean([v**2 for v in values]),
        ("vanilla", True): mean([_softplus(-v) for v in values]),  # -log sigmoid(v)
        ("vanilla", False): mean([_softplus(v) for v in values]),  # -log(1 - sigmoid(v))
        ("wgangp", True): -mean(values), ("wgangp", False): mean(values),
    }  # fmt: skip
    for (mode, real), value in expected.items():
        assert GANLoss(mode)(p, real).item() == pytest.approx(value, rel=1e-6), (mode, real)
    assert GANLoss("vanilla")(p.bfloat16(), True).dtype == torch.float32  # exact under mixed precision


class _LinearCritic(torch.nn.Module):
    """D(x) = sum(w * x) per sample: its gradient is w everywhere, so ||grad|| = ||w|| by hand."""

    def __init__(self, weight: float) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.full((1, 3, 2, 2), weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.w * x).sum(dim=(1, 2, 3), keepdim=True)


class _QuadraticCritic(torch.nn.Module):
    """D(x) = |x|^2 / 2 per sample: its gradient is x itself."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (x**2).sum(dim=(1, 2, 3), keepdim=True)


def test_gradient_penalty_by_hand() -> None:
    real, fake = torch.ones(2, 3, 2, 2), torch.zeros(2, 3, 2, 2)
    torch.manual_seed(0)
    alpha = torch.rand(2).tolist()  # the interpolation weights gradient_penalty draws after this seed
    torch.manual_seed(0)
    gp = gradient_penalty(_QuadraticCritic(), real, fake)
    # x_hat = alpha * 1 + (1 - alpha) * 0, so ||grad|| = alpha * sqrt(12)
    assert gp.item() == pytest.approx(sum((a * math.sqrt(12) - 1) ** 2 for a in alpha) / 2, rel=1e-6)
    assert gradient_penalty(_LinearCritic(0.5), real, fake).item() == pytest.approx((0.5 * math.sqrt(12) - 1) ** 2, rel=1e-6)


@pytest.mark.parametrize("gan_mode", ["vanilla", "wgangp"])
def test_discriminator_loss_by_hand(tiny_data: Path, tmp_path: Path, gan_mode: str) -> None:
    """Linear critics on constant images: D(real), D(fake) and the gradient norm are sums done by hand."""
    m = make_trainer(tiny_data, tmp_path / "run", objective__gan_mode=gan_mode, objective__pool_size=0).method
    m.networks["D_B"], m.networks["D_A"] = _LinearCritic(0.1), _LinearCritic(-0.2)
    batch = {"A": torch.full((1, 3, 2, 2), 0.2), "B": torch.full((1, 3, 2, 2), 0.5)}
    ctx = {"fake_a": torch.full((1, 3, 2, 2), 0.4), "fake_b": torch.full((1, 3, 2, 2), -0.25)}
    total, parts = m.phase_loss("discriminators", batch, ctx)
    # D_B(b) = 0.1 * 0.5 * 12 = 0.6, D_B(G(a)) = 0.1 * -0.25 * 12 = -0.3; D_A(a) = -0.48, D_A(F(b)) = -0.96
    if gan_mode == "vanilla":
        d_b, d_a, gp = 0.5 * (_softplus(-0.6) + _softplus(-0.3)), 0.5 * (_softplus(0.48) + _softplus(-0.96)), None
    else:  # critic: -D(real) + D(fake), halved, plus lambda_gp 10 * (||w|| - 1)^2 with ||w|| = |w| * sqrt(12)
        gp_b, gp_a = 10 * (0.1 * math.sqrt(12) - 1) ** 2, 10 * (0.2 * math.sqrt(12) - 1) ** 2
        d_b, d_a, gp = 0.5 * (-0.6 - 0.3) + gp_b, 0.5 * (0.48 - 0.96) + gp_a, gp_b + gp_a
    assert parts["D_B"].item() == pytest.approx(d_b, rel=1e-6) and parts["D_A"].item() == pytest.approx(d_a, rel=1e-6)
    assert total.item() == pytest.approx(d_a + d_b, rel=1e-6)
    assert (parts["gp"].item() == pytest.approx(gp, rel=1e-6)) if gp is not None else "gp" not in parts


@pytest.mark.parametrize("gan_mode", ["vanilla", "wgangp"])
def test_other_gan_modes_train(tiny_data: Path, tmp_path: Path, gan_mode: str) -> None:
    trainer = make_trainer(tiny_data, tmp_path / "run", objective__gan_mode=gan_mode)
    losses = trainer.train_step({"A": torch.rand(1, 3, 32, 32), "B": torch.rand(1, 3, 32, 32)})
    assert ("gp" in losses) == (gan_mode == "wgangp")


def test_image_pool() -> None:
    assert torch.equal(ImagePool(0).query(x := torch.rand(3, 3, 2, 2)), x)
    pool = ImagePool(4)
    first = torch.rand(4, 3, 2, 2)
    assert torch.equal(pool.query(first), first)  # filling: returned as is
    torch.manual_seed(0)
    returned_old = 0
    for _ in range(200):
        new = torch.rand(1, 3, 2, 2)
        out = pool.query(new)
        returned_old += int(not torch.equal(out, new))
    assert 70 < returned_old < 130  # about half the time an older image comes back


LR = 2e-4
# The learning rate of epoch e = 0..6 as a factor of optim.lr, stepped once per epoch as in the
# reference: epochs 3 (constant) + epochs_decay 4, and x0.1 every lr_decay_epochs 2 for `step`.
EPOCH_FACTORS = {
    "linear": [1, 1, 1, 4 / 5, 3 / 5, 2 / 5, 1 / 5],  # 1 - max(0, e + 1 - 3) / (4 + 1)
    "step": [1, 1, 0.1, 0.1, 0.01, 0.01, 0.001],
    "cosine": [(1 + math.cos(math.pi * e / 7)) / 2 for e in range(7)],  # annealed to 0 over 3 + 4 epochs
    "constant": [1] * 7,
}
# Each of <= 2000 multiplicative updates (StepLR, CosineAnnealingLR) adds ~1 ulp (1.1e-16) of relative error.
REL = 1e-12


def _scheduled_lrs(cfg: OptimConfig, count: int, losses: list[float] | None = None) -> list[float]:
    """The learning rate before each of ``count`` scheduler steps, driven as the trainer drives it."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)
    sched = build_scheduler(opt, cfg)
    lrs = []
    for i in range(count):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()  # no gradient: nothing moves, but the scheduler sees a stepped optimiser
        step_scheduler(sched, losses[i] if losses else 0.0)
    return lrs


@pytest.mark.parametrize("policy", sorted(EPOCH_FACTORS))
def test_schedules_per_epoch_follow_their_formulas(policy: str) -> None:
    cfg = OptimConfig(lr_policy=policy, epochs=3, epochs_decay=4, lr_decay_epochs=2)
    assert _scheduled_lrs(cfg, 7) == pytest.approx([LR * f for f in EPOCH_FACTORS[policy]], rel=REL)


def test_plateau_cuts_the_rate_after_five_epochs_without_a_one_percent_gain() -> None:
    # 0.9 -> 0.895 gains only 0.56%: from epoch 2 on no epoch improves; the 6th such epoch (7) cuts x0.2, and so does 13.
    losses = [1.0, 0.9] + [0.895] * 13
    lrs = _scheduled_lrs(OptimConfig(lr_policy="plateau"), 15, losses)
    assert lrs == pytest.approx([LR] * 8 + [LR * 0.2] * 6 + [LR * 0.04], rel=REL)
    assert _scheduled_lrs(OptimConfig(lr_policy="plateau", max_steps=5), 15, losses) == lrs  # --steps: still per epoch


def test_steps_2000_decays_over_the_run() -> None:
    """The README's short CPU run: constant for 100/(100+100) of its 2000 iterations, then linear to ~0."""
    lrs = _scheduled_lrs(OptimConfig(max_steps=2000), 2000)
    assert lrs[:1000] == [LR] * 1000
    assert lrs[1000:] == pytest.approx([LR * (1 - (i + 1 - 1000) / 1001) for i in range(1000, 2000)], rel=REL)
    assert lrs[-1] == pytest.approx(LR / 1001, rel=REL)


STEPS = 10  # tiny_data has 9 samples per epoch, so these runs cross an epoch end
STRETCHED = {  # each shape over STEPS iterations (epochs 1 + 2: constant for the first 10 * 1 // 3 = 3)
    "linear": [1 - max(0, i + 1 - 3) / (7 + 1) for i in range(STEPS)],
    "step": [0.1 ** (i // 3) for i in range(STEPS)],  # lr_decay_epochs 1 of 3 epochs: every 10 * 1 // 3 iterations
    "cosine": [(1 + math.cos(math.pi * i / STEPS)) / 2 for i in range(STEPS)],
    "constant": [1] * STEPS,
    "plateau": [1] * STEPS,  # per epoch still; its one epoch end only records the best loss
}


@pytest.mark.parametrize("policy", sorted(STRETCHED))
def test_steps_stretch_each_schedule_over_the_run(tiny_data: Path, tmp_path: Path, policy: str) -> None:
    """With --steps a schedule spans the run's iterations and is stepped per iteration; the log has each step's lr."""
    optim = {"lr_policy": policy, "max_steps": STEPS, "epochs": 1, "epochs_decay": 2, "lr_decay_epochs": 1}
    cfg = resolve_train_config(overrides=tiny_overrides(tiny_data, tmp_path / policy, checkpoint_every=5) | {"optim": optim})
    assert run_training(cfg).step == STEPS
    lrs = [r["lr"] for r in read_log(tmp_path / policy / "log.jsonl")]
    assert lrs == pytest.approx([LR * f for f in STRETCHED[policy]], rel=REL)


def test_run_writes_everything(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = resolve_train_config(overrides=tiny_overrides(tiny_data, out, sample_every=3, checkpoint_every=4, keep_checkpoints=2, tensorboard=True) | {"optim": {"max_steps": 9}})
    result = run_training(cfg)
    assert result.step == 9 and not result.interrupted
    assert [p.name for p in ckpt.list_checkpoints(out)] == ["step_00000008.pt", "step_00000009.pt"]  # last K kept
    assert {p.name for p in (out / "samples").iterdir()} == {"step_00000003.png", "step_00000006.png", "step_00000009.png"}
    assert (out / "config.yaml").is_file() and any((out / "tensorboard").iterdir())
    log = read_log(out / "log.jsonl")
    assert [r["step"] for r in log] == list(range(1, 10)) and {"G_gan", "cycle_A", "D_A", "lr"} <= set(log[0])
    assert set(result.releases) == {"AtoB", "BtoA"}
    with pytest.raises(RunFolderError, match="already holds checkpoints; pass --resume"):
        run_training(cfg)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "brushwork", *args]


def _train_args(data: Path, out: Path, steps: int, workers: int | None = 0) -> list[str]:
    """A tiny run; ``workers=None`` keeps the default number of loader processes (2)."""
    return [
        "train", "--data", str(data), "--out", str(out), "--steps", str(steps), "--crop-size", "32",
        "--load-size", "36", "--generator", "resnet_2blocks", "--ngf", "8", "--ndf", "8",
        *([] if workers is None else ["--workers", str(workers)]),
        "--log-every", "1", "--checkpoint-every", "5", "--sample-every", "1000", "--epochs", "1",
        "--epochs-decay", "2", "--no-progress", "--no-tensorboard",
    ]  # fmt: skip


ENV = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}


def _losses(path: Path) -> list[dict[str, object]]:
    return [{k: v for k, v in r.items() if k != "it_per_s"} for r in read_log(path)]


RESUME_STEPS = 24  # 9 samples per epoch: the run crosses epoch boundaries and a learning-rate decay


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, object]]]:
    """tiny_data and the losses of an uninterrupted run on it (default loader workers), shared by the resume tests."""
    root = tmp_path_factory.mktemp("resume")
    data = write_tiny_data(root / "data")
    subprocess.run(_cli(*_train_args(data, root / "whole", RESUME_STEPS, None)), check=True, env=ENV, capture_output=True)
    whole = _losses(root / "whole" / "log.jsonl")
    assert len(whole) == RESUME_STEPS
    return data, whole


def _wait_for(proc: subprocess.Popen[str] | subprocess.Popen[bytes], done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 120
    while not done():
        assert proc.poll() is None and time.monotonic() < deadline, "training ended before it could be stopped"
        time.sleep(0.02)


@pytest.mark.parametrize("workers", [0, None], ids=["no-workers", "default-workers"])
def test_sigkill_and_resume_gives_identical_losses(uninterrupted: tuple[Path, list[dict[str, object]]], tmp_path: Path,
                                                   workers: int | None) -> None:
    """A run killed with SIGKILL mid-training and resumed logs exactly the uninterrupted run's losses.

    That run used the default 2 loader workers: with none the numbers must be the same too.
    """
    tiny_data, whole = uninterrupted
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(*_train_args(tiny_data, killed, RESUME_STEPS, workers)), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(proc, (killed / "checkpoints" / "step_00000010.pt").exists)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.list_checkpoints(killed)[-1].name != f"step_{RESUME_STEPS:08d}.pt"

    subprocess.run(_cli(*_train_args(tiny_data, killed, RESUME_STEPS, workers), "--resume"), check=True, env=ENV, capture_output=True)
    assert _losses(killed / "log.jsonl") == whole


def test_sigterm_saves_exits_130_and_resumes_to_identical_losses(uninterrupted: tuple[Path, list[dict[str, object]]],
                                                                 tmp_path: Path) -> None:
    """SIGTERM (default loader workers) finishes the step, saves it, exits 130; --resume ends as if never stopped."""
    tiny_data, whole = uninterrupted
    stopped = tmp_path / "stopped"
    args = _train_args(tiny_data, stopped, RESUME_STEPS, None)
    proc = subprocess.Popen(_cli(*args), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = stopped / "log.jsonl"
    _wait_for(proc, lambda: log.exists() and len(log.read_text().splitlines()) >= 2)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    step = int(torch.load(ckpt.list_checkpoints(stopped)[-1], weights_only=False)["step"])
    assert 2 <= step < RESUME_STEPS and f"stopped at step {step}" in output
    assert _losses(log) == whole[:step]

    subprocess.run(_cli(*args, "--resume"), check=True, env=ENV, capture_output=True)
    assert _losses(log) == whole


def test_ctrl_c_saves_a_checkpoint(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    # --no-compile: auto would compile so long a run, and compiling can outlast the wait below
    proc = subprocess.Popen(_cli(*_train_args(tiny_data, out, 100000), "--no-compile"), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not (out / "log.jsonl").exists() or len((out / "log.jsonl").read_text().splitlines()) < 3:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    saved = ckpt.list_checkpoints(out)
    assert saved, output
    step = int(torch.load(saved[-1], weights_only=False)["step"])
    assert step >= 3 and f"stopped at step {step}" in output


def test_corrupt_checkpoint_on_resume_is_reported_and_kept(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    subprocess.run(_cli(*_train_args(tiny_data, out, 10)), check=True, env=ENV, capture_output=True)
    latest = ckpt.list_checkpoints(out)[-1]
    latest.write_bytes(latest.read_bytes()[:1000])
    before = sorted((p.name, p.stat().st_size) for p in (out / "checkpoints").iterdir())
    proc = subprocess.run(_cli(*_train_args(tiny_data, out, 20), "--resume"), env=ENV, capture_output=True, text=True)
    assert proc.returncode == 2
    assert f"checkpoint {latest} is corrupt or truncated" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted((p.name, p.stat().st_size) for p in (out / "checkpoints").iterdir()) == before

    missing = subprocess.run(_cli(*_train_args(tiny_data, tmp_path / "empty", 5), "--resume"), env=ENV, capture_output=True, text=True)
    assert missing.returncode == 2 and "no checkpoint in" in missing.stderr


def test_full_disk_while_saving_keeps_the_previous_checkpoint(tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = make_trainer(tiny_data, tmp_path / "run", run__keep_checkpoints=1)
    trainer.run_dir.mkdir(parents=True)
    trainer.step = 1
    first = trainer.save()
    good = first.read_bytes()

    def full_disk(obj: object, f: object, *a: object, **k: object) -> None:
        Path(str(f)).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", full_disk)
    trainer.step = 2
    with pytest.raises(OSError, match="No space left"):
        trainer.save()
    assert sorted(p.name for p in (trainer.run_dir / "checkpoints").iterdir()) == [first.name]  # no temp file left
    assert first.read_bytes() == good
    monkeypatch.undo()
    assert ckpt.load_checkpoint(first)["step"] == 1


def test_bad_data_folder_is_one_line_error(tmp_path: Path) -> None:
    proc = subprocess.run(_cli("train", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "r")), env=ENV, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: data folder") and "trainA" in proc.stderr and "Traceback" not in proc.stderr
    bad = subprocess.run(_cli("train", "--data", "x", "--crop-size", "512"), env=ENV, capture_output=True, text=True)
    assert bad.returncode == 2 and "data.crop_size=512 is larger than data.load_size=286" in bad.stderr


def test_fused_passes_compute_the_same_losses(tiny_data: Path, tmp_path: Path) -> None:
    """Batching the passes that share weights changes speed, not the numbers."""
    trainer = make_trainer(tiny_data, tmp_path / "run", objective__pool_size=0)
    m = trainer.method
    torch.manual_seed(3)
    batch = {"A": torch.rand(2, 3, 32, 32) * 2 - 1, "B": torch.rand(2, 3, 32, 32) * 2 - 1}
    results = []
    for fuse in (True, False):
        m.fuse_passes = fuse
        ctx: dict[str, object] = {}
        _, g_parts = m.phase_loss("generators", batch, ctx)
        _, d_parts = m.phase_loss("discriminators", batch, ctx)
        results.append({**{k: float(v.detach()) for k, v in g_parts.items()}, **{k: float(v.detach()) for k, v in d_parts.items()}})
    assert results[0] == pytest.approx(results[1], rel=1e-5)


def test_resuming_in_another_layout_gives_optimiser_state_that_layout(tiny_data: Path, tmp_path: Path) -> None:
    """The fused Adam kernel pairs elements in memory order: moments must follow their parameter's layout."""
    saved = make_trainer(tiny_data, tmp_path / "a", run__channels_last=True)
    batch = {k: torch.rand(1, 3, 32, 32) * 2 - 1 for k in ("A", "B")}
    saved.train_step(batch)
    state = saved.state_dict()
    conv = next(p for p in saved.method.networks["G"].parameters() if p.dim() == 4 and p.shape[1] > 1)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()

    nchw = make_trainer(tiny_data, tmp_path / "b", run__channels_last=False)
    nchw.train_step(batch)  # chooses the layout and creates optimiser state
    nchw.load_state_dict(state, "test")
    for name, opt in nchw.optimizers.items():
        for p, values in opt.state.items():
            for key in ("exp_avg", "exp_avg_sq"):
                assert values[key].stride() == p.stride(), (name, key)
    moments = saved.optimizers["generators"].state[conv]["exp_avg"]
    same = dict(zip(saved.optimizers["generators"].param_groups[0]["params"], nchw.optimizers["generators"].param_groups[0]["params"], strict=True))[conv]
    torch.testing.assert_close(nchw.optimizers["generators"].state[same]["exp_avg"], moments, rtol=0, atol=0)


def _command_flags(command: str) -> set[str]:
    """The long option names of ``brushwork COMMAND``, as typer builds them."""
    import typer.main

    from brushwork.cli import app

    params = typer.main.get_command(app).commands[command].params  # type: ignore[attr-defined]
    return {opt for p in params for opt in (*p.opts, *p.secondary_opts) if opt.startswith("--")}


def test_checkpoint_errors_name_real_flags_of_each_command(tiny_data: Path, tmp_path: Path, cli: CLI) -> None:
    """A corrupt or missing checkpoint is reported by train, export and stylize alike: any flag it advises exists there."""
    run = tmp_path / "run"
    resolve_train_config(overrides=tiny_overrides(tiny_data, run)).save(run / "config.yaml")
    (run / "checkpoints").mkdir()
    (tmp_path / "in.png").write_bytes((tiny_data / "testA" / "img_000.png").read_bytes())
    commands = {
        "train": ["train", "--out", str(run), "--resume"],
        "export": ["export", str(run)],
        "stylize": ["stylize", str(tmp_path / "in.png"), "--model", str(run), "--direction", "AtoB", "--out", str(tmp_path / "o")],
    }
    for state, expected in (("missing", "no checkpoint in"), ("corrupt", "is corrupt or truncated")):
        if state == "corrupt":
            ckpt.checkpoint_path(run, 5).write_bytes(b"PK\x03\x04 not really a zip file")
        for command, args in commands.items():
            code, out, err = cli(args)
            assert code == 2 and expected in err and "Traceback" not in out + err, (command, err)
            named = set(re.findall(r"--[a-z][a-z-]*", err))
            assert named <= _command_flags(command), (command, err)
    _, _, err = cli(commands["train"])
    assert "--resume-from" in err  # the way to pick an older checkpoint


def test_temporaries_of_killed_writes_are_removed_when_a_run_starts(tiny_data: Path, tmp_path: Path) -> None:
    """SIGKILL mid-save leaves a `.step_*.pt.*.tmp` (or a release's temporary folder); the next start removes it."""
    out = tmp_path / "run"
    cfg = resolve_train_config(overrides=tiny_overrides(tiny_data, out) | {"optim": {"max_steps": 2}})
    run_training(cfg)
    stale = [out / "checkpoints" / ".step_00000003.pt.k1ll3d.tmp", out / "release" / ".AtoB.k1ll3d.tmp" / "new" / "config.json"]
    keep = [out / "checkpoints" / "notes.tmp", out / "checkpoints" / ".notes.txt.x.tmp", out / "release" / "AtoB" / "config.json"]
    for path in stale + keep[:2]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"left behind")
    resumed = resolve_train_config(overrides=tiny_overrides(tiny_data, out) | {"optim": {"max_steps": 3}})
    assert run_training(resumed, resume="latest").step == 3
    assert not stale[0].exists() and not (out / "release" / ".AtoB.k1ll3d.tmp").exists()
    assert all(p.exists() for p in keep)
    assert sorted(p.name for p in (out / "release").iterdir()) == ["AtoB", "BtoA"]
