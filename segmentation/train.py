"""Training and evaluation of face parsers on Tanh-polar warped faces.

Each batch (images, label maps, face boxes) is warped to Tanh-polar maps of the training size (labels
with nearest sampling) on the fly; the model is trained with cross-entropy plus soft Dice (the official
training recipe is not published; CE + Dice is a second-hand report, see the spec). Evaluation restores
the predicted probabilities to the image (as `FaceParser` does) and accumulates a confusion matrix over
the whole set: per-class F1 (Dice), mean F1 over the foreground classes, and mIoU (all classes).

AMP (bfloat16 autocast) on CUDA; checkpoints (`last.pt`: model, optimiser, scaler state, epoch, step,
metrics) are written atomically (temp file + rename) and `resume=True` continues from them.
"""
import math
import os
import time
from pathlib import Path
from typing import Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

from segmentation.data import FaceParsingFolder, SyntheticFaces, collate, warp_sample
from segmentation.roi_tanh import roi_tanh_polar_restore
from zoo.hub import RUN_CHECKPOINT, read_run_checkpoint

__all__ = ['build_model', 'dice_loss', 'confusion_matrix', 'scores', 'evaluate', 'train', 'save_checkpoint',
           'main_from_args']

MEAN, STD = 0.5, 0.5  # the official normalisation ([-1, 1])


def build_model(name: str = 'rtnet_tiny', num_classes: int = 11, pretrained: bool = False) -> nn.Module:
    """A face-parsing model by name (`zoo.models.create_model`), or 'rtnet_tiny': an RTNet with narrow layers
    (16..128) for CPU runs."""
    import segmentation  # noqa: F401  (registers the models)
    from segmentation.rtnet import RTNet
    from zoo.models import create_model
    if name == 'rtnet_tiny':
        return RTNet('rtnet', layers=(1, 2, 2, 2), widths=(16, 32, 64, 128), num_classes=num_classes)
    return create_model(name, pretrained=pretrained, num_classes=num_classes)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - mean soft Dice over the classes present in the batch."""
    probs = logits.float().softmax(1)
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).float()
    inter = (probs * onehot).sum((0, 2, 3))
    denom = probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    present = onehot.sum((0, 2, 3)) > 0
    dice = (2 * inter + eps) / (denom + eps)
    return 1.0 - dice[present].mean()


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[num_classes, num_classes] counts, rows = target, columns = prediction."""
    idx = target.reshape(-1) * num_classes + pred.reshape(-1)
    return torch.bincount(idx, minlength=num_classes ** 2).reshape(num_classes, num_classes).cpu()


def scores(conf: torch.Tensor) -> Dict[str, object]:
    """Per-class F1 = 2TP / (2TP + FP + FN), mean F1 over classes 1.. (foreground), per-class IoU, mIoU.
    Classes absent from both prediction and target are left out of the means."""
    conf = conf.double()
    tp = conf.diag()
    fp = conf.sum(0) - tp
    fn = conf.sum(1) - tp
    seen = (tp + fp + fn) > 0
    f1 = torch.where(seen, 2 * tp / (2 * tp + fp + fn).clamp_min(1), torch.full_like(tp, float('nan')))
    iou = torch.where(seen, tp / (tp + fp + fn).clamp_min(1), torch.full_like(tp, float('nan')))
    fg = f1[1:][seen[1:]]
    return dict(f1=f1.tolist(), mean_f1=fg.mean().item() if fg.numel() else float('nan'),
                iou=iou.tolist(), miou=iou[seen].mean().item(), pixel_acc=(tp.sum() / conf.sum()).item())


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - MEAN) / STD


def _to_model_order(images: torch.Tensor, bgr: bool) -> torch.Tensor:
    return images.flip(1) if bgr else images


@torch.no_grad()
def evaluate(model: nn.Module, loader, size: int, num_classes: int, device, bgr: bool = False,
             space: str = 'image') -> Dict[str, object]:
    """Scores over a loader; `space='image'` restores the predictions to the source image (official
    background handling), `'warped'` scores in the warped space."""
    model.eval()
    conf = torch.zeros(num_classes, num_classes, dtype=torch.long)
    for batch in loader:
        images, labels, boxes = (batch[k].to(device) for k in ('image', 'labels', 'box'))
        warped, warped_labels = warp_sample(images, labels, boxes, (size, size))
        logits = model(_normalise(_to_model_order(warped, bgr)), boxes)
        if space == 'warped':
            conf += confusion_matrix(logits.argmax(1), warped_labels, num_classes)
            continue
        probs = logits.float().softmax(1)
        probs[:, 0] = 1 - probs[:, 0]
        probs = roi_tanh_polar_restore(probs, boxes, images.shape[-1], images.shape[-2], keep_aspect_ratio=True)
        probs[:, 0] = 1 - probs[:, 0]
        conf += confusion_matrix(probs.argmax(1), labels, num_classes)
    return scores(conf)


def save_checkpoint(path: Path, state: Dict) -> None:
    """Write atomically: a temp file in the same folder, then rename over the target."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    torch.save(state, tmp)
    os.replace(tmp, path)


def train(model: nn.Module, train_set, val_set=None, *, size: int = 64, epochs: int = 1,
          steps: Optional[int] = None, batch_size: int = 8, lr: float = 3e-3, out: Optional[Path] = None,
          resume: bool = False, device=None, workers: int = 0, seed: int = 0, bgr: bool = False,
          dice_weight: float = 1.0, log_every: int = 10, log=print) -> Dict[str, object]:
    """Train with AdamW + cosine decay; returns dict(losses=[per step], val=scores or None, step, epoch)."""
    device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    model.to(device)
    num_classes = model.num_classes
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, num_workers=workers, collate_fn=collate,
                        drop_last=len(train_set) >= batch_size, generator=generator)
    total = steps or epochs * len(loader)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    use_amp = device.type == 'cuda'
    step, epoch, losses = 0, 0, []
    ckpt = Path(out) / RUN_CHECKPOINT if out else None
    if resume and ckpt and ckpt.is_file():
        state = read_run_checkpoint(ckpt, required=('model', 'optimizer', 'scheduler', 'step'), what='a face-parsing checkpoint (`zoo train-faces` writes OUT/last.pt)')
        model.load_state_dict(state['model'])
        opt.load_state_dict(state['optimizer'])
        sched.load_state_dict(state['scheduler'])
        step, epoch, losses = state['step'], state['epoch'], list(state['losses'])
        log(f'resumed from {ckpt} at step {step}, epoch {epoch}')
    start = time.time()
    while step < total:
        model.train()
        for batch in loader:
            if step >= total:
                break
            images, labels, boxes = (batch[k].to(device) for k in ('image', 'labels', 'box'))
            with torch.no_grad():
                warped, warped_labels = warp_sample(images, labels, boxes, (size, size))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = model(_normalise(_to_model_order(warped, bgr)), boxes)
            loss = F.cross_entropy(logits.float(), warped_labels)
            if dice_weight:
                loss = loss + dice_weight * dice_loss(logits, warped_labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            step += 1
            if log_every and step % log_every == 0:
                log(f'step {step}/{total} loss {sum(losses[-log_every:]) / log_every:.4f} '
                    f'({time.time() - start:.1f}s)')
        else:
            epoch += 1
        if ckpt:
            save_checkpoint(ckpt, dict(model=model.state_dict(), optimizer=opt.state_dict(),
                                       scheduler=sched.state_dict(), step=step, epoch=epoch, losses=losses))
    val = None
    if val_set is not None:
        val_loader = DataLoader(val_set, batch_size=batch_size, num_workers=workers, collate_fn=collate)
        val = evaluate(model, val_loader, size, num_classes, device, bgr=bgr)
        log(f'val mean F1 {val["mean_f1"]:.4f} mIoU {val["miou"]:.4f}')
    return dict(losses=losses, val=val, step=step, epoch=epoch)


def main_from_args(args) -> int:
    import json
    torch.manual_seed(args.seed)
    if args.data == 'synthetic':
        train_set = SyntheticFaces(args.train_len, seed=args.seed)
        val_set = SyntheticFaces(args.val_len, seed=args.seed + 10_000)
        num_classes = 11
    else:
        train_set = FaceParsingFolder(args.data, 'train', args.layout)
        val_set = FaceParsingFolder(args.data, 'test', args.layout)
        num_classes = train_set.num_classes
    model = build_model(args.model, num_classes, args.pretrained)
    result = train(model, train_set, val_set, size=args.size, epochs=args.epochs, steps=args.steps,
                   batch_size=args.batch_size if args.data == 'synthetic' else 1, lr=args.lr, out=args.out,
                   resume=args.resume, device=args.device, workers=args.workers, seed=args.seed,
                   bgr=args.pretrained)
    print(json.dumps(dict(steps=result['step'], first_loss=result['losses'][0] if result['losses'] else None,
                          last_loss=result['losses'][-1] if result['losses'] else None, val=result['val'])))
    return 0
