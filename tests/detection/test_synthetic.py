import json

import numpy as np
import pytest
from PIL import Image

pycocotools = pytest.importorskip('pycocotools')
from pycocotools.coco import COCO  # noqa: E402

from detection.synthetic import CATEGORIES, make_synthetic_coco  # noqa: E402
from tests.helpers import folder_digest  # noqa: E402


def test_layout_and_determinism(tmp_path):
    kw = dict(num_train=12, num_val=4, image_size=96, seed=3, crowd_prob=0.3, empty_prob=0.2)
    paths = make_synthetic_coco(tmp_path / 'a', **kw)
    make_synthetic_coco(tmp_path / 'b', **kw)
    assert folder_digest(tmp_path / 'a') == folder_digest(tmp_path / 'b')
    assert folder_digest(tmp_path / 'a') != folder_digest(make_synthetic_coco(tmp_path / 'c', **{**kw, 'seed': 4})['train_images'].parent)
    for split, n in (('train', 12), ('val', 4)):
        coco = COCO(str(paths[f'{split}_annotations']))
        assert len(coco.getImgIds()) == n
        assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == [c['name'] for c in CATEGORIES]
        for img in coco.loadImgs(coco.getImgIds()):
            with Image.open(paths[f'{split}_images'] / img['file_name']) as im:
                assert im.size == (img['width'], img['height'])
    coco = COCO(str(paths['train_annotations']))
    anns = coco.loadAnns(coco.getAnnIds())
    assert any(isinstance(a['segmentation'], list) for a in anns)  # polygons
    assert any(isinstance(a['segmentation'], dict) and not a['iscrowd'] for a in anns)  # RLE (occluded)
    assert any(a['iscrowd'] for a in anns)
    assert any(not coco.getAnnIds(imgIds=i) for i in coco.getImgIds())  # an empty image
    for a in anns:
        m = coco.annToMask(a)
        x, y, w, h = a['bbox']
        ys, xs = np.nonzero(m)
        assert abs(xs.min() - x) <= 2 and abs(ys.min() - y) <= 2  # PIL vs pycocotools rasterisation and w > 0 and h > 0
        assert abs(m.sum() - a['area']) <= 0.15 * a['area'] + 10
