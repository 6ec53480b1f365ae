"""MAYOR: Mask R-CNN for dense, arbitrary-shaped scene text, and the plain Mask R-CNN text baseline.

Paper: "Mask is All You Need: Rethinking Mask R-CNN for Dense and Arbitrary-Shaped Scene Text Detection",
X. Qin et al., ACM MM 2021, arXiv 2109.03426. No official code exists; this module is our reading of the
abstract (`shared/specs/mayor.md` §3) and is **not** a reproduction of the paper's exact layers. The
abstract names three fixes; each is a switch of `build_text_detector`, so every ablation is one config:

* `assignment='adaptive'` -- RPN label assignment (`AdaptiveAnchorAssigner`): one square anchor per
  location (side 8 x stride); per ground truth, the k=9 anchors nearest its centre on every level are
  candidates, the threshold is mean + std of their IoUs (std unbiased, as ATSS), positives are candidates
  at or above it whose centre lies inside the box, and a box left without positive gets its best
  candidate. An anchor positive for several boxes goes to the highest IoU; a box that loses its last
  positive this way takes back its best candidate that no other box needs (so no text line, whatever
  its aspect ratio, ends without a positive and no anchor serves two lines). No ignore band.
  `assignment='iou'` is torchvision's matcher (0.7 / 0.3) for the baseline's anchors.
* `mask_decoder='mlp'` -- `MLPMaskDecoder`: 1x1 conv 256->64 + ReLU, flatten, FC 12544->1024 + ReLU,
  FC 1024->784, reshaped to one 28x28 mask (13,666,128 parameters). A fully connected map sees the whole
  RoI at once, so each output pixel can depend on the layout of the whole instance (as PANet's FC mask
  branch). `mask_decoder='deconv'` is Mask R-CNN's 2x2 deconv + 1x1 predictor.
* `mask_target_frame='gt_box'` -- instance-aware mask learning: the 28x28 target is the matched
  instance alone (its own rasterised polygon; other instances in the RoI are 0) resampled in the frame of
  its ground-truth box, so it always shows the whole, compact instance whatever the proposal's jitter;
  the features still come from the proposal, and at inference the mask is pasted into the regressed
  box. We chose this reading of "learn the shape of the whole instance". `'proposal'` gives Mask
  R-CNN's targets (the instance cut to the proposal). Loss: BCE (mean over pixels) plus, with
  `mask_dice_weight > 0`, Dice = 1 - (2 sum(pt) + 1) / (sum(p) + sum(t) + 1) per RoI on probabilities.
  Targets are binarised at 0.5 (as mmdet) in both frames.

Masks are class-agnostic (one text class). Box branch: torchvision's defaults (RoIAlign 7x7, TwoMLPHead
1024). Mask tower: 4 x (3x3 conv 256, ReLU) on RoIAlign 14x14.

Post-processing (`detections_to_polygons`): each 28x28 probability map is pasted into its box the way
torchvision's `paste_masks_in_image` does (1-pixel padding, bilinear), but only into the box's own
window rather than a full-image canvas per detection; thresholded at 0.5; external contours (OpenCV);
`keep='largest'` keeps the largest contour (instance-aware masks should be one component, and fragments
inflate false positives; our choice) and `keep='all'` every contour (mmocr's `bitmap_to_polygon`, used by
the baseline); fewer than 3 points are dropped; `mode='quad'` gives `minAreaRect` corners for
quadrilateral benchmarks. The score is the box score.

The baseline (`variant='text_mask_rcnn'`) is plain Mask R-CNN as mmocr configures it for text: anchors of
scale 4 (16..256 over P2-P6) with ratios 0.17, 0.44, 1.13, 2.90, 7.46, IoU matcher, deconv decoder,
proposal-frame targets, BCE only, every contour kept.
"""
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.ops import box_iou, roi_align

from zoo.errors import InputError

from detection.registry import build_detector, register_detector

__all__ = ['VARIANTS', 'AdaptiveAnchorAssigner', 'AdaptiveAssignmentRPN', 'MLPMaskDecoder', 'TextRoIHeads',
           'mask_targets', 'text_mask_loss', 'build_text_detector', 'detections_to_polygons',
           'masks_to_polygons']

MMOCR_ANCHOR_RATIOS = (0.17, 0.44, 1.13, 2.90, 7.46)

# Each variant is a set of switches; explicit arguments of build_text_detector override them.
VARIANTS: Dict[str, Dict] = {
    'mayor': dict(assignment='adaptive', mask_decoder='mlp', mask_target_frame='gt_box', mask_dice_weight=1.0,
                  polygon_keep='largest'),
    'text_mask_rcnn': dict(assignment='iou', mask_decoder='deconv', mask_target_frame='proposal', mask_dice_weight=0.0,
                      polygon_keep='all'),
}


# ---- RPN: adaptive label assignment ---------------------------------------------------------------
class AdaptiveAnchorAssigner:
    """Per-instance statistical IoU threshold over centre-nearest candidates (module docstring).

    Anchors are one square size per pyramid level, concatenated level after level (as torchvision's
    `AnchorGenerator` lays them out), so the levels are the runs of equal anchor width.
    """

    def __init__(self, topk: int = 9):
        self.topk = topk

    def __call__(self, anchors: Tensor, gt_boxes: Tensor) -> Tuple[Tensor, Tensor]:
        """(labels, matched_idxs) for one image: labels 1. (positive) / 0. (negative), and for
        positives the index of their box (0 elsewhere)."""
        num_anchors = anchors.shape[0]
        labels = anchors.new_zeros(num_anchors)
        matched = torch.zeros(num_anchors, dtype=torch.long, device=anchors.device)
        if gt_boxes.numel() == 0:
            return labels, matched
        ious = box_iou(gt_boxes, anchors)  # (G, A)
        gt_centres = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
        anchor_centres = (anchors[:, :2] + anchors[:, 2:]) / 2
        distances = torch.cdist(gt_centres, anchor_centres)  # (G, A)

        widths = anchors[:, 2] - anchors[:, 0]
        _, counts = torch.unique_consecutive(widths, return_counts=True)
        candidates, start = [], 0
        for count in counts.tolist():
            k = min(self.topk, count)
            candidates.append(distances[:, start:start + count].topk(k, dim=1, largest=False).indices + start)
            start += count
        candidates = torch.cat(candidates, dim=1)  # (G, C)
        cand_ious = ious.gather(1, candidates)
        threshold = cand_ious.mean(1, keepdim=True) + (cand_ious.std(1, keepdim=True) if candidates.shape[1] > 1 else 0)
        cx, cy = anchor_centres[candidates, 0], anchor_centres[candidates, 1]
        inside = ((cx > gt_boxes[:, 0:1]) & (cx < gt_boxes[:, 2:3]) & (cy > gt_boxes[:, 1:2]) & (cy < gt_boxes[:, 3:4]))
        positive = (cand_ious >= threshold) & inside
        best_candidate = cand_ious.argmax(1)
        no_positive = ~positive.any(1)
        positive[no_positive, best_candidate[no_positive]] = True

        # one owner per anchor: the box it overlaps most among those that chose it
        owner_iou = torch.full_like(ious, -1.0)
        owner_iou.scatter_(1, candidates, torch.where(positive, cand_ious, torch.full_like(cand_ious, -1.0)))
        best_iou, owner = owner_iou.max(0)
        is_pos = best_iou > -0.5
        owner = torch.where(is_pos, owner, torch.full_like(owner, -1))
        self._restore_orphans(owner, candidates, cand_ious)
        is_pos = owner >= 0
        labels[is_pos] = 1.0
        matched[is_pos] = owner[is_pos]
        return labels, matched

    @staticmethod
    def _restore_orphans(owner: Tensor, candidates: Tensor, cand_ious: Tensor) -> None:
        """A box that lost every positive to boxes of higher IoU takes its best candidate that is free
        or whose owner keeps another positive (rare: nearly coincident boxes)."""
        num_gt = candidates.shape[0]
        served = torch.bincount(owner[owner >= 0], minlength=num_gt)
        for g in torch.nonzero(served == 0).flatten().tolist():
            for a in candidates[g][cand_ious[g].argsort(descending=True)].tolist():
                holder = int(owner[a])
                if holder < 0 or served[holder] > 1:
                    if holder >= 0:
                        served[holder] -= 1
                    owner[a] = g
                    served[g] += 1
                    break


class AdaptiveAssignmentRPN(RegionProposalNetwork):
    """torchvision's RPN (sampling, losses, proposals unchanged) with `AdaptiveAnchorAssigner` in place
    of its fixed-IoU matcher."""

    def __init__(self, *args, assigner: Optional[AdaptiveAnchorAssigner] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.assigner = assigner or AdaptiveAnchorAssigner()

    def assign_targets_to_anchors(self, anchors: List[Tensor], targets: List[Dict[str, Tensor]]):
        labels, matched_gt_boxes = [], []
        for anchors_per_image, target in zip(anchors, targets):
            gt_boxes = target['boxes']
            lab, idx = self.assigner(anchors_per_image, gt_boxes)
            labels.append(lab)
            matched_gt_boxes.append(gt_boxes[idx] if gt_boxes.numel() else torch.zeros_like(anchors_per_image))
        return labels, matched_gt_boxes


# ---- mask branch ----------------------------------------------------------------------------------
class MLPMaskDecoder(nn.Module):
    """1x1 conv -> ReLU -> FC -> ReLU -> FC, reshaped to (R, 1, S, S) mask logits (spec §3.4)."""

    def __init__(self, in_channels: int = 256, reduced_channels: int = 64, roi_size: int = 14,
                 hidden: int = 1024, mask_size: int = 28):
        super().__init__()
        self.mask_size = mask_size
        self.reduce = nn.Conv2d(in_channels, reduced_channels, 1)
        self.fc1 = nn.Linear(reduced_channels * roi_size * roi_size, hidden)
        self.fc2 = nn.Linear(hidden, mask_size * mask_size)
        for m in (self.fc1, self.fc2):
            nn.init.kaiming_uniform_(m.weight, a=1)
            nn.init.zeros_(m.bias)
        nn.init.kaiming_normal_(self.reduce.weight, mode='fan_out', nonlinearity='relu')
        nn.init.zeros_(self.reduce.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.reduce(x)).flatten(1)
        x = self.fc2(F.relu(self.fc1(x)))
        return x.view(-1, 1, self.mask_size, self.mask_size)


def mask_targets(gt_masks: Tensor, frames: Tensor, matched_idxs: Tensor, size: int) -> Tensor:
    """(R, size, size) binary targets: instance `matched_idxs[r]`'s own mask resampled in `frames[r]`
    (the proposal or the matched ground-truth box)."""
    if frames.numel() == 0:
        return gt_masks.new_zeros((0, size, size), dtype=torch.float32)
    rois = torch.cat([matched_idxs[:, None].to(frames), frames], dim=1)
    sampled = roi_align(gt_masks[:, None].to(frames.dtype), rois, (size, size), 1.0)[:, 0]
    return (sampled >= 0.5).to(frames.dtype)


def text_mask_loss(logits: Tensor, targets: Tensor, dice_weight: float = 1.0, bce_weight: float = 1.0) -> Tensor:
    """BCE (mean over pixels) + Dice (per RoI, smoothed by 1, mean over RoIs)."""
    if logits.numel() == 0:
        return logits.sum() * 0
    logits = logits[:, 0]
    loss = bce_weight * F.binary_cross_entropy_with_logits(logits, targets)
    if dice_weight:
        p, t = logits.sigmoid().flatten(1), targets.flatten(1)
        dice = 1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)
        loss = loss + dice_weight * dice.mean()
    return loss


class TextRoIHeads(RoIHeads):
    """torchvision's box branch and sampling; a class-agnostic mask branch whose targets come from
    `mask_target_frame` and whose loss is `text_mask_loss`. Inference returns the 28x28 probabilities in
    the box frame as `mask_probs` (R, 1, 28, 28): polygons are traced per box, never on full-image
    masks (`detections_to_polygons`)."""

    def __init__(self, *args, mask_target_frame: str = 'gt_box', mask_dice_weight: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        if mask_target_frame not in ('gt_box', 'proposal'):
            raise ValueError(f"mask_target_frame must be 'gt_box' or 'proposal', got '{mask_target_frame}'")
        self.mask_target_frame = mask_target_frame
        self.mask_dice_weight = mask_dice_weight

    def forward(self, features, proposals, image_shapes, targets=None):
        if self.training:
            if targets is None:
                raise ValueError('TextRoIHeads needs targets in training')
            proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)

        if not self.training:
            boxes, scores, labels = self.postprocess_detections(class_logits, box_regression, proposals, image_shapes)
            logits = self._mask_logits(features, boxes, image_shapes)
            probs = logits.sigmoid().split([len(b) for b in boxes])
            result = [dict(boxes=b, labels=l, scores=s, mask_probs=p) for b, l, s, p in zip(boxes, labels, scores, probs)]
            return result, {}

        loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
        mask_rois, frames, gt_masks, matched = [], [], [], []
        for props, lab, idx, target in zip(proposals, labels, matched_idxs, targets):
            pos = torch.where(lab > 0)[0]
            mask_rois.append(props[pos])
            frames.append(target['boxes'][idx[pos]] if self.mask_target_frame == 'gt_box' else props[pos])
            matched.append(idx[pos])
            gt_masks.append(target['masks'])
        logits = self._mask_logits(features, mask_rois, image_shapes)
        size = logits.shape[-1]
        mask_t = torch.cat([mask_targets(m, f, i, size) for m, f, i in zip(gt_masks, frames, matched)])
        loss_mask = text_mask_loss(logits, mask_t, dice_weight=self.mask_dice_weight)
        return [], dict(loss_classifier=loss_classifier, loss_box_reg=loss_box_reg, loss_mask=loss_mask)

    def _mask_logits(self, features, boxes: List[Tensor], image_shapes) -> Tensor:
        return self.mask_predictor(self.mask_head(self.mask_roi_pool(features, boxes, image_shapes)))


# ---- the detector ---------------------------------------------------------------------------------
@register_detector(*VARIANTS, kind='text')
def build_text_detector(
        variant: str = 'mayor',
        backbone: str = 'resnet50',
        *,
        assignment: Optional[str] = None,
        mask_decoder: Optional[str] = None,
        mask_target_frame: Optional[str] = None,
        mask_dice_weight: Optional[float] = None,
        polygon_keep: Optional[str] = None,
        assign_topk: int = 9,
        **kwargs,
) -> nn.Module:
    """MAYOR (`variant='mayor'`) or the plain Mask R-CNN text baseline (`'text_mask_rcnn'`) on any zoo /
    timm backbone, one text class. The switches (module docstring) default to the variant's values;
    `**kwargs` go to `build_detector('mask_rcnn', ...)` (backbone, FPN, RoIAlign and torchvision settings);
    `num_classes`, if given, must be 1."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown text detector '{variant}'; choose from {', '.join(VARIANTS)}")
    s = dict(VARIANTS[variant])
    for key, value in (('assignment', assignment), ('mask_decoder', mask_decoder),
                       ('mask_target_frame', mask_target_frame), ('mask_dice_weight', mask_dice_weight),
                       ('polygon_keep', polygon_keep)):
        if value is not None:
            s[key] = value
    if s['assignment'] not in ('adaptive', 'iou'):
        raise ValueError(f"assignment must be 'adaptive' or 'iou', got '{s['assignment']}'")
    if s['mask_decoder'] not in ('mlp', 'deconv'):
        raise ValueError(f"mask_decoder must be 'mlp' or 'deconv', got '{s['mask_decoder']}'")
    if s['polygon_keep'] not in ('largest', 'all'):
        raise ValueError(f"polygon_keep must be 'largest' or 'all', got '{s['polygon_keep']}'")

    if s['assignment'] == 'adaptive':  # one square anchor per location, side 8 x stride (P2..P6)
        kwargs.setdefault('anchor_sizes', [(8 * 4 * 2 ** i,) for i in range(5)])
        kwargs.setdefault('aspect_ratios', (1.0,))
    else:  # mmocr's Mask R-CNN text anchors: scale 4 x stride, five ratios
        kwargs.setdefault('anchor_sizes', [(4 * 4 * 2 ** i,) for i in range(5)])
        kwargs.setdefault('aspect_ratios', MMOCR_ANCHOR_RATIOS)
    num_classes = kwargs.pop('num_classes', 1)
    if num_classes != 1:
        raise InputError(f"'{variant}' detects one class (text), got num_classes={num_classes}")
    model = build_detector('mask_rcnn', backbone, num_classes=1, **kwargs)

    rpn = model.rpn
    if s['assignment'] == 'adaptive':
        if any(len(a) != 1 for a in rpn.anchor_generator.sizes) or any(
                len(r) != 1 for r in rpn.anchor_generator.aspect_ratios):
            raise ValueError('adaptive assignment takes one anchor (one size, one ratio) per level')
        rpn = AdaptiveAssignmentRPN(
            rpn.anchor_generator, rpn.head, 0.7, 0.3, rpn.fg_bg_sampler.batch_size_per_image,
            rpn.fg_bg_sampler.positive_fraction, rpn._pre_nms_top_n, rpn._post_nms_top_n, rpn.nms_thresh,
            rpn.score_thresh, assigner=AdaptiveAnchorAssigner(assign_topk))
    heads = model.roi_heads
    width = model.backbone.out_channels  # FPN width: 256 in the spec
    if s['mask_decoder'] == 'mlp':
        predictor = MLPMaskDecoder(width, 64, heads.mask_roi_pool.output_size[0], 1024, 28)
    else:
        predictor = MaskRCNNPredictor(width, 256, 1)
    roi_heads = TextRoIHeads(
        heads.box_roi_pool, heads.box_head, heads.box_predictor,
        heads.proposal_matcher.high_threshold, heads.proposal_matcher.low_threshold,
        heads.fg_bg_sampler.batch_size_per_image, heads.fg_bg_sampler.positive_fraction,
        heads.box_coder.weights, heads.score_thresh, heads.nms_thresh, heads.detections_per_img,
        mask_roi_pool=heads.mask_roi_pool, mask_head=MaskRCNNHeads(width, [width] * 4, 1), mask_predictor=predictor,
        mask_target_frame=s['mask_target_frame'], mask_dice_weight=s['mask_dice_weight'])
    model.rpn, model.roi_heads = rpn, roi_heads
    model.detector_kind = 'text'
    model.text_variant = variant
    model.text_settings = s
    return model


# ---- post-processing ------------------------------------------------------------------------------
def _contours(binary: np.ndarray) -> List[np.ndarray]:
    import cv2

    found, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return list(found)


def masks_to_polygons(binary: np.ndarray, keep: str = 'largest', mode: str = 'poly') -> List[np.ndarray]:
    """Polygons ((N, 2) float x, y) of one binary mask's external contours: the largest or all; fewer
    than 3 points dropped; `mode='quad'` returns each contour's minimum-area rectangle."""
    import cv2

    contours = _contours(np.ascontiguousarray(binary, dtype=np.uint8))
    if keep == 'largest' and contours:
        contours = [max(contours, key=cv2.contourArea)]
    polygons = []
    for c in contours:
        if len(c) < 3:
            continue
        if mode == 'quad':
            polygons.append(cv2.boxPoints(cv2.minAreaRect(c)).astype(np.float32))
        else:
            polygons.append(c[:, 0, :].astype(np.float32))
    return polygons


def _paste_in_box(prob: Tensor, box: Tensor, image_size: Tuple[int, int]) -> Tuple[Tensor, int, int]:
    """torchvision's paste (1-pixel padding, bilinear to the integer box), into the box's own window
    clipped to the image; returns the window and its top-left corner."""
    m = prob.shape[-1]
    padded = F.pad(prob[None, None], (1, 1, 1, 1))
    scale = (m + 2) / m
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    hw, hh = (box[2] - box[0]) / 2 * scale, (box[3] - box[1]) / 2 * scale
    # integer corners truncated toward zero, as torchvision's paste_masks_in_image
    x0, y0, x1, y1 = (int(v) for v in torch.stack([cx - hw, cy - hh, cx + hw, cy + hh]).tolist())
    w, h = max(x1 - x0 + 1, 1), max(y1 - y0 + 1, 1)
    window = F.interpolate(padded, size=(h, w), mode='bilinear', align_corners=False)[0, 0]
    H, W = image_size
    cx0, cy0 = max(x0, 0), max(y0, 0)
    cx1, cy1 = min(x0 + w, W), min(y0 + h, H)
    return window[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0], cx0, cy0


def detections_to_polygons(output: Dict[str, Tensor], image_size: Tuple[int, int], keep: str = 'largest',
                           mode: str = 'poly', mask_thr: float = 0.5) -> Dict[str, object]:
    """One image's detector output (`boxes`, `scores`, `mask_probs`) as text polygons: a dict with
    `polygons` (list of (N, 2) arrays in image pixels) and `scores` (the box scores, one per polygon)."""
    polygons, scores = [], []
    boxes = output['boxes'].detach().float().cpu()
    probs = output['mask_probs'].detach().float().cpu()
    for box, prob, score in zip(boxes, probs, output['scores'].detach().float().cpu().tolist()):
        window, x0, y0 = _paste_in_box(prob[0], box, image_size)
        if window.numel() == 0:
            continue
        for poly in masks_to_polygons((window >= mask_thr).numpy().astype(np.uint8), keep, mode):
            polygons.append(poly + np.array([x0, y0], dtype=np.float32))
            scores.append(score)
    return dict(polygons=polygons, scores=np.asarray(scores, dtype=np.float32))
