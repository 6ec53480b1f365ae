"""Training and COCO evaluation for the detectors, single process or under `torchrun` (DDP).

`train(cfg)` takes a `TrainConfig` (or a dict of its fields, e.g. a YAML recipe) and

* builds the detector (`build_detector`) and the COCO datasets (`CocoDetection`; `data='synthetic'`
  writes `make_synthetic_coco` under `out/synthetic` first), with aspect-ratio grouped batches;
* optimises with SGD or AdamW, a linear warm-up over `warmup_iters` iterations and then a `step`,
  `cosine` (from `cosine_begin_epoch` to the end, down to `min_lr_ratio`, as the EMOv2 recipe) or
  `constant` schedule, stepped per iteration (or, `cosine_by_epoch`, per epoch as mmdet's); gradient-norm clipping; AMP (bfloat16 autocast) on CUDA;
  an optional EMA of the weights (evaluated and saved alongside);
* evaluates every `eval_every` epochs with COCOeval (bbox, and segm for Mask R-CNN) on predictions
  gathered from all ranks, and writes them as COCO results json;
* writes `out/last.pth` atomically every epoch (model, EMA, optimizer, scheduler, scaler, epoch,
  iteration, config) and resumes from it (`resume=True` or a path);
* logs JSON lines to `out/metrics.jsonl` (train losses and lr every `log_every` iterations, val mAP per
  epoch), shows tqdm progress, and plots loss and mAP to `out/metrics.png`.

Under `torchrun --nproc_per_node=N` the same call runs DDP (gloo on CPU, nccl on CUDA) with a
`DistributedSampler`; only rank 0 writes checkpoints, logs and plots.
"""
import contextlib
import dataclasses
import io
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler
from torch.utils.data.distributed import DistributedSampler

from detection.data import CocoDetection, GroupedBatchSampler, aspect_ratio_groups, build_transforms, collate
from detection.models import build_detector
from detection.text import text_metrics, text_predictions
from zoo.errors import InputError

__all__ = ['TrainConfig', 'train', 'evaluate', 'predict_images', 'to_coco_results', 'coco_evaluate',
           'build_optimizer', 'build_scheduler', 'save_checkpoint', 'load_checkpoint', 'plot_metrics',
           'resolve_data', 'load_detector']


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
    text_protocol: str = 'icdar2015'  # text detectors: the metric (detection.text_eval.TEXT_PROTOCOLS)
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
    progress: bool = True

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


# ---- distributed helpers ------------------------------------------------------------------------
def _dist_on() -> bool:
    return dist.is_available() and dist.is_initialized()


def _rank() -> int:
    return dist.get_rank() if _dist_on() else 0


def _world() -> int:
    return dist.get_world_size() if _dist_on() else 1


def _init_distributed(device: torch.device) -> bool:
    """Join the process group torchrun set up (env RANK / WORLD_SIZE); False when not under torchrun."""
    if int(os.environ.get('WORLD_SIZE', '1')) <= 1 or _dist_on():
        return False
    backend = 'nccl' if device.type == 'cuda' else 'gloo'
    dist.init_process_group(backend)
    return True


def _barrier() -> None:
    if _dist_on():
        dist.barrier()


def _resolve_device(name: str) -> torch.device:
    if name == 'auto':
        if torch.cuda.is_available():
            return torch.device('cuda', int(os.environ.get('LOCAL_RANK', 0)))
        return torch.device('cpu')
    device = torch.device(name)
    if device.type == 'cuda' and device.index is None:
        device = torch.device('cuda', int(os.environ.get('LOCAL_RANK', 0)))
    return device


# ---- data ---------------------------------------------------------------------------------------
# built-in datasets: `data=<name>` writes them under `out/<name>` (again only when their parameters change)
SYNTHETIC = {'synthetic': 'detection.synthetic:make_synthetic_coco',
             'synthetic_text': 'detection.text_synthetic:make_synthetic_text'}


def resolve_data(cfg: TrainConfig) -> Dict[str, Path]:
    """Paths of train / val images and annotation files: explicit, a COCO root, or built in
    ('synthetic' shapes, 'synthetic_text' dense text)."""
    if cfg.data in SYNTHETIC:
        import importlib
        module, fn = SYNTHETIC[cfg.data].split(':')
        root = Path(cfg.out) / cfg.data
        stamp = root / 'params.json'
        params = json.dumps(cfg.synthetic, sort_keys=True)
        if _rank() == 0:
            written = json.loads(stamp.read_text()) if stamp.is_file() else {}
            if written.get('params') != params or not all(Path(p).exists() for p in written.get('paths', {}).values()):
                paths = getattr(importlib.import_module(module), fn)(root, **cfg.synthetic)
                stamp.write_text(json.dumps(dict(params=params, paths={k: str(v) for k, v in paths.items()})))
        _barrier()
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


def _loader(dataset, batch_size: int, train: bool, workers: int, seed: int, epoch_seed: bool = True):
    if _dist_on():
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


# ---- optimisation -------------------------------------------------------------------------------
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
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


def lr_factor(it: int, iters_per_epoch: int, cfg: TrainConfig) -> float:
    """The learning-rate multiplier at iteration `it` (warm-up times schedule)."""
    warm = 1.0
    if cfg.warmup_iters > 0 and it < cfg.warmup_iters:
        warm = cfg.warmup_ratio + (1 - cfg.warmup_ratio) * it / cfg.warmup_iters
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


def build_scheduler(optimizer, iters_per_epoch: int, cfg: TrainConfig):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, iters_per_epoch, cfg))


# ---- checkpoints --------------------------------------------------------------------------------
def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


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
                               what='a detection checkpoint (`zoo detection train` writes OUT/last.pth)')


def _ckpt_config(cfg: TrainConfig) -> Dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def load_detector(checkpoint: Union[str, Path], use_ema: bool = True) -> Tuple[nn.Module, Dict[str, Any]]:
    """The detector a training run saved (its EMA weights when present), and the run's config."""
    ckpt = load_checkpoint(checkpoint)
    cfg = ckpt['config']
    model = build_detector(cfg['model'], cfg['backbone'], num_classes=ckpt['num_classes'],
                           min_size=cfg['min_size'], max_size=cfg['max_size'], **cfg.get('model_kwargs', {}))
    state = ckpt['ema'] if use_ema and ckpt.get('ema') else ckpt['model']
    model.load_state_dict(state)
    model.label_to_cat_id = {int(k): v for k, v in ckpt.get('label_to_cat_id', {}).items()}
    model.class_names = ckpt.get('class_names')
    return model, cfg


# ---- evaluation ---------------------------------------------------------------------------------
def to_coco_results(outputs: Sequence[Dict[str, torch.Tensor]], image_ids: Sequence[int],
                    label_to_cat_id: Dict[int, int]) -> List[Dict[str, Any]]:
    """Detector outputs (in original image coordinates) as COCO result entries; masks as RLE."""
    from pycocotools import mask as mask_utils

    results = []
    for out, image_id in zip(outputs, image_ids):
        boxes = out['boxes'].detach().float().cpu()
        scores = out['scores'].detach().float().cpu().tolist()
        labels = out['labels'].detach().cpu().tolist()
        masks = out.get('masks')
        rles = None
        if masks is not None and len(masks):
            binary = (masks[:, 0] > 0.5).cpu().numpy().astype(np.uint8)
            rles = mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0)))
        for k, (box, score, label) in enumerate(zip(boxes.tolist(), scores, labels)):
            if label not in label_to_cat_id:  # background logit of RetinaNet / FCOS
                continue
            x0, y0, x1, y1 = box
            entry = dict(image_id=int(image_id), category_id=int(label_to_cat_id[label]),
                         bbox=[round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)], score=round(score, 5))
            if rles is not None:
                entry['segmentation'] = dict(size=list(rles[k]['size']), counts=rles[k]['counts'].decode('ascii'))
            results.append(entry)
    return results


_STAT_NAMES = ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')


def coco_evaluate(coco_gt, results: List[Dict[str, Any]], iou_types: Sequence[str] = ('bbox',),
                  image_ids: Optional[Sequence[int]] = None, verbose: bool = False) -> Dict[str, float]:
    """COCOeval on `results`; {'bbox_mAP': ..., 'bbox_mAP_50': ..., 'segm_mAP': ...} in [0, 1]
    (-1 where COCOeval has nothing to count). No detections give mAP 0."""
    from pycocotools.cocoeval import COCOeval

    metrics: Dict[str, float] = {}
    for iou_type in iou_types:
        dets = [dict(r) for r in results if iou_type == 'bbox' or 'segmentation' in r]  # loadRes edits them
        if not dets:
            metrics.update({f'{iou_type}_{n}': 0.0 for n in _STAT_NAMES})
            continue
        sink = io.StringIO()
        with contextlib.redirect_stdout(sink):
            coco_dt = coco_gt.loadRes(dets)
            ev = COCOeval(coco_gt, coco_dt, iou_type)
            if image_ids is not None:
                ev.params.imgIds = list(image_ids)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        if verbose:
            print(sink.getvalue())
        metrics.update({f'{iou_type}_{n}': float(v) for n, v in zip(_STAT_NAMES, ev.stats[:6])})
    return metrics


@torch.no_grad()
def predict_images(model: nn.Module, images: Sequence[torch.Tensor], device: torch.device, amp: bool = False):
    model.eval()
    images = [img.to(device, non_blocking=True) for img in images]
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == 'cuda'):
        outputs = model(images)
    return [{k: v.float() if v.is_floating_point() else v for k, v in o.items()} for o in outputs]


def evaluate(model: nn.Module, dataset: CocoDetection, device: torch.device, batch_size: int = 2,
             workers: int = 0, amp: bool = False, results_file: Optional[Union[str, Path]] = None,
             progress: bool = False, max_images: Optional[int] = None,
             text_protocol: str = 'icdar2015') -> Dict[str, float]:
    """COCO mAP of `model` on `dataset` (whose transforms must not resize: the detector resizes and
    maps its outputs back to the original image); for text detectors, the polygon precision / recall /
    H-mean of `text_protocol` (`detection.text.text_metrics`), with polygons as the results file.
    Under DDP, each rank predicts its shard and rank 0 evaluates the union; every rank returns the
    metrics."""
    from tqdm import tqdm

    kind = getattr(_unwrap(model), 'detector_kind', '')
    text = kind == 'text'
    loader = _loader(dataset, batch_size, train=False, workers=workers, seed=0)
    per_image: Dict[int, Any] = {}
    seen = 0
    for images, targets in tqdm(loader, desc='eval', disable=not progress or _rank() != 0, leave=False):
        ids = [t['image_id'] for t in targets]
        outputs = predict_images(model, images, device, amp)
        for image_id, out in zip(ids, outputs):
            if text:
                per_image[int(image_id)] = text_predictions(_unwrap(model), out, dataset.coco.imgs[int(image_id)],
                                                            text_protocol)
            else:
                per_image[int(image_id)] = to_coco_results([out], [image_id], dataset.label_to_cat_id)
        seen += len(ids)
        if max_images is not None and seen >= max_images:
            break
    if _dist_on():
        gathered: List[Optional[Dict]] = [None] * _world()
        dist.all_gather_object(gathered, per_image)
        for part in gathered:
            per_image.update(part)  # DistributedSampler pads with repeats: same image, same entries
    metrics: List[Optional[Dict[str, float]]] = [None]
    if _rank() == 0 and text:
        metrics[0] = text_metrics(dataset, per_image, text_protocol)
        results = [dict(image_id=i, **r) for i in sorted(per_image) for r in per_image[i]]
    elif _rank() == 0:
        results = [r for image_id in sorted(per_image) for r in per_image[image_id]]
        iou_types = ('bbox', 'segm') if kind == 'mask_rcnn' else ('bbox',)
        metrics[0] = coco_evaluate(dataset.coco, results, iou_types, image_ids=sorted(per_image))
    if _rank() == 0 and results_file is not None:
        tmp = Path(str(results_file) + '.tmp')
        tmp.write_text(json.dumps(results))
        os.replace(tmp, results_file)
    if _dist_on():
        dist.broadcast_object_list(metrics, src=0)
    return metrics[0]


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
    device = _resolve_device(cfg.device)
    started_dist = _init_distributed(device)
    try:
        return _train(cfg, device, tqdm)
    finally:
        if started_dist:
            dist.destroy_process_group()


def _train(cfg: TrainConfig, device: torch.device, tqdm) -> Dict[str, Any]:
    rank, world = _rank(), _world()
    if device.type == 'cuda':
        torch.cuda.set_device(device)
    out = Path(cfg.out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    _barrier()
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
    train_loader = _loader(train_set, cfg.batch_size, True, cfg.workers, cfg.seed)
    iters_per_epoch = len(train_loader.batch_sampler)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, iters_per_epoch, cfg)
    use_amp = cfg.amp and device.type == 'cuda'
    scaler = torch.amp.GradScaler('cuda', enabled=use_amp and not torch.cuda.is_bf16_supported())

    start_epoch, it = 0, 0
    ckpt_path = out / 'last.pth'
    resume = Path(cfg.resume) if isinstance(cfg.resume, str) and cfg.resume else (ckpt_path if cfg.resume else None)
    if resume is not None:
        if not resume.is_file():
            raise InputError(f'cannot resume: no checkpoint at {resume}; train without --resume first, or give the checkpoint path')
        ckpt = load_checkpoint(resume)
        model.load_state_dict(ckpt['model'])
        optimizer.load_state_dict(ckpt['optimizer'])
        scheduler.load_state_dict(ckpt['scheduler'])
        scaler.load_state_dict(ckpt['scaler'])
        if ema is not None and ckpt.get('ema_full'):
            ema.load_state_dict(ckpt['ema_full'])
        start_epoch, it = ckpt['epoch'], ckpt['iteration']

    ddp_model = model
    if _dist_on():
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == 'cuda' else None, find_unused_parameters=True)
    log = _JsonLog(out / 'metrics.jsonl', rank == 0)
    log.write(type='start', time=time.time(), world_size=world, num_classes=num_classes, resume_epoch=start_epoch,
              config=_ckpt_config(cfg))
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
            if it % cfg.log_every == 0 or it == 1:
                log.write(type='train', time=time.time(), epoch=epoch + 1, iter=it, lr=optimizer.param_groups[0]['lr'], loss=value,
                          grad_norm=grad_norm, **{k: v.item() for k, v in loss_dict.items()})
            if cfg.max_iters is not None and it >= cfg.max_iters:
                stop = True
                break
        last_epoch = epoch + 1 == cfg.epochs or stop
        if rank == 0:
            save_checkpoint(
                ckpt_path, model=model.state_dict(), optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(), scaler=scaler.state_dict(),
                ema=(ema.module.state_dict() if ema is not None else None),
                ema_full=(ema.state_dict() if ema is not None else None),
                epoch=epoch + 1, iteration=it, num_classes=num_classes, config=_ckpt_config(cfg),
                label_to_cat_id={str(k): v for k, v in train_set.label_to_cat_id.items()},
                class_names=train_set.class_names)
        _barrier()
        if cfg.eval_every and ((epoch + 1) % cfg.eval_every == 0 or last_epoch):
            eval_model = ema.module if ema is not None else model
            metrics = evaluate(eval_model, val_set, device, batch_size=cfg.batch_size, workers=cfg.workers,
                               amp=use_amp, results_file=out / f'predictions_val.json', progress=cfg.progress,
                               text_protocol=cfg.text_protocol)
            log.write(type='val', epoch=epoch + 1, iter=it, **metrics)
            if rank == 0 and cfg.progress:
                print(f'epoch {epoch + 1}: ' + ', '.join(f'{k} {v:.3f}' for k, v in metrics.items() if k in HEADLINE))
        if rank == 0:
            plot_metrics(out / 'metrics.jsonl', out / 'metrics.png')
        if stop:
            break
    return dict(metrics=metrics, losses=losses_seen, iterations=it, checkpoint=str(ckpt_path), out=str(out),
                num_classes=num_classes)
