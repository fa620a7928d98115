"""Count the operations that make a GPU wait for the host, on any device (CUDA's sync debug mode needs a GPU).

A `TorchFunctionMode` sees every tensor method and torch function called from Python; the ones
counted are those that must read a tensor's values on the host (`.tolist()`, `bool(t)`, `nonzero`,
indexing with a bool mask, ...), whatever the device. Python values never seen by torch are free.
"""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode

READS_VALUES = {
    "__bool__",
    "__int__",
    "__float__",
    "__index__",
    "item",
    "tolist",
    "nonzero",
    "argwhere",
    "unique",
    "unique_consecutive",
    "masked_select",
    "bincount",
    "cpu",
    "numpy",
}


def _bool_index(index: object) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(part, torch.Tensor) and part.dtype == torch.bool for part in parts)


class HostReads(TorchFunctionMode):
    """Counts host reads of tensor values while active; `names` lists them in order."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in READS_VALUES or (name in ("__getitem__", "__setitem__") and _bool_index(args[1])):
            self.names.append(name)
        return func(*args, **(kwargs or {}))

    @property
    def count(self) -> int:
        return len(self.names)
