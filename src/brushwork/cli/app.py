"""The Typer application and the edge where library errors become one-line messages."""

from __future__ import annotations

import logging
import sys
import warnings

import typer

app = typer.Typer(
    name="brushwork",
    help="Image style transfer with GANs: train CycleGAN, stylise images, evaluate and compare.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors that are the user's input, not a bug: shown as one line, exit status 2."""
    from brushwork.checkpoints import CheckpointError
    from brushwork.cli.compare import MethodSpecError
    from brushwork.config import ConfigError
    from brushwork.data.imageio import ImageReadError, ImageWriteError, PixelLimitError
    from brushwork.data.unpaired import DatasetError
    from brushwork.inference.io import OutputFolderError
    from brushwork.inference.onnx import OnnxError
    from brushwork.inference.sources import DownloadError, ModelSourceError
    from brushwork.inference.stylizer import ImageTooLargeForModeError, ImageTooSmallError
    from brushwork.inference.temporal import StableModeError
    from brushwork.inference.video import VideoReadError, VideoWriteError
    from brushwork.metrics import InceptionWeightsError, MetricInputError, MetricUnavailable
    from brushwork.registry import RegistryError
    from brushwork.release import ReleaseError
    from brushwork.style.adain import AdaINModelError
    from brushwork.style.inputs import StyleInputError
    from brushwork.style.weights import VGGWeightsError
    from brushwork.training.compiling import CompileFailedError
    from brushwork.training.trainer import RunFolderError
    from brushwork.utils.device import DeviceError

    return (
        ConfigError, DatasetError, ImageReadError, ImageWriteError, RegistryError, ReleaseError,
        CheckpointError, RunFolderError, CompileFailedError, InceptionWeightsError, MetricInputError, MetricUnavailable,
        MethodSpecError, ModelSourceError, DownloadError, OutputFolderError, ImageTooSmallError, ImageTooLargeForModeError, DeviceError, PixelLimitError,
        VideoReadError, VideoWriteError, StableModeError, OnnxError, StyleInputError, AdaINModelError, VGGWeightsError,
    )  # fmt: skip


def setup_logging(verbose: bool = False) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        # stderr: standard output carries only a command's results (e.g. evaluate --json -)
        handlers=[RichHandler(console=Console(stderr=True), show_path=False, show_time=False, rich_tracebacks=False)],
        force=True,
    )
    logging.captureWarnings(True)
    warnings.filterwarnings("ignore", module="torch.utils.tensorboard")
    # torch.compile on a CPU-only machine: "No CUDA runtime is found" says nothing a user can act on.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except Exception as exc:
        if not isinstance(exc, user_errors()):
            raise
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)
