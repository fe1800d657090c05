"""Data-parallel training under ``torchrun``: the process group, per-rank seeds, DDP wrapping.

``torchrun --nproc-per-node N -m brushwork train ...`` starts N processes and gives each one
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (and a rendezvous). :func:`init_distributed` reads
them: with a world of 2 or more it joins the process group (NCCL on CUDA, each process on
``cuda:LOCAL_RANK``; gloo on the CPU) and returns a :class:`Distributed` that the trainer asks
for its rank and for the few collectives it needs. All communication is PyTorch's: DDP reduces
the gradients, and ``torch.distributed`` broadcasts, gathers and all-reduces the small things
every process must agree on (which checkpoint to resume, a stop request, the logged losses, the
pools and RNG states a checkpoint holds). With one process nothing is initialised and every
collective is the identity, so the single-process code path is unchanged.

How each network is wrapped, and why without ``find_unused_parameters``, is explained at
:meth:`Distributed.wrap` and in docs/distributed.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pickle
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from brushwork.config import ConfigError
from brushwork.utils.device import DeviceError, resolve_device

log = logging.getLogger(__name__)

T = TypeVar("T")

RESTART_ENV = "TORCHELASTIC_RESTART_COUNT"
#: Test-only fault injection: ``"RANK:STEP"`` makes process RANK SIGKILL itself when it is about
#: to train step STEP, on the first attempt only (torchrun's restart count 0). tests/test_distributed.py
FAULT_ENV = "BRUSHWORK_TEST_KILL"
#: How long a process waits in a collective for the others (rank 0 samples, evaluates and
#: writes checkpoints while the others wait in their next collective).
TIMEOUT = timedelta(minutes=30)


def rank_seed(seed: int, rank: int) -> int:
    """The seed of process ``rank``'s own randomness (image pools, patch ids, noise).

    Rank 0 keeps ``seed`` itself, so that its stream is a single-process run's; the others get
    well-separated seeds that depend only on ``(seed, rank)``, so a restarted group draws the same.
    """
    if rank == 0:
        return seed
    digest = hashlib.sha256(f"brushwork-rank-seed:{seed}:{rank}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _to_cpu(obj: Any) -> Any:
    """``obj`` with every tensor in it moved to the CPU (objects are gathered by pickling)."""
    if isinstance(obj, Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


@dataclass
class _Outcome:
    value: Any = None
    error: BaseException | None = None


class _DataParallel(nn.parallel.DistributedDataParallel):
    """DDP that passes attribute look-ups it cannot answer to the wrapped network.

    A method may call its network's own helpers (``G.encode(x, layers)`` for CUT's features).
    Such a call runs outside DDP's forward; its gradients are reduced with the rest as long as
    the network's forward ran in the same phase before the backward (the trainer's parameter
    check after the first step catches a method for which that is not so).
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "module":
                raise
            return getattr(self.module, name)


@dataclass
class Distributed:
    """This process's place in the run: rank, world size, and the collectives the trainer uses."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    restart: int = 0  # torchrun's TORCHELASTIC_RESTART_COUNT: how many times the group was restarted
    backend: str | None = None  # None: no process group (one process)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    fault_step: int | None = None  # test only (FAULT_ENV)

    @property
    def enabled(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- collectives (each the identity with one process) ------------------------------------

    def barrier(self) -> None:
        if self.enabled:
            dist = torch.distributed
            if self.backend == "nccl":
                dist.barrier(device_ids=[self.device.index or 0])
            else:
                dist.barrier()

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank."""
        if not self.enabled:
            return obj
        box = [obj if self.is_main else None]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]  # type: ignore[return-value]

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj`` (tensors moved to the CPU) in rank order on rank 0; None elsewhere."""
        if not self.enabled:
            return [obj]
        out: list[Any] | None = [None] * self.world if self.is_main else None
        torch.distributed.gather_object(_to_cpu(obj), out, dst=0)
        return out

    def all_gather(self, obj: Any) -> list[Any]:
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(out, _to_cpu(obj))
        return out

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on any."""
        if not self.enabled:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item())

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sums over ranks (float64 on the wire)."""
        if not self.enabled or not values:
            return list(values)
        t = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Element-wise means over ranks of a dict every rank fills with the same keys."""
        if not self.enabled:
            return values
        keys = sorted(values)
        sums = self.sum([values[k] for k in keys])
        means = {k: s / self.world for k, s in zip(keys, sums, strict=True)}
        return {k: means[k] for k in values}

    def on_main(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 only and give every rank its result; if it raises, every rank raises.

        So that a rank-0 decision (which checkpoint to resume, a run folder already in use) or a
        failed write stops every process with the same one-line error, instead of leaving the
        others waiting in their next collective.
        """
        outcome = _Outcome()
        if self.is_main:
            try:
                outcome.value = fn()
            except Exception as exc:  # re-raised below, on every rank
                outcome.error = exc
            if self.enabled and outcome.error is not None:
                try:  # an error that does not survive pickling travels as its text
                    pickle.loads(pickle.dumps(outcome.error))
                except Exception:
                    outcome.error = RuntimeError(f"{type(outcome.error).__name__}: {outcome.error}")
        if self.enabled:
            outcome = self.broadcast(outcome)
        if outcome.error is not None:
            raise outcome.error
        return outcome.value  # type: ignore[no-any-return]

    # -- networks ------------------------------------------------------------------------------

    def convert_sync_bn(self, net: nn.Module) -> nn.Module:
        """``net`` with every batch norm replaced by a SyncBatchNorm sharing its parameters and buffers."""
        return nn.SyncBatchNorm.convert_sync_batchnorm(net)

    def wrap(self, net: nn.Module) -> nn.Module:
        """``net`` in DDP: its gradients are averaged over the processes in its backward.

        Each network of a method is wrapped on its own, not the method's ModuleDict as one.
        Within any one backward a network's parameters then either all get gradients (it is
        trained in this phase) or none do (it is frozen, like the discriminators while the
        generators train, or its output was detached), which is all DDP needs to run without
        ``find_unused_parameters`` and its graph traversal after every forward: a frozen
        network's reducer expects no gradients because none of its hooks fires. A network run
        several times before one backward (CycleGAN's G on a, then on F(b)) is fine too:
        autograd sums the uses into one gradient per parameter, so each hook fires once.
        Gradients are copied out of the buckets (no bucket views), so the trainer's
        ``zero_grad(set_to_none=True)`` and fused Adam see ordinary tensors. Batch-norm buffers
        are broadcast from rank 0 at each forward (DDP's default). Construction broadcasts rank
        0's parameters, so every process starts from the same weights.
        """
        if not self.enabled or not any(p.requires_grad for p in net.parameters()):
            return net
        ids = [self.device.index] if self.device.type == "cuda" else None
        return _DataParallel(net, device_ids=ids, find_unused_parameters=False, gradient_as_bucket_view=False)

    def fingerprints(self, networks: dict[str, nn.Module]) -> list[float]:
        """Per-tensor float64 sums of every parameter: equal on every rank while they agree."""
        with torch.no_grad():
            sums = [p.detach().double().sum() for name in sorted(networks) for p in networks[name].parameters()]
        return torch.stack(sums).tolist() if sums else []

    def check_identical(self, networks: dict[str, nn.Module], when: str) -> None:
        """Raise (on every rank) unless every rank holds the same parameters.

        DDP gives every rank the same averaged gradients and every rank takes the same Adam
        step, so the weights stay bit-identical; a difference means a gradient was not reduced
        (a method that DDP cannot follow), and the run would silently train N different models.
        """
        if not self.enabled:
            return
        mine = self.fingerprints(networks)
        every = self.gather(mine)

        def judge() -> None:
            assert every is not None
            names = [f"{name}.{pname}" for name in sorted(networks) for pname, _ in networks[name].named_parameters()]
            for rank, theirs in enumerate(every[1:], start=1):
                for i, (a, b) in enumerate(zip(every[0], theirs, strict=True)):
                    if a != b:
                        raise RuntimeError(
                            f"{when}: parameter {names[i]} differs between rank 0 and rank {rank}: a gradient was "
                            "not averaged by DDP (a network used outside its forward, or a loss reaching a network "
                            "in two backward passes); see docs/distributed.md"
                        )

        self.on_main(judge)

    def maybe_fail(self, step: int) -> None:
        """Test-only: SIGKILL this process before training ``step`` (FAULT_ENV, first attempt only)."""
        if self.fault_step is not None and step == self.fault_step and self.restart == 0:
            log.warning("test fault injection: rank %d kills itself before step %d", self.rank, step)
            os.kill(os.getpid(), signal.SIGKILL)


SINGLE = Distributed()


def _env_int(name: str, default: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        if default is None:
            raise DeviceError(f"${name} is not set; start distributed training with torchrun, which sets it")
        return default
    try:
        return int(raw)
    except ValueError:
        raise DeviceError(f"${name}={raw!r} is not an integer") from None


def _fault_step(rank: int) -> int | None:
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return None
    who, _, step = spec.partition(":")
    return int(step) if int(who) == rank else None


def _store(rank: int, world: int, restart: int) -> Any:
    """The key-value store the process group meets in: what ``env://`` would make, kept apart per attempt.

    By default torchrun's agent shares its rendezvous store (same address and port) with every
    attempt of a restarted group, and torch 2.14's ``env://`` handler no longer keeps the
    attempts' keys apart: a restarted process can read a dead one's address and then wait
    forever or fail to connect (pytorch/pytorch#135712; here both of two restarts failed so, one
    hanging, one refused). So on that store each attempt's keys go under its restart count, as
    torch itself did before. The processes of one machine restart together and agree on the
    count. Across machines the agents' counts can differ (a replaced machine starts at 0): with
    ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` torchrun gives each attempt a fresh store hosted by
    rank 0 instead, which needs no prefix (docs/distributed.md).
    """
    addr, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    if not addr or not port:
        raise DeviceError("$MASTER_ADDR and $MASTER_PORT are not set; start distributed training with torchrun, which sets them")
    shared = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == str(True)  # torchrun's agent serves it, for every attempt
    store = torch.distributed.TCPStore(addr, int(port), world_size=world, is_master=not shared and rank == 0,
                                       timeout=TIMEOUT, multi_tenant=True)  # fmt: skip
    return torch.distributed.PrefixStore(f"/brushwork/attempt_{restart}", store) if shared else store


def init_distributed(device_setting: str, *, sync_bn: bool = False) -> tuple[Distributed, torch.device]:
    """This process's :class:`Distributed` and device, from torchrun's environment.

    Without ``WORLD_SIZE`` (a plain ``brushwork train``) or with a world of 1, no process group
    is made and the device is ``device_setting`` resolved as usual. With 2 or more processes:
    CUDA (``auto`` or ``cuda``) puts each on ``cuda:LOCAL_RANK`` and uses NCCL; ``cpu`` (or no
    GPU) uses gloo. ``sync_bn`` is checked here, before anything is written.
    """
    world = _env_int("WORLD_SIZE", 1)
    restart = _env_int(RESTART_ENV, 0)
    if world <= 1:
        if sync_bn:
            log.warning("--sync-bn ignored: it applies to distributed training with 2 or more processes (this is 1)")
        return Distributed(restart=restart, fault_step=_fault_step(0)), resolve_device(device_setting)
    rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK")
    dist = torch.distributed
    if not dist.is_available():
        raise DeviceError("this PyTorch build has no torch.distributed; train with one process")
    device = resolve_device(device_setting)
    if device.type == "cuda":
        if device.index is not None:
            raise DeviceError(f"--device {device_setting}: under torchrun each process uses cuda:LOCAL_RANK; pass --device cuda (or auto)")
        if local_rank >= torch.cuda.device_count():
            raise DeviceError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPU(s) are visible; "
                              "start at most that many processes per machine (--nproc-per-node)")  # fmt: skip
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
        if not dist.is_nccl_available():
            raise DeviceError("this PyTorch build has no NCCL; train on CUDA with one process, or pass --device cpu (gloo)")
    elif device.type == "cpu":
        backend = "gloo"
        if not dist.is_gloo_available():
            raise DeviceError("this PyTorch build has no gloo backend for distributed CPU training")
        if sync_bn:
            raise ConfigError("--sync-bn needs CUDA: PyTorch's SyncBatchNorm runs only on GPUs, not on the CPU (gloo)")
    else:
        raise DeviceError(f"distributed training runs on CUDA (NCCL) or the CPU (gloo), not on {device.type}")
    if not dist.is_initialized():
        dist.init_process_group(backend, store=_store(rank, world, restart), rank=rank, world_size=world, timeout=TIMEOUT)
    if rank > 0:  # one console: the others report warnings and errors only
        logging.getLogger("brushwork").setLevel(logging.WARNING)
    info = Distributed(rank=rank, world=world, local_rank=local_rank, restart=restart, backend=backend, device=device,
                       fault_step=_fault_step(rank))  # fmt: skip
    log.info("distributed: %d processes (%s), this is rank %d on %s%s", world, backend, rank, device,
             f", restart {restart}" if restart else "")  # fmt: skip
    return info, device


def shutdown(info: Distributed) -> None:
    if info.enabled and torch.distributed.is_initialized():
        with contextlib.suppress(RuntimeError):
            torch.distributed.destroy_process_group()
