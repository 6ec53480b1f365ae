"""Face-parsing data: a procedural synthetic face set, folder datasets (iBugMask, LaPa, CelebAMask-HQ),
and the Tanh-polar warp of an (image, label map, box) sample for training.

Synthetic faces: an ellipse of skin with a hair cap, brows, eyes, nose and lips, each an ellipse in a
canonical face frame, drawn with a random pose (in-plane angle), scale, position and colours over a
noisy background. Labels follow the 11-class iBugMask layout (`segmentation.rtnet.LABELS_11`); the box
is the face ellipse's bounding box, jittered. Deterministic per (seed, index).
"""
import json
import math
from pathlib import Path
from typing import Dict, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from segmentation.roi_tanh import roi_tanh_polar_warp

__all__ = ['render_synthetic_faces', 'SyntheticFaces', 'FaceParsingFolder', 'warp_sample', 'CELEBAMASK_TO_11']

# canonical face frame: x right, y down, face ellipse semi-axes (0.72, 0.95) around the origin.
# (label, centre x, centre y, semi-axis x, semi-axis y); later entries paint over earlier ones.
# "left" is the person's left (the image's right).
_PARTS = (
    (2, 0.30, -0.36, 0.18, 0.05), (3, -0.30, -0.36, 0.18, 0.05),   # brows
    (4, 0.30, -0.18, 0.13, 0.07), (5, -0.30, -0.18, 0.13, 0.07),   # eyes
    (6, 0.0, 0.10, 0.09, 0.20),                                    # nose
    (7, 0.0, 0.44, 0.24, 0.06), (9, 0.0, 0.56, 0.22, 0.07),        # upper / lower lip
    (8, 0.0, 0.50, 0.18, 0.025),                                   # inner mouth
)
_FACE_AXES = (0.72, 0.95)
_BASE_COLOURS = np.array([
    (0, 0, 0), (225, 180, 150), (70, 45, 30), (70, 45, 30), (250, 250, 250), (250, 250, 250),
    (205, 150, 125), (180, 70, 80), (60, 20, 25), (170, 65, 75), (50, 35, 25)], dtype=np.float32)


def _in_ellipse(u, v, cx, cy, ax, ay):
    return ((u - cx) / ax) ** 2 + ((v - cy) / ay) ** 2 <= 1.0


def render_synthetic_faces(rng: np.random.Generator, size: Tuple[int, int] = (128, 128), num_faces: int = 1,
                           scale_range: Tuple[float, float] = (0.18, 0.32), max_angle: float = 45.0,
                           ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image [H, W, 3] uint8 RGB, labels [H, W] int64, boxes [num_faces, 4] float32 x1 y1 x2 y2).

    scale_range: the face's half-height as a fraction of the image height.
    """
    h, w = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    bg = rng.uniform(40, 220, size=3).astype(np.float32)
    grad = rng.uniform(-40, 40, size=3).astype(np.float32)
    image = bg + grad * (x / w)[..., None] + rng.normal(0, 12, size=(h, w, 3)).astype(np.float32)
    labels = np.zeros((h, w), dtype=np.int64)
    boxes = []
    for _ in range(num_faces):
        s = rng.uniform(*scale_range) * h / _FACE_AXES[1]
        angle = math.radians(rng.uniform(-max_angle, max_angle))
        cx, cy = rng.uniform(0.3 * w, 0.7 * w), rng.uniform(0.3 * h, 0.7 * h)
        if num_faces > 1:
            cx, cy = rng.uniform(0.15 * w, 0.85 * w), rng.uniform(0.15 * h, 0.85 * h)
        ca, sa = math.cos(angle), math.sin(angle)
        u = (ca * (x - cx) + sa * (y - cy)) / s  # canonical coordinates (inverse rotation)
        v = (-sa * (x - cx) + ca * (y - cy)) / s
        colours = _BASE_COLOURS * rng.uniform(0.75, 1.15, size=(len(_BASE_COLOURS), 1)).astype(np.float32)
        colours[10] = rng.uniform(10, 200, size=3)  # hair colour varies most
        face = _in_ellipse(u, v, 0.0, 0.0, *_FACE_AXES)
        hair = _in_ellipse(u, v, 0.0, -0.15, 0.92, 1.05) & ~face & (v < 0.25 + 0.2 * rng.uniform())
        part = np.zeros((h, w), dtype=np.int64)
        part[hair] = 10
        part[face] = 1
        for label, px, py, ax, ay in _PARTS:
            part[face & _in_ellipse(u, v, px, py, ax, ay)] = label
        drawn = part > 0
        labels[drawn] = part[drawn]
        image[drawn] = colours[part[drawn]] + rng.normal(0, 8, size=(int(drawn.sum()), 3))
        # box: bounding box of the rotated face ellipse, jittered by up to 5% of its size
        ex, ey = s * _FACE_AXES[0], s * _FACE_AXES[1]
        hw = math.sqrt((ex * ca) ** 2 + (ey * sa) ** 2)
        hh = math.sqrt((ex * sa) ** 2 + (ey * ca) ** 2)
        jitter = rng.uniform(-0.05, 0.05, size=4) * np.array([hw, hh, hw, hh]) * 2
        boxes.append(np.array([cx - hw, cy - hh, cx + hw, cy + hh]) + jitter)
    return image.clip(0, 255).astype(np.uint8), labels, np.asarray(boxes, dtype=np.float32)


class SyntheticFaces(Dataset):
    """`length` procedural faces (one per image); item: dict(image [3, H, W] float RGB in [0, 1],
    labels [H, W] int64, box [4] float32)."""
    num_classes = 11

    def __init__(self, length: int = 256, size: Tuple[int, int] = (128, 128), seed: int = 0, **render_kwargs):
        self.length, self.size, self.seed, self.render_kwargs = length, tuple(size), seed, render_kwargs

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        image, labels, boxes = render_synthetic_faces(rng, self.size, **self.render_kwargs)
        return dict(image=torch.from_numpy(image).permute(2, 0, 1).float() / 255.0,
                    labels=torch.from_numpy(labels), box=torch.from_numpy(boxes[0]))


# CelebAMask-HQ's 19 classes (common ordering, unverified) -> the 11-class layout (hat/ears/neck/cloth ...
# -> background; eye glasses -> background)
CELEBAMASK_TO_11 = (0, 1, 6, 0, 4, 5, 2, 3, 0, 0, 8, 7, 9, 10, 0, 0, 0, 0, 0)


class FaceParsingFolder(Dataset):
    """Images, label maps and face boxes from a folder.

    Layouts (`layout`):
      * 'ibugmask' / 'lapa': `<root>/<split>/images/*.jpg|png`, `<root>/<split>/labels/<stem>.png` (label
        ids as pixel values); LaPa's `landmarks/<stem>.txt` are not needed;
      * 'celebamask': `<root>/CelebA-HQ-img/<id>.jpg` and `<root>/labels/<id>.png` holding the 19-class
        ids (merge the per-part masks into one map first), remapped to 11 classes unless `remap=False`.
    Boxes come from `<root>/<split>/boxes.json` ({stem: [x1, y1, x2, y2]}) when present, else from the
    bounding box of the non-background, non-hair labels (the face), enlarged by `box_scale`.
    Item: dict(image [3, H, W] float RGB in [0, 1], labels [H, W] int64, box [4]).
    """

    def __init__(self, root, split: str = 'train', layout: str = 'ibugmask', remap: bool = True,
                 box_scale: float = 1.0):
        from PIL import Image  # noqa: F401  (fail early without Pillow)
        self.root, self.layout, self.box_scale = Path(root), layout.lower(), box_scale
        if self.layout in ('ibugmask', 'lapa'):
            base = self.root / split
            suffixes = ('.jpg', '.jpeg', '.png')
            self.images = sorted(p for p in (base / 'images').iterdir() if p.suffix.lower() in suffixes)
            self.label_dir = base / 'labels'
            self.lut = None
        elif self.layout == 'celebamask':
            base = self.root
            self.images = sorted((base / 'CelebA-HQ-img').glob('*.jpg'))
            self.label_dir = base / 'labels'
            self.lut = np.asarray(CELEBAMASK_TO_11) if remap else None
        else:
            raise ValueError(f"layout must be 'ibugmask', 'lapa' or 'celebamask', not {layout!r}")
        boxes = base / 'boxes.json'
        self.boxes = json.loads(boxes.read_text()) if boxes.is_file() else {}
        self.num_classes = 11 if self.lut is not None or self.layout != 'celebamask' else 19

    def __len__(self) -> int:
        return len(self.images)

    def _box(self, stem: str, labels: np.ndarray) -> np.ndarray:
        if stem in self.boxes:
            return np.asarray(self.boxes[stem], dtype=np.float32)[:4]
        ys, xs = np.nonzero((labels > 0) & (labels != 10))
        if len(xs) == 0:
            h, w = labels.shape
            return np.array([0, 0, w, h], dtype=np.float32)
        x1, x2, y1, y2 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2 * self.box_scale, (y2 - y1) / 2 * self.box_scale
        return np.array([cx - hw, cy - hh, cx + hw, cy + hh], dtype=np.float32)

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        from PIL import Image
        path = self.images[index]
        image = np.asarray(Image.open(path).convert('RGB'))
        labels = np.asarray(Image.open(self.label_dir / (path.stem + '.png'))).astype(np.int64)
        if labels.ndim == 3:
            labels = labels[..., 0]
        if self.lut is not None:
            labels = self.lut[labels.clip(0, len(self.lut) - 1)]
        return dict(image=torch.from_numpy(image.copy()).permute(2, 0, 1).float() / 255.0,
                    labels=torch.from_numpy(labels), box=torch.from_numpy(self._box(path.stem, labels)))


def warp_sample(images: torch.Tensor, labels: torch.Tensor, boxes: torch.Tensor, size: Tuple[int, int],
                keep_aspect_ratio: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
    """Warp a batch (images [B, 3, H, W], labels [B, H, W], boxes [B, 4]) to Tanh-polar maps of `size`
    (height, width): bilinear for the images, nearest for the labels."""
    warped = roi_tanh_polar_warp(images, boxes, size[1], size[0], keep_aspect_ratio=keep_aspect_ratio)
    lab = roi_tanh_polar_warp(labels.unsqueeze(1).float(), boxes, size[1], size[0], interpolation='nearest',
                              keep_aspect_ratio=keep_aspect_ratio)
    return warped, lab.squeeze(1).round().long()


def collate(batch: Sequence[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """Stack samples of one size (the folder datasets' images differ in size: use batch_size 1 or resize)."""
    return {k: torch.stack([b[k] for b in batch]) for k in batch[0]}
