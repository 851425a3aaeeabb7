"""What every model in the registry provides beyond nn.Module: which weights are prunable, and of what kind.

Pruning rates are given per layer kind (conv, fc, output, shortcut), so each model labels its
weight tensors; biases and batch-norm parameters are never prunable and carry no label.
"""

from __future__ import annotations

from torch import nn

from lth_core.spec.sections import LAYER_KINDS


class PrunableModel(nn.Module):
    """A classifier whose conv and linear weights are labelled by kind for pruning."""

    def weight_kinds(self) -> dict[str, str]:
        """State-dict name of every conv/linear weight -> its kind, in state-dict order."""
        kinds: dict[str, str] = {}
        for module_name, module in self.named_modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                kinds[f"{module_name}.weight"] = self.kind_of(module_name, module)
        return kinds

    def kind_of(self, module_name: str, module: nn.Module) -> str:
        if module_name == "out":
            return "output"
        if "shortcut" in module_name:
            return "shortcut"
        return "conv" if isinstance(module, nn.Conv2d) else "fc"

    def reset_parameters(self) -> None:
        """Gaussian Glorot for conv and linear weights, as in the paper; zero biases."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_normal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)


def weight_kinds(model: nn.Module) -> dict[str, str]:
    """State-dict name of every prunable weight -> its kind, in module order: the model's own
    `weight_kinds()` where it has one (every built-in; a plugin's module may), else derived:
    an nn.Conv2d's weight is `conv`, an nn.Linear's `fc`, the last nn.Linear's `output`."""
    own = getattr(model, "weight_kinds", None)
    kinds = dict(own()) if callable(own) else _derived_kinds(model)
    params = dict(model.named_parameters())
    wrong = {n: k for n, k in kinds.items() if k not in LAYER_KINDS or n not in params}
    if wrong:
        raise ValueError(
            f"weight_kinds() names {wrong}: each must be a parameter's state-dict name and one "
            f"of the kinds {', '.join(LAYER_KINDS)}"
        )
    return kinds


def _derived_kinds(model: nn.Module) -> dict[str, str]:
    kinds: dict[str, str] = {}
    last_linear = None
    for module_name, module in model.named_modules():
        name = f"{module_name}.weight" if module_name else "weight"
        if isinstance(module, nn.Conv2d):
            kinds[name] = "conv"
        elif isinstance(module, nn.Linear):
            kinds[name] = "fc"
            last_linear = name
    if last_linear is not None:
        kinds[last_linear] = "output"
    return kinds
