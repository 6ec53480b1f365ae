"""Optimisation of a run (`TrainConfig` fields): SGD or AdamW (optionally without weight decay on the
norms), and the learning-rate factor per iteration: linear warm-up times a `step`, `cosine` or `constant`
schedule (`lr_factor`), as a `LambdaLR` stepped per iteration.

Warm-up and logging scale with the run's length: the recipes' 500 warm-up iterations and a log line every
20 suit COCO's 90k iterations, but would keep a 16-iteration smoke run at 1e-3 of its learning rate and
log nothing; a run uses at most a fifth of its iterations to warm up (`warmup_iters_for`) and logs at
least 50 points (`log_every_for`)."""
import math
from typing import Any

import torch
from torch import nn

from zoo.errors import InputError

__all__ = ['build_optimizer', 'lr_factor', 'build_scheduler', 'total_iters', 'warmup_iters_for', 'log_every_for']

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)


def build_optimizer(model: nn.Module, cfg) -> torch.optim.Optimizer:
    params: Any = [p for p in model.parameters() if p.requires_grad]
    if cfg.no_decay_norm:
        norm_ids = {id(p) for m in model.modules() if isinstance(m, _NORMS) for p in m.parameters(recurse=False)}
        params = [dict(params=[p for p in params if id(p) not in norm_ids]),
                  dict(params=[p for p in params if id(p) in norm_ids], weight_decay=0.0)]
    if cfg.optimizer == 'adamw':
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == 'sgd':
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise InputError(f"optimizer must be 'adamw' or 'sgd', got '{cfg.optimizer}'")


def total_iters(iters_per_epoch: int, cfg) -> int:
    """Iterations of the whole run: epochs x iterations per epoch, or `max_iters` if that ends it first."""
    total = max(iters_per_epoch, 1) * cfg.epochs
    return min(total, cfg.max_iters) if cfg.max_iters else total


def warmup_iters_for(iters_per_epoch: int, cfg) -> int:
    """The recipe's `warmup_iters`, but never more than a fifth of the run."""
    return min(cfg.warmup_iters, total_iters(iters_per_epoch, cfg) // 5)


def log_every_for(iters_per_epoch: int, cfg) -> int:
    """The recipe's `log_every`, but often enough for 50 points over the run."""
    return max(1, min(cfg.log_every, total_iters(iters_per_epoch, cfg) // 50))


def lr_factor(it: int, iters_per_epoch: int, cfg) -> float:
    """The learning-rate multiplier at iteration `it` (warm-up times schedule)."""
    warm = 1.0
    warmup = warmup_iters_for(iters_per_epoch, cfg)
    if warmup > 0 and it < warmup:
        warm = cfg.warmup_ratio + (1 - cfg.warmup_ratio) * it / warmup
    epoch = it / max(iters_per_epoch, 1)
    if cfg.schedule == 'constant':
        main = 1.0
    elif cfg.schedule == 'step':
        main = cfg.gamma ** sum(epoch >= s for s in cfg.steps)
    elif cfg.schedule == 'cosine':
        begin = min(cfg.cosine_begin_epoch, cfg.epochs)
        if cfg.cosine_by_epoch:
            epoch = math.floor(epoch)
        if epoch < begin or cfg.epochs <= begin:
            main = 1.0
        else:
            t = min((epoch - begin) / (cfg.epochs - begin), 1.0)
            main = cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
    else:
        raise InputError(f"schedule must be 'cosine', 'step' or 'constant', got '{cfg.schedule}'")
    return warm * main


def build_scheduler(optimizer, iters_per_epoch: int, cfg):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, iters_per_epoch, cfg))
