"""Checkpoint I/O of a training run: `OUT/last.pt` written atomically (`save_checkpoint`), read back
with checks (`load_checkpoint`), and the trained detector rebuilt from it (`load_detector`, through
`detection.registry.build_detector` with the kind the run stored in `config['model']`)."""
import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Dict, Tuple, Union

import torch
from torch import nn

from detection.registry import build_detector

__all__ = ['save_checkpoint', 'load_checkpoint', 'checkpoint_config', 'load_detector']


def save_checkpoint(path: Union[str, Path], **state) -> None:
    """torch.save to a temporary file, then an atomic rename: a crash never leaves half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f'.tmp{os.getpid()}')
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Union[str, Path]) -> Dict[str, Any]:
    """A detection run's checkpoint; a missing, corrupt or foreign file is an error naming it."""
    from zoo.hub import read_run_checkpoint
    return read_run_checkpoint(path, required=('model', 'config', 'num_classes'),
                               what='a detection checkpoint (`zoo detection train` writes OUT/last.pt)')


def checkpoint_config(cfg) -> Dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def load_detector(checkpoint: Union[str, Path], use_ema: bool = True) -> Tuple[nn.Module, Dict[str, Any]]:
    """The detector a training run saved (its EMA weights when present), and the run's config."""
    ckpt = load_checkpoint(checkpoint)
    cfg = ckpt['config']
    model = build_detector(cfg['model'], cfg['backbone'], num_classes=ckpt['num_classes'],
                           min_size=cfg['min_size'], max_size=cfg['max_size'], **cfg.get('model_kwargs', {}))
    state = ckpt['model']
    if use_ema and ckpt.get('ema'):  # a weights-only run
        state = ckpt['ema']
    elif use_ema and ckpt.get('ema_full'):  # the AveragedModel's state: its `module.` weights
        state = {k[len('module.'):]: v for k, v in ckpt['ema_full'].items() if k.startswith('module.')}
    model.load_state_dict(state)
    model.label_to_cat_id = {int(k): v for k, v in ckpt.get('label_to_cat_id', {}).items()}
    model.class_names = ckpt.get('class_names')
    return model, cfg
