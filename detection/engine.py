"""The training loop of the detectors, single process or under `torchrun` (DDP); its parts live beside it:
`detection.distributed` (process group, device, loaders), `detection.schedule` (optimizer, lr schedule),
`detection.checkpoint` (`last.pt`, `load_detector`) and `detection.evaluation` (COCOeval, text metrics).

`train(cfg)` takes a `TrainConfig` (or a dict of its fields, e.g. a YAML recipe) and

* builds the detector (`build_detector`) and the COCO datasets (`CocoDetection`; `data='synthetic'`
  writes `make_synthetic_coco` under `out/synthetic` first), with aspect-ratio grouped batches;
* optimises with SGD or AdamW, a linear warm-up over `warmup_iters` iterations and then a `step`,
  `cosine` (from `cosine_begin_epoch` to the end, down to `min_lr_ratio`, as the EMOv2 recipe) or
  `constant` schedule, stepped per iteration (or, `cosine_by_epoch`, per epoch as mmdet's); gradient-norm clipping; AMP (bfloat16 autocast) on CUDA;
  an optional EMA of the weights (evaluated and saved alongside);
* evaluates every `eval_every` epochs with COCOeval (bbox, and segm for Mask R-CNN) on predictions
  gathered from all ranks, and writes them as COCO results json;
* writes `out/last.pt` (`zoo.hub.RUN_CHECKPOINT`, as every training run) atomically every epoch (model,
  EMA, optimizer, scheduler, scaler, epoch, iteration, config) and resumes from it (`resume=True` or a path);
* logs JSON lines to `out/metrics.jsonl` (train losses and lr every `log_every` iterations, val mAP per
  epoch), shows tqdm progress, and plots loss and mAP to `out/metrics.png`.

Under `torchrun --nproc_per_node=N` the same call runs DDP (gloo on CPU, nccl on CUDA) with a
`DistributedSampler`; only rank 0 writes checkpoints, logs and plots.
"""
import dataclasses
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from detection.checkpoint import checkpoint_config, load_checkpoint, save_checkpoint
from detection.data import CocoDetection, build_transforms
from detection.distributed import barrier, build_loader, get_rank, get_world_size, init_distributed, is_distributed, resolve_device
from detection.evaluation import evaluate
from detection.registry import build_detector
from detection.schedule import build_optimizer, build_scheduler, log_every_for, warmup_iters_for
from zoo.errors import InputError
from zoo.hub import RUN_CHECKPOINT

__all__ = ['TrainConfig', 'train', 'resolve_data', 'plot_metrics', 'HEADLINE']


@dataclass
class TrainConfig:
    # model
    model: str = 'mask_rcnn'
    backbone: str = 'emov2_1m'
    num_classes: Optional[int] = None  # None: from the dataset's categories
    model_kwargs: Dict[str, Any] = field(default_factory=dict)  # build_detector: preset, frozen_stages, ...
    # data
    data: str = 'synthetic'  # 'synthetic', 'synthetic_text' or a COCO root folder
    train_images: Optional[str] = None
    train_annotations: Optional[str] = None
    val_images: Optional[str] = None
    val_annotations: Optional[str] = None
    synthetic: Dict[str, Any] = field(default_factory=dict)  # make_synthetic_coco / make_synthetic_text arguments
    text_protocol: str = 'icdar2015'  # text detectors: the metric (detection.text.metrics.TEXT_PROTOCOLS)
    min_size: int = 800
    max_size: int = 1333
    flip_prob: float = 0.5
    color_jitter: float = 0.0
    batch_size: int = 2  # per process
    workers: int = 2
    # optimisation
    epochs: int = 12
    optimizer: str = 'adamw'
    lr: float = 2e-4
    weight_decay: float = 0.05
    momentum: float = 0.9
    schedule: str = 'cosine'  # 'cosine', 'step' or 'constant'
    warmup_iters: int = 500
    warmup_ratio: float = 0.001
    cosine_begin_epoch: int = 6
    min_lr_ratio: float = 0.0
    cosine_by_epoch: bool = False  # mmdet CosineAnnealingLR(by_epoch=True): the lr changes once per epoch
    no_decay_norm: bool = False  # no weight decay on normalisation layers (EMOv2's paramwise 'norm' decay_mult=0)
    steps: Tuple[int, ...] = (8, 11)
    gamma: float = 0.1
    grad_clip: Optional[float] = 0.1
    amp: bool = True
    ema: bool = False
    ema_decay: float = 0.9998
    max_iters: Optional[int] = None  # stop after this many iterations in all (smoke runs)
    # bookkeeping
    out: str = 'runs/detection'
    eval_every: int = 1
    log_every: int = 20
    seed: int = 0
    device: str = 'auto'
    resume: Union[bool, str] = False
    save_optimizer: bool = True  # False (--weights-only): the checkpoint holds the weights only, a third the size
    progress: bool = True

    def __post_init__(self):
        """Settings that cannot work are refused here, before any data is generated or read."""
        if self.max_size <= self.min_size:
            raise InputError(f'max_size ({self.max_size}) must be greater than min_size ({self.min_size}): the resize '
                             'scales the shorter side to min_size, capped so the longer side stays under max_size '
                             '(e.g. --min-size 160 --max-size 256)')
        for name in ('epochs', 'batch_size', 'min_size', 'log_every'):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise InputError(f'{name} must be a positive integer, got {getattr(self, name)!r}')
        if not self.lr > 0:
            raise InputError(f'lr must be positive, got {self.lr!r}')
        from detection.registry import list_detectors
        if self.model not in list_detectors():
            raise InputError(f"unknown detector '{self.model}'; choose from {', '.join(list_detectors())}")
        from zoo.models import is_model, unknown_model_error
        if not is_model(self.backbone):
            raise unknown_model_error(self.backbone)

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> 'TrainConfig':
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise InputError(f'unknown training setting(s) {unknown}; known: {sorted(names)}')
        values = dict(values)
        if 'steps' in values and values['steps'] is not None:
            values['steps'] = tuple(values['steps'])
        return cls(**values)


# ---- data ---------------------------------------------------------------------------------------
# built-in datasets: `data=<name>` writes them under `out/<name>` (again only when their parameters change)
SYNTHETIC = {'synthetic': 'detection.synthetic:make_synthetic_coco',
             'synthetic_text': 'detection.text.synthetic:make_synthetic_text'}


def resolve_data(cfg: TrainConfig) -> Dict[str, Path]:
    """Paths of train / val images and annotation files: explicit, a COCO root, or built in
    ('synthetic' shapes, 'synthetic_text' dense text)."""
    if cfg.data in SYNTHETIC:
        import importlib
        module, fn = SYNTHETIC[cfg.data].split(':')
        root = Path(cfg.out) / cfg.data
        stamp = root / 'params.json'
        params = json.dumps(cfg.synthetic, sort_keys=True)
        if get_rank() == 0:
            written = json.loads(stamp.read_text()) if stamp.is_file() else {}
            if written.get('params') != params or not all(Path(p).exists() for p in written.get('paths', {}).values()):
                paths = getattr(importlib.import_module(module), fn)(root, **cfg.synthetic)
                stamp.write_text(json.dumps(dict(params=params, paths={k: str(v) for k, v in paths.items()})))
        barrier()
        paths = {k: Path(v) for k, v in json.loads(stamp.read_text())['paths'].items()}
        held_out = 'val' if 'val_images' in paths else 'test'  # the text benchmark names its split 'test'
        found = dict(train_images=paths['train_images'], train_annotations=paths['train_annotations'],
                     val_images=paths[f'{held_out}_images'], val_annotations=paths[f'{held_out}_annotations'])
    else:
        root = Path(cfg.data)
        found = {}
        for split in ('train', 'val'):
            for ann, img in ((f'instances_{split}2017.json', f'{split}2017'), (f'instances_{split}.json', split)):
                if (root / 'annotations' / ann).is_file():
                    found[f'{split}_images'] = root / img
                    found[f'{split}_annotations'] = root / 'annotations' / ann
                    break
    for key in ('train_images', 'train_annotations', 'val_images', 'val_annotations'):
        if getattr(cfg, key):
            found[key] = Path(getattr(cfg, key))
    missing = [k for k in ('train_images', 'train_annotations', 'val_images', 'val_annotations') if k not in found]
    if missing:
        raise InputError(
            f"no {', '.join(missing)} under '{cfg.data}': expected annotations/instances_{{train,val}}2017.json "
            'with train2017/ val2017/ (COCO) or annotations/instances_{train,val}.json with train/ val/, '
            'or give the paths explicitly')
    return found


# the validation figures printed and plotted per epoch
HEADLINE = ('bbox_mAP', 'segm_mAP', 'hmean', 'best_hmean')


# ---- logging ------------------------------------------------------------------------------------
class _JsonLog:
    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def write(self, **record) -> None:
        if self.enabled:
            with open(self.path, 'a') as f:
                f.write(json.dumps(record) + '\n')


def plot_metrics(jsonl: Union[str, Path], png: Union[str, Path]) -> None:
    """Training loss per iteration and val mAP per epoch, from a metrics.jsonl."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in Path(jsonl).read_text().splitlines() if line.strip()]
    train = [r for r in records if r.get('type') == 'train']
    val = [r for r in records if r.get('type') == 'val']
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    if train:
        a.plot([r['iter'] for r in train], [r['loss'] for r in train])
    a.set_xlabel('iteration'), a.set_ylabel('loss'), a.set_title('training loss')
    for key in HEADLINE:
        pts = [(r['epoch'], r[key]) for r in val if key in r]
        if pts:
            b.plot(*zip(*pts), marker='o', label=key)
    b.set_xlabel('epoch'), b.set_ylabel('mAP / H-mean'), b.set_title('validation')
    if val:
        b.legend()
    fig.tight_layout()
    tmp = Path(str(png) + '.tmp.png')
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    os.replace(tmp, png)


# ---- training -----------------------------------------------------------------------------------
def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(cfg: Union[TrainConfig, Dict[str, Any]]) -> Dict[str, Any]:
    """Train (and evaluate) as `cfg` says; returns the last val metrics, the losses and paths."""
    from tqdm import tqdm

    if isinstance(cfg, dict):
        cfg = TrainConfig.from_dict(cfg)
    device = resolve_device(cfg.device)
    started_dist = init_distributed(device)
    try:
        return _train(cfg, device, tqdm)
    finally:
        if started_dist:
            dist.destroy_process_group()


def _train(cfg: TrainConfig, device: torch.device, tqdm) -> Dict[str, Any]:
    rank, world = get_rank(), get_world_size()
    if device.type == 'cuda':
        torch.cuda.set_device(device)
    out = Path(cfg.out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    barrier()
    _seed_everything(cfg.seed)  # the same initial weights (and EMA copy) on every rank
    paths = resolve_data(cfg)
    train_set = CocoDetection(paths['train_images'], paths['train_annotations'],
                              transforms=build_transforms(True, cfg.min_size, cfg.max_size, cfg.flip_prob,
                                                          cfg.color_jitter))
    val_set = CocoDetection(paths['val_images'], paths['val_annotations'], transforms=build_transforms(False, resize=False))
    num_classes = cfg.num_classes or len(train_set.cat_ids)
    model = build_detector(cfg.model, cfg.backbone, num_classes=num_classes, min_size=cfg.min_size,
                           max_size=cfg.max_size, **cfg.model_kwargs).to(device)
    ema = None
    if cfg.ema:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    _seed_everything(cfg.seed + rank)  # then different augmentation draws per rank
    train_loader = build_loader(train_set, cfg.batch_size, True, cfg.workers, cfg.seed)
    iters_per_epoch = len(train_loader.batch_sampler)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, iters_per_epoch, cfg)
    use_amp = cfg.amp and device.type == 'cuda'
    scaler = torch.amp.GradScaler('cuda', enabled=use_amp and not torch.cuda.is_bf16_supported())

    start_epoch, it = 0, 0
    ckpt_path = out / RUN_CHECKPOINT
    resume = Path(cfg.resume) if isinstance(cfg.resume, str) and cfg.resume else (ckpt_path if cfg.resume else None)
    if resume is not None:
        if not resume.is_file():
            raise InputError(f'cannot resume: no checkpoint at {resume}; train without --resume first, or give the checkpoint path')
        ckpt = load_checkpoint(resume)
        if 'optimizer' not in ckpt:
            raise InputError(f'cannot resume from {resume}: it was saved with --weights-only (no optimizer state); '
                             'train from scratch, or keep --save-optimizer on runs you want to resume')
        model.load_state_dict(ckpt['model'])
        optimizer.load_state_dict(ckpt['optimizer'])
        scheduler.load_state_dict(ckpt['scheduler'])
        scaler.load_state_dict(ckpt['scaler'])
        if ema is not None and ckpt.get('ema_full'):
            ema.load_state_dict(ckpt['ema_full'])
        start_epoch, it = ckpt['epoch'], ckpt['iteration']

    ddp_model = model
    if is_distributed():
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == 'cuda' else None, find_unused_parameters=True)
    log = _JsonLog(out / 'metrics.jsonl', rank == 0)
    log_every = log_every_for(iters_per_epoch, cfg)
    log.write(type='start', time=time.time(), world_size=world, num_classes=num_classes, resume_epoch=start_epoch,
              warmup_iters=warmup_iters_for(iters_per_epoch, cfg), log_every=log_every, config=checkpoint_config(cfg))
    metrics: Dict[str, float] = {}
    losses_seen: List[float] = []
    stop = False
    for epoch in range(start_epoch, cfg.epochs):
        train_loader.batch_sampler.set_epoch(epoch)
        ddp_model.train()
        bar = tqdm(train_loader, desc=f'epoch {epoch + 1}/{cfg.epochs}', disable=not cfg.progress or rank != 0,
                   leave=False)
        for images, targets in bar:
            images = [img.to(device, non_blocking=True) for img in images]
            targets = [{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss_dict = ddp_model(images, targets)
            loss = sum(loss_dict.values())
            if not torch.isfinite(loss):
                raise FloatingPointError(f'loss is {loss.item()} at iteration {it} ({ {k: v.item() for k, v in loss_dict.items()} })')
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip:
                scaler.unscale_(optimizer)
                grad_norm = float(torch.nn.utils.clip_grad_norm_(
                    [p for p in model.parameters() if p.requires_grad], cfg.grad_clip))
            else:
                grad_norm = float('nan')
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            it += 1
            value = loss.item()
            losses_seen.append(value)
            bar.set_postfix(loss=f'{value:.3f}', lr=f"{optimizer.param_groups[0]['lr']:.2e}")
            if it % log_every == 0 or it == 1:
                log.write(type='train', time=time.time(), epoch=epoch + 1, iter=it, lr=optimizer.param_groups[0]['lr'], loss=value,
                          grad_norm=grad_norm, **{k: v.item() for k, v in loss_dict.items()})
            if cfg.max_iters is not None and it >= cfg.max_iters:
                stop = True
                break
        last_epoch = epoch + 1 == cfg.epochs or stop
        if train_set.skipped:  # crowd regions and degenerate boxes left out of training (see detection.data)
            log.write(type='data', epoch=epoch + 1, skipped=dict(train_set.skipped))
        if rank == 0:
            # what resuming needs (optimizer, schedule, the EMA's step count) unless the run is weights-only;
            # the EMA weights are stored once (load_detector reads them from `ema_full` too)
            resumable = dict(optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                             scaler=scaler.state_dict(), ema_full=ema.state_dict() if ema is not None else None)
            save_checkpoint(
                ckpt_path, model=model.state_dict(),
                **(resumable if cfg.save_optimizer else dict(ema=ema.module.state_dict() if ema is not None else None)),
                epoch=epoch + 1, iteration=it, num_classes=num_classes, config=checkpoint_config(cfg),
                label_to_cat_id={str(k): v for k, v in train_set.label_to_cat_id.items()},
                class_names=train_set.class_names)
        barrier()
        if cfg.eval_every and ((epoch + 1) % cfg.eval_every == 0 or last_epoch):
            eval_model = ema.module if ema is not None else model
            metrics = evaluate(eval_model, val_set, device, batch_size=cfg.batch_size, workers=cfg.workers,
                               precision='bf16' if use_amp else 'fp32', results_file=out / f'predictions_val.json',
                               progress=cfg.progress, text_protocol=cfg.text_protocol)
            log.write(type='val', epoch=epoch + 1, iter=it, **metrics)
            if rank == 0 and cfg.progress:
                print(f'epoch {epoch + 1}: ' + ', '.join(f'{k} {v:.3f}' for k, v in metrics.items() if k in HEADLINE))
        if rank == 0:
            plot_metrics(out / 'metrics.jsonl', out / 'metrics.png')
        if stop:
            break
    return dict(metrics=metrics, losses=losses_seen, iterations=it, checkpoint=str(ckpt_path), out=str(out),
                num_classes=num_classes)
