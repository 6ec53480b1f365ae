"""Evaluation of a detector: predictions on a dataset (`predict_images`, gathered from all ranks under
DDP), COCO results (`to_coco_results`) scored by COCOeval (`coco_evaluate`: bbox, and segm for Mask R-CNN),
or, for the text detectors, polygons scored by the text protocols (`detection.text.results`).

Precision (`precision='bf16'`, `zoo detection|text eval|predict --precision bf16`): the detector's networks
(`NETWORKS`: the backbone and FPN, the RPN head, the box / mask heads and predictors, the one-stage heads) run
under `zoo.precision.autocast` (on CPU, oneDNN's AMX / AVX-512 bf16 kernels) and hand float32 on; anchor and
box decoding, NMS, RoIAlign, mask pasting and the outputs stay float32, as mmdet keeps its box decoding out of
mixed precision (`force_fp32`). Autocasting the whole forward instead would decode boxes in bfloat16, whose
8-bit mantissa puts coordinates between 512 and 1024 on a 4-pixel grid."""
import contextlib
import io
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from detection.data import CocoDetection
from detection.distributed import build_loader, get_rank, get_world_size, is_distributed, unwrap
from detection.text.results import text_metrics, text_predictions
from zoo.precision import autocast, check_precision

__all__ = ['NETWORKS', 'autocast_networks', 'to_coco_results', 'coco_evaluate', 'predict_images', 'evaluate']

# the submodules of every registered detector (torchvision's R-CNN, RetinaNet, FCOS, SSDLite; MAYOR) that are
# networks, tensors in and tensors out; what lies outside them is box arithmetic and stays float32
NETWORKS = ('backbone', 'head', 'rpn.head', 'roi_heads.box_head', 'roi_heads.box_predictor',
            'roi_heads.mask_head', 'roi_heads.mask_predictor')


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


def _to_float32(value):
    """Floating tensors in `value` (a tensor, or dicts / lists / tuples of them) as float32."""
    if torch.is_tensor(value):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, dict):
        return type(value)((k, _to_float32(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(_to_float32(v) for v in value)
    return value


@contextlib.contextmanager
def autocast_networks(model: nn.Module, precision: str = 'fp32'):
    """Within the block, each of `model`'s `NETWORKS` runs under `zoo.precision.autocast(precision)` and
    returns float32; the rest of the forward (box decoding, NMS, RoIAlign, mask pasting) runs as built.
    'fp32' changes nothing."""
    check_precision(precision)
    if precision == 'fp32':
        yield
        return
    model = unwrap(model)
    networks = []
    for name in NETWORKS:
        try:
            networks.append(model.get_submodule(name))
        except AttributeError:
            pass
    for net in networks:
        def forward(*args, _forward=net.forward, _net=net, **kwargs):
            with autocast(precision, _net):
                out = _forward(*args, **kwargs)
            return _to_float32(out)
        net.forward = forward  # an instance attribute over the class's forward, deleted below
    try:
        yield
    finally:
        for net in networks:
            del net.forward


@torch.no_grad()
def predict_images(model: nn.Module, images: Sequence[torch.Tensor], device: torch.device, precision: str = 'fp32'):
    """The detector's outputs for `images` (float32), its networks in `precision` ('fp32' or 'bf16', see the
    module docstring)."""
    model.eval()
    images = [img.to(device, non_blocking=True) for img in images]
    with autocast_networks(model, precision):
        outputs = model(images)
    return _to_float32(outputs)


def evaluate(model: nn.Module, dataset: CocoDetection, device: torch.device, batch_size: int = 2,
             workers: int = 0, precision: str = 'fp32', results_file: Optional[Union[str, Path]] = None,
             progress: bool = False, max_images: Optional[int] = None,
             text_protocol: str = 'icdar2015') -> Dict[str, float]:
    """COCO mAP of `model` on `dataset` (whose transforms must not resize: the detector resizes and
    maps its outputs back to the original image); for text detectors, the polygon precision / recall /
    H-mean of `text_protocol` (`detection.text.results.text_metrics`), with polygons as the results file.
    `precision`: 'fp32' or 'bf16' (the networks under bfloat16 autocast; see the module docstring). Under DDP,
    each rank predicts its shard and rank 0 evaluates the union; every rank returns the metrics."""
    from tqdm import tqdm

    kind = getattr(unwrap(model), 'detector_kind', '')
    text = kind == 'text'
    loader = build_loader(dataset, batch_size, train=False, workers=workers, seed=0)
    per_image: Dict[int, Any] = {}
    seen = 0
    for images, targets in tqdm(loader, desc='eval', disable=not progress or get_rank() != 0, leave=False):
        ids = [t['image_id'] for t in targets]
        outputs = predict_images(model, images, device, precision)
        for image_id, out in zip(ids, outputs):
            if text:
                per_image[int(image_id)] = text_predictions(unwrap(model), out, dataset.coco.imgs[int(image_id)],
                                                            text_protocol)
            else:
                per_image[int(image_id)] = to_coco_results([out], [image_id], dataset.label_to_cat_id)
        seen += len(ids)
        if max_images is not None and seen >= max_images:
            break
    if is_distributed():
        gathered: List[Optional[Dict]] = [None] * get_world_size()
        dist.all_gather_object(gathered, per_image)
        for part in gathered:
            per_image.update(part)  # DistributedSampler pads with repeats: same image, same entries
    metrics: List[Optional[Dict[str, float]]] = [None]
    if get_rank() == 0 and text:
        metrics[0] = text_metrics(dataset, per_image, text_protocol)
        results = [dict(image_id=i, **r) for i in sorted(per_image) for r in per_image[i]]
    elif get_rank() == 0:
        results = [r for image_id in sorted(per_image) for r in per_image[image_id]]
        iou_types = ('bbox', 'segm') if kind == 'mask_rcnn' else ('bbox',)
        metrics[0] = coco_evaluate(dataset.coco, results, iou_types, image_ids=sorted(per_image))
    if get_rank() == 0 and results_file is not None:
        tmp = Path(str(results_file) + '.tmp')
        tmp.write_text(json.dumps(results))
        os.replace(tmp, results_file)
    if is_distributed():
        dist.broadcast_object_list(metrics, src=0)
    return metrics[0]
