"""The trainer: drives any :class:`~brushwork.methods.base.Method` through its phases.

It knows nothing of a particular method. Per iteration, for each phase it enables gradients for
that phase's networks only, computes the phase loss (under autocast when a reduced precision is
chosen), backpropagates and steps that phase's optimiser. It also owns the schedules, the loss
log, TensorBoard, sample grids, checkpoints (atomic, last K kept, exact resume), Ctrl-C handling
and release export.

Under torchrun (:mod:`brushwork.training.distributed`) every process runs this same loop on its
share of the data, with each network wrapped in DDP; rank 0 alone writes the log, samples,
evaluations, checkpoints and releases. Steps are global iterations: one step is one optimiser
update of every process, on ``data.batch_size`` images per process.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import time
from collections.abc import Collection, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torch.optim import Adam, Optimizer
from torch.utils.data import DataLoader

from brushwork.checkpoints import (
    CheckpointError,
    checkpoint_path,
    find_resume_checkpoint,
    list_checkpoints,
    load_checkpoint,
    remove_interrupted_saves,
    save_checkpoint,
)
from brushwork.config import TrainConfig
from brushwork.data.builders import TrainingData
from brushwork.methods.base import Method
from brushwork.nn.conv import gemm_weight_grad
from brushwork.release import save_release
from brushwork.training.compiling import CompilePlan, compile_errors, compile_network, plan_compile
from brushwork.training.distributed import SINGLE, Distributed
from brushwork.training.logger import MetricLogger
from brushwork.training.samples import save_sample_grid
from brushwork.training.schedulers import (
    Scheduler,
    build_scheduler,
    step_scheduler,
    steps_per_iteration,
)
from brushwork.tuning import SpeedSetting, check_settings, choose_speed
from brushwork.utils.files import remove_stale_temps
from brushwork.utils.seed import rng_state, set_rng_state

log = logging.getLogger(__name__)


class RunFolderError(RuntimeError):
    """The run folder already holds a run and --resume was not given."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    epoch: int
    interrupted: bool
    releases: dict[str, Path]
    skipped_images: int
    main: bool = True  # False in the processes other than rank 0 of a distributed run (they report nothing)


class TrainerHook(Protocol):
    """Something run every ``every`` steps (e.g. evaluation); its numbers are logged as ``name``."""

    name: str
    every: int

    def __call__(self, trainer: Trainer) -> dict[str, float]: ...


class _StopRequest:
    """Turns SIGINT/SIGTERM into a flag checked between iterations, so a checkpoint can be saved."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True
        log.warning("stop requested: finishing this iteration and saving a checkpoint (Ctrl-C again to abort)")

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Trainer:
    def __init__(
        self,
        method: Method,
        config: TrainConfig,
        data: TrainingData | None,
        *,
        device: torch.device,
        run_dir: Path | None = None,
        resume: str | Path | None = None,
        hooks: list[TrainerHook] | None = None,
        distributed: Distributed | None = None,
    ) -> None:
        self.method = method
        self.dist = distributed or SINGLE
        self.hooks = list(hooks or [])
        self.config = config
        self.data = data
        self.device = device
        self.run_dir = Path(run_dir or config.run.out)
        self.resume = resume
        check_settings(device, config.run.precision, config.run.channels_last, config.run.gemm_weight_grad)  # before any file is written
        self.phases = method.phases()
        # Chosen with torch.compile, before the first step (_prepare_speed).
        self.speed = SpeedSetting("fp32", channels_last=False)
        self.autocast_dtype = torch.float32
        self.memory_format = torch.contiguous_format
        method.networks.to(device=device)
        self._place_frozen()
        # Built by _setup() from the first batch, once the method has made all its networks.
        self.optimizers: dict[str, Optimizer] = {}
        self.schedulers: dict[str, Scheduler] = {}
        self.schedule_per_iteration = steps_per_iteration(config.optim)  # --steps: fit the schedule to the run
        # fp16 needs loss scaling: asked for, or CUDA's auto precision on a GPU without bf16.
        fp16 = config.run.precision == "fp16" or (
            config.run.precision == "auto" and device.type == "cuda" and not torch.cuda.is_bf16_supported()
        )
        self.scaler = torch.amp.GradScaler(device.type, enabled=fp16)
        self.step = 0
        self.epoch = 0
        self._epoch_loss_sum = 0.0
        self._epoch_loss_count = 0
        self._epoch_keys = 0  # keys of this process's share of the current epoch trained on so far
        self._phases_checked = False
        self.steps_per_epoch = 1
        self.total_steps = config.optim.max_steps or 0
        if data is not None:  # None: only train_step() is used (benchmarks)
            data.sampler.shard(self.dist.rank, self.dist.world)
            self.steps_per_epoch = max(1, math.ceil(data.sampler.share / config.data.batch_size))
            self.total_steps = self._planned_steps()
        # The networks as built: samples and evaluation use these, so they never trigger a compile.
        self._eager_networks: dict[str, nn.Module] = {}
        self.compile_plan: CompilePlan | None = None  # decided once the steps left are known

    def _setup(self, batch: dict[str, Tensor]) -> None:
        """Once, before the first step: the method's setup from a batch, then one Adam per phase."""
        if self.optimizers:
            return
        self.method.setup({k: v.to(self.device) for k, v in batch.items()})
        self.method.networks.to(device=self.device)
        self._place_frozen()
        if self.dist.enabled and self.config.run.sync_bn:
            self._convert_sync_bn()
        self._eager_networks = dict(self.method.networks.items())
        optim = self.config.optim
        # The fused Adam kernel exists for CPU and CUDA tensors; elsewhere the foreach one is used.
        fused = self.device.type in ("cpu", "cuda")
        for phase in self.phases:
            params = [p for name in phase.networks for p in self.method.networks[name].parameters()]
            self.optimizers[phase.name] = Adam(
                params,
                lr=optim.lr if phase.lr is None else phase.lr,
                betas=(optim.beta1, optim.beta2) if phase.betas is None else phase.betas,
                fused=fused or None,
                foreach=None if fused else True,
            )
            self.schedulers[phase.name] = build_scheduler(self.optimizers[phase.name], optim)

    def _place_frozen(self) -> None:
        """The method's frozen networks: on the device, in the run's memory format, eval, no gradients."""
        for net in self.method.frozen_networks().values():
            net.to(device=self.device, memory_format=self.memory_format).eval().requires_grad_(False)

    def _convert_sync_bn(self) -> None:
        """--sync-bn: batch norm layers become SyncBatchNorm (same parameters: the optimisers are unaffected)."""
        counts = {}
        for name, net in list(self.method.networks.items()):
            self.method.networks[name] = converted = self.dist.convert_sync_bn(net)
            counts[name] = sum(isinstance(m, nn.SyncBatchNorm) for m in converted.modules())
        if not any(counts.values()):
            log.warning("--sync-bn: the networks have no batch norm layers (norm=%s), so there is nothing to synchronise",
                        getattr(self.config.model, "norm", "?"))  # fmt: skip
        else:
            log.info("--sync-bn: SyncBatchNorm in %s", ", ".join(f"{k} ({v} layers)" for k, v in counts.items() if v))

    def _planned_steps(self) -> int:
        """The global iteration the run ends at: ``--steps``, or the end of the last epoch from where it stands."""
        optim = self.config.optim
        if optim.max_steps is not None:
            return optim.max_steps
        if self.epoch >= optim.total_epochs:
            return self.step
        left_in_epoch = math.ceil(max(0, self._data.sampler.share - self._epoch_keys) / self.config.data.batch_size)
        return self.step + left_in_epoch + (optim.total_epochs - self.epoch - 1) * self.steps_per_epoch

    def _prepare_speed(self, steps_left: int, resumed: dict[str, Any] | None = None) -> CompilePlan:
        """Once, before the first step: decide on torch.compile for the steps left, then the speed setting.

        Precision, layout and the conv weight-gradient kernel left at auto are what
        :mod:`brushwork.tuning` measured fastest on this machine (CUDA: bf16 and channels_last).
        Compiled CPU graphs run in NCHW (measured faster, docs/benchmarks.md) with torch's own
        kernels. A run resumed on the same kind of device keeps the setting its checkpoint was
        trained with, so that resuming is exact even where a new probe would choose otherwise.
        Under DDP rank 0 decides and every process takes its choice (a probe timed in each process
        could differ), then each network is wrapped in DDP and that wrapper compiled.
        """
        if self.compile_plan is None:
            run = self.config.run

            def decide() -> tuple[SpeedSetting, CompilePlan, str]:
                saved = dict(resumed or {})
                if saved.pop("device", None) == self.device.type and self._auto_speed():
                    speed = SpeedSetting(**saved)
                    plan = plan_compile(run.compile, self.device, steps_left, eager_precision=speed.precision)
                    return speed, plan, "as the checkpoint was trained"
                choice = choose_speed("train", self.device, precision=run.precision, channels_last=run.channels_last,
                                      gemm=run.gemm_weight_grad)  # fmt: skip
                plan = plan_compile(run.compile, self.device, steps_left, eager_precision=choice.setting.precision)
                if plan.enabled and self.device.type == "cpu" and choice.setting != SpeedSetting(choice.setting.precision, False):
                    # compiled graphs: NCHW (unless asked otherwise) and torch's own conv kernels
                    layout = False if run.channels_last is None else run.channels_last
                    choice = choose_speed("train", self.device, precision=choice.setting.precision, channels_last=layout, gemm=False)
                return choice.setting, plan, choice.reason

            self.speed, plan, reason = self.dist.on_main(decide)
            self.compile_plan = plan
            log.info("speed setting: %s (%s)", self.speed.name, reason)
            self.autocast_dtype = self.speed.dtype
            self.memory_format = torch.channels_last if self.speed.channels_last else torch.contiguous_format
            self.method.networks.to(memory_format=self.memory_format)
            self._place_frozen()
            for name, net in self._eager_networks.items():
                wrapped = self.dist.wrap(net)  # DDP under torchrun, else net itself
                self.method.networks[name] = compile_network(wrapped) if plan.enabled else wrapped
            self.dist.check_identical(self._eager_networks, "after wrapping the networks in DDP")
        return self.compile_plan

    def _auto_speed(self) -> bool:
        run = self.config.run
        return run.precision == "auto" and run.channels_last is None and run.gemm_weight_grad is None

    # ------------------------------------------------------------------------------------------
    # state

    def _process_state(self) -> dict[str, Any]:
        """What differs between the processes of a distributed run: RNG streams, the method's own
        state (image pools), the running sum of the epoch's losses."""
        return {
            "method_state": self.method.extra_state(),
            "rng": rng_state(),
            "epoch_loss": (self._epoch_loss_sum, self._epoch_loss_count),
        }

    def state_dict(self) -> dict[str, Any]:
        """The training state. Under DDP every process must call it (it gathers their own states);
        only rank 0's result is complete (``other_ranks`` is None elsewhere)."""
        mine = self._process_state()
        every = self.dist.gather(mine)
        return {
            "networks": {k: _unwrap(v).state_dict() for k, v in self.method.networks.items()},
            "frozen": {k: v.state_dict() for k, v in self.method.frozen_networks().items()},
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
            "schedulers": {k: v.state_dict() for k, v in self.schedulers.items()},
            "scaler": self.scaler.state_dict(),
            "speed": {"device": self.device.type, **asdict(self.speed)},  # resumed on the same kind of device, kept
            **mine,  # this process's (rank 0's in a checkpoint)
            "other_ranks": every[1:] if every is not None else None,  # ranks 1.. of a distributed run
            "world_size": self.dist.world,
            # Keys of the current epoch trained on, counted over all processes (a resume with
            # another number of processes or batch size splits the rest of the epoch anew).
            "data_position": {"epoch_keys": self._epoch_keys * self.dist.world, "batch_size": self.config.data.batch_size},
            "step": self.step,
            "epoch": self.epoch,
            "config": self.config.to_dict(),
        }

    def load_state_dict(self, state: dict[str, Any], where: str) -> None:
        load_method_weights(self.method, state, where)
        self._place_frozen()
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
            _match_layouts(opt)
        for name, sched in self.schedulers.items():
            sched.load_state_dict(state["schedulers"][name])
        self.scaler.load_state_dict(state["scaler"])
        processes = [{k: state[k] for k in ("method_state", "rng", "epoch_loss")}, *(state.get("other_ranks") or [])]
        if self.dist.rank < len(processes):  # this process's own state, as it was saved
            mine = processes[self.dist.rank]
            self.method.load_extra_state(mine["method_state"])
            set_rng_state(mine["rng"])
            self._epoch_loss_sum, self._epoch_loss_count = mine["epoch_loss"]
        else:  # a process the saved run did not have: rank 0's method state, its own RNG seed
            self.method.load_extra_state(processes[0]["method_state"])
            self._epoch_loss_sum, self._epoch_loss_count = 0.0, 0
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        if self.data is not None:
            done = self._saved_epoch_keys(state)
            self._epoch_keys = min(done // self.dist.world, self._data.sampler.share)
            self.total_steps = self._planned_steps()
            if self.dist.is_main:
                self._report_changes(state, len(processes), done)

    def _saved_epoch_keys(self, state: dict[str, Any]) -> int:
        """Keys of the saved epoch trained on, over all processes."""
        position = state.get("data_position")
        if position is not None:
            return int(position["epoch_keys"])
        # a checkpoint from before distributed training: one process, full batches of its batch size
        batch = int(state["config"]["data"]["batch_size"])
        return (self.step - self.epoch * math.ceil(self._data.sampler.length / batch)) * batch

    def _report_changes(self, state: dict[str, Any], saved_world: int, done: int) -> None:
        """Say what a resume with another number of processes or batch size does not continue exactly."""
        saved_batch = int((state.get("data_position") or state["config"]["data"])["batch_size"])
        world, batch = self.dist.world, self.config.data.batch_size
        if (saved_world, saved_batch) == (world, batch):
            return
        notes = [f"a step now trains on {batch * world} images ({world} x {batch}) instead of "
                 f"{saved_batch * saved_world} ({saved_world} x {saved_batch}); the learning rate is not rescaled"]  # fmt: skip
        length = self._data.sampler.length
        if world != saved_world and done < length:
            start = (done // world) * world
            notes.append(f"the rest of epoch {self.epoch} (from key {start} of {length}) is split {world} way(s)"
                         + (f", {done - start} key(s) of it trained on again" if done > start else ""))  # fmt: skip
        if world > saved_world:
            notes.append(f"new {_ranks(saved_world, world)}: own random streams, a copy of rank 0's method state (image pools)")
        elif world < saved_world:
            notes.append(f"the random streams and method state (image pools) of {_ranks(world, saved_world)} are dropped")
        log.warning("resuming a run of %d process(es) x batch %d with %d x %d, which is not exactly the run it would have been: %s",
                    saved_world, saved_batch, world, batch, "; ".join(notes))  # fmt: skip

    # ------------------------------------------------------------------------------------------
    # one iteration

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast_dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _set_trainable(self, phase_networks: tuple[str, ...]) -> None:
        for name, net in self.method.networks.items():
            net.requires_grad_(name in phase_networks)

    def train_step(self, batch: dict[str, Tensor]) -> dict[str, float]:
        """One iteration over all phases; returns the named losses as floats."""
        self._setup(batch)
        plan = self._prepare_speed(self.total_steps - self.step)
        ctx: dict[str, Any] = {}
        losses: dict[str, Tensor] = {}
        batch = {k: v.to(self.device, non_blocking=True, memory_format=self.memory_format) for k, v in batch.items()}
        check = self.dist.enabled and not self._phases_checked
        with compile_errors(plan):
            for phase in self.phases:
                self._set_trainable(phase.networks + phase.forward)
                opt = self.optimizers[phase.name]
                opt.zero_grad(set_to_none=True)
                if check:
                    self._clear_grads(phase.forward)
                with self._autocast(), gemm_weight_grad(self.speed.gemm_weight_grad):
                    total, parts = self.method.phase_loss(phase.name, batch, ctx)
                self.scaler.scale(total).backward()
                if check:
                    self._check_forward_networks(phase.name, phase.forward)
                self.scaler.step(opt)
                losses.update(parts)
        self._phases_checked = True
        self.scaler.update()
        self._set_trainable(tuple(self.method.networks.keys()))
        # One device-to-host copy for all losses (a sync per loss would stall a GPU eight times).
        values = dict(zip(losses, torch.stack([v.detach().float() for v in losses.values()]).tolist(), strict=True))
        for k, v in values.items():
            if not math.isfinite(v):
                raise FloatingPointError(f"loss {k} became {v} at step {self.step + 1}; try a lower optim.lr")
        return values

    def _clear_grads(self, names: tuple[str, ...]) -> None:
        for name in names:
            for p in self.method.networks[name].parameters():
                p.grad = None

    def _check_forward_networks(self, phase: str, names: tuple[str, ...]) -> None:
        """Under DDP, once: a phase's loss must not reach the parameters of the networks it only runs forward.

        Those networks are trained by a later phase through the graph built here. DDP reduces a
        network's gradients in the first backward that reaches it; a second backward through the
        same forward would not be reduced, and the processes would silently train different models.
        """
        reached = [n for n in names if any(p.grad is not None for p in self.method.networks[n].parameters())]
        if reached:
            raise RuntimeError(
                f"distributed training: phase {phase}'s loss reaches the parameters of {', '.join(reached)}, which a "
                f"later phase trains through the same forward pass; DDP cannot reduce those gradients twice. Detach "
                f"{reached[0]}'s output in phase {phase}'s loss (as pix2pix does)"
            )

    # ------------------------------------------------------------------------------------------
    # the loop

    @property
    def _data(self) -> TrainingData:
        if self.data is None:
            raise ValueError("this Trainer was built without training data; only train_step() can be used")
        return self.data

    def _loader(self) -> DataLoader[dict[str, Tensor]]:
        workers = self.config.data.num_workers
        return DataLoader(
            self._data.dataset,
            batch_size=self.config.data.batch_size,
            sampler=self._data.sampler,  # type: ignore[arg-type]
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
            # A private generator: creating an iterator must not consume the global RNG that the
            # method's randomness (image pool) draws from, or a resume would diverge.
            generator=torch.Generator().manual_seed(self.config.run.seed),
        )

    def _batches(self) -> Iterator[dict[str, Tensor]]:
        loader = self._loader()
        while self.step < self.total_steps:
            self._data.sampler.set_epoch(self.epoch, skip=self._epoch_keys)
            for batch in loader:
                yield batch
                if self.step >= self.total_steps:
                    return
            self._end_epoch()

    def _end_epoch(self) -> None:
        loss_sum, count = self.dist.sum([self._epoch_loss_sum, self._epoch_loss_count])  # every process's losses
        mean = loss_sum / max(1, count)
        if not self.schedule_per_iteration:
            for sched in self.schedulers.values():
                step_scheduler(sched, mean)
        self.epoch += 1
        self._epoch_loss_sum, self._epoch_loss_count = 0.0, 0
        self._epoch_keys = 0

    def _prepare_run_dir(self) -> Path | None:
        """Check and tidy the run folder (rank 0 only); the checkpoint to resume from, or None.

        After an elastic restart (torchrun's restart count > 0) the newest checkpoint of the
        run folder is resumed, whatever the command line said: it is where the group was.
        """
        existing = list_checkpoints(self.run_dir)
        resume = self.resume
        if self.dist.restart > 0 and existing:
            resume = "latest"
            log.warning("torchrun restart %d: resuming from the newest checkpoint, %s", self.dist.restart, existing[-1])
        if resume is None and existing:
            raise RunFolderError(
                f"run folder {self.run_dir} already holds checkpoints; pass --resume to continue it "
                "or choose another --out"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # Nothing of this run is being written yet, so any temporary here is from a killed write.
        stale = remove_interrupted_saves(self.run_dir) + remove_stale_temps(self.release_dir)
        if stale:
            log.info("removed %d temporary file(s) of interrupted writes: %s", len(stale), ", ".join(p.name for p in stale))
        return None if resume is None else find_resume_checkpoint(self.run_dir, resume)

    @property
    def release_dir(self) -> Path:
        return self.run_dir / "release"

    def fit(self) -> TrainResult:
        skipped = len(self._data.skipped)
        main = self.dist.is_main
        # Rank 0 checks the folder and picks the checkpoint; the others wait for its answer, then all load it.
        resumed_from = self.dist.on_main(self._prepare_run_dir)
        state = None
        if resumed_from is not None:
            state = load_checkpoint(resumed_from, map_location=self.device, pick_flag="--resume-from")
        self._setup(self._data.sample_batch)
        plan = self._prepare_speed(self.total_steps - int(state["step"] if state else 0), state.get("speed") if state else None)
        log.info("torch.compile %s; %s layout", plan.reason, "channels_last" if self.memory_format == torch.channels_last else "NCHW")
        if state is not None:
            self.load_state_dict(state, str(resumed_from))
            log.info("resumed from %s at step %d", resumed_from, self.step)
        run = self.config.run
        logger: MetricLogger | _NoLogger = _NoLogger()
        if main:
            self.config.save(self.run_dir / "config.yaml")
            logger = MetricLogger(
                self.run_dir / "log.jsonl",
                tensorboard_dir=self.run_dir / "tensorboard" if run.tensorboard else None,
                truncate_after=self.step if resumed_from is not None else 0,
            )
        self.method.train()
        interrupted = False
        progress = _Progress(enabled=run.progress and main, total=self.total_steps, start=self.step)
        window_start, window_steps = time.perf_counter(), 0
        checked = not self.dist.enabled
        try:
            with _StopRequest() as stop, progress:
                for batch in self._batches():
                    self.dist.maybe_fail(self.step + 1)
                    lr = self.optimizers[self.phases[0].name].param_groups[0]["lr"]  # the rate this step trains at
                    values = self.train_step(batch)
                    self.step += 1
                    self._epoch_keys += next(iter(batch.values())).shape[0]
                    if self.schedule_per_iteration:  # before any checkpoint: its schedulers have seen self.step steps
                        for sched in self.schedulers.values():
                            sched.step()
                    if not checked:  # after this process's first step: DDP kept every process's weights equal
                        self.dist.check_identical(self._eager_networks, f"step {self.step}")
                        checked = True
                    window_steps += 1
                    total_loss = sum(values.values())
                    self._epoch_loss_sum += total_loss
                    self._epoch_loss_count += 1
                    progress.update(self.step, values)
                    if self.step % run.log_every == 0 or self.step == self.total_steps:
                        shown = self.dist.mean(values)  # the losses of the global batch
                        elapsed = time.perf_counter() - window_start
                        record = {
                            "epoch": self.epoch,
                            "lr": lr,
                            **shown,
                            "it_per_s": window_steps / elapsed if elapsed > 0 else None,
                        }
                        logger.log(self.step, record)
                        window_start, window_steps = time.perf_counter(), 0
                    if main and self.step % run.sample_every == 0:
                        self.save_samples()
                    if self.step % run.checkpoint_every == 0:
                        self.save()
                    if main:
                        for hook in self.hooks:
                            if self.step % hook.every == 0:
                                logger.log(self.step, self._run_hook(hook), kind=hook.name)
                    if self.dist.any(stop.requested):  # every process stops after the same step
                        interrupted = True
                        break
        except KeyboardInterrupt:
            if self.dist.enabled:  # the others are somewhere else: no collective save is possible
                raise
            interrupted = True
        finally:
            logger.close()
        if self.step == 0:
            return TrainResult(self.run_dir, 0, self.epoch, interrupted, {}, skipped, main)
        if self.dist.on_main(self._unsaved):
            self.save()
        releases: dict[str, Path] = {}
        if not interrupted:
            releases = self.dist.on_main(self._finish)
        return TrainResult(self.run_dir, self.step, self.epoch, interrupted, releases if main else {}, skipped, main)

    def _unsaved(self) -> bool:
        saved = list_checkpoints(self.run_dir)
        return not saved or saved[-1] != checkpoint_path(self.run_dir, self.step)

    def _finish(self) -> dict[str, Path]:
        """The last sample grid and (unless turned off) the releases."""
        self.save_samples()
        return self.export() if self.config.run.export_at_end else {}

    def _run_hook(self, hook: TrainerHook) -> dict[str, float]:
        with self.eager():
            return hook(self)

    @contextlib.contextmanager
    def eager(self) -> Iterator[None]:
        """The method's networks as built (not compiled), in eval mode, for samples and evaluation."""
        compiled = dict(self.method.networks.items())
        for name, net in self._eager_networks.items():
            self.method.networks[name] = net
        self.method.train(False)
        try:
            yield
        finally:
            self.method.train(True)
            for name, net in compiled.items():
                self.method.networks[name] = net

    # ------------------------------------------------------------------------------------------
    # outputs

    def save(self) -> Path:
        """Write a checkpoint. Under DDP every process calls this: their states are gathered, rank
        0 writes the file, and none goes on before it is in place (a process lost after this
        point loses no work)."""
        self.dist.check_identical(self._eager_networks, f"checkpoint at step {self.step}")
        state = self.state_dict()

        def write() -> Path:
            path = save_checkpoint(self.run_dir, self.step, state, keep=self.config.run.keep_checkpoints)
            log.info("saved checkpoint %s", path)
            return path

        return self.dist.on_main(write)

    def save_samples(self) -> Path:
        batch = {k: v.to(self.device, memory_format=self.memory_format) for k, v in self._data.sample_batch.items()}
        with self.eager(), self._autocast():
            visuals = self.method.visuals(batch)
        path = self.run_dir / "samples" / f"step_{self.step:08d}.png"
        save_sample_grid(visuals, path)
        return path

    def export(self) -> dict[str, Path]:
        """Write every releasable generator as ``RUN/release/<direction>/``."""
        return export_releases(self.method, self.config, self.release_dir, step=self.step, run_dir=self.run_dir)


def load_method_weights(method: Method, state: Mapping[str, Any], where: str, *, exact: bool = True) -> None:
    """Load a checkpoint's networks (and frozen networks) into ``method``, strictly, or say what differs.

    ``exact``: the checkpoint must hold exactly the method's networks (a resume). Otherwise it
    must hold at least them (an export, from a method that has not run :meth:`Method.setup`:
    CUT's head is in the checkpoint, not in the method).
    """
    groups = (("networks", {k: _unwrap(v) for k, v in method.networks.items()}), ("frozen", dict(method.frozen_networks())))
    for key, modules in groups:
        saved = state.get(key) or {}  # checkpoints before frozen networks existed have no "frozen"
        if (set(saved) != set(modules)) if exact else not set(modules) <= set(saved):
            raise CheckpointError(f"{where}: holds {key} {sorted(saved)}, this method has {sorted(modules)}")
        for name, net in modules.items():
            try:
                net.load_state_dict(saved[name])
            except RuntimeError as exc:
                raise CheckpointError(
                    f"{where}: network {name} does not match the configured architecture ({str(exc).splitlines()[0]}); "
                    "resume with the run's own config.yaml"
                ) from None


def method_states(method: Method) -> dict[str, dict[str, Tensor]]:
    """The state dict of every network and frozen network of ``method``, by name (for :meth:`Method.release_state`)."""
    nets = {**{k: _unwrap(v) for k, v in method.networks.items()}, **method.frozen_networks()}
    return {k: v.state_dict() for k, v in nets.items()}


def export_releases(
    method: Method, config: TrainConfig, out_root: Path, *, step: int, run_dir: Path, directions: Collection[str] | None = None,
    extra_files: Mapping[str, str] | None = None,
) -> dict[str, Path]:
    """Write ``out_root/<direction>/`` for every generator the method releases (or those in ``directions``).

    ``extra_files`` (name -> text) are written into each folder with the release, atomically.
    """
    out: dict[str, Path] = {}
    states = method_states(method)
    for direction, spec in method.release_specs().items():
        if directions is not None and direction not in directions:
            continue
        net = method.release_network(direction, states, f"release {direction}")
        release = spec.release_config(direction, train_size=config.data.crop_size, provenance={
            "method": config.method, "step": step, "run": str(run_dir),
            "data": config.data.root or f"{config.data.dir_a} | {config.data.dir_b}", **method.release_provenance()})
        out[direction] = save_release(net, out_root / direction, release, extra_files=extra_files)
    return out


def _ranks(first: int, end: int) -> str:
    return f"rank {first}" if end - first == 1 else f"ranks {first}..{end - 1}"


def _match_layouts(opt: Optimizer) -> None:
    """Give loaded optimiser state the memory layout of its parameter.

    The state may come from a run with another layout (channels_last or not). The fused Adam
    kernel walks a parameter and its moments in memory order, so a mismatch would silently pair
    the wrong elements.
    """
    for group in opt.param_groups:
        for p in group["params"]:
            for key, value in opt.state.get(p, {}).items():
                if isinstance(value, Tensor) and value.shape == p.shape and value.stride() != p.stride():
                    opt.state[p][key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


def _unwrap(net: nn.Module) -> nn.Module:
    """The plain module behind DDP / torch.compile wrappers (checkpoints never hold prefixes)."""
    net = getattr(net, "module", net)
    return getattr(net, "_orig_mod", net)


class _NoLogger:
    """The metric log of the processes other than rank 0: nothing is written."""

    def log(self, step: int, values: dict[str, Any], *, kind: str = "train") -> None:
        del step, values, kind

    def close(self) -> None:
        pass


class _Progress:
    """A rich progress bar with the latest losses; a no-op when disabled."""

    def __init__(self, *, enabled: bool, total: int, start: int) -> None:
        self.enabled = enabled
        self.total = total
        self.start = start
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[losses]}"),
                transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("train", total=self.total, completed=self.start, rate="", losses="")
            self._t0 = time.perf_counter()
        return self

    def update(self, step: int, values: dict[str, float]) -> None:
        if self._progress is None:
            return
        done = step - self.start
        rate = done / max(1e-9, time.perf_counter() - self._t0)
        rate_text = f"{rate:.2f} it/s" if rate >= 1 else f"{1 / rate:.2f} s/it"
        losses = " ".join(f"{k}={v:.3f}" for k, v in values.items())
        self._progress.update(self._task, completed=step, rate=rate_text, losses=losses)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
