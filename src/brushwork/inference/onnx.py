"""ONNX: export an image-to-image generator to one ``.onnx`` file, and run one through onnxruntime.

Export (:func:`export_onnx`, ``brushwork export-onnx``) writes two files side by side:

    model.onnx    the generator as one self-contained ONNX graph (weights inside), fp32,
                  input ``input`` (batch, 3, height, width) in [-1, 1], output ``output`` the same
                  shape in [-1, 1]; batch, height and width are dynamic (multiples of the
                  config's ``size_multiple``)
    config.json   the release config (architecture, preprocessing, direction, provenance) and an
                  ``onnx`` section: file, sha256, opset, input/output names and ranges, exporter
                  and versions, and the measured onnxruntime-vs-torch error of the check that
                  every export runs before it is kept

:class:`OnnxBackend` runs such a file as a backend of the one image pipeline
(``Stylizer.from_pretrained("model.onnx")``): padding, batching, alpha, input kinds and tiling
are the Stylizer's, only the forward pass is onnxruntime's.

Tiling with whole-image instance-norm statistics (:mod:`brushwork.inference.tiling`) needs the
norm layers to take statistics from outside. The exported graph keeps every instance norm as
one ``InstanceNormalization`` node, so the two graphs tiling needs are derived from it when a
first image is tiled, in memory and without re-exporting (:func:`statistics_graph`,
:func:`frozen_statistics_graph`): one that also outputs each norm's per-channel mean and
variance, and one where each norm is a ``BatchNormalization`` fed with given ones. That is the
torch path's :class:`~brushwork.inference.tiling.StatsNorm` mechanism as graph edits, so ONNX
tiles match torch tiles (tests/test_onnx.py) and the file users deploy stays the plain graph.

Exporter: the TorchScript-based ``torch.onnx.export(..., dynamo=False)``. For a convolutional
generator it needs no extra dependency, marks batch, height and width dynamic without shape
guards, and writes the weights inside the one file (the dynamo exporter needs onnxscript and by
default writes them to a separate ``.onnx.data`` file). Opset 17 by default: the graph uses
only long-standing operators (Conv, ConvTranspose, Pad reflect, InstanceNormalization), so the
lower opset keeps the file loadable by older runtimes (onnxruntime since 1.12); 18 is offered
for runtimes that want it.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from brushwork import __version__
from brushwork.inference.sources import ModelSourceError
from brushwork.release import CONFIG_NAME, WEIGHTS_NAME, ReleaseConfig
from brushwork.utils.files import atomic_path, atomic_write_text, file_sha256

if TYPE_CHECKING:
    import onnx
    import onnxruntime

log = logging.getLogger(__name__)

OPSETS = (17, 18)
DEFAULT_OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "output"
SECTION = "onnx"  # the key of the ONNX section in config.json
#: Largest |onnxruntime - torch| accepted by the check after export, in the [-1, 1] output range:
#: half an 8-bit level (one level is 2/255), so the two agree to within one level after rounding.
#: Measured: 4e-6 on a trained 9-block generator (docs/deploy.md), so this only catches a wrong graph.
CHECK_TOLERANCE = 1 / 255
_EXPORTER = "torch.onnx.export (TorchScript-based, dynamo=False)"
_STATS_PREFIX = "brushwork.norm"


class OnnxError(ValueError):
    """An ONNX export or run failed in a way the user can act on; the message names the file."""


class OnnxModelError(OnnxError, ModelSourceError):
    """An ``.onnx`` model source cannot be read: missing, corrupted, or without its config.json."""


def _require(module: str) -> Any:
    """Import ``onnx`` or ``onnxruntime``, or say how to install them."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise OnnxError(f"{module} is not installed; install brushwork's ONNX extra: pip install 'brushwork[onnx]'") from None


# ---------------------------------------------------------------------------------------------
# Export


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote and measured."""

    path: Path
    config_path: Path
    opset: int
    sha256: str
    max_abs_error: float  # onnxruntime against torch on the check input, in [-1, 1] units


class _ExportInstanceNorm(nn.InstanceNorm2d):
    """torch's own instance norm, which the exporter writes as one ``InstanceNormalization`` node.

    brushwork's :class:`~brushwork.nn.layers.InstanceNorm2d` runs inference through
    ``group_norm`` (faster in torch), which the exporter would spell as reshapes around a
    normalisation over groups; one plain node per norm is what the tiling graph edits look for,
    and what runtimes fuse best.
    """


def export_module(model: nn.Module) -> nn.Module:
    """A private fp32 CPU eval copy of ``model`` with every instance norm as :class:`_ExportInstanceNorm`."""
    net = copy.deepcopy(model).float().cpu().eval().requires_grad_(False)
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.InstanceNorm2d) and not child.track_running_stats:
                plain = _ExportInstanceNorm(child.num_features, eps=child.eps, momentum=child.momentum, affine=child.affine,
                                            track_running_stats=False)
                plain.load_state_dict(child.state_dict())
                setattr(parent, name, plain.requires_grad_(False))
    return net


def _ceil_to(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def export_onnx(model: nn.Module, config: ReleaseConfig, out: Path | str, *, opset: int = DEFAULT_OPSET,
                where: str = "model") -> OnnxExport:
    """Export an image-to-image generator to ``out`` (an ``.onnx`` file) with ``config.json`` beside it.

    The graph is traced at one size and checked at another (batch 2, height and width swapped),
    with onnxruntime against torch on a seeded random input; a difference above
    :data:`CHECK_TOLERANCE` is an error and nothing is written. Both files are written
    atomically, the ``.onnx`` first: ``config.json`` records its sha256, which loading checks, so a
    reader never takes a new graph for an old one.
    """
    if config.pipeline != "image-to-image":
        raise OnnxError(f"{where} is a {config.pipeline} model; export-onnx exports image-to-image generators only "
                        "(an image in, an image out)")
    if opset not in OPSETS:
        raise OnnxError(f"opset {opset} is not supported; choose one of {', '.join(map(str, OPSETS))}")
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise OnnxError(f"{out}: the output file name must end in .onnx")
    if out.is_dir():
        raise OnnxError(f"{out} is a folder; give the .onnx file to write, e.g. {out / 'model.onnx'}")
    config_path = out.with_name(CONFIG_NAME)
    _check_config_slot(config_path, out)
    onnx = _require("onnx")
    ort = _require("onnxruntime")

    net = export_module(model)
    multiple = int(config.preprocessing.size_multiple)
    channels = int(config.architecture.get("in_channels", 3))
    trace_h, trace_w = _ceil_to(64, multiple), _ceil_to(96, multiple)
    sample = torch.zeros(1, channels, trace_h, trace_w)
    dynamic = {0: "batch", 2: "height", 3: "width"}
    gen = torch.Generator().manual_seed(0)
    check_input = torch.rand(2, channels, trace_w, trace_h, generator=gen) * 2 - 1  # other size, batch 2
    with torch.no_grad():
        expected = net(check_input).numpy()
    try:
        with atomic_path(out) as tmp:
            with warnings.catch_warnings():  # the exporter's deprecation and constant-folding notes say nothing to act on
                warnings.simplefilter("ignore")
                torch.onnx.export(net, (sample,), str(tmp), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                  dynamic_axes={INPUT_NAME: dynamic, OUTPUT_NAME: dynamic}, opset_version=opset,
                                  dynamo=False, do_constant_folding=True)
            onnx.checker.check_model(str(tmp))
            session = _session(str(tmp), torch.device("cpu"), torch.get_num_threads())
            got = session.run([OUTPUT_NAME], {INPUT_NAME: check_input.numpy()})[0]
            if got.shape != expected.shape:
                raise OnnxError(f"exported graph gives shape {got.shape} for input {tuple(check_input.shape)}, torch "
                                f"{expected.shape}: the dynamic axes did not export; nothing was written")
            error = float(np.abs(got - expected).max())
            if not error <= CHECK_TOLERANCE:
                raise OnnxError(f"onnxruntime output differs from torch by up to {error:.3g} (tolerance {CHECK_TOLERANCE:.3g}) "
                                f"on a {tuple(check_input.shape)} input; the export is wrong, nothing was written")
            digest = file_sha256(tmp)
            ir_version = int(onnx.load(str(tmp), load_external_data=False).ir_version)
    except OSError as exc:
        raise OnnxError(f"cannot write {out} ({exc.strerror or exc})") from None

    data = json.loads(config.to_json())
    data[SECTION] = {
        "file": out.name,
        "sha256": digest,
        "opset": opset,
        "ir_version": ir_version,
        "input": {"name": INPUT_NAME, "shape": ["batch", channels, "height", "width"], "dtype": "float32",
                  "range": list(config.preprocessing.input_range), "layout": "NCHW, RGB"},
        "output": {"name": OUTPUT_NAME, "shape": ["batch", int(config.architecture.get("out_channels", 3)), "height", "width"],
                   "dtype": "float32", "range": [-1.0, 1.0], "layout": "NCHW, RGB"},
        "size_multiple": multiple,
        "min_side": _ceil_to(8, multiple),
        "padding": "pad height and width up to a multiple of size_multiple (and at least min_side) by reflection "
                   "at the bottom and right, then crop the output back",
        "exporter": _EXPORTER,
        "exported_from": where,
        "torch_version": torch.__version__,
        "onnx_version": onnx.__version__,
        "brushwork_version": __version__,
        "check": {"onnxruntime_version": ort.__version__, "input_shape": list(check_input.shape),
                  "max_abs_error": error, "tolerance": CHECK_TOLERANCE},
    }
    try:
        atomic_write_text(config_path, json.dumps(data, indent=2) + "\n")
    except OSError as exc:
        raise OnnxError(f"cannot write {config_path} ({exc.strerror or exc})") from None
    log.info("%s: opset %d, onnxruntime matches torch to %.2g", out, opset, error)
    return OnnxExport(path=out, config_path=config_path, opset=opset, sha256=digest, max_abs_error=error)


def _check_config_slot(config_path: Path, onnx_path: Path) -> None:
    """Refuse to overwrite a ``config.json`` that is not this file's (a release folder's, another export's)."""
    if not config_path.exists():
        return
    try:
        section = json.loads(config_path.read_text(encoding="utf-8")).get(SECTION)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        section = None
    if not isinstance(section, dict) or section.get("file") != onnx_path.name:
        raise OnnxError(f"{config_path} already exists and is not the config of {onnx_path.name} (a release folder's, "
                        "or another export's); write the .onnx into another folder")


# ---------------------------------------------------------------------------------------------
# Loading


def is_onnx_source(source: str | Path) -> bool:
    """Whether ``source`` names an exported model: an ``.onnx`` path, or a folder whose config.json
    has an ``onnx`` section (and no ``model.safetensors``: then it is a release folder)."""
    path = Path(source).expanduser()
    if path.suffix.lower() == ".onnx":
        return True
    config_path = path / CONFIG_NAME
    if not (path.is_dir() and config_path.is_file()) or (path / WEIGHTS_NAME).exists():
        return False
    try:
        return isinstance(json.loads(config_path.read_text(encoding="utf-8")).get(SECTION), dict)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return False


def read_onnx_config(onnx_path: Path) -> tuple[ReleaseConfig, dict[str, Any]]:
    """The release config and the ``onnx`` section of the ``config.json`` beside ``onnx_path``."""
    config_path = onnx_path.with_name(CONFIG_NAME)
    if not config_path.is_file():
        raise OnnxModelError(f"{onnx_path}: no {CONFIG_NAME} beside it; it holds the preprocessing and the graph's "
                             "input and output, and brushwork export-onnx writes it with the .onnx")
    try:
        data = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OnnxModelError(f"{config_path}: not valid JSON ({exc})") from None
    section = data.get(SECTION) if isinstance(data, dict) else None
    if not isinstance(section, dict):
        raise OnnxModelError(f"{config_path} has no '{SECTION}' section, so it does not describe {onnx_path.name}; "
                             "export the model with brushwork export-onnx")
    if section.get("file") != onnx_path.name:
        raise OnnxModelError(f"{config_path} describes {section.get('file')!r}, not {onnx_path.name}")
    config = ReleaseConfig.from_dict(data, str(config_path))
    if config.pipeline != "image-to-image":
        raise OnnxModelError(f"{config_path}: a {config.pipeline} model; only image-to-image generators run from ONNX")
    return config, section


def load_onnx(source: str | Path, *, direction: str | None = None, device: str | torch.device = "auto",
              threads: int | None = None, precision: str = "auto", channels_last: bool | None = None,
              compile: bool = False) -> tuple[OnnxBackend, ReleaseConfig]:
    """An exported ``.onnx`` (or the folder holding it and its config.json) as a backend and its config.

    The file must have the sha256 its config.json recorded. ``precision``, ``channels_last`` and
    ``compile`` are the torch backend's options; the graph runs as exported (fp32, NCHW).
    """
    path = Path(source).expanduser()
    if path.is_dir():
        if not is_onnx_source(path):
            raise OnnxModelError(f"{path} holds no exported ONNX model (a {CONFIG_NAME} with an '{SECTION}' section)")
        name = str(json.loads((path / CONFIG_NAME).read_text(encoding="utf-8"))[SECTION].get("file", ""))
        if not name or Path(name).name != name:
            raise OnnxModelError(f"{path / CONFIG_NAME}: 'onnx.file' must be the name of a file in that folder, got {name!r}")
        path = path / name
    if not path.is_file():
        raise OnnxModelError(f"ONNX model {path} does not exist")
    config, section = read_onnx_config(path)
    if direction is not None and direction != config.direction:
        raise OnnxModelError(f"{path} is an export of direction {config.direction}, not {direction}")
    if precision not in ("auto", "fp32") or channels_last or compile:
        chosen = {"precision": precision not in ("auto", "fp32"), "channels_last": bool(channels_last), "compile": compile}
        raise OnnxModelError(f"{path} runs as exported (fp32, NCHW, onnxruntime): "
                             f"{', '.join(k for k, v in chosen.items() if v)} cannot be chosen for it")
    return OnnxBackend(path, section, device=device, threads=threads), config


#: The pipeline options that :func:`load_onnx` takes (the rest go to the Stylizer).
BACKEND_OPTIONS = ("device", "threads", "precision", "channels_last", "compile")


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pipeline options as (those for :func:`load_onnx`, those for the Stylizer)."""
    backend = {k: v for k, v in options.items() if k in BACKEND_OPTIONS}
    return backend, {k: v for k, v in options.items() if k not in BACKEND_OPTIONS}


def _verify(path: Path, section: dict[str, Any]) -> None:
    expected = str(section.get("sha256", ""))
    digest = file_sha256(path)
    if digest != expected:
        raise OnnxModelError(f"{path}: sha256 {digest[:16]}... is not the {expected[:16] or 'missing'}... recorded in "
                             f"{path.with_name(CONFIG_NAME)}; the file was changed, truncated or corrupted: export it again")


def resolve_onnx_device(device: str | torch.device) -> torch.device:
    """``auto``: CUDA when this onnxruntime has its CUDA provider, else the CPU."""
    ort = _require("onnxruntime")
    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if has_cuda else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise OnnxError(f"unknown device {device!r}; onnxruntime runs on auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and not has_cuda:
        raise OnnxError(f"device {device!r}: this onnxruntime has no CUDA provider (install onnxruntime-gpu)")
    if resolved.type not in ("cpu", "cuda"):
        raise OnnxError(f"device {device!r}: brushwork runs ONNX models on the CPU or CUDA only")
    return resolved


def _session(model: str | bytes, device: torch.device, threads: int) -> onnxruntime.InferenceSession:
    """An onnxruntime session: ``threads`` intra-op threads, the CUDA provider on a CUDA device."""
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # No busy-waiting between runs: the Stylizer pads, crops and blends tiles between them, and the
    # spinning threads would take those cores (run time measured the same either way: docs/deploy.md).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: its warnings are about graph internals
    providers: list[Any] = ["CPUExecutionProvider"]
    if device.type == "cuda":
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
    return ort.InferenceSession(model, options, providers=providers)


class OnnxBackend:
    """An exported generator run by onnxruntime: the :class:`~brushwork.inference.stylizer.Backend` of ``.onnx`` files.

    ``threads``: intra-op threads (default: torch's, ``torch.get_num_threads()``). Providers: CUDA
    when ``device`` is CUDA (``auto`` picks it when available), else the CPU.
    """

    dtype = torch.float32
    channels_last = False
    #: peak memory of a pass, in ngf x 4 bytes per input pixel: measured 1440 B/pixel for ngf 64 at
    #: 512 and 1024 pixels square (5.6; its arena keeps blocks for reuse), budgeted 7 (docs/deploy.md)
    memory_factor = 7

    def __init__(self, path: Path, section: dict[str, Any], *, device: str | torch.device = "auto",
                 threads: int | None = None) -> None:
        if threads is not None and threads < 1:
            raise OnnxError(f"threads must be >= 1, got {threads}")
        self.path = path
        self.section = section
        self.device = resolve_onnx_device(device)
        self.threads = threads or torch.get_num_threads()
        self.input_name = str(section.get("input", {}).get("name", INPUT_NAME))
        self.output_name = str(section.get("output", {}).get("name", OUTPUT_NAME))
        _verify(path, section)
        self.session = self._open(str(path), path)
        names = {i.name for i in self.session.get_inputs()}, {o.name for o in self.session.get_outputs()}
        if self.input_name not in names[0] or self.output_name not in names[1]:
            raise OnnxModelError(f"{path}: the graph has inputs {sorted(names[0])} and outputs {sorted(names[1])}, not the "
                                 f"{self.input_name!r} and {self.output_name!r} its {CONFIG_NAME} names")
        self._tiling: tuple[Any, Any, list[str]] | None = None
        self._lock = threading.Lock()

    def _open(self, model: str | bytes, path: Path) -> onnxruntime.InferenceSession:
        try:
            return _session(model, self.device, self.threads)
        except Exception as exc:  # onnxruntime's own exception types (InvalidProtobuf, InvalidGraph, Fail, ...)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise OnnxModelError(f"{path}: onnxruntime cannot load it ({first})") from None

    def describe(self) -> str:
        ort = _require("onnxruntime")
        provider = self.session.get_providers()[0]
        return (f"ONNX opset {self.section.get('opset', '?')} via onnxruntime {ort.__version__} ({provider}, "
                f"{self.threads} threads), fp32")

    def _run(self, session: onnxruntime.InferenceSession, feeds: dict[str, np.ndarray]) -> Tensor:
        try:
            out = session.run([self.output_name], feeds)[0]
        except Exception as exc:  # onnxruntime raises its own types for bad shapes and failed kernels
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise OnnxError(f"{self.path}: onnxruntime failed ({first})") from None
        return torch.from_numpy(out)

    def _feed(self, x: Tensor) -> np.ndarray:
        return np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)

    def forward(self, x: Tensor) -> Tensor:
        return self._run(self.session, {self.input_name: self._feed(x)})

    def with_statistics(self, whole: Tensor) -> AbstractContextManager[Callable[[Tensor], Tensor]]:
        return self._with_statistics(whole)

    @contextmanager
    def _with_statistics(self, whole: Tensor) -> Iterator[Callable[[Tensor], Tensor]]:
        stats_session, frozen_session, names = self._tiling_sessions()
        if not names:  # no instance norms (batch norm, none): tiles need no statistics
            yield self.forward
            return
        values = stats_session.run(names, {self.input_name: self._feed(whole)})
        stats = dict(zip(names, values, strict=True))
        yield lambda x: self._run(frozen_session, {self.input_name: self._feed(x), **stats})

    def _tiling_sessions(self) -> tuple[Any, Any, list[str]]:
        """The statistics and frozen-statistics sessions, derived from the file on first use."""
        with self._lock:
            if self._tiling is None:
                onnx = _require("onnx")
                _verify(self.path, self.section)  # the file is read again: it must still be the one loaded
                proto = onnx.load(str(self.path))
                stats_proto, names = statistics_graph(proto)
                if names:
                    frozen_proto = frozen_statistics_graph(proto)
                    self._tiling = (self._open(stats_proto.SerializeToString(), self.path),
                                    self._open(frozen_proto.SerializeToString(), self.path), names)
                else:
                    self._tiling = (self.session, self.session, [])
                log.debug("%s: tiling graphs with %d instance norms", self.path, len(names))
            return self._tiling


# ---------------------------------------------------------------------------------------------
# Graph edits for tiling (the StatsNorm mechanism of brushwork.inference.tiling, in ONNX)


def _instance_norm_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    return [n for n in graph.node if n.op_type == "InstanceNormalization" and n.domain in ("", "ai.onnx")]


def _opset(proto: onnx.ModelProto) -> int:
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def _epsilon(node: onnx.NodeProto) -> float:
    return next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)


def _channels(graph: onnx.GraphProto, name: str) -> int | None:
    """The length of a 1-d initializer or Constant (an instance norm's scale), if it is one."""
    for init in graph.initializer:
        if init.name == name and len(init.dims) == 1:
            return int(init.dims[0])
    for node in graph.node:
        if node.op_type == "Constant" and name in node.output:
            for attr in node.attribute:
                if attr.name == "value" and len(attr.t.dims) == 1:
                    return int(attr.t.dims[0])
    return None


def statistic_names(count: int) -> list[str]:
    """Graph names of the per-channel statistics of ``count`` norms: mean and variance of each."""
    return [f"{_STATS_PREFIX}{i}.{kind}" for i in range(count) for kind in ("mean", "var")]


def _stat_value_info(graph: onnx.GraphProto, node: onnx.NodeProto, name: str) -> onnx.ValueInfoProto:
    from onnx import TensorProto, helper

    channels = _channels(graph, node.input[1])
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [channels if channels is not None else f"{name}.channels"])


def statistics_graph(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """A copy of ``proto`` that also outputs every instance norm's input mean and biased variance
    per channel, pooled over the batch and all positions (what StatsNorm records), as (C,) tensors."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    graph = model.graph
    norms = _instance_norm_nodes(graph)
    names = statistic_names(len(norms))
    if not norms:
        return model, []
    axes = [0, 2, 3]
    new_axes = _opset(model) >= 18  # ReduceMean takes its axes as an input from opset 18 on
    axes_name, flat_name = f"{_STATS_PREFIX}.axes", f"{_STATS_PREFIX}.flat"
    graph.initializer.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), flat_name))
    if new_axes:
        graph.initializer.append(numpy_helper.from_array(np.array(axes, dtype=np.int64), axes_name))

    def reduce_mean(x: str, y: str) -> onnx.NodeProto:
        if new_axes:
            return helper.make_node("ReduceMean", [x, axes_name], [y], keepdims=1)
        return helper.make_node("ReduceMean", [x], [y], axes=axes, keepdims=1)

    for i, node in enumerate(norms):
        x, mean_name, var_name = node.input[0], names[2 * i], names[2 * i + 1]
        tmp = f"{_STATS_PREFIX}{i}"
        graph.node.extend([
            reduce_mean(x, f"{tmp}.mean4"),
            helper.make_node("Sub", [x, f"{tmp}.mean4"], [f"{tmp}.centred"]),
            helper.make_node("Mul", [f"{tmp}.centred", f"{tmp}.centred"], [f"{tmp}.squared"]),
            reduce_mean(f"{tmp}.squared", f"{tmp}.var4"),
            helper.make_node("Reshape", [f"{tmp}.mean4", flat_name], [mean_name]),
            helper.make_node("Reshape", [f"{tmp}.var4", flat_name], [var_name]),
        ])  # fmt: skip
        graph.output.extend([_stat_value_info(graph, node, mean_name), _stat_value_info(graph, node, var_name)])
    return model, names


def frozen_statistics_graph(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``proto`` whose instance norms normalise with given statistics: each becomes a
    ``BatchNormalization`` (inference mode) whose mean and variance are new graph inputs, named as
    :func:`statistics_graph` outputs them (torch's StatsNorm in frozen mode)."""
    import onnx
    from onnx import helper

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    graph = model.graph
    positions = [k for k, n in enumerate(graph.node) if n.op_type == "InstanceNormalization" and n.domain in ("", "ai.onnx")]
    names = statistic_names(len(positions))
    for i, k in enumerate(positions):  # replaced in place: the node order stays topological
        node = graph.node[k]
        mean, var = names[2 * i], names[2 * i + 1]
        graph.input.extend([_stat_value_info(graph, node, mean), _stat_value_info(graph, node, var)])
        x, scale, bias = node.input[0], node.input[1], node.input[2]
        graph.node[k].CopyFrom(helper.make_node("BatchNormalization", [x, scale, bias, mean, var], list(node.output),
                                                name=node.name or f"{_STATS_PREFIX}{i}", epsilon=_epsilon(node)))
    return model


__all__ = [
    "CHECK_TOLERANCE", "DEFAULT_OPSET", "OPSETS", "OnnxBackend", "OnnxError", "OnnxExport", "OnnxModelError",
    "export_onnx", "frozen_statistics_graph", "is_onnx_source", "load_onnx", "read_onnx_config", "statistics_graph",
]  # fmt: skip
