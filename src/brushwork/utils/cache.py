"""brushwork's one cache folder: published models, Inception features, the speed probe.

``$BRUSHWORK_CACHE`` when set, else ``$XDG_CACHE_HOME/brushwork``, else ``~/.cache/brushwork``.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "BRUSHWORK_CACHE"


def cache_dir(*parts: str) -> Path:
    """The cache folder (or ``parts`` below it); nothing is created here."""
    env = os.environ.get(CACHE_ENV)
    if env:
        root = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "brushwork"
    return root.joinpath(*parts)
