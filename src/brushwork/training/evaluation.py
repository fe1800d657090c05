"""Evaluation during training: KID and FID of every released generator on the test split.

Every ``eval.every`` steps the hook runs each generator the method releases: an image-to-image
one translates the test images of its source domain (resized to the training crop size, as at
test time, in float32 whatever the training precision); a generator of noise makes
``eval.samples`` images from fixed latents. It computes KID and FID of the results against the
real test images of the target domain (the data kind says which files those are,
:func:`~brushwork.data.builders.evaluation_domains`), and keeps the best generator so far by
``eval.metric`` as a release folder ``RUN/best/<name>/`` with a ``best.json`` beside it.
The real images' features are computed once per run (and cached on disk between runs).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image
from torch import Tensor

from brushwork.config import TrainConfig
from brushwork.data.builders import EvalDomain, evaluation_domains
from brushwork.data.transforms import pil_to_uint8, uint8_to_unit, unit_to_uint8
from brushwork.data.unpaired import DatasetError
from brushwork.inference.sampler import sample_latents
from brushwork.methods import method_spec
from brushwork.metrics.features import FeatureCache, InceptionExtractor, InceptionFeatures
from brushwork.metrics.scores import frechet_distance, kernel_inception_distance
from brushwork.metrics.weights import find_inception_weights

if TYPE_CHECKING:
    from brushwork.training.trainer import Trainer

log = logging.getLogger(__name__)

BEST_FILE = "best.json"


class EvaluationHook:
    """A :class:`~brushwork.training.trainer.TrainerHook` logging ``<direction>/kid`` and ``/fid``."""

    name = "eval"

    def __init__(self, config: TrainConfig, *, device: torch.device) -> None:
        ec = config.eval
        self.every = ec.every
        self.metric = ec.metric
        self.config = config
        self.device = device
        # Resolved now so that a missing weights file or test folder fails before training starts.
        self.weights = find_inception_weights(ec.inception_weights)
        domains = evaluation_domains(method_spec(config.method).data_kind, config.data)
        self.domains = {k: EvalDomain(v.files[: ec.max_images] if ec.max_images else v.files, v.part) for k, v in domains.items()}
        for domain, found in self.domains.items():
            if len(found.files) < 2:
                raise DatasetError(f"evaluation needs at least 2 images of domain {domain}, found {len(found.files)}")
        self._extractor: InceptionExtractor | None = None
        self._real: dict[str, InceptionFeatures] = {}
        self._inputs: dict[str, Tensor] = {}
        self.best: dict[str, dict[str, Any]] | None = None

    @property
    def extractor(self) -> InceptionExtractor:
        if self._extractor is None:
            self._extractor = InceptionExtractor(self.weights, device=self.device, batch_size=self.config.eval.batch_size)
        return self._extractor

    def _real_features(self, domain: str) -> InceptionFeatures:
        if domain not in self._real:
            found = self.domains[domain]
            if found.part is None:
                self._real[domain] = self.extractor.extract_files(found.files, cache=FeatureCache())
            else:  # halves of aligned A|B files
                self._real[domain] = self.extractor.extract(pil_to_uint8(found.load(p)) for p in found.files)
        return self._real[domain]

    def _test_inputs(self, domain: str) -> Tensor:
        """uint8 (N, 3, S, S): the domain's test images resized to the crop size (test-time preprocessing)."""
        if domain not in self._inputs:
            size = self.config.data.crop_size
            found = self.domains[domain]
            self._inputs[domain] = torch.stack(
                [pil_to_uint8(found.load(p).resize((size, size), Image.Resampling.BICUBIC)) for p in found.files]
            )
        return self._inputs[domain]

    def _generate(self, trainer: Trainer, network: str, latent_dim: int) -> list[Tensor]:
        """``eval.samples`` images from the same latents at every evaluation (seed 0)."""
        net = trainer.method.networks[network]
        z = sample_latents(self.config.eval.samples, latent_dim, seed=0)
        batch = self.config.eval.batch_size
        with torch.no_grad():
            return [img for i in range(0, z.shape[0], batch) for img in unit_to_uint8(net(z[i : i + batch].to(trainer.device))).cpu()]

    def _translate(self, trainer: Trainer, network: str, images: Tensor) -> list[Tensor]:
        net = trainer.method.networks[network]
        out: list[Tensor] = []
        batch = self.config.eval.batch_size
        with torch.no_grad():
            for i in range(0, images.shape[0], batch):
                x = uint8_to_unit(images[i : i + batch]).to(trainer.device)
                out.extend(unit_to_uint8(net(x)).cpu())  # float32, as inference runs it
        return out

    def _load_best(self, run_dir: Path, directions: list[str]) -> dict[str, dict[str, Any]]:
        best: dict[str, dict[str, Any]] = {}
        for direction in directions:
            path = run_dir / "best" / direction / BEST_FILE
            if path.is_file():
                try:
                    record = json.loads(path.read_text(encoding="utf-8"))
                    if record.get("metric") == self.metric:
                        best[direction] = record
                except (OSError, ValueError):
                    log.warning("ignoring unreadable %s", path)
        return best

    def __call__(self, trainer: Trainer) -> dict[str, float]:
        from brushwork.training.trainer import export_releases

        specs = trainer.method.release_specs()
        if self.best is None:
            self.best = self._load_best(trainer.run_dir, list(specs))
        values: dict[str, float] = {}
        for direction, spec in specs.items():
            if spec.source_domain is None:
                fakes = self._generate(trainer, spec.network, int(spec.architecture["latent_dim"]))
            else:
                fakes = self._translate(trainer, spec.network, self._test_inputs(spec.source_domain))
            fake = self.extractor.extract(fakes)
            real = self._real_features(spec.target_domain)
            kid = kernel_inception_distance(fake.pool, real.pool)
            fid = frechet_distance(fake.pool, real.pool)
            scores = {"kid": kid.mean, "kid_std": kid.std, "fid": fid}
            values.update({f"{direction}/{k}": v for k, v in scores.items()})
            value = scores[self.metric]
            previous = self.best.get(direction)
            if previous is None or value < previous["value"]:
                out_root = trainer.run_dir / "best"
                record = {"metric": self.metric, "value": value, "step": trainer.step, **scores,
                          "n_fake": len(fake), "n_real": len(real)}  # fmt: skip
                # The record goes into the release folder with the weights: the two never disagree.
                export_releases(trainer.method, trainer.config, out_root, step=trainer.step, run_dir=trainer.run_dir,
                                directions=[direction], extra_files={BEST_FILE: json.dumps(record, indent=2) + "\n"})  # fmt: skip
                self.best[direction] = record
                log.info("step %d: new best %s %s = %.5g -> %s", trainer.step, direction, self.metric, value, out_root / direction)
            values[f"{direction}/best_{self.metric}"] = self.best[direction]["value"]
        return values
