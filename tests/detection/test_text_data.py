"""Text dataset readers, COCO conversion and the synthetic dense-text benchmark (detection.text.data,
detection.text.synthetic). Every dataset here is hand-written in tmp_path in its official format."""
import json
import math
import warnings

import numpy as np
import pytest
from PIL import Image

pytest.importorskip('pycocotools')
shapely_geometry = pytest.importorskip('shapely.geometry')
from pycocotools import mask as mask_utils  # noqa: E402

from detection.text import synthetic as text_synthetic  # noqa: E402
from detection.data import CocoDetection, DatasetError  # noqa: E402
from detection.text.data import (TextInstance, TextRecord, coco_to_text_gts, convert_text_dataset,  # noqa: E402
                                 msra_box_to_polygon, polygon_area, read_ctw1500, read_dast1500, read_icdar2015,
                                 read_msra_td500, read_totaltext, records_to_coco)
from detection.text.synthetic import (draw_text_polygons, make_synthetic_text, render_text_strip,  # noqa: E402
                                      synthetic_text_image)
from tests.helpers import folder_digest  # noqa: E402

BOM = '\ufeff'


def _image(path, w=64, h=48):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new('RGB', (w, h), (90, 120, 30)).save(path)


def _text(path, content, bom=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(((BOM if bom else '') + content).encode('utf-8'))


def _polys(rec):
    return [inst.polygon.tolist() for inst in rec.instances]


# ----------------------------------------------------------------------------------------------------------
# readers


def _ic15(root):
    for n, (w, h) in {1: (64, 48), 2: (80, 40), 10: (50, 60)}.items():
        _image(root / 'ch4_training_images' / f'img_{n}.jpg', w, h)
        _text(root / 'ch4_training_localization_transcription_gt' / f'gt_img_{n}.txt',
              '1,2,11,2,11,8,1,8,Hello, world\r\n\r\n20,20,30,21,30,30,20,29,###\r\n', bom=True)
    return root


def test_icdar2015(tmp_path):
    recs = read_icdar2015(_ic15(tmp_path))
    assert [r.image.name for r in recs] == ['img_1.jpg', 'img_2.jpg', 'img_10.jpg']  # natural order
    assert [(r.width, r.height) for r in recs] == [(64, 48), (80, 40), (50, 60)]
    assert recs[0].image.is_absolute() and recs[0].image.is_file()
    a, b = recs[0].instances
    assert a.polygon.dtype == np.float32 and a.polygon.shape == (4, 2)
    assert a.polygon.tolist() == [[1, 2], [11, 2], [11, 8], [1, 8]]  # the BOM did not break x1
    assert (a.text, a.ignore) == ('Hello, world', False)  # commas kept in the transcription
    assert (b.text, b.ignore) == ('###', True)
    # test split: either GT folder name
    _image(tmp_path / 'ch4_test_images' / 'img_1.jpg')
    _text(tmp_path / 'Challenge4_Test_Task1_GT' / 'gt_img_1.txt', '0,0,5,0,5,5,0,5,ab\n')
    (test,) = read_icdar2015(tmp_path, 'test')
    assert test.instances[0].text == 'ab'


def test_totaltext(tmp_path):
    _image(tmp_path / 'Images/Train/img11.jpg', 600, 500)
    _image(tmp_path / 'Images/Train/img2.JPG', 40, 30)
    gt = tmp_path / 'Groundtruth/Polygon/Train'
    _text(gt / 'poly_gt_img11.txt',
          "x: [[115 503 494 115]], y: [[322 346 426 404]], ornt: [u'h'], transcriptions: [u'nauGHTY']\n"
          "x: [[259 313 389 427 354 302 280 270]], y: [[542 462 417 459 507 582\n"
          "  590 575]], ornt: [u'c'], transcriptions: [u\"don't\"]\n"
          "x: [[400 478 494 436]], y: [[398 380 448 465]], ornt: [u'#'], transcriptions: [u'#']\n"
          "x: [[1 9 9 1]], y: [[1 1 9 9]], ornt: [u'm'], transcriptions: [u',']\n")
    _text(gt / 'poly_gt_img2.txt', "x: [[1 10 10]], y: [[1 1 10]], ornt: [u'#'], transcriptions: [u'abc']\n")
    img2, img11 = read_totaltext(tmp_path, 'train')
    assert (img11.image.name, img11.width, img11.height) == ('img11.jpg', 600, 500)
    assert _polys(img11)[0] == [[115, 322], [503, 346], [494, 426], [115, 404]]
    curved = img11.instances[1]
    assert curved.polygon.shape == (8, 2) and curved.polygon[-2:].tolist() == [[280, 590], [270, 575]]
    assert (curved.text, curved.ignore) == ("don't", False)  # wrapped over two lines
    assert (img11.instances[2].text, img11.instances[2].ignore) == ('#', True)
    assert (img11.instances[3].text, img11.instances[3].ignore) == (',', False)
    assert img2.instances[0].ignore  # orientation '#' is don't care too
    # txt_format.zip layout for the test split
    _image(tmp_path / 'Images/Test/img1.jpg')
    _text(tmp_path / 'txt_format/Test/poly_gt_img1.txt',
          "x: [[0 5 5 0]], y: [[0 0 5 5]], ornt: [u'h'], transcriptions: [u'ok']\n")
    assert read_totaltext(tmp_path, 'test')[0].instances[0].text == 'ok'


def test_ctw1500_both_releases(tmp_path):
    offsets = [v for k in range(14) for v in (3 * k, k % 2)]  # 14 points relative to (xmin, ymin)
    _image(tmp_path / 'train/text_image/0001.jpg', 200, 100)
    _text(tmp_path / 'train/text_label_curve/0001.txt',
          ','.join(str(v) for v in [10, 20, 49, 21] + offsets) + '\n')
    (rec,) = read_ctw1500(tmp_path, 'train')
    expected = [[10 + 3 * k, 20 + k % 2] for k in range(14)]
    assert _polys(rec) == [expected]
    assert rec.instances[0].ignore is False
    # later release: XML train labels, `000NNNN.txt` test labels with ####text
    other = tmp_path / 'v2'
    _image(other / 'ctw1500_train_images/train_images/0200.jpg', 600, 300)
    _text(other / 'ctw1500_train_labels/ctw1500_train_labels/0200.xml',
          '<Annotations><image file="0200.jpg"><box height="197" left="131" top="49" width="399">'
          '<label>OLATHE</label><segs>131,58,208,49,279,56,346,76,412,101,473,141,530,192</segs>'
          '<pts x="183" y="95" /></box><box><label>###</label><segs>1,1,9,1,9,9</segs></box></image></Annotations>')
    (xml_rec,) = read_ctw1500(other, 'train')
    assert xml_rec.instances[0].polygon.shape == (7, 2) and xml_rec.instances[0].text == 'OLATHE'
    assert xml_rec.instances[1].ignore
    _image(other / 'ctw1500_test_images/test_images/1001.jpg', 900, 1200)
    _text(other / 'ctw1500_test_labels/0001001.txt',
          '695,885,866,888,867,1146,696,1143,####Latin, 9\n1,1,20,1,20,9,1,9,#######\n')
    (test,) = read_ctw1500(other, 'test')
    assert (test.width, test.height) == (900, 1200)
    assert _polys(test)[0] == [[695, 885], [866, 888], [867, 1146], [696, 1143]]
    assert [(i.text, i.ignore) for i in test.instances] == [('Latin, 9', False), ('###', True)]


def test_msra_td500_rotated_boxes(tmp_path):
    _image(tmp_path / 'train/IMG_0001.JPG', 100, 80)
    _text(tmp_path / 'train/IMG_0001.gt',
          f'0 0 10 20 40 10 0\n1 1 10 20 40 10 {math.pi / 2}\n2 0 30 30 20 6 0.5235987756\n')
    (rec,) = read_msra_td500(tmp_path, 'train')
    assert (rec.width, rec.height) == (100, 80)
    a, b, c = rec.instances
    assert np.allclose(a.polygon, [[10, 20], [50, 20], [50, 30], [10, 30]]) and not a.ignore
    # rotated by +90 degrees (clockwise on screen, y down) about the centre (30, 25)
    assert np.allclose(b.polygon, [[35, 5], [35, 45], [25, 45], [25, 5]], atol=1e-4) and b.ignore
    # 30 degrees: the corners keep the size, the centre, and the long side's direction
    poly = shapely_geometry.Polygon(c.polygon)
    assert poly.area == pytest.approx(120, rel=1e-5)
    assert np.allclose(poly.centroid.coords[0], (40, 33), atol=1e-4)
    top = c.polygon[1] - c.polygon[0]
    assert math.degrees(math.atan2(top[1], top[0])) == pytest.approx(30, abs=1e-3)
    assert np.allclose(msra_box_to_polygon(0, 0, 4, 2, 0), [[0, 0], [4, 0], [4, 2], [0, 2]])


def test_dast1500(tmp_path):
    split = tmp_path / 'train_image_and_gt'
    _image(split / 'image/IMG_0001.JPG', 70, 50)
    _text(split / 'gt/IMG_0001.txt', '1,1,30,2,60,1,60,10,30,11,1,10\n5,20,15,20,15,30,5,30,###\n'
                                     '5,35,15,35,15,45,a,b\n')
    (rec,) = read_dast1500(tmp_path, 'train')
    assert rec.instances[0].polygon.shape == (6, 2) and rec.instances[0].text == ''
    assert rec.instances[1].ignore and rec.instances[2].text == 'a,b'


def _line2(reader_layout, tmp_path, bad):
    """A dataset of one image whose GT file has `bad` on line 2; returns (reader, gt file)."""
    good = {'icdar2015': '0,0,9,0,9,9,0,9,ok', 'ctw1500': '0,0,9,0,9,9,0,9,####ok',
            'dast1500': '0,0,9,0,9,9,0,9', 'msra_td500': '0 0 1 1 5 5 0', 'totaltext':
            "x: [[0 9 9 0]], y: [[0 0 9 9]], ornt: [u'h'], transcriptions: [u'ok']"}[reader_layout]
    image, gt, reader = {
        'icdar2015': ('ch4_training_images/img_1.jpg', 'ch4_training_localization_transcription_gt/gt_img_1.txt',
                      read_icdar2015),
        'ctw1500': ('ctw1500_test_images/test_images/1001.jpg', 'ctw1500_test_labels/0001001.txt', read_ctw1500),
        'dast1500': ('train_image_and_gt/image/IMG_1.JPG', 'train_image_and_gt/gt/IMG_1.txt', read_dast1500),
        'msra_td500': ('train/IMG_1.JPG', 'train/IMG_1.gt', read_msra_td500),
        'totaltext': ('Images/Train/img1.jpg', 'Groundtruth/Polygon/Train/poly_gt_img1.txt', read_totaltext),
    }[reader_layout]
    _image(tmp_path / image)
    gt = tmp_path / gt
    _text(gt, good + '\n' + bad + '\n')
    return reader, gt


@pytest.mark.parametrize('name, bad, reason', [
    ('icdar2015', '0,0,9,0,9,x9,0,9,word', 'non-numeric'),
    ('icdar2015', '0,0,9,0,9,9', 'expected x1,y1'),
    ('ctw1500', '0,0,9,0,9,9,0,####odd', 'odd number'),
    ('ctw1500', '0,0,9,0,####two points', 'at least 3 points'),
    ('ctw1500', '1,2,3', 'expected 32 values'),
    ('dast1500', '0,0,9,0,9,9,0', 'odd number'),
    ('dast1500', '0,0,9,9', 'at least 3 points'),
    ('msra_td500', '0 0 1 1 5', 'expected 7 values'),
    ('msra_td500', '0 0 1 one 5 5 0', 'non-numeric'),
    ('totaltext', "x: [[0 9 9]], y: [[0 0]], ornt: [u'h'], transcriptions: [u'a']", 'x but'),
    ('totaltext', "x: [[0 9]], y: [[0 0]], ornt: [u'h'], transcriptions: [u'a']", 'at least 3 points'),
    ('totaltext', "x: [[0 9 a]], y: [[0 0 1]], ornt: [u'h'], transcriptions: [u'a']", 'non-numeric'),
])
def test_malformed_line_names_file_and_line(tmp_path, name, bad, reason):
    reader, gt = _line2(name, tmp_path, bad)
    split = 'test' if name == 'ctw1500' else 'train'
    with pytest.raises(DatasetError) as e:
        reader(tmp_path, split)
    msg = str(e.value)
    assert str(gt) in msg and 'line 2' in msg and reason in msg


def test_missing_root_split_and_gt(tmp_path):
    with pytest.raises(DatasetError, match='ch4_training_images'):
        read_icdar2015(tmp_path / 'nowhere')
    with pytest.raises(DatasetError, match='poly_gt_img11'):  # the expected layout is named
        read_totaltext(tmp_path)
    _image(tmp_path / 'train/IMG_1.JPG')
    with pytest.raises(DatasetError, match='IMG_1.gt'):  # an image without its GT
        read_msra_td500(tmp_path)
    with pytest.raises(DatasetError, match='test'):
        read_msra_td500(tmp_path, 'test')
    with pytest.raises(ValueError, match='split'):
        read_msra_td500(tmp_path, 'val')


# ----------------------------------------------------------------------------------------------------------
# COCO conversion


def test_records_to_coco_and_back(tmp_path):
    root = tmp_path / 'data'
    _image(root / 'a.png', 40, 30)
    _image(root / 'sub/b.png', 20, 20)
    l_shape = [[2, 2], [12, 2], [12, 6], [6, 6], [6, 12], [2, 12]]  # area 40 + 24 = 64
    records = [
        TextRecord(root / 'a.png', 40, 30, [
            TextInstance(np.array(l_shape), 'Lé中', False),
            TextInstance(np.array([[20, 20], [30, 20], [30, 28], [20, 28]]), '###', True),
            TextInstance(np.array([[1, 1], [5, 5], [9, 9]]), 'flat', False)]),
        TextRecord(root / 'sub/b.png', 20, 20, []),
    ]
    out = tmp_path / 'ann/text.json'
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        coco = records_to_coco(records, out, image_root=root)
    assert [str(w.message) for w in caught if 'zero area' in str(w.message)]  # one warning for the skip
    assert out.is_file() and not list(out.parent.glob('*.tmp'))
    assert json.loads(out.read_text()) == coco
    assert coco['categories'] == [{'id': 1, 'name': 'text'}]
    assert [i['file_name'] for i in coco['images']] == ['a.png', 'sub/b.png']
    a, crowd = coco['annotations']  # the zero-area polygon is gone
    assert a['bbox'] == [2, 2, 10, 10] and a['area'] == 64 and a['iscrowd'] == 0
    assert a['segmentation'] == [[v for p in l_shape for v in p]] and (a['text'], a['ignore']) == ('Lé中', False)
    assert crowd['iscrowd'] == 1 and crowd['ignore'] is True and crowd['area'] == 80

    ds = CocoDetection(root, out, check_files=True)
    image, target = ds[0]
    assert tuple(image.shape) == (3, 30, 40)
    assert target['boxes'].tolist() == [[2, 2, 12, 12]] and ds.skipped['crowd'] == 1
    mask = target['masks'][0].numpy().astype(bool)
    assert mask.sum() == 64 and mask[3, 3] and mask[3, 10] and not mask[10, 10]  # the L, not its box
    assert len(ds[1][1]['boxes']) == 0

    gts = coco_to_text_gts(out)
    assert [g['image_id'] for g in gts] == [1, 2]
    assert [p.tolist() for p in gts[0]['polygons']][0] == l_shape and gts[0]['ignore'] == [False, True]
    assert gts[1] == {'image_id': 2, 'polygons': [], 'ignore': []}
    assert polygon_area(np.array(l_shape)) == 64


def test_convert_text_dataset(tmp_path):
    root = _ic15(tmp_path / 'ic15')
    out = tmp_path / 'ic15_train.json'
    coco = convert_text_dataset('ic15', root, 'train', out)
    assert [i['file_name'] for i in coco['images']] == [
        'ch4_training_images/img_1.jpg', 'ch4_training_images/img_2.jpg', 'ch4_training_images/img_10.jpg']
    ds = CocoDetection(root, out, check_files=True)
    assert len(ds) == 3 and len(ds[2][1]['boxes']) == 1
    with pytest.raises(ValueError, match='unknown text dataset'):
        convert_text_dataset('nope', root, 'train', out)


# ----------------------------------------------------------------------------------------------------------
# synthetic benchmark


def test_synthetic_determinism_and_loading(tmp_path):
    kw = dict(num_train=4, num_test=2, image_size=(160, 192))
    paths = make_synthetic_text(tmp_path / 'a', seed=5, **kw)
    make_synthetic_text(tmp_path / 'b', seed=5, **kw)
    make_synthetic_text(tmp_path / 'c', seed=6, **kw)
    assert folder_digest(tmp_path / 'a') == folder_digest(tmp_path / 'b')
    assert folder_digest(tmp_path / 'a') != folder_digest(tmp_path / 'c')
    assert sorted(p.name for p in (tmp_path / 'a/train').iterdir()) == [f'{i:06d}.png' for i in range(4)]
    for split, n in (('train', 4), ('test', 2)):
        ds = CocoDetection(paths[f'{split}_images'], paths[f'{split}_annotations'], check_files=True)
        assert len(ds) == n and ds.class_names == ['text']
        image, target = ds[0]
        info = ds.coco.imgs[ds.ids[0]]
        assert tuple(image.shape[1:]) == (info['height'], info['width'])
        assert len(target['boxes']) == len(target['masks']) > 0
    assert len(coco_to_text_gts(paths['test_annotations'])) == 2


@pytest.fixture(scope='module')
def synth_images():
    return [synthetic_text_image(np.random.default_rng([11, s]), (384, 384)) for s in range(8)]


def _raster(poly, h, w):
    rle = mask_utils.frPyObjects([np.asarray(poly, dtype=np.float64).reshape(-1).tolist()], h, w)
    return mask_utils.decode(rle)[..., 0].astype(bool)


def test_synthetic_polygons_enclose_the_ink_tightly(synth_images):
    checked = 0
    for img, instances, labels in synth_images:
        h, w = labels.shape
        assert img.shape == (h, w, 3) and img.dtype == np.uint8
        union = np.zeros((h, w), dtype=bool)
        for k, inst in enumerate(instances):
            inside = _raster(inst.polygon, h, w)
            union |= inside
            ink = labels == k + 1
            if ink.sum() < 20:
                continue
            assert (ink & inside).sum() >= 0.99 * ink.sum()  # its own ink lies in its polygon
            if not inst.ignore:
                # and the polygon is not much larger than the tightest box of its ink grown by 1.5 px a side
                # (the ink here is alpha >= 0.5; the polygon also holds the fainter anti-aliased rim)
                ys, xs = np.nonzero(ink)
                pts = np.concatenate([np.stack([xs + dx, ys + dy], 1) for dx in (0, 1) for dy in (0, 1)])
                rect = np.asarray(shapely_geometry.MultiPoint(pts).minimum_rotated_rectangle.exterior.coords)[:3]
                a, b = np.linalg.norm(np.diff(rect, axis=0), axis=1)
                box = (xs.max() + 4 - xs.min()) * (ys.max() + 4 - ys.min())
                assert polygon_area(inst.polygon) <= 1.15 * min((a + 3) * (b + 3), box)
                checked += 1
        text = labels > 0
        assert (text & union).sum() >= 0.995 * text.sum()
    assert checked > 30


def test_synthetic_content(synth_images):
    curved = rotated = dense = 0
    aspects = []
    n_ignore = n_care = 0
    for _, instances, _ in synth_images:
        care = [i for i in instances if not i.ignore]
        n_ignore += len(instances) - len(care)
        n_care += len(care)
        polys = [shapely_geometry.Polygon(i.polygon) for i in care]
        for inst, poly in zip(care, polys):
            assert poly.is_valid and poly.area > 0 and inst.text and inst.text != '###'
            rect = np.asarray(poly.minimum_rotated_rectangle.exterior.coords)[:4]
            sides = np.linalg.norm(np.diff(np.vstack([rect, rect[:1]]), axis=0), axis=1)
            aspects.append(sides.max() / sides.min())
            if len(inst.polygon) >= 14:
                upper = inst.polygon[:len(inst.polygon) // 2]
                chord = upper[-1] - upper[0]
                normal = np.array([-chord[1], chord[0]]) / np.linalg.norm(chord)
                curved += np.abs((upper - upper[0]) @ normal).max() > 3  # the top edge bends
            elif len(inst.polygon) == 4:
                edge = inst.polygon[1] - inst.polygon[0]
                angle = abs(math.degrees(math.atan2(edge[1], edge[0])))
                rotated += 10 < angle < 170
        for a in range(len(polys)):  # disjoint, but dense: a neighbour closer than half a line height
            for b in range(a + 1, len(polys)):
                assert polys[a].intersection(polys[b]).area < 1.0
                height = min(min(np.linalg.norm(np.diff(np.asarray(p.minimum_rotated_rectangle.exterior.coords)[:3],
                                                        axis=0), axis=1)) for p in (polys[a], polys[b]))
                dense += polys[a].distance(polys[b]) < 0.5 * height
    assert curved >= 3 and rotated >= 3 and dense >= 3
    assert n_ignore >= 2 and n_care >= 40
    assert max(aspects) > 10 and min(aspects) < 3


def test_bitmap_font_fallback(monkeypatch):
    scalable = render_text_strip('Hg 12', 30)
    assert 20 <= scalable.shape[0] <= 36 and scalable.max() > 0.9
    monkeypatch.setattr(text_synthetic, '_scalable_font', lambda size: None)
    strip = render_text_strip('Hg 12', 30)
    assert strip.shape[1] > strip.shape[0] and 15 <= strip.shape[0] <= 36 and strip.max() > 0.5
    img, instances, labels = synthetic_text_image(np.random.default_rng(0), (160, 160))
    assert instances and labels.max() > 0


def test_draw_text_polygons():
    base = np.full((60, 90, 3), 200, dtype=np.uint8)
    polys = [np.array([[5, 5], [40, 5], [40, 20], [5, 20]]), [50, 30, 80, 30, 80, 50, 50, 50]]
    out = draw_text_polygons(base, polys, scores=[0.91, 0.5], ignore=[False, True])
    assert out.size == (90, 60) and out.mode == 'RGB'
    arr = np.asarray(out)
    assert (arr != 200).any(axis=2).sum() > 50
    assert tuple(arr[5, 20]) != (200, 200, 200) and tuple(arr[40, 50]) != (200, 200, 200)  # on both outlines
    assert tuple(arr[35, 65]) == (200, 200, 200)  # inside is not filled
    assert (np.asarray(base) == 200).all()  # the input is untouched
    pil = Image.fromarray(base)
    assert draw_text_polygons(pil, []).tobytes() == pil.tobytes()
