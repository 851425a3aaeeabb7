"""What every model in the registry provides beyond nn.Module: which weights are prunable, and of what kind.

Pruning rates are given per layer kind (conv, fc, output, shortcut), so each model labels its
weight tensors; biases and batch-norm parameters are never prunable and carry no label.
"""

from __future__ import annotations

from torch import nn


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
