"""One precision switch for every path that runs a model: bench, face parsing, detection, sampling.

`fp32` runs as built. `bf16` runs under `torch.autocast(dtype=torch.bfloat16)`: on this kind of CPU, oneDNN
sends convolutions and matmuls to the AMX / AVX-512 bf16 units and keeps reductions (norms, softmax) in
fp32, as autocast's op lists say; on CUDA, the tensor cores. Weights keep their dtype; callers that want bf16
weights too cast the model themselves (`zoo bench --weights-dtype bf16`).
"""
import contextlib
from typing import Optional, Union

import torch

from .errors import InputError

__all__ = ['PRECISIONS', 'autocast', 'check_precision', 'cpu_autocast_dtype', 'bf16_matmuls', 'device_type_of']

PRECISIONS = {'fp32': torch.float32, 'bf16': torch.bfloat16}


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise InputError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}: pass fp32 or bf16")
    return precision


def device_type_of(where: Union[torch.nn.Module, torch.Tensor, torch.device, str, None]) -> str:
    """'cpu' / 'cuda' / ... of a module's first parameter, a tensor or a device."""
    if isinstance(where, torch.nn.Module):
        where = next((p.device for p in where.parameters()), torch.device('cpu'))
    elif torch.is_tensor(where):
        where = where.device
    return torch.device(where or 'cpu').type


def autocast(precision: str = 'fp32', device: Union[torch.nn.Module, torch.Tensor, torch.device, str, None] = 'cpu'):
    """A context manager that runs the enclosed forward in `precision` on `device` (a module, tensor or device)."""
    check_precision(precision)
    if precision == 'fp32':
        return contextlib.nullcontext()
    return torch.autocast(device_type_of(device), dtype=PRECISIONS[precision])


@torch.jit.unused
def cpu_autocast_dtype(x: torch.Tensor) -> Optional[torch.dtype]:
    """The dtype CPU autocast runs `x`'s matmuls and convolutions in, or None (not a CPU tensor, or no CPU
    autocast): for code that calls kernels autocast does not cover, or that picks another path under it."""
    if x.device.type == 'cpu' and torch.is_autocast_enabled('cpu'):
        return torch.get_autocast_dtype('cpu')
    return None


@torch.jit.unused
def bf16_matmuls(x: torch.Tensor) -> bool:
    """Whether matmuls on `x` run in bf16 here (a bf16 tensor, or CPU autocast to bf16): for paths that pick
    another GEMM shape in bf16, whose calls cost more than fp32's at small sizes."""
    return x.dtype == torch.bfloat16 or cpu_autocast_dtype(x) == torch.bfloat16
