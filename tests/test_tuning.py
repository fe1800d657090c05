"""The speed probe: what it measures, what it caches, what explicit settings do, and the trainer's use of it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from brushwork import tuning
from brushwork.config import resolve_train_config
from brushwork.inference import Stylizer
from brushwork.methods import build_method
from brushwork.training.logger import read_log
from brushwork.training.run import run_training
from brushwork.training.trainer import Trainer
from brushwork.tuning import CANDIDATES, PLAIN, SpeedSetting, choose_speed
from brushwork.utils.device import DeviceError
from tests._inference_helpers import cli_fixture, tiny_generator
from tests.conftest import tiny_overrides

CPU = torch.device("cpu")
_ = cli_fixture  # the `cli` fixture
GEMM = SpeedSetting("fp32", True, gemm_weight_grad=True)


@pytest.fixture
def probing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[list[str]]:
    """The probe switched on, its cache in tmp_path, and ``measure`` replaced by a recorder.

    The fake timings make GEMM weight gradients the fastest training setting and fp32
    channels_last the fastest inference setting; each call's candidate names are recorded.
    """
    monkeypatch.setenv("BRUSHWORK_SPEED_PROBE", "1")
    monkeypatch.setenv("BRUSHWORK_CACHE", str(tmp_path / "cache"))
    calls: list[list[str]] = []
    fake = {PLAIN.name: 1.0, "fp32 + channels_last": 0.9, GEMM.name: 0.7, "bf16 + NCHW": math.inf, "bf16 + channels_last": math.inf}

    def measure(workload: str, candidates: list[SpeedSetting], **_: object) -> dict[str, float]:
        calls.append([c.name for c in candidates])
        return {c.name: fake[c.name] for c in candidates}

    monkeypatch.setattr(tuning, "measure", measure)
    return calls


def test_probe_picks_the_fastest_and_caches_it(probing: list[list[str]], tmp_path: Path) -> None:
    first = choose_speed("train", CPU)
    assert first.setting == GEMM and "measured" in first.reason
    assert choose_speed("train", CPU).setting == GEMM  # from the cache: not measured again
    assert len(probing) == 1 and len(probing[0]) == len(CANDIDATES["train"])
    (cached,) = (tmp_path / "cache" / "speed").glob("train-*.json")
    record = json.loads(cached.read_text())
    assert record["key"]["torch"] == torch.__version__ and record["seconds"][GEMM.name] == 0.7
    assert choose_speed("infer", CPU).setting == SpeedSetting("fp32", True)  # inference has its own entry
    assert len(probing) == 2


def test_another_isa_limit_is_another_machine(probing: list[list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    choose_speed("train", CPU)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    choose_speed("train", CPU)
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    choose_speed("train", CPU)
    assert len(probing) == 3


def test_a_corrupt_cache_file_is_measured_again(probing: list[list[str]], tmp_path: Path) -> None:
    choose_speed("train", CPU)
    (cached,) = (tmp_path / "cache" / "speed").glob("train-*.json")
    cached.write_text("{not json")
    assert choose_speed("train", CPU).setting == GEMM
    assert len(probing) == 2
    assert json.loads(cached.read_text())["seconds"]


def test_explicit_settings_narrow_or_skip_the_probe(probing: list[list[str]]) -> None:
    assert choose_speed("train", CPU, precision="fp32", channels_last=False).setting == PLAIN
    assert choose_speed("train", CPU, channels_last=True, gemm=False, precision="fp32").setting == SpeedSetting("fp32", True)
    assert probing == []  # one candidate left: nothing to measure
    assert choose_speed("train", CPU, channels_last=True, precision="fp32").setting == GEMM
    assert probing == [["fp32 + channels_last", GEMM.name]]
    assert choose_speed("train", CPU, precision="bf16", channels_last=True).setting == SpeedSetting("bf16", True)
    # GEMM weight gradients asked for where they cannot run: a one-line error naming the conflict
    with pytest.raises(DeviceError, match="run on the CPU in fp32 with channels_last; this run asks for auto on cpu in NCHW"):
        choose_speed("train", CPU, channels_last=False, gemm=True)
    with pytest.raises(DeviceError, match="asks for bf16 on cpu"):
        choose_speed("train", CPU, precision="bf16", gemm=True)
    with pytest.raises(DeviceError, match="on cuda"):
        choose_speed("train", torch.device("cuda"), gemm=True)


def test_plain_wins_unless_beaten_by_the_margin() -> None:
    cands = CANDIDATES["infer"]
    near = {c.name: 1.0 for c in cands} | {"fp32 + channels_last": 1.0 - tuning.MARGIN / 2}
    assert tuning._pick(cands, near) == PLAIN
    far = near | {"bf16 + channels_last": 0.5}
    assert tuning._pick(cands, far) == SpeedSetting("bf16", True)


def test_probe_off_takes_the_plain_setting(probing: list[list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRUSHWORK_SPEED_PROBE", "0")
    assert choose_speed("train", CPU).setting == PLAIN
    assert choose_speed("infer", CPU, channels_last=True).setting == SpeedSetting("fp32", True)
    assert probing == []


def test_bad_precisions_are_named() -> None:
    with pytest.raises(DeviceError, match="fp16 is not supported on the CPU"):
        choose_speed("infer", CPU, precision="fp16")
    with pytest.raises(DeviceError, match="unknown precision 'fp64'"):
        choose_speed("train", CPU, precision="fp64")


def test_cuda_takes_bf16_for_training_and_fp16_for_inference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    cuda = torch.device("cuda")
    assert choose_speed("train", cuda).setting == SpeedSetting("bf16", True)
    assert choose_speed("infer", cuda).setting == SpeedSetting("fp16", True)
    assert choose_speed("train", cuda, precision="fp32", channels_last=False).setting == PLAIN


def test_real_measurement_runs_every_candidate_once_and_leaves_the_rng_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tuning, "_bf16_conv_ratio", lambda: 10.0)  # as on a CPU without bf16: not run
    monkeypatch.setattr(tuning, "PROBE_SHAPE", {"train": (1, 16), "infer": (1, 16)})
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    seconds = tuning.measure("train", CANDIDATES["train"], repeats=1)
    assert torch.equal(torch.rand(3), expected)
    assert set(seconds) == {c.name for c in CANDIDATES["train"]}
    assert seconds["bf16 + NCHW"] == math.inf
    assert all(0 < seconds[c.name] < math.inf for c in CANDIDATES["train"] if c.precision == "fp32")


def test_stylizer_uses_the_probe_choice(probing: list[list[str]]) -> None:
    net, config = tiny_generator()
    stylizer = Stylizer(net, config, device="cpu")
    assert stylizer.dtype == torch.float32 and stylizer.channels_last


def _config(data: Path, out: Path, **run: object):
    values = tiny_overrides(data, out, **run)
    values["optim"] = {"epochs": 1, "epochs_decay": 2, "max_steps": 6}
    return resolve_train_config(overrides=values)


class _StopAt:
    """A trainer hook that interrupts the run (as Ctrl-C does) at step ``every``."""

    name = "stop"

    def __init__(self, every: int) -> None:
        self.every = every

    def __call__(self, trainer: Trainer) -> dict[str, float]:
        raise KeyboardInterrupt


def test_trainer_uses_the_probe_and_a_resumed_run_keeps_its_checkpoints_setting(
    probing: list[list[str]], tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = run_training(_config(tiny_data, tmp_path / "whole"))
    assert whole.step == 6
    stopped = run_training(_config(tiny_data, tmp_path / "stopped"), hooks=[_StopAt(3)])
    assert stopped.interrupted and stopped.step == 3
    # A new probe would now choose the plain setting; the resumed run must keep GEMM gradients.
    monkeypatch.setattr(tuning, "choose_speed", lambda *a, **k: pytest.fail("the resumed run probed again"))
    resumed = run_training(_config(tiny_data, tmp_path / "stopped"), resume="latest")
    assert resumed.step == 6
    drop = ("it_per_s",)
    strip = lambda p: [{k: v for k, v in r.items() if k not in drop} for r in read_log(p)]  # noqa: E731
    assert strip(tmp_path / "stopped" / "log.jsonl") == strip(tmp_path / "whole" / "log.jsonl")


def test_gemm_weight_gradients_in_the_trainer(tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With run.gemm_weight_grad the trainer's residual convs take GEMM weight gradients; nothing else changes.

    The forward pass is the same oneDNN call either way, so the first step's losses (all computed
    before any update) are bit-identical; tests/test_conv.py bounds the gradients themselves.
    """
    from brushwork.nn import conv

    calls = []
    real = conv.conv_weight_grad_gemm
    monkeypatch.setattr(conv, "conv_weight_grad_gemm", lambda *a: calls.append(a[2]) or real(*a))
    first = {}
    for gemm in (False, True):
        cfg = _config(tiny_data, tmp_path / str(gemm), precision="fp32", channels_last=True, gemm_weight_grad=gemm)
        torch.manual_seed(0)
        trainer = Trainer(build_method(cfg), cfg, None, device=CPU)
        g = torch.Generator().manual_seed(0)
        batch = {k: torch.rand(1, 3, 32, 32, generator=g) * 2 - 1 for k in "AB"}
        first[gemm] = trainer.train_step(batch)
        assert trainer.speed == SpeedSetting("fp32", True, gemm)
        assert trainer.memory_format == torch.channels_last
    assert first[False] == first[True]
    # Eligible layers have 16+ channels on both sides. G phase: G and F each run twice (a+b
    # fused, then the cycle pass); per pass (ngf 8) the 4 residual convs at 32 channels, the
    # 16->32 stride-2 conv and the 32->16 transposed conv: 4 x 6 = 24. D phase: D_A and D_B once
    # each (real and fake fused), with the 16->32 stride-2 and 32->64 convs: 4.
    assert len(calls) == 24 + 4
    assert sorted(tuple(k) for k in set(calls)) == [(3, 3), (4, 4)]


def test_tune_command_lists_every_setting_and_marks_the_choice(probing: list[list[str]]) -> None:
    from typer.testing import CliRunner

    from brushwork.cli import app

    result = CliRunner().invoke(app, ["tune"])
    assert result.exit_code == 0, result.output
    assert f"* {GEMM.name}" in result.output  # training: the fake timings make GEMM gradients fastest
    assert "* fp32 + channels_last " in result.output and "not competitive" in result.output
    assert len(probing) == 2
    assert CliRunner().invoke(app, ["tune"]).exit_code == 0 and len(probing) == 2  # cached
    assert CliRunner().invoke(app, ["tune", "--fresh"]).exit_code == 0 and len(probing) == 4


def test_bf16_only_candidates_on_a_cpu_without_fast_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tuning, "_bf16_conv_ratio", lambda: 10.0)
    bf16 = [c for c in CANDIDATES["infer"] if c.precision == "bf16"]
    assert tuning.measure("infer", bf16) == {c.name: math.inf for c in bf16}


def test_contradictory_speed_flags_are_one_line_errors_before_anything_is_written(cli, tiny_data: Path, tmp_path: Path) -> None:
    code, _, err = cli(["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), "--steps", "2",
                        "--precision", "bf16", "--gemm-weight-grad"])  # fmt: skip
    assert code == 2 and "Traceback" not in err
    assert "GEMM weight gradients (--gemm-weight-grad, run.gemm_weight_grad) run on the CPU in fp32" in err
    assert not (tmp_path / "run").exists()
