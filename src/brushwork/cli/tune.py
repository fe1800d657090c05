"""``brushwork tune``: show (or measure again) the speed settings chosen for this machine."""

from __future__ import annotations

from typing import Annotated

import typer

from brushwork.cli.app import app, setup_logging


@app.command()
def tune(
    fresh: Annotated[bool, typer.Option("--fresh", help="Measure again instead of reading the cache (e.g. after a probe on a busy machine).")] = False,
) -> None:
    """Time the speed settings on this CPU and show which ones auto training and stylising use.

    brushwork measures them once per CPU model, flag set, ISA limit, thread count and torch
    version, on first use, and caches the result in $BRUSHWORK_CACHE/speed/. Run this on an idle
    machine with --fresh to renew it.
    """
    setup_logging()
    from brushwork.tuning import PROBE_ENV, probe

    for workload, title in (("train", "training (forward + backward)"), ("infer", "stylising (forward)")):
        timings, chosen, path = probe(workload, fresh=fresh)  # type: ignore[arg-type]
        typer.echo(f"{title}:")
        for name, seconds in timings.items():
            shown = "not competitive" if seconds == float("inf") else f"{seconds * 1e3:8.1f} ms"
            typer.echo(f"  {'*' if name == chosen.name else ' '} {name:<44} {shown}")
        typer.echo(f"  cached in {path}")
    typer.echo("* = what auto settings use. Override it for one run with brushwork train --precision fp32 "
               "--no-channels-last --no-gemm-weight-grad (or any other values), or for everything with "
               f"{PROBE_ENV}=0 (plain fp32)")
