"""PatchNCE (Park et al., ECCV 2020, Sec. 3.1-3.2): the patch sampler / projection head and the loss.

CUT compares the generator's encoder features of an input ``x`` (the keys) with those of its
translation ``G(x)`` (the queries) at the same spatial locations. :class:`PatchSampleF` (the
paper's H_l, the code's ``netF`` = ``mlp_sample``) picks ``num_patches`` locations per layer,
maps each feature vector through a small MLP per layer and L2-normalises it;
:func:`patch_nce_loss` is the InfoNCE loss of eq. (2)/(5): for every query patch the key patch
at the same location is the positive, the other sampled key patches of the same image are the
negatives, logits are cosine similarities over ``temperature`` (tau = 0.07).

Shapes: sampled features are ``(B, P, D)`` (batch, patches, channels), so the loss knows which
patches share an image without being told the batch size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Negatives = Literal["image", "batch"]

#: Value the official code writes over each patch's similarity with itself among the negatives
#: (before dividing by the temperature): exp(-10 / 0.07) is negligible next to any real logit.
SELF_SIMILARITY_FILL = -10.0


def l2_normalize(x: Tensor, *, eps: float = 1e-7) -> Tensor:
    """``x / (||x||_2 + eps)`` over the last dimension, the official ``Normalize(2)``.

    The norm is ``torch.linalg.vector_norm``, whose gradient at a zero vector is 0 (a
    subgradient); the official ``pow(2).sum().pow(1/2)`` gives NaN there, which a head whose
    ReLUs are all off for some patch produces (likely with a narrow head: ``netf_nc`` 8).
    """
    return x / (torch.linalg.vector_norm(x, dim=-1, keepdim=True) + eps)


def sample_patch_ids(height: int, width: int, num_patches: int, *, generator: torch.Generator | None = None) -> Tensor:
    """``min(num_patches, height * width)`` distinct flat locations (``row * width + col``), in random order.

    Drawn on the CPU from ``generator`` (a CPU ``torch.Generator``), else from torch's global
    CPU RNG, so a seeded run samples the same locations on every device.
    """
    if num_patches < 1:
        raise ValueError(f"num_patches must be >= 1, got {num_patches}")
    perm = torch.randperm(height * width, generator=generator)
    return perm[: min(num_patches, height * width)]


class PatchSampleF(nn.Module):
    """Sample patch features at shared locations and project them: Linear(C, nc), ReLU, Linear(nc, nc), L2 norm.

    One MLP per feature layer, ``mlp_<i>`` as in the official code (so its ``netF`` state dicts
    load), built here from the layers' channel counts rather than lazily from the first batch:
    ``PatchSampleF(channels=feature_channels(G, nce_layers))``. The official code initialises
    it like the generator (Xavier, gain 0.02): call :func:`brushwork.nn.init_weights` on it.
    ``mlp=False`` is the code's ``sample`` head (sampling and normalisation only).
    """

    def __init__(self, *, channels: Sequence[int], nc: int = 256, mlp: bool = True) -> None:
        super().__init__()
        if not channels:
            raise ValueError("channels must list one channel count per feature layer")
        self.channels = tuple(int(c) for c in channels)
        self.nc = nc
        self.mlp = mlp
        if mlp:
            for i, c in enumerate(self.channels):
                self.add_module(f"mlp_{i}", nn.Sequential(nn.Linear(c, nc), nn.ReLU(), nn.Linear(nc, nc)))

    def forward(
        self,
        feats: Sequence[Tensor],
        *,
        num_patches: int = 256,
        patch_ids: Sequence[Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Return ``(samples, ids)``: per layer a ``(B, P, D)`` tensor of unit vectors and its flat locations.

        Without ``patch_ids`` new locations are drawn (:func:`sample_patch_ids`, with
        ``generator``); pass the ids returned for the key image to sample the query image at the
        same places. Every image of the batch is sampled at the same locations, as in the
        official code. ``D`` is ``nc`` with the MLP, the layer's channels without it. The ids
        come back on the CPU (where they were drawn); ids passed in may live on any device
        (only CPU ids are range-checked, to avoid a device synchronisation).
        """
        if len(feats) != len(self.channels):
            raise ValueError(f"got {len(feats)} feature maps for a head built for {len(self.channels)} layers")
        if patch_ids is not None and len(patch_ids) != len(feats):
            raise ValueError(f"got {len(patch_ids)} patch id tensors for {len(feats)} feature maps")
        samples: list[Tensor] = []
        ids_out: list[Tensor] = []
        for i, feat in enumerate(feats):
            if feat.dim() != 4 or feat.shape[1] != self.channels[i]:
                raise ValueError(f"layer {i}: expected a (B, {self.channels[i]}, H, W) map, got shape {tuple(feat.shape)}")
            height, width = feat.shape[2], feat.shape[3]
            if patch_ids is None:
                ids = sample_patch_ids(height, width, num_patches, generator=generator)
            else:
                ids = patch_ids[i]
                out_of_range = ids.device.type == "cpu" and ids.numel() > 0 and not 0 <= int(ids.min()) <= int(ids.max()) < height * width
                if ids.dim() != 1 or out_of_range:
                    raise ValueError(f"layer {i}: patch ids must be a 1-d tensor of locations in 0..{height * width - 1}")
            index = ids.to(device=feat.device, dtype=torch.long)
            x = feat.flatten(2).index_select(2, index).transpose(1, 2)  # (B, P, C)
            if self.mlp:
                x = getattr(self, f"mlp_{i}")(x)
            samples.append(l2_normalize(x))
            ids_out.append(ids)
        return samples, ids_out

    def extra_repr(self) -> str:
        return f"channels={list(self.channels)}, nc={self.nc}, mlp={self.mlp}"


def patch_nce_loss(
    feat_q: Tensor,
    feat_k: Tensor,
    *,
    temperature: float = 0.07,
    negatives: Negatives = "image",
    detach_key: bool = True,
    reduction: Literal["mean", "none"] = "mean",
) -> Tensor:
    """PatchNCE of queries ``feat_q`` against keys ``feat_k``, both ``(B, P, D)`` at matching locations.

    Per query patch ``i`` of image ``b``: logits ``[q.k_i, q.k_j (j != i)] / temperature``,
    where the ``j`` run over the image's own ``P`` sampled key patches (``negatives="image"``,
    the CUT/FastCUT setting ``nce_includes_all_negatives_from_minibatch=False``) or over all
    ``B * P`` patches of the batch (``"batch"``, the single-image setting). As in the official
    code the self-similarity entry is kept in the negatives' matrix but overwritten with -10
    before the division, and the loss is the cross-entropy with the positive as the target.
    The keys are detached by default (the official loss detaches them; gradients reach the
    generator through the queries only). ``reduction="none"`` returns the ``(B, P)`` losses.
    """
    if feat_q.dim() != 3 or feat_q.shape != feat_k.shape:
        raise ValueError(f"expected queries and keys of one (B, P, D) shape, got {tuple(feat_q.shape)} and {tuple(feat_k.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if negatives not in ("image", "batch"):
        raise ValueError(f"negatives must be 'image' or 'batch', got {negatives!r}")
    batch, patches, dim = feat_q.shape
    if detach_key:
        feat_k = feat_k.detach()
    positive = (feat_q * feat_k).sum(-1, keepdim=True)  # (B, P, 1)
    q, k = (feat_q, feat_k) if negatives == "image" else (feat_q.reshape(1, -1, dim), feat_k.reshape(1, -1, dim))
    negative = torch.bmm(q, k.transpose(1, 2))  # (B, P, P), or (1, BP, BP)
    eye = torch.eye(negative.shape[-1], device=negative.device, dtype=torch.bool)
    negative = negative.masked_fill(eye, SELF_SIMILARITY_FILL).reshape(batch, patches, -1)
    logits = torch.cat([positive, negative], dim=-1) / temperature
    target = torch.zeros(batch * patches, dtype=torch.long, device=logits.device)
    loss = F.cross_entropy(logits.reshape(batch * patches, -1), target, reduction="none").reshape(batch, patches)
    return loss.mean() if reduction == "mean" else loss


def patch_nce_loss_over_layers(
    feats_q: Sequence[Tensor],
    feats_k: Sequence[Tensor],
    *,
    temperature: float = 0.07,
    negatives: Negatives = "image",
) -> Tensor:
    """Mean over layers of each layer's mean PatchNCE: the official ``calculate_NCE_loss`` over ``lambda_NCE``.

    The official code sums ``loss_l.mean() * lambda_NCE`` over the layers and divides by their
    number; multiply this by ``lambda_NCE`` for the same value.
    """
    if len(feats_q) != len(feats_k) or not feats_q:
        raise ValueError(f"need the same non-zero number of query and key layers, got {len(feats_q)} and {len(feats_k)}")
    losses = [patch_nce_loss(q, k, temperature=temperature, negatives=negatives) for q, k in zip(feats_q, feats_k, strict=True)]
    return torch.stack(losses).mean()
