"""torch.compile in training: when auto turns it on, resume under compile, eager samples and hooks, fallback."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from brushwork import checkpoints as ckpt
from brushwork.config import ConfigError, TrainConfig, resolve_train_config
from brushwork.methods import build_method
from brushwork.training import compiling
from brushwork.training.compiling import AUTO_MIN_STEPS, CompileFailedError, plan_compile
from brushwork.training.logger import read_log
from brushwork.training.run import run_training
from brushwork.training.trainer import Trainer

from .conftest import tiny_overrides

CPU = torch.device("cpu")
needs_compiler = pytest.mark.skipif(compiling.missing_toolchain(CPU) is not None, reason="no C++ compiler for torch.compile")


def test_compile_setting_is_true_false_or_auto() -> None:
    assert resolve_train_config(overrides={"data": {"root": "x"}}).run.compile == "auto"
    assert resolve_train_config(assignments=["data.root=x", "run.compile=false"]).run.compile is False
    assert TrainConfig.from_dict({"data": {"root": "x"}, "run": {"compile": True}}).run.compile is True
    with pytest.raises(ConfigError, match=r"run\.compile='sometimes'.*true, false or auto"):
        resolve_train_config(assignments=["data.root=x", "run.compile=sometimes"])


def test_auto_compiles_long_runs_only_when_a_compiler_is_present(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not plan_compile("auto", CPU, AUTO_MIN_STEPS - 1).enabled
    assert "too short" in plan_compile("auto", CPU, 10).reason
    assert plan_compile(True, CPU, 10).enabled and not plan_compile(False, CPU, 10**6).enabled
    monkeypatch.setenv("CXX", "")
    monkeypatch.setattr(compiling.shutil, "which", lambda name: None)
    plan = plan_compile("auto", CPU, 10**6)
    assert not plan.enabled and "no C++ compiler" in plan.reason
    assert not plan_compile("auto", torch.device("meta"), 10**6).enabled
    monkeypatch.setattr(compiling.shutil, "which", lambda name: "/usr/bin/g++" if name == "g++" else None)
    plan = plan_compile("auto", CPU, 10**6)
    assert plan.enabled and plan.fall_back
    assert plan_compile("auto", CPU, 10**6, eager_precision="bf16").enabled
    plan = plan_compile("auto", CPU, 10**6, eager_precision="fp32")
    assert not plan.enabled and "fastest eager setting on this CPU is fp32" in plan.reason
    assert plan_compile(True, CPU, 10**6, eager_precision="fp32").enabled  # asked for: compiled anyway


class _SeesNetworks:
    """A trainer hook that records what kind of network objects it was given."""

    name, every = "probe", 2

    def __init__(self) -> None:
        self.kinds: list[set[str]] = []

    def __call__(self, trainer: Trainer) -> dict[str, float]:
        self.kinds.append({type(net).__name__ for net in trainer.method.networks.values()})
        assert not any(net.training for net in trainer.method.networks.values())
        return {"seen": 1.0}


@needs_compiler
def test_compiled_run_resumes_and_samples_and_hooks_use_the_eager_networks(tiny_data: Path, tmp_path: Path) -> None:
    def config(out: Path) -> TrainConfig:
        overrides = tiny_overrides(tiny_data, out, compile=True, sample_every=2, checkpoint_every=2, precision="fp32")
        return resolve_train_config(overrides=overrides | {"optim": {"max_steps": 4}})

    hook = _SeesNetworks()
    whole = run_training(config(tmp_path / "whole"), hooks=[hook])
    assert whole.step == 4 and set(whole.releases) == {"AtoB", "BtoA"}
    assert hook.kinds == [{"ResnetGenerator", "NLayerDiscriminator"}] * 2  # never the compiled wrappers
    assert {p.name for p in (tmp_path / "whole" / "samples").iterdir()} == {"step_00000002.png", "step_00000004.png"}
    state = torch.load(ckpt.list_checkpoints(tmp_path / "whole")[-1], weights_only=False)
    assert not any("_orig_mod" in key for net in state["networks"].values() for key in net)

    # Stop after step 2 (a copy of the whole run's first checkpoint), then resume under compile.
    part = tmp_path / "part"
    (part / "checkpoints").mkdir(parents=True)
    (part / "checkpoints" / "step_00000002.pt").write_bytes((tmp_path / "whole" / "checkpoints" / "step_00000002.pt").read_bytes())
    resumed = run_training(config(part), resume="latest")
    assert resumed.step == 4
    expected = [r for r in read_log(tmp_path / "whole" / "log.jsonl") if r["step"] > 2]
    got = read_log(part / "log.jsonl")
    assert [r["step"] for r in got] == [3, 4]
    for want, have in zip(expected, got, strict=True):
        for key in ("G_gan", "cycle_A", "cycle_B", "D_A", "D_B"):
            assert have[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), key


def _failing_backend(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> object:
    raise RuntimeError("simulated compiler failure")


def test_auto_falls_back_to_eager_when_compiling_fails(tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiling, "BACKEND", _failing_backend)
    monkeypatch.setattr(compiling, "missing_toolchain", lambda device: None)
    torch._dynamo.reset()  # dynamo remembers code it could not compile; start and end clean
    # bf16: auto compiles only where the fastest eager setting is reduced precision (on fp32 CPUs eager wins)
    overrides = tiny_overrides(tiny_data, tmp_path / "run", precision="bf16") | {"optim": {"max_steps": AUTO_MIN_STEPS}}
    torch.manual_seed(0)
    trainer = Trainer(build_method(cfg := resolve_train_config(overrides=overrides)), cfg, None, device=CPU)
    batch = {k: torch.rand(1, 3, 32, 32) * 2 - 1 for k in ("A", "B")}
    losses = [trainer.train_step(batch) for _ in range(2)]
    assert trainer.compile_plan is not None and trainer.compile_plan.enabled and trainer.compile_plan.fall_back
    assert all(math.isfinite(v) for step in losses for v in step.values())

    torch._dynamo.reset()
    explicit = resolve_train_config(overrides=overrides | {"run": {**overrides["run"], "compile": True}})  # type: ignore[dict-item]
    trainer = Trainer(build_method(explicit), explicit, None, device=CPU)
    with pytest.raises(CompileFailedError, match="simulated compiler failure.*--no-compile"):
        trainer.train_step(batch)
    torch._dynamo.reset()
