"""A COCO-format dataset of procedurally drawn shapes, for tests and smoke runs without COCO.

`make_synthetic_coco(root, num_train=..., num_val=..., seed=0)` writes

    root/train/000000.png ...          root/val/000000.png ...
    root/annotations/instances_train.json, root/annotations/instances_val.json

Each image is a smooth random background with up to `max_objects` filled shapes of four classes
(circle, rectangle, triangle, star), in random colours (the class is the shape, not the colour), sizes
spread log-uniformly over `scale_range` (a fraction of the shorter image side), drawn one over another
so later shapes occlude earlier ones. Annotations follow COCO:

* an unoccluded object has its exact `polygon` as segmentation; an occluded one the RLE of its visible
  part (compressed `counts`), so both formats occur; `bbox` and `area` are those of the visible part;
* objects less than `min_visible` visible are dropped;
* with probability `crowd_prob` an image gets a crowd region (`iscrowd=1`, RLE) of small dots;
* with probability `empty_prob` an image has no object at all.

Everything depends only on `seed` (one numpy generator per image), so the same call writes the same files.
"""
import json
import math
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw

__all__ = ['CATEGORIES', 'make_synthetic_coco', 'synthetic_image']

CATEGORIES = [
    dict(id=1, name='circle', supercategory='shape'),
    dict(id=2, name='rectangle', supercategory='shape'),
    dict(id=3, name='triangle', supercategory='shape'),
    dict(id=4, name='star', supercategory='shape'),
]


def _polygon(kind: str, cx: float, cy: float, r: float, rng: np.random.Generator) -> List[Tuple[float, float]]:
    rot = rng.uniform(0, 2 * math.pi)
    if kind == 'circle':
        n, radii = 32, [r] * 32
        rot = 0.0
    elif kind == 'rectangle':
        aspect = rng.uniform(0.5, 1.0)
        a, b = r, r * aspect
        corners = [(-a, -b), (a, -b), (a, b), (-a, b)]
        c, s = math.cos(rot), math.sin(rot)
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in corners]
    elif kind == 'triangle':
        n, radii = 3, [r] * 3
    elif kind == 'star':
        n, radii = 10, [r if k % 2 == 0 else r * 0.45 for k in range(10)]
    else:
        raise ValueError(kind)
    return [(cx + radii[k] * math.cos(rot + 2 * math.pi * k / n), cy + radii[k] * math.sin(rot + 2 * math.pi * k / n))
            for k in range(n)]


def _mask_of(poly: Sequence[Tuple[float, float]], w: int, h: int) -> np.ndarray:
    canvas = Image.new('L', (w, h), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in poly], fill=1)
    return np.asarray(canvas, dtype=np.uint8)


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    t = np.linspace(0, 1, w)[None, :, None] if rng.random() < 0.5 else np.linspace(0, 1, h)[:, None, None]
    img = c0 * (1 - t) + c1 * t
    img = np.broadcast_to(img, (h, w, 3)) + rng.normal(0, 8, (h, w, 3))
    return np.clip(img, 0, 255)


def synthetic_image(
        rng: np.random.Generator,
        size: Tuple[int, int],
        max_objects: int = 6,
        scale_range: Tuple[float, float] = (0.08, 0.45),
        min_visible: float = 0.3,
        crowd_prob: float = 0.05,
        empty_prob: float = 0.05,
) -> Tuple[np.ndarray, List[Dict]]:
    """One (H x W x 3 uint8 image, annotations without ids) pair."""
    from pycocotools import mask as mask_utils

    h, w = size
    img = _background(rng, w, h)
    n = 0 if rng.random() < empty_prob else int(rng.integers(1, max_objects + 1))
    shapes = []
    side = min(h, w)
    for _ in range(n):
        cat = int(rng.integers(len(CATEGORIES)))
        r = side * math.exp(rng.uniform(math.log(scale_range[0]), math.log(scale_range[1]))) / 2
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        poly = _polygon(CATEGORIES[cat]['name'], cx, cy, r, rng)
        colour = rng.uniform(0, 255, 3)
        full = _mask_of(poly, w, h)
        if full.sum() < 16:
            continue
        img[full.astype(bool)] = colour * rng.uniform(0.85, 1.0) + rng.normal(0, 4, 3)
        shapes.append(dict(cat=cat, poly=poly, full=full))
    # visibility: everything drawn later covers what was drawn before
    covered = np.zeros((h, w), dtype=bool)
    anns = []
    for s in reversed(shapes):
        visible = s['full'].astype(bool) & ~covered
        covered |= s['full'].astype(bool)
        area = int(visible.sum())
        if area < min_visible * s['full'].sum() or area < 16:
            continue
        ys, xs = np.nonzero(visible)
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        if area == int(s['full'].sum()):
            inside = [(min(max(x, 0), w), min(max(y, 0), h)) for x, y in s['poly']]
            seg = [[round(float(v), 2) for p in inside for v in p]]
        else:
            rle = mask_utils.encode(np.asfortranarray(visible.astype(np.uint8)))
            seg = dict(size=[h, w], counts=rle['counts'].decode('ascii'))
        anns.append(dict(category_id=CATEGORIES[s['cat']]['id'], segmentation=seg, area=float(area),
                         bbox=[float(x0), float(y0), float(x1 - x0), float(y1 - y0)], iscrowd=0))
    anns.reverse()
    if rng.random() < crowd_prob:  # a crowd of small dots, annotated as one iscrowd region
        crowd = np.zeros((h, w), dtype=np.uint8)
        gx, gy = rng.uniform(0, w * 0.7), rng.uniform(0, h * 0.7)
        for _ in range(int(rng.integers(5, 12))):
            dx, dy = gx + rng.uniform(0, w * 0.3), gy + rng.uniform(0, h * 0.3)
            dot = _polygon('circle', dx, dy, side * 0.02, rng)
            crowd |= _mask_of(dot, w, h)
        crowd &= ~covered
        if crowd.sum() >= 16:
            img[crowd.astype(bool)] = rng.uniform(0, 255, 3)
            ys, xs = np.nonzero(crowd)
            rle = mask_utils.encode(np.asfortranarray(crowd))
            anns.append(dict(category_id=CATEGORIES[0]['id'],
                             segmentation=dict(size=[h, w], counts=rle['counts'].decode('ascii')),
                             area=float(crowd.sum()),
                             bbox=[float(xs.min()), float(ys.min()), float(xs.max() + 1 - xs.min()),
                                   float(ys.max() + 1 - ys.min())], iscrowd=1))
    return np.clip(img, 0, 255).astype(np.uint8), anns


def write_jittered_images(folder: Path, count: int, seed: int, split_id: int, image_size: Tuple[int, int],
                          size_jitter: float, draw: Callable, **save_kwargs) -> Iterator[Tuple[str, int, int, tuple]]:
    """Draws `count` images into `folder` as 000000.png ...: image i comes from its own generator
    (seed, split_id, i), so any one can be rebuilt alone, with sides jittered by up to +-`size_jitter`;
    `draw(rng, (h, w))` returns (uint8 image, *extras). Yields (file name, h, w, extras) per image."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        rng = np.random.default_rng([seed, split_id, i])
        h = int(round(image_size[0] * rng.uniform(1 - size_jitter, 1 + size_jitter)))
        w = int(round(image_size[1] * rng.uniform(1 - size_jitter, 1 + size_jitter)))
        img, *extras = draw(rng, (h, w))
        name = f'{i:06d}.png'
        Image.fromarray(img).save(folder / name, **save_kwargs)
        yield name, h, w, tuple(extras)


def make_synthetic_coco(
        root: Union[str, Path],
        num_train: int = 200,
        num_val: int = 50,
        image_size: Union[int, Tuple[int, int]] = (192, 256),
        size_jitter: float = 0.25,
        seed: int = 0,
        **image_kwargs,
) -> Dict[str, Path]:
    """Write the dataset under `root`; returns the paths of the image folders and annotation files.

    `image_size` is (H, W) or a side; each image's sides vary by up to +-`size_jitter` of it (so aspect
    ratios vary too). `**image_kwargs` go to `synthetic_image` (max_objects, scale_range, min_visible,
    crowd_prob, empty_prob).
    """
    root = Path(root)
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    (root / 'annotations').mkdir(parents=True, exist_ok=True)
    out: Dict[str, Path] = {}
    for split_id, (split, count) in enumerate((('train', num_train), ('val', num_val))):
        folder = root / split
        images, annotations = [], []
        draw = lambda rng, size: synthetic_image(rng, size, **image_kwargs)  # noqa: E731
        for i, (name, h, w, (anns,)) in enumerate(
                write_jittered_images(folder, count, seed, split_id, image_size, size_jitter, draw)):
            image_id = i + 1
            images.append(dict(id=image_id, file_name=name, height=h, width=w))
            for a in anns:
                annotations.append(dict(id=len(annotations) + 1, image_id=image_id, **a))
        ann_file = root / 'annotations' / f'instances_{split}.json'
        tmp = ann_file.with_suffix('.json.tmp')
        tmp.write_text(json.dumps(dict(
            info=dict(description=f'zoo synthetic shapes, seed {seed}'), licenses=[],
            images=images, annotations=annotations, categories=CATEGORIES)))
        tmp.replace(ann_file)
        out[f'{split}_images'] = folder
        out[f'{split}_annotations'] = ann_file
    return out
