"""One cache folder for everything brushwork keeps: $BRUSHWORK_CACHE."""

from __future__ import annotations

from pathlib import Path

import pytest

from brushwork.inference.sources import published_path
from brushwork.metrics.features import FeatureCache
from brushwork.utils.cache import cache_dir


def test_every_cache_user_follows_brushwork_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BRUSHWORK_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("BRUSHWORK_CACHE_DIR", str(tmp_path / "old"))  # the retired second name is ignored
    assert cache_dir() == tmp_path / "c"
    assert FeatureCache().root == tmp_path / "c" / "features"
    assert published_path("horse2zebra") == tmp_path / "c" / "pretrained" / "horse2zebra.pth"


def test_default_cache_is_under_xdg_cache_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("BRUSHWORK_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir("probe") == tmp_path / "brushwork" / "probe"
    assert FeatureCache().root == tmp_path / "brushwork" / "features"
