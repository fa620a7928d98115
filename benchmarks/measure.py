"""What the benchmarks and tools/gpu_check.py measure with: the fastest of repeated timings, process
and CUDA memory in use and at peak, and the exact bytes of live tensors.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


def best_seconds(run: Callable[[], object], repeats: int = 5) -> float:
    """The fastest of `repeats` timed runs after one warm-up: the least disturbed by a noisy machine."""
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def _process_status_bytes(field: str) -> int:
    """A memory figure of this process from /proc/self/status (Linux), in bytes."""
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}: CPU memory figures need Linux")


def memory_in_use(device: torch.device) -> int:
    """Bytes in use now: CUDA tensors on a GPU, the resident set on a CPU."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    return _process_status_bytes("VmRSS")


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak: CUDA's allocator statistics, or the kernel's resident high-water mark (VmHWM,
    reset by writing 5 to /proc/self/clear_refs)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return
    with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
        handle.write("5")


def peak_memory(device: torch.device) -> int:
    """Peak bytes since `reset_peak_memory` (same measure as `memory_in_use`)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device)
    return _process_status_bytes("VmHWM")


class LiveTensorBytes(TorchDispatchMode):
    """Bytes of the tensor storages that operations inside the mode allocate and that are still alive,
    and their peak: exact tensor memory, unlike a process's resident size, which the allocator's
    caching and fragmentation blur. Views and in-place results (outputs the operator's schema marks
    as aliasing an input) allocate nothing and are not counted."""

    def __init__(self) -> None:
        super().__init__()
        self.current = 0
        self.peak = 0
        self._alive: dict[int, weakref.ref] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 (torch's protocol)
        output = func(*args, **(kwargs or {}))
        outputs = output if isinstance(output, (tuple, list)) else (output,)
        for declared, value in zip(func._schema.returns, outputs):
            if declared.alias_info is not None:
                continue
            for tensor in tree_flatten(value)[0]:
                if isinstance(tensor, torch.Tensor) and tensor.device.type != "meta":
                    self._track(tensor.untyped_storage())
        return output

    def _track(self, storage: torch.UntypedStorage) -> None:
        key = storage._cdata
        if key in self._alive:
            return
        size = storage.nbytes()
        self.current += size
        self.peak = max(self.peak, self.current)
        self._alive[key] = weakref.ref(storage, lambda _, key=key, size=size: self._free(key, size))

    def _free(self, key: int, size: int) -> None:
        if self._alive.pop(key, None) is not None:
            self.current -= size
