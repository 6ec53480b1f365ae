"""One process of a run, alone or under `torchrun` (DDP): the process group, the device, the rank's data
loader (a `DistributedSampler` shard under DDP; aspect-ratio grouped batches for training)."""
import os

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler
from torch.utils.data.distributed import DistributedSampler

from detection.data import GroupedBatchSampler, aspect_ratio_groups, collate

__all__ = ['is_distributed', 'get_rank', 'get_world_size', 'init_distributed', 'barrier', 'resolve_device',
           'build_loader', 'unwrap']


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def init_distributed(device: torch.device) -> bool:
    """Join the process group torchrun set up (env RANK / WORLD_SIZE); False when not under torchrun."""
    if int(os.environ.get('WORLD_SIZE', '1')) <= 1 or is_distributed():
        return False
    backend = 'nccl' if device.type == 'cuda' else 'gloo'
    dist.init_process_group(backend)
    return True


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def resolve_device(name: str) -> torch.device:
    if name == 'auto':
        if torch.cuda.is_available():
            return torch.device('cuda', int(os.environ.get('LOCAL_RANK', 0)))
        return torch.device('cpu')
    device = torch.device(name)
    if device.type == 'cuda' and device.index is None:
        device = torch.device('cuda', int(os.environ.get('LOCAL_RANK', 0)))
    return device


def build_loader(dataset, batch_size: int, train: bool, workers: int, seed: int, epoch_seed: bool = True):
    if is_distributed():
        sampler = DistributedSampler(dataset, shuffle=train, seed=seed)
    elif train:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    else:
        sampler = SequentialSampler(dataset)
    if train:
        batches = GroupedBatchSampler(sampler, aspect_ratio_groups(dataset.aspect_ratios()), batch_size)
        return DataLoader(dataset, batch_sampler=batches, num_workers=workers, collate_fn=collate,
                          persistent_workers=False)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
