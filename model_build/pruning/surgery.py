"""Structured pruning that physically removes neurons, channels, attention heads and FFN width.

The graph surgery is Torch-Pruning's (``torch-pruning``, DepGraph): it traces the model, finds every layer
coupled to a pruned width (the next layer's inputs, a flatten, a residual) and slices them all consistently, so
no surgery is hand-written here. This module only decides what may be pruned and by how much:

- neurons: ``Linear`` output features; channels: ``Conv`` output channels;
- Hugging Face BERT-style encoders (attention modules with ``query``/``key``/``value`` and
  ``num_attention_heads``): whole attention heads (head size kept) and the FFN width (``intermediate.dense``);
  the layers that write the residual stream (``*.output.dense``) and the pooler are left alone, so the hidden
  width, the embeddings and everything reading them keep their shape;
- never the served input width (nothing produces it) nor the output layer (the last ``Linear``/``Conv`` to run).

Importance is the L2 norm of each unit's weights (Torch-Pruning's ``MagnitudeImportance(p=2)``), which needs
no data and no gradients, so the same trained weights always give the same pruned model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from model_build.contracts import PruningConfig

CRITERION = "L2 magnitude"
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass
class Layer:
    """A prunable width: its label (``name:unit``), the module that owns it and its current width."""

    label: str
    module: nn.Module
    width: int
    unit: str
    attention: Any = None
    """The attention module (for heads): Hugging Face's, typed loosely."""


@dataclass
class Pruned:
    """A pruned model's size: parameters, MACs for one example instance, and the width kept per layer."""

    params: int
    macs: int
    kept: dict[str, int]


def library_version() -> str:
    """The pruning library and its version, for the manifest."""
    from importlib.metadata import version

    return f"torch-pruning {version('torch-pruning')}"


def count(model: nn.Module, example: torch.Tensor) -> tuple[int, int]:
    """(parameters, multiply-accumulates) of one forward pass on ``example``."""
    import torch_pruning as tp

    with torch.no_grad():
        macs, params = tp.utils.count_ops_and_params(model, example)
    return int(params), int(macs)


def prunable_layers(model: nn.Module, example: torch.Tensor, config: PruningConfig) -> list[Layer]:
    """The widths ``config`` allows to prune, in module order (the output layer excluded)."""
    output = _output_layer(model, example)
    attention = {name: m for name, m in model.named_modules() if _is_attention(m)}
    qkv = {id(getattr(m, p)) for m in attention.values() for p in ("query", "key", "value")}
    layers: list[Layer] = []
    for name, module in model.named_modules():
        if name in attention and "heads" in config.units:
            layers.append(Layer(f"{_short(name.removesuffix('.self').removesuffix('.attention'))}:heads",
                                module.query, int(module.num_attention_heads), "heads", module))
        if module is output or id(module) in qkv:
            continue
        if attention and isinstance(module, nn.Linear):
            if name.endswith("intermediate.dense") and "ffn" in config.units:
                layers.append(Layer(f"{_short(name.removesuffix('.intermediate.dense'))}:ffn", module,
                                    module.out_features, "ffn"))
            elif not _in_encoder(name):
                _add(layers, name, module, module.out_features, "neurons", config)
        elif isinstance(module, nn.Linear):
            _add(layers, name, module, module.out_features, "neurons", config)
        elif isinstance(module, _CONV):
            _add(layers, name, module, module.out_channels, "channels", config)
    return layers


def kept_width(width: int, level: float, round_to: int) -> int:
    """Units kept of ``width`` at ``level``: rounded to a multiple of ``round_to`` when that still removes
    something, at least one unit."""
    target = width * (1.0 - level)
    rounded = round_to * max(1, math.floor(target / round_to + 0.5))
    return rounded if rounded < width else max(1, math.floor(target + 0.5))


def prune(model: nn.Module, example: torch.Tensor, level: float, config: PruningConfig) -> Pruned:
    """Prune ``model`` in place at ``level`` (see ``kept_width``); heads are removed whole."""
    import torch_pruning as tp

    layers = prunable_layers(model, example, config)
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    for parameter in model.parameters():  # DepGraph traces autograd: frozen layers would be invisible
        parameter.requires_grad_(True)
    ratios: dict[nn.Module, float] = {}
    head_ratios: dict[nn.Module, float] = {}
    num_heads: dict[nn.Module, int] = {}
    for layer in layers:
        kept = max(1, layer.width - math.ceil(layer.width * level - 1e-9)) if layer.unit == "heads" else \
            kept_width(layer.width, level, config.round_to)
        if layer.unit == "heads":
            assert layer.attention is not None
            ratio = (layer.width - kept - 0.01) / layer.width
            for projection in (layer.attention.query, layer.attention.key, layer.attention.value):
                num_heads[projection] = layer.width
                ratios[projection] = ratio  # the library prunes heads only in a scope with a width ratio
                head_ratios[projection] = ratio
        else:
            ratios[layer.module] = 1.0 - (kept + 0.5) / layer.width  # the library keeps int(width * (1 - ratio))
    chosen = {id(layer.module) for layer in layers}
    ignored = [m for m in model.modules() if isinstance(m, (nn.Linear, *_CONV)) and id(m) not in chosen
               and m not in num_heads]
    pruner = tp.pruner.MetaPruner(
        model, example, importance=tp.importance.MagnitudeImportance(p=2), pruning_ratio=0.0,
        pruning_ratio_dict=ratios, ignored_layers=ignored, num_heads=num_heads, prune_num_heads=bool(num_heads),
        prune_head_dims=False, head_pruning_ratio_dict=head_ratios or None,
        root_module_types=[nn.Linear, *_CONV])
    pruner.step()
    for layer in layers:
        if layer.attention is not None:  # the attention module reshapes by head size: keep its counts true
            layer.attention.num_attention_heads = pruner.num_heads[layer.attention.query]
            layer.attention.all_head_size = layer.attention.query.out_features
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(flags.get(name, True))
    params, macs = count(model, example)
    return Pruned(params, macs, widths(layers))


def widths(layers: list[Layer]) -> dict[str, int]:
    """Current width per layer label (heads counted from the attention module)."""
    return {layer.label: (int(layer.attention.num_attention_heads) if layer.attention is not None else
                          _width(layer.module)) for layer in layers}


def _width(module: nn.Module) -> int:
    return int(module.out_features if isinstance(module, nn.Linear) else module.out_channels)  # type: ignore[arg-type]


def _add(layers: list[Layer], name: str, module: nn.Module, width: int, unit: str, config: PruningConfig) -> None:
    if unit in config.units and width > 1:
        layers.append(Layer(f"{name}:{unit}", module, width, unit))


def _is_attention(module: nn.Module) -> bool:
    return hasattr(module, "num_attention_heads") and all(
        isinstance(getattr(module, p, None), nn.Linear) for p in ("query", "key", "value"))


def _in_encoder(name: str) -> bool:
    """Linear layers of a BERT-style encoder that write or read the residual width (never pruned)."""
    return name.endswith(("output.dense", "pooler.dense"))


def _short(name: str) -> str:
    at = name.find("layer.")
    return name[at:] if at >= 0 else name


def _output_layer(model: nn.Module, example: torch.Tensor) -> nn.Module | None:
    """The last Linear/Conv to run on ``example``: it makes the output classes (or value), never pruned."""
    order: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda m, _i, _o: order.append(m)) for m in model.modules()
             if isinstance(m, (nn.Linear, *_CONV))]
    try:
        with torch.no_grad():
            _run(model, example)
    finally:
        for hook in hooks:
            hook.remove()
    return order[-1] if order else None


def _run(model: nn.Module, example: torch.Tensor) -> Any:
    was_training = model.training
    model.eval()
    try:
        return model(example)
    finally:
        model.train(was_training)
