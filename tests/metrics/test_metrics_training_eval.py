"""Evaluation during training: KID/FID logged every N steps, the best generator kept."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from metrics_helpers import write_images

from brushwork.config import ConfigError, TrainConfig, resolve_train_config
from brushwork.metrics.weights import InceptionWeightsError
from brushwork.release import load_release
from brushwork.training.logger import read_log
from brushwork.training.run import run_training


def tiny_config(root: Path, out: Path, **eval_settings: Any) -> TrainConfig:
    for split, count in (("train", 4), ("test", 3)):
        for domain, kind in (("A", "smooth"), ("B", "stripes")):
            write_images(root / f"{split}{domain}", count, size=32, kind=kind, seed=len(split) + ord(domain))
    return resolve_train_config(overrides={
        "data": {"root": str(root), "load_size": 32, "crop_size": 32, "num_workers": 0},
        "model": {"generator": "resnet_2blocks", "ngf": 4, "ndf": 4},
        "optim": {"max_steps": 3},
        "run": {"out": str(out), "log_every": 1, "sample_every": 100, "checkpoint_every": 100,
                "tensorboard": False, "progress": False, "device": "cpu"},
        "eval": eval_settings,
    })  # fmt: skip


def test_training_logs_kid_and_fid_and_keeps_the_best(tmp_path: Path, inception_weights: Path, cheap_inception: list[int]) -> None:
    config = tiny_config(tmp_path / "data", tmp_path / "run", every=1, metric="fid", inception_weights=str(inception_weights))
    result = run_training(config)
    assert result.step == 3
    records = read_log(result.run_dir / "log.jsonl", kind="eval")
    assert [r["step"] for r in records] == [1, 2, 3]
    for direction in ("AtoB", "BtoA"):
        fids = [r[f"{direction}/fid"] for r in records]
        assert all(math.isfinite(r[f"{direction}/kid"]) and math.isfinite(r[f"{direction}/kid_std"]) for r in records)
        best = json.loads((result.run_dir / "best" / direction / "best.json").read_text())
        assert best["metric"] == "fid" and best["value"] == min(fids)
        assert best["step"] == records[fids.index(min(fids))]["step"]
        assert records[-1][f"{direction}/best_fid"] == min(fids)
        _, release = load_release(result.run_dir / "best" / direction)
        assert release.direction == direction and release.provenance["step"] == best["step"]
    # translations of 3 test images per direction each time, real features once per domain (3 + 3)
    assert sum(cheap_inception) == 3 * 2 * 3 + 3 + 3


def test_evaluation_needs_weights_before_training_starts(tmp_path: Path) -> None:
    config = tiny_config(tmp_path / "data", tmp_path / "run", every=2)
    with pytest.raises(InceptionWeightsError, match="weights-inception-2015-12-05"):
        run_training(config)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_eval_config_is_validated_and_optional() -> None:
    assert TrainConfig.from_dict({"data": {"root": "x"}}).eval.every == 0  # old configs load
    with pytest.raises(ConfigError, match=r"eval\.metric='is'"):
        resolve_train_config(overrides={"data": {"root": "x"}, "eval": {"metric": "is"}})
    with pytest.raises(ConfigError, match=r"eval\.every"):
        resolve_train_config(assignments=["data.root=x", "eval.every=-1"])
