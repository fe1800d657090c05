"""``brushwork train``: train a model (CycleGAN by default) on two image folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from brushwork.cli.app import app, setup_logging

Opt = typer.Option


def _put(overrides: dict[str, Any], dotted: str, value: Any) -> None:
    if value is None:
        return
    section, key = dotted.split(".")
    overrides.setdefault(section, {})[key] = value


@app.command()
def train(
    data: Annotated[Path | None, Opt("--data", help="Folder with trainA/ and trainB/ (testA/, testB/ optional).")] = None,
    data_a: Annotated[Path | None, Opt("--data-a", help="Folder of domain A images (instead of --data).")] = None,
    data_b: Annotated[Path | None, Opt("--data-b", help="Folder of domain B images (instead of --data).")] = None,
    out: Annotated[Path | None, Opt("--out", "-o", help="Run folder (default runs/cyclegan).")] = None,
    config: Annotated[Path | None, Opt("--config", "-c", help="YAML file of settings (flags override it).")] = None,
    resume: Annotated[bool, Opt("--resume", help="Continue the run in --out from its latest checkpoint.")] = False,
    resume_from: Annotated[Path | None, Opt("--resume-from", help="Continue from this checkpoint file.")] = None,
    method: Annotated[str | None, Opt(help="Training method.")] = None,
    steps: Annotated[int | None, Opt("--steps", help="Stop after this many iterations.")] = None,
    epochs: Annotated[int | None, Opt(help="Epochs at the initial learning rate (100).")] = None,
    epochs_decay: Annotated[int | None, Opt(help="Epochs of learning-rate decay (100).")] = None,
    batch_size: Annotated[int | None, Opt("--batch-size", "-b", help="Batch size (1).")] = None,
    load_size: Annotated[int | None, Opt(help="Resize to this size before cropping (286).")] = None,
    crop_size: Annotated[int | None, Opt(help="Random crop size (256).")] = None,
    preprocess: Annotated[str | None, Opt(help="resize_and_crop | crop | scale_width | scale_width_and_crop | none")] = None,
    no_flip: Annotated[bool, Opt("--no-flip", help="Do not flip images at random.")] = False,
    max_dataset_size: Annotated[int | None, Opt(help="Use at most this many images per domain.")] = None,
    workers: Annotated[int | None, Opt("--workers", help="Data loader worker processes.")] = None,
    skip_bad_images: Annotated[bool, Opt("--skip-bad-images", help="Skip unreadable images (counted).")] = False,
    generator: Annotated[str | None, Opt(help="resnet_9blocks | resnet_6blocks | resnet_<N>blocks | unet_256 | unet_128")] = None,
    discriminator: Annotated[str | None, Opt(help="basic | n_layers | pixel")] = None,
    ngf: Annotated[int | None, Opt(help="Generator width (64).")] = None,
    ndf: Annotated[int | None, Opt(help="Discriminator width (64).")] = None,
    norm: Annotated[str | None, Opt(help="instance | batch | none")] = None,
    gan_mode: Annotated[str | None, Opt(help="lsgan | vanilla | wgangp")] = None,
    lambda_a: Annotated[float | None, Opt("--lambda-a", help="Cycle weight A->B->A (10).")] = None,
    lambda_b: Annotated[float | None, Opt("--lambda-b", help="Cycle weight B->A->B (10).")] = None,
    lambda_identity: Annotated[float | None, Opt(help="Identity weight (0.5).")] = None,
    pool_size: Annotated[int | None, Opt(help="Image history pool size (50).")] = None,
    lr: Annotated[float | None, Opt(help="Adam learning rate (0.0002).")] = None,
    lr_policy: Annotated[str | None, Opt(help="linear | step | cosine | plateau | constant")] = None,
    seed: Annotated[int | None, Opt(help="Random seed (0).")] = None,
    device: Annotated[str | None, Opt(help="auto | cpu | cuda | cuda:N | mps")] = None,
    precision: Annotated[str | None, Opt(help="fp32 | bf16 | fp16 | auto (CPU: the fastest measured on this machine; CUDA: bf16)")] = None,
    channels_last: Annotated[bool | None, Opt("--channels-last/--no-channels-last", help="NHWC memory layout (default: measured on this CPU).")] = None,
    gemm_weight_grad: Annotated[bool | None, Opt("--gemm-weight-grad/--no-gemm-weight-grad", help="Conv weight gradients as GEMMs (CPU, fp32, channels_last; default: measured on this CPU).")] = None,
    compile_: Annotated[bool | None, Opt("--compile/--no-compile", help="torch.compile the networks (default: auto, on for runs of 2000+ iterations when a compiler is present).")] = None,
    log_every: Annotated[int | None, Opt(help="Log losses every N steps.")] = None,
    sample_every: Annotated[int | None, Opt(help="Save a sample grid every N steps.")] = None,
    checkpoint_every: Annotated[int | None, Opt(help="Save a checkpoint every N steps.")] = None,
    keep_checkpoints: Annotated[int | None, Opt(help="Keep the newest K checkpoints.")] = None,
    no_tensorboard: Annotated[bool, Opt("--no-tensorboard", help="Do not write TensorBoard logs.")] = False,
    no_progress: Annotated[bool, Opt("--no-progress", help="No progress bar.")] = False,
    eval_every: Annotated[int | None, Opt("--eval-every", help="Evaluate KID/FID on the test split every N steps and keep the best model (0 = off).")] = None,
    eval_metric: Annotated[str | None, Opt("--eval-metric", help="kid | fid: picks the best model (RUN/best/<direction>/).")] = None,
    eval_max_images: Annotated[int | None, Opt("--eval-max-images", help="Evaluate on at most N test images per domain.")] = None,
    inception_weights: Annotated[Path | None, Opt("--inception-weights", help="Inception weights file for --eval-every (see brushwork evaluate).")] = None,
    set_: Annotated[list[str] | None, Opt("--set", help="Any setting as section.key=value (repeatable).")] = None,
    verbose: Annotated[bool, Opt("--verbose", "-v")] = False,
) -> None:
    """Train a CycleGAN (or another method) on unpaired images.

    Settings resolve as defaults < --config YAML < flags < --set. The resolved config is saved
    as RUN/config.yaml; `--resume` continues a stopped run exactly.
    """
    setup_logging(verbose)
    from brushwork.config import resolve_train_config

    overrides: dict[str, Any] = {}
    if method is not None:
        overrides["method"] = method
    for dotted, value in [
        ("data.root", str(data) if data else None),
        ("data.dir_a", str(data_a) if data_a else None),
        ("data.dir_b", str(data_b) if data_b else None),
        ("data.batch_size", batch_size),
        ("data.load_size", load_size),
        ("data.crop_size", crop_size),
        ("data.preprocess", preprocess),
        ("data.flip", False if no_flip else None),
        ("data.max_dataset_size", max_dataset_size),
        ("data.num_workers", workers),
        ("data.skip_bad_images", True if skip_bad_images else None),
        ("model.generator", generator),
        ("model.discriminator", discriminator),
        ("model.ngf", ngf),
        ("model.ndf", ndf),
        ("model.norm", norm),
        ("objective.gan_mode", gan_mode),
        ("objective.lambda_a", lambda_a),
        ("objective.lambda_b", lambda_b),
        ("objective.lambda_identity", lambda_identity),
        ("objective.pool_size", pool_size),
        ("optim.lr", lr),
        ("optim.lr_policy", lr_policy),
        ("optim.epochs", epochs),
        ("optim.epochs_decay", epochs_decay),
        ("optim.max_steps", steps),
        ("run.out", str(out) if out else None),
        ("run.seed", seed),
        ("run.device", device),
        ("run.precision", precision),
        ("run.channels_last", channels_last),
        ("run.gemm_weight_grad", gemm_weight_grad),
        ("run.compile", compile_),
        ("run.log_every", log_every),
        ("run.sample_every", sample_every),
        ("run.checkpoint_every", checkpoint_every),
        ("run.keep_checkpoints", keep_checkpoints),
        ("run.tensorboard", False if no_tensorboard else None),
        ("run.progress", False if no_progress else None),
        ("eval.every", eval_every),
        ("eval.metric", eval_metric),
        ("eval.max_images", eval_max_images),
        ("eval.inception_weights", str(inception_weights) if inception_weights else None),
    ]:
        _put(overrides, dotted, value)
    if (data_a is None) != (data_b is None):
        raise typer.BadParameter("give both --data-a and --data-b, or --data")
    if data_a is not None:
        overrides.setdefault("data", {})["root"] = None

    if resume or resume_from:
        run_dir = Path(overrides.get("run", {}).get("out", "runs/cyclegan"))
        saved = run_dir / "config.yaml"
        if config is None and saved.is_file():
            config = saved  # a resumed run keeps its own settings unless told otherwise
    cfg = resolve_train_config(config_file=config, overrides=overrides, assignments=set_)

    from brushwork.training.run import run_training

    result = run_training(cfg, resume=str(resume_from) if resume_from else ("latest" if resume else None))
    if result.interrupted:
        typer.echo(f"stopped at step {result.step}; checkpoint saved. Continue with: brushwork train --out {result.run_dir} --resume")
        raise typer.Exit(130)
    typer.echo(f"done: {result.step} steps in {result.run_dir}")
    for direction, path in result.releases.items():
        typer.echo(f"  release {direction}: {path}")
    if result.skipped_images:
        typer.echo(f"  skipped {result.skipped_images} unreadable image(s)")
