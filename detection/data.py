"""COCO datasets for the detectors: pycocotools I/O, `transforms.v2` with `tv_tensors`, grouped batching.

`CocoDetection(images, annotations)` yields `(image, target)`: a float image in [0, 1] (`tv_tensors.Image`)
and a dict with `boxes` (`tv_tensors.BoundingBoxes`, XYXY, pixels), `labels` (1..K, contiguous over the
sorted category ids; `label_to_cat_id` maps back), `masks` (`tv_tensors.Mask`, one per box, from
polygons, RLE or uncompressed RLE through pycocotools), `image_id`, `area` and `iscrowd`.

Documented skips (counted in `dataset.skipped`, logged once at INFO level, and written to the run's
metrics log by the engine):

* crowd regions (`iscrowd=1`) are not training targets (COCOeval reads them from the GT file and ignores
  detections on them); `keep_crowd=True` keeps them, flagged in `iscrowd`;
* degenerate boxes (width or height below 1 pixel after clipping to the image) are dropped;
* images without annotations are kept (the detectors accept empty targets) unless `remove_empty=True`.

Clear errors (`DatasetError`, an `InputError`, naming the file and the entry): an annotation file that is
not JSON or lacks `images` / `annotations` / `categories`, an annotation without a `bbox` of 4 finite
numbers (width and height >= 0), with a polygon of non-finite or too few coordinates, or with an
unknown `category_id` or `image_id`, and image files that are missing (checked when the dataset is
built, `check_files=True`) or unreadable.
"""
import bisect
import contextlib
import io
import json
import math
import logging
from collections import defaultdict
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, Sampler
from torchvision import tv_tensors
from torchvision.transforms import v2

from zoo.errors import InputError

_logger = logging.getLogger(__name__)

__all__ = ['DatasetError', 'CocoDetection', 'build_transforms', 'GroupedBatchSampler', 'aspect_ratio_groups',
           'collate']


class DatasetError(InputError):
    """The dataset cannot be read as given; the message names the file and the entry."""


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_segmentation(ann_file: Path, aid, seg) -> None:
    """A COCO segmentation: polygons (lists of >= 3 finite x, y pairs) or an RLE dict with size and counts."""
    if seg is None or seg == []:
        return
    if isinstance(seg, dict):
        if not ('counts' in seg and isinstance(seg.get('size'), list) and len(seg['size']) == 2):
            raise DatasetError(f'{ann_file}: annotation {aid} has an RLE segmentation without size [h, w] and counts')
        return
    if not isinstance(seg, list):
        raise DatasetError(f'{ann_file}: annotation {aid} has a segmentation of type {type(seg).__name__}; '
                           'expected polygons [[x1, y1, x2, y2, ...], ...] or RLE')
    for k, poly in enumerate(seg):
        if not (isinstance(poly, list) and len(poly) >= 6 and len(poly) % 2 == 0):
            n = len(poly) if isinstance(poly, list) else type(poly).__name__
            raise DatasetError(f'{ann_file}: annotation {aid}, polygon {k} needs an even number (>= 6) of '
                               f'coordinates, got {n}')
        bad = [v for v in poly if not _is_number(v)]
        if bad:
            raise DatasetError(f'{ann_file}: annotation {aid}, polygon {k} has a non-finite or non-numeric '
                               f'coordinate ({bad[0]!r})')


def _load_coco(ann_file: Path):
    from pycocotools.coco import COCO

    if not ann_file.is_file():
        raise DatasetError(f'annotation file not found: {ann_file}')
    try:
        data = json.loads(ann_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f'annotation file {ann_file} is not valid JSON: {e}') from e
    if not isinstance(data, dict):
        raise DatasetError(f'annotation file {ann_file} is not a COCO dict (top level is {type(data).__name__})')
    missing = [k for k in ('images', 'annotations', 'categories') if not isinstance(data.get(k), list)]
    if missing:
        raise DatasetError(f"annotation file {ann_file} lacks the COCO list(s) {missing} (keys: {sorted(data)})")
    image_ids = {img.get('id') for img in data['images']}
    cat_ids = {c.get('id') for c in data['categories']}
    for img in data['images']:
        if not {'id', 'file_name', 'height', 'width'} <= set(img):
            raise DatasetError(f'{ann_file}: image entry {img} needs id, file_name, height and width')
    for a in data['annotations']:
        aid = a.get('id')
        bbox = a.get('bbox')
        if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
            raise DatasetError(f'{ann_file}: annotation {aid} has no valid bbox [x, y, w, h] of 4 finite numbers '
                               f'(got {bbox!r})')
        if bbox[2] < 0 or bbox[3] < 0:
            raise DatasetError(f'{ann_file}: annotation {aid} has a negative width or height in bbox {bbox!r} '
                               '(COCO boxes are [x, y, width, height])')
        _check_segmentation(ann_file, aid, a.get('segmentation'))
        if a.get('category_id') not in cat_ids:
            raise DatasetError(f"{ann_file}: annotation {aid} has category_id {a.get('category_id')!r}, "
                               f'not among the categories {sorted(cat_ids)}')
        if a.get('image_id') not in image_ids:
            raise DatasetError(f"{ann_file}: annotation {aid} refers to image_id {a.get('image_id')!r}, "
                               'which is not in images')
        a.setdefault('iscrowd', 0)
        a.setdefault('area', float(bbox[2] * bbox[3]))
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco


class CocoDetection(Dataset):
    """COCO boxes and masks as torchvision's detectors take them (see the module docstring)."""

    def __init__(
            self,
            images: Union[str, Path],
            annotations: Union[str, Path],
            transforms: Optional[Callable] = None,
            with_masks: bool = True,
            keep_crowd: bool = False,
            remove_empty: bool = False,
            check_files: bool = True,
    ):
        self.root = Path(images)
        self.ann_file = Path(annotations)
        self.coco = _load_coco(self.ann_file)
        self.transforms = transforms
        self.with_masks = with_masks
        self.keep_crowd = keep_crowd
        self.cat_ids = sorted(self.coco.getCatIds())
        self.cat_id_to_label = {c: i + 1 for i, c in enumerate(self.cat_ids)}
        self.label_to_cat_id = {i + 1: c for i, c in enumerate(self.cat_ids)}
        self.class_names = [self.coco.cats[c]['name'] for c in self.cat_ids]
        ids = sorted(self.coco.imgs)
        if remove_empty:
            ids = [i for i in ids if any(not a.get('iscrowd', 0) for a in self.coco.imgToAnns.get(i, []))]
        self.ids = ids
        self.skipped: Dict[str, int] = defaultdict(int)
        self._warned = False
        if check_files:
            missing = [self.coco.imgs[i]['file_name'] for i in self.ids
                       if not (self.root / self.coco.imgs[i]['file_name']).is_file()]
            if missing:
                raise DatasetError(f'{len(missing)} image file(s) listed in {self.ann_file} are missing under '
                                   f'{self.root}, e.g. {missing[:3]}')

    def __len__(self) -> int:
        return len(self.ids)

    def aspect_ratios(self) -> List[float]:
        """width / height of every image, from the annotation file (no image is read)."""
        return [self.coco.imgs[i]['width'] / self.coco.imgs[i]['height'] for i in self.ids]

    def load_image(self, image_id: int) -> Image.Image:
        path = self.root / self.coco.imgs[image_id]['file_name']
        try:
            with Image.open(path) as im:
                return im.convert('RGB')
        except FileNotFoundError as e:
            raise DatasetError(f'image {image_id} not found: {path}') from e
        except (UnidentifiedImageError, OSError) as e:
            raise DatasetError(f'image {image_id} cannot be read ({path}): {e}') from e

    def target_of(self, image_id: int, height: int, width: int) -> Dict:
        boxes, labels, masks, areas, crowd = [], [], [], [], []
        for a in self.coco.imgToAnns.get(image_id, []):
            if a.get('iscrowd', 0) and not self.keep_crowd:
                self.skipped['crowd'] += 1
                continue
            x, y, w, h = a['bbox']
            x0, y0 = min(max(x, 0), width), min(max(y, 0), height)
            x1, y1 = min(max(x + w, 0), width), min(max(y + h, 0), height)
            if x1 - x0 < 1 or y1 - y0 < 1:
                self.skipped['degenerate box'] += 1
                continue
            boxes.append([x0, y0, x1, y1])
            labels.append(self.cat_id_to_label[a['category_id']])
            areas.append(float(a.get('area', w * h)))
            crowd.append(int(a.get('iscrowd', 0)))
            if self.with_masks:
                if a.get('segmentation'):
                    masks.append(self.coco.annToMask(a))
                else:  # no segmentation: the box as its mask
                    m = np.zeros((height, width), dtype=np.uint8)
                    m[int(y0):int(math.ceil(y1)), int(x0):int(math.ceil(x1))] = 1
                    masks.append(m)
        if self.skipped and not self._warned:
            self._warned = True
            # documented behaviour, not a problem to warn about: logged once (the engine logs the counts)
            _logger.info('%s: skipping %s annotation(s) so far (crowd regions and degenerate boxes are not '
                          'training targets)', self.ann_file.name, dict(self.skipped))
        target = dict(
            boxes=tv_tensors.BoundingBoxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                                           format='XYXY', canvas_size=(height, width)),
            labels=torch.tensor(labels, dtype=torch.int64),
            image_id=image_id,
            area=torch.tensor(areas, dtype=torch.float32),
            iscrowd=torch.tensor(crowd, dtype=torch.int64),
        )
        if self.with_masks:
            target['masks'] = tv_tensors.Mask(
                torch.from_numpy(np.stack(masks)) if masks else torch.zeros((0, height, width), dtype=torch.uint8))
        return target

    def __getitem__(self, index: int):
        image_id = self.ids[index]
        pil = self.load_image(image_id)
        info = self.coco.imgs[image_id]
        if (pil.height, pil.width) != (info['height'], info['width']):
            raise DatasetError(f"image {image_id} ({info['file_name']}) is {pil.width}x{pil.height}, but "
                               f"{self.ann_file.name} says {info['width']}x{info['height']}")
        image = tv_tensors.Image(torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1))
        target = self.target_of(image_id, pil.height, pil.width)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        else:
            image = v2.functional.to_dtype(image, torch.float32, scale=True)
        return image, target


def _per_box_getter(inputs):
    """The per-box plain tensors SanitizeBoundingBoxes must filter along with the boxes."""
    target = next((x for x in (inputs if isinstance(inputs, (tuple, list)) else (inputs,)) if isinstance(x, dict)), None)
    if target is None:
        return None
    return tuple(target[k] for k in ('labels', 'area', 'iscrowd') if k in target)


def build_transforms(
        train: bool,
        min_size: int = 800,
        max_size: int = 1333,
        flip_prob: float = 0.5,
        color_jitter: float = 0.0,
        resize: bool = True,
) -> v2.Compose:
    """mmdet's pipeline in transforms.v2: keep-ratio resize (shorter side `min_size`, longer at most
    `max_size`, i.e. 1333x800), horizontal flip and optional photometric jitter when training, then a
    float image in [0, 1]; in training, boxes that become degenerate are removed (`SanitizeBoundingBoxes`).
    `resize=False` leaves the size to the detector, which then returns outputs in original image
    coordinates (what evaluation and prediction want)."""
    ops: List = [v2.Resize(min_size, max_size=max_size, antialias=True)] if resize else []
    if train:
        if flip_prob > 0:
            ops.append(v2.RandomHorizontalFlip(flip_prob))
        if color_jitter > 0:
            ops.append(v2.ColorJitter(brightness=color_jitter, contrast=color_jitter,
                                      saturation=color_jitter, hue=min(color_jitter / 4, 0.5)))
    ops.append(v2.ToDtype(torch.float32, scale=True))
    if train:
        ops.append(v2.SanitizeBoundingBoxes(min_size=1, labels_getter=_per_box_getter))
    return v2.Compose(ops)


def aspect_ratio_groups(aspect_ratios: Sequence[float], bins: Sequence[float] = (1.0,)) -> List[int]:
    """Group index of each image: which of the sorted `bins` edges its width/height falls between
    (default: portrait vs landscape, as mmdet's GroupSampler)."""
    edges = sorted(bins)
    return [bisect.bisect_right(edges, r) for r in aspect_ratios]


class GroupedBatchSampler(Sampler[List[int]]):
    """Batches whose images share an aspect-ratio group, drawn in the order of `sampler` (which may be
    a `DistributedSampler`).

    The number of batches is always ceil(len(sampler) / batch_size) (floor with `drop_last`): what is
    left in the groups at the end is batched together in group order, so those last batches may mix
    groups. Every DDP rank therefore runs the same number of iterations (unequal counts would hang
    the gradient all-reduce).
    """

    def __init__(self, sampler: Sampler, group_ids: Sequence[int], batch_size: int, drop_last: bool = False):
        if batch_size < 1:
            raise ValueError(f'batch_size must be positive, got {batch_size}')
        self.sampler = sampler
        self.group_ids = list(group_ids)
        self.batch_size = batch_size
        self.drop_last = drop_last

    def __iter__(self) -> Iterator[List[int]]:
        buffers: Dict[int, List[int]] = defaultdict(list)
        for idx in self.sampler:
            g = self.group_ids[idx]
            buffers[g].append(idx)
            if len(buffers[g]) == self.batch_size:
                yield buffers.pop(g)
        rest = [i for g in sorted(buffers) for i in buffers[g]]
        for start in range(0, len(rest), self.batch_size):
            batch = rest[start:start + self.batch_size]
            if len(batch) == self.batch_size or not self.drop_last:
                yield batch

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, 'set_epoch'):
            self.sampler.set_epoch(epoch)


def collate(batch):
    """A list of images and a list of targets (images of different sizes stay separate)."""
    return tuple(zip(*batch))
