"""Model surgery that makes a decoder smaller: magnitude pruning, MLP channel removal, layer dropping.

    sparsity = prune_unstructured(model, 0.3)     # 30 % of the block weights zeroed (global L1), made permanent
    kept = prune_mlp_channels(model, 0.5)         # half the MLP channels removed: a smaller, normal HF model
    drop_layers(model, select_layers(30, 15))     # a half-depth copy (the distillation student)

Unstructured pruning is torch's (`torch.nn.utils.prune`). The two structured kinds rebuild the modules and
the config, so the result saves with `save_pretrained` and loads with plain transformers, no masks or hooks.
Embeddings and the LM head are never pruned: SmolLM2 ties them, and zeroing embedding entries removes
token meaning rather than redundancy.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from tuneforge.errors import ConfigError, ModelError

GGUF_BLOCK = 32  # llama.cpp quantizes rows in 32-value blocks; widths that are multiples stay quantizable


def block_linears(model: nn.Module) -> list[tuple[nn.Linear, str]]:
    """(module, "weight") for every nn.Linear inside the decoder blocks (attention and MLP projections)."""
    from tuneforge.train.methods import decoder_layers

    return [(m, "weight") for layer in decoder_layers(model) for m in layer.modules() if isinstance(m, nn.Linear)]


def prune_unstructured(model: nn.Module, sparsity: float) -> float:
    """Zero the `sparsity` fraction of block weights with the smallest |w|, ranked across all blocks at
    once (global L1, so layers with many small weights give more), then drop the masks so the zeros are
    ordinary weights. Returns the sparsity reached over those weights."""
    from torch.nn.utils import prune

    params = block_linears(model)
    if not params:
        raise ModelError("unstructured pruning: the model has no linear layers inside its decoder blocks")
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=float(sparsity))
    for module, name in params:
        prune.remove(module, name)  # weight = weight_orig * mask, permanently; no forward pre-hooks left
    zeros = sum(int((m.weight == 0).sum()) for m, _ in params)
    return zeros / sum(m.weight.numel() for m, _ in params)


def _gated_mlps(model: nn.Module) -> list[nn.Module]:
    from tuneforge.train.methods import decoder_layers

    mlps = [getattr(layer, "mlp", None) for layer in decoder_layers(model)]
    if not mlps or any(not all(hasattr(m, a) for a in ("gate_proj", "up_proj", "down_proj")) for m in mlps):
        raise ModelError("structured pruning removes channels of Llama-style MLPs (gate_proj/up_proj/down_proj); "
                         f"{type(model).__name__} has none: use --prune-kind unstructured or layers")
    return mlps


def kept_channels(width: int, sparsity: float) -> int:
    """Channels left after removing `sparsity` of `width`, rounded to whole 32-blocks when the width is
    block-aligned, so every matrix still quantizes in GGUF (down_proj's rows are `width` long)."""
    keep = width * (1.0 - sparsity)
    if width % GGUF_BLOCK == 0 and keep >= GGUF_BLOCK:
        keep = GGUF_BLOCK * math.floor(keep / GGUF_BLOCK + 0.5)
    return max(1, min(width, int(round(keep))))


def _slice_linear(linear: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    weight = linear.weight.detach().index_select(dim, index).clone()
    out_f, in_f = weight.shape
    new = nn.Linear(in_f, out_f, bias=linear.bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if linear.bias is not None:
            new.bias.copy_(linear.bias.detach() if dim == 1 else linear.bias.detach()[index])
    return new


@torch.no_grad()
def prune_mlp_channels(model: nn.Module, sparsity: float) -> int:
    """Remove the `sparsity` fraction of each MLP's intermediate channels (the same count in every layer:
    the config has one intermediate_size). Returns the new intermediate size.

    A channel j computes silu(g_j . x) * (u_j . x) and writes down[:, j]; without calibration data the
    product of the three weight norms is the magnitude proxy for what it contributes. Written here because
    torch's ln_structured masks one tensor at a time and leaves the zeros in place; the channel must go from
    all three matrices together for the model to shrink.
    """
    mlps = _gated_mlps(model)
    width = mlps[0].up_proj.out_features
    keep = kept_channels(width, sparsity)
    for mlp in mlps:
        score = (mlp.gate_proj.weight.norm(dim=1) * mlp.up_proj.weight.norm(dim=1)
                 * mlp.down_proj.weight.norm(dim=0))
        index = torch.topk(score, keep).indices.sort().values
        mlp.gate_proj = _slice_linear(mlp.gate_proj, index, 0)
        mlp.up_proj = _slice_linear(mlp.up_proj, index, 0)
        mlp.down_proj = _slice_linear(mlp.down_proj, index, 1)
        if hasattr(mlp, "intermediate_size"):
            mlp.intermediate_size = keep
    model.config.intermediate_size = keep
    return keep


def select_layers(n_layers: int, keep: int | Sequence[int], field: str = "student_layers") -> list[int]:
    """Which layers a `keep`-layer copy retains: evenly spaced with the first and last kept (30 -> 15:
    0, 2, ..., 12, 15, 17, ..., 29), or an explicit list of indices."""
    if isinstance(keep, int) and not isinstance(keep, bool):
        if not 1 <= keep <= n_layers:
            raise ConfigError(f"{field}: expected 1 to {n_layers} (the model has {n_layers} layers), got {keep}")
        if keep == 1:
            return [0]
        return [int(math.floor(i * (n_layers - 1) / (keep - 1) + 0.5)) for i in range(keep)]
    indices = list(keep)
    if (not indices or any(not isinstance(i, int) or isinstance(i, bool) for i in indices)
            or sorted(set(indices)) != indices or indices[0] < 0 or indices[-1] >= n_layers):
        raise ConfigError(f"{field}: expected a layer count or increasing layer indices in 0..{n_layers - 1}, "
                          f"got {keep!r}")
    return indices


def drop_layers(model: nn.Module, keep: Sequence[int]) -> nn.Module:
    """Keep only the decoder layers `keep` (in order), in place; the config and each layer's cache index
    follow, so the model saves and loads as an ordinary `num_hidden_layers=len(keep)` model."""
    from tuneforge.train.methods import decoder_layers

    layers = decoder_layers(model)
    kept = [layers[i] for i in keep]
    for i in reversed(range(len(layers))):
        del layers[i]
    for new_index, layer in enumerate(kept):
        layers.append(layer)
        for module in layer.modules():
            if isinstance(getattr(module, "layer_idx", None), int):
                module.layer_idx = new_index  # the KV cache is indexed by position in the stack
    config = model.config
    types = getattr(config, "layer_types", None)
    if isinstance(types, list) and len(types) == config.num_hidden_layers:
        config.layer_types = [types[i] for i in keep]
    config.num_hidden_layers = len(kept)
    return model


def count_nonzero(model: nn.Module) -> int:
    from tuneforge.train.methods import unique_parameters

    return sum(int(torch.count_nonzero(p)) for p in unique_parameters(model))


def describe(model: nn.Module) -> dict[str, Any]:
    """Parameters (tied weights once), non-zero parameters, the shape that matters for size."""
    from tuneforge.train.methods import count_parameters

    _, total = count_parameters(model)
    config = model.config
    return {"parameters": total, "nonzero": count_nonzero(model),
            "layers": getattr(config, "num_hidden_layers", None),
            "intermediate_size": getattr(config, "intermediate_size", None)}
