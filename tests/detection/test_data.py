import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import SequentialSampler
from torchvision import tv_tensors

pytest.importorskip('pycocotools')

from detection.data import (CocoDetection, DatasetError, GroupedBatchSampler, aspect_ratio_groups,  # noqa: E402
                            build_transforms, collate)
from detection.synthetic import make_synthetic_coco  # noqa: E402


@pytest.fixture(scope='module')
def synth(tmp_path_factory):
    return make_synthetic_coco(tmp_path_factory.mktemp('syn'), num_train=10, num_val=3, image_size=80,
                               seed=1, crowd_prob=0.5, empty_prob=0.4)


def _write(tmp_path, data, images=((1, 40, 30),)):
    (tmp_path / 'img').mkdir(exist_ok=True)
    for image_id, w, h in images:
        Image.new('RGB', (w, h), (100, 50, 20)).save(tmp_path / 'img' / f'{image_id}.png')
    ann = tmp_path / 'ann.json'
    ann.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return tmp_path / 'img', ann


def _coco(anns, images=None):
    return dict(images=images or [dict(id=1, file_name='1.png', width=40, height=30)],
                annotations=anns, categories=[dict(id=7, name='a'), dict(id=3, name='b')])


def test_targets_from_synthetic(synth):
    ds = CocoDetection(synth['train_images'], synth['train_annotations'],
                       transforms=build_transforms(True, 96, 128, color_jitter=0.2))
    assert ds.class_names == ['circle', 'rectangle', 'triangle', 'star']
    seen_empty = False
    for i in range(len(ds)):
        img, t = ds[i]
        assert isinstance(img, tv_tensors.Image) and img.dtype == torch.float32
        assert 0 <= img.min() and img.max() <= 1 and min(img.shape[-2:]) == 96 or max(img.shape[-2:]) == 128
        assert isinstance(t['boxes'], tv_tensors.BoundingBoxes) and isinstance(t['masks'], tv_tensors.Mask)
        n = len(t['boxes'])
        assert t['labels'].shape == (n,) and t['masks'].shape[0] == n and t['iscrowd'].sum() == 0
        assert t['masks'].shape[-2:] == img.shape[-2:]
        seen_empty |= n == 0
        if n:
            b = t['boxes']
            assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
            assert 1 <= t['labels'].min() and t['labels'].max() <= 4
    assert seen_empty
    assert ds.skipped['crowd'] > 0


def test_resize_keeps_ratio_like_1333x800():
    t = build_transforms(False, 800, 1333)
    img = tv_tensors.Image(torch.zeros(3, 480, 640, dtype=torch.uint8))
    assert t(img).shape[-2:] == (800, 1066)
    img = tv_tensors.Image(torch.zeros(3, 300, 1000, dtype=torch.uint8))
    assert t(img).shape[-2:] == (400, 1333)


def test_flip_moves_boxes_and_masks():
    from torchvision.transforms import v2
    img = tv_tensors.Image(torch.zeros(3, 10, 20, dtype=torch.uint8))
    mask = torch.zeros(1, 10, 20, dtype=torch.uint8)
    mask[0, 2:5, 1:4] = 1
    target = dict(boxes=tv_tensors.BoundingBoxes([[1., 2, 4, 5]], format='XYXY', canvas_size=(10, 20)),
                  labels=torch.tensor([1]), masks=tv_tensors.Mask(mask))
    _, out = v2.RandomHorizontalFlip(1.0)(img, target)
    assert out['boxes'].tolist() == [[16., 2, 19, 5]]
    assert out['masks'][0, 2:5, 16:19].all() and out['masks'].sum() == 9


def test_polygon_rle_crowd_and_degenerate(tmp_path, caplog, recwarn):
    caplog.set_level('INFO', logger='detection.data')
    from pycocotools import mask as mask_utils
    m = np.zeros((30, 40), dtype=np.uint8)
    m[5:10, 5:15] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    anns = [
        dict(id=1, image_id=1, category_id=7, bbox=[10, 10, 10, 10], segmentation=[[10, 10, 20, 10, 20, 20, 10, 20]]),
        dict(id=2, image_id=1, category_id=3, bbox=[5, 5, 10, 5],
             segmentation=dict(size=[30, 40], counts=rle['counts'].decode())),
        dict(id=3, image_id=1, category_id=3, bbox=[0, 0, 40, 30], iscrowd=1,
             segmentation=mask_utils.frPyObjects(dict(size=[30, 40], counts=[0, 1200]), 30, 40)),
        dict(id=4, image_id=1, category_id=7, bbox=[3, 3, 0.2, 5], segmentation=[]),  # degenerate
        dict(id=5, image_id=1, category_id=7, bbox=[35, 25, 20, 20]),  # clipped to the image, no segmentation
    ]
    anns[2]['segmentation']['counts'] = anns[2]['segmentation']['counts'].decode()
    ds = CocoDetection(*_write(tmp_path, _coco(anns)))
    img, t = ds[0]
    assert 'skipping' in caplog.text  # logged, not a warning that leaks to the console
    assert not [w for w in recwarn.list if issubclass(w.category, UserWarning)]
    assert t['labels'].tolist() == [2, 1, 2]  # category 7 -> 2, 3 -> 1 (sorted ids)
    assert ds.label_to_cat_id == {1: 3, 2: 7}
    assert t['boxes'].tolist()[2] == [35., 25., 40., 30.]
    assert t['masks'][1].sum() == 50 and t['masks'][2].sum() == 25
    assert dict(ds.skipped) == {'crowd': 1, 'degenerate box': 1}
    keep = CocoDetection(*_write(tmp_path, _coco(anns)), keep_crowd=True)
    assert keep[0][1]['iscrowd'].tolist() == [0, 0, 1, 0]


@pytest.mark.parametrize('content, match', [
    ('{not json', 'not valid JSON'),
    (dict(images=[]), 'lacks the COCO list'),
    (_coco([dict(id=9, image_id=1, category_id=7, bbox=[1, 2])]), 'annotation 9 has no valid bbox'),
    (_coco([dict(id=9, image_id=1, category_id=5, bbox=[1, 2, 3, 4])]), 'category_id 5'),
    (_coco([dict(id=9, image_id=2, category_id=7, bbox=[1, 2, 3, 4])]), 'image_id 2'),
    # json writes NaN / Infinity and Python reads them back: boxes and polygons must be finite numbers
    (_coco([dict(id=9, image_id=1, category_id=7, bbox=[1, float('nan'), 3, 4])]), r'annotation 9 .*finite.*nan'),
    (_coco([dict(id=9, image_id=1, category_id=7, bbox=[1, 2, 3, float('inf')])]), 'annotation 9 .*finite'),
    (_coco([dict(id=9, image_id=1, category_id=7, bbox=[1, 2, '3', 4])]), 'annotation 9 has no valid bbox'),
    (_coco([dict(id=9, image_id=1, category_id=7, bbox=[1, 2, -3, 4])]), 'annotation 9 has a negative width'),
    (_coco([dict(id=9, image_id=1, category_id=7, bbox=[1, 2, 3, 4], segmentation=[[1, 2, 3, 4, float('nan'), 6]])]),
     'annotation 9, polygon 0 has a non-finite'),
    (_coco([dict(id=9, image_id=1, category_id=7, bbox=[1, 2, 3, 4], segmentation=[[1, 2, 3, 4]])]),
     'annotation 9, polygon 0 needs an even number .* got 4'),
    (_coco([dict(id=9, image_id=1, category_id=7, bbox=[1, 2, 3, 4], segmentation={'counts': 'x'})]),
     'annotation 9 has an RLE segmentation without size'),
])
def test_malformed_annotation_files(tmp_path, content, match):
    with pytest.raises(DatasetError, match=match) as e:
        CocoDetection(*_write(tmp_path, content))
    assert 'ann.json' in str(e.value) and isinstance(e.value, ValueError)


def test_missing_images(tmp_path):
    images = [dict(id=1, file_name='1.png', width=40, height=30), dict(id=2, file_name='gone.png', width=4, height=3)]
    folder, ann = _write(tmp_path, _coco([], images))
    with pytest.raises(DatasetError, match=r"1 image file\(s\).*gone.png"):
        CocoDetection(folder, ann)
    ds = CocoDetection(folder, ann, check_files=False)
    with pytest.raises(DatasetError, match='not found'):
        ds[1]
    assert CocoDetection(folder, ann, check_files=False, remove_empty=True).ids == []


def test_grouped_batches():
    ratios = [1.5, 0.7, 1.2, 0.5, 2.0, 0.9, 1.1]
    groups = aspect_ratio_groups(ratios)
    assert groups == [1, 0, 1, 0, 1, 0, 1]
    sampler = GroupedBatchSampler(SequentialSampler(ratios), groups, 2)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(7))
    assert all(len({groups[i] for i in b}) == 1 for b in batches)
    assert len(sampler) == len(batches) == 4
    assert len(GroupedBatchSampler(SequentialSampler(ratios), groups, 2, drop_last=True)) == 3
    # leftovers of different groups are batched together: always ceil(n / batch_size) batches
    mixed = list(GroupedBatchSampler(SequentialSampler(range(4)), [0, 1, 2, 3], 3))
    assert mixed == [[0, 1, 2], [3]]
    assert collate([(1, 'a'), (2, 'b')]) == ((1, 2), ('a', 'b'))
