"""Scene-text datasets in one internal record format, written out as COCO for the detection engine.

Every text benchmark is read into `TextRecord`s (one per image: the image path, its size and a list of
`TextInstance`s, each a polygon in pixels, a transcription and a don't-care flag). `records_to_coco`
writes them as a COCO instance-segmentation file with one category (`{'id': 1, 'name': 'text'}`), so
`detection.data.CocoDetection` and `detection.engine` train and evaluate on them unchanged:

* `segmentation` is the polygon (one part, `[x1, y1, ..., xn, yn]`), `bbox` its bounds `[x, y, w, h]`,
  `area` its shoelace area (absolute value); coordinates are rounded to 0.01 px and bbox/area are
  computed from the rounded values;
* don't-care text (`###` and the like) gets `iscrowd=1`: CocoDetection skips crowd regions as training
  targets, which is how don't-care text is handled in training; the text metrics read the `ignore` flag;
* the extra keys `text` and `ignore` keep the transcription and the flag;
* polygons of zero area are dropped (counted, one warning).

`coco_to_text_gts` turns such a file back into the ground truth the text metrics take
(`{'image_id', 'polygons', 'ignore'}` per image), and `convert_text_dataset(name, root, split, out_json)`
chains a reader and `records_to_coco` (file names relative to `root`, so
`CocoDetection(root, out_json)` loads the result).

Readers (`read_<name>(root, split)`, split `'train'` or `'test'`; the layouts are the archives as
distributed, detailed in each docstring): `read_icdar2015`, `read_totaltext`, `read_ctw1500`,
`read_msra_td500`, `read_dast1500`. Common behaviour:

* image sizes come from the image header (PIL opens lazily, nothing is decoded); they are those of the
  stored pixel grid: EXIF orientation is not applied, the same as `CocoDetection` loads the images;
* GT text files are read as UTF-8 with an optional BOM (latin-1 if they are not UTF-8); blank lines are
  skipped;
* images are listed in natural order (`img_2` before `img_10`); an image without its GT file is an error;
* `DatasetError` (from `detection.data`) names the file and the line for malformed lines (non-numeric
  coordinates, an odd number of coordinates, fewer than 3 points) and the expected layout when the root
  or a split folder is missing.
"""
import ast
import json
import math
import os
import re
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from detection.data import DatasetError

__all__ = ['TextInstance', 'TextRecord', 'TEXT_CATEGORY', 'READERS', 'read_icdar2015', 'read_totaltext',
           'read_ctw1500', 'read_msra_td500', 'read_dast1500', 'records_to_coco', 'coco_to_text_gts',
           'convert_text_dataset', 'polygon_area', 'msra_box_to_polygon']

TEXT_CATEGORY = {'id': 1, 'name': 'text'}
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif', '.tiff')
PathLike = Union[str, Path]


@dataclass
class TextInstance:
    """One text region: `polygon` (N, 2) float32 x, y in pixels, N >= 3, in the order given by the
    dataset (clockwise or not); `text` the transcription (may be empty); `ignore` the don't-care flag."""
    polygon: np.ndarray
    text: str = ''
    ignore: bool = False

    def __post_init__(self):
        poly = np.asarray(self.polygon, dtype=np.float32)
        if poly.ndim == 1 and poly.size % 2 == 0:
            poly = poly.reshape(-1, 2)
        if poly.ndim != 2 or poly.shape[1] != 2 or poly.shape[0] < 3:
            raise ValueError(f'a text polygon needs shape (N >= 3, 2), got {np.shape(self.polygon)}')
        if not np.isfinite(poly).all():
            raise ValueError('a text polygon has non-finite coordinates')
        self.polygon = poly
        self.text = str(self.text)
        self.ignore = bool(self.ignore)


@dataclass
class TextRecord:
    """One image: `image` (absolute, or relative to an image root), its `width` and `height`, and its
    text `instances`."""
    image: Path
    width: int
    height: int
    instances: List[TextInstance] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------------------
# shared helpers


def polygon_area(polygon: np.ndarray) -> float:
    """Shoelace area (absolute value) of an (N, 2) polygon."""
    p = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    x, y = p[:, 0], p[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def _natural_key(path: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r'(\d+)', path.name)]


def _list_images(folder: Path) -> List[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                  key=_natural_key)


def _image_size(path: Path) -> Tuple[int, int]:
    try:
        with Image.open(path) as im:  # lazy: reads the header only
            return int(im.width), int(im.height)
    except (UnidentifiedImageError, OSError) as e:
        raise DatasetError(f'image {path} cannot be read: {e}') from e


def _text_lines(path: Path) -> List[Tuple[int, str]]:
    """(line number, stripped text) of the non-blank lines of an annotation file."""
    data = path.read_bytes()
    try:
        text = data.decode('utf-8-sig')
    except UnicodeDecodeError:
        text = data.decode('latin-1')
    # a BOM may also start a file that was concatenated or re-saved; remove stray ones
    lines = ((lineno, raw.replace('\ufeff', '').strip()) for lineno, raw in enumerate(text.splitlines(), 1))
    return [(lineno, line) for lineno, line in lines if line]


def _check_split(split: str) -> str:
    if split not in ('train', 'test'):
        raise DatasetError(f"split must be 'train' or 'test', got {split!r}")
    return split


def _root(root: PathLike, reader: str, layout: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f'{reader}: dataset root {root} not found; expected layout:\n{layout}')
    return root.absolute()


def _first_dir(root: Path, candidates: Sequence[str], reader: str, what: str, layout: str) -> Path:
    for c in candidates:
        if (root / c).is_dir():
            return root / c
    raise DatasetError(f'{reader}: no {what} folder under {root} (looked for {list(candidates)}); '
                       f'expected layout:\n{layout}')


def _where(path: Path, lineno: int) -> str:
    return f'{path}, line {lineno}'


def _numbers(fields: Sequence[str], path: Path, lineno: int, line: str) -> List[float]:
    out = []
    for f in fields:
        try:
            v = float(f)
        except ValueError:
            raise DatasetError(f'{_where(path, lineno)}: non-numeric coordinate {f.strip()!r} in {line!r}') from None
        if not math.isfinite(v):
            raise DatasetError(f'{_where(path, lineno)}: non-finite coordinate {f.strip()!r} in {line!r}')
        out.append(v)
    return out


def _polygon(values: Sequence[float], path: Path, lineno: int, line: str) -> np.ndarray:
    if len(values) % 2:
        raise DatasetError(f'{_where(path, lineno)}: odd number of coordinates ({len(values)}) in {line!r}')
    if len(values) < 6:
        raise DatasetError(f'{_where(path, lineno)}: a polygon needs at least 3 points, got '
                           f'{len(values) // 2} in {line!r}')
    return np.asarray(values, dtype=np.float32).reshape(-1, 2)


def _is_number(s: str) -> bool:
    try:
        return math.isfinite(float(s))
    except ValueError:
        return False


def _pair_by_name(images: List[Path], gt_of: Callable[[Path], Optional[Path]], reader: str,
                  parse: Callable[[Path], List[TextInstance]], expected: Callable[[Path], str]) -> List[TextRecord]:
    records = []
    for img in images:
        gt = gt_of(img)
        if gt is None:
            raise DatasetError(f'{reader}: no ground-truth file for image {img} (expected {expected(img)})')
        w, h = _image_size(img)
        records.append(TextRecord(image=img, width=w, height=h, instances=parse(gt)))
    return records


# ----------------------------------------------------------------------------------------------------------
# ICDAR 2015 (incidental scene text, RRC challenge 4)

_IC15_LAYOUT = """  root/ch4_training_images/img_1.jpg ...
  root/ch4_training_localization_transcription_gt/gt_img_1.txt ...
  root/ch4_test_images/img_1.jpg ...
  root/Challenge4_Test_Task4_GT/gt_img_1.txt ... (or Challenge4_Test_Task1_GT)"""


def _parse_icdar2015(path: Path) -> List[TextInstance]:
    out = []
    for lineno, line in _text_lines(path):
        fields = line.split(',', 8)
        if len(fields) < 8:
            raise DatasetError(f'{_where(path, lineno)}: expected x1,y1,x2,y2,x3,y3,x4,y4,transcription, got '
                               f'{len(fields)} field(s) in {line!r}')
        values = _numbers(fields[:8], path, lineno, line)
        text = fields[8].strip() if len(fields) > 8 else ''
        out.append(TextInstance(_polygon(values, path, lineno, line), text, text == '###'))
    return out


def read_icdar2015(root: PathLike, split: str = 'train') -> List[TextRecord]:
    """ICDAR 2015 incidental text, as distributed by the RRC (challenge 4, task 4.1):

        root/ch4_training_images/img_1.jpg ... img_1000.jpg
        root/ch4_training_localization_transcription_gt/gt_img_1.txt ...
        root/ch4_test_images/img_1.jpg ... img_500.jpg
        root/Challenge4_Test_Task4_GT/gt_img_1.txt ...   (or Challenge4_Test_Task1_GT; both are accepted)

    One word per line: `x1,y1,x2,y2,x3,y3,x4,y4,transcription` (a quadrilateral, clockwise from the
    top-left in the official files); the transcription is everything after the 8th comma, so it may
    contain commas; `###` marks don't-care text. The files start with a UTF-8 BOM.
    """
    split = _check_split(split)
    root = _root(root, 'read_icdar2015', _IC15_LAYOUT)
    if split == 'train':
        img_dir = _first_dir(root, ['ch4_training_images'], 'read_icdar2015', 'train image', _IC15_LAYOUT)
        gt_dir = _first_dir(root, ['ch4_training_localization_transcription_gt'], 'read_icdar2015',
                            'train ground-truth', _IC15_LAYOUT)
    else:
        img_dir = _first_dir(root, ['ch4_test_images'], 'read_icdar2015', 'test image', _IC15_LAYOUT)
        gt_dir = _first_dir(root, ['Challenge4_Test_Task4_GT', 'Challenge4_Test_Task1_GT'], 'read_icdar2015',
                            'test ground-truth', _IC15_LAYOUT)

    def gt_of(img: Path) -> Optional[Path]:
        p = gt_dir / f'gt_{img.stem}.txt'
        return p if p.is_file() else None

    return _pair_by_name(_list_images(img_dir), gt_of, 'read_icdar2015', _parse_icdar2015,
                         lambda img: gt_dir / f'gt_{img.stem}.txt')


# ----------------------------------------------------------------------------------------------------------
# Total-Text

_TT_LAYOUT = """  root/Images/Train/img11.jpg ...          root/Images/Test/img1.jpg ...
  root/Groundtruth/Polygon/Train/poly_gt_img11.txt ...   (or root/txt_format/Train/, as in txt_format.zip)
  root/Groundtruth/Polygon/Test/poly_gt_img1.txt ..."""

_TT_ENTRY = re.compile(r'^x:\s*\[\[(?P<x>[^\]]*)\]\]\s*,\s*y:\s*\[\[(?P<y>[^\]]*)\]\]\s*,\s*'
                       r'ornt:\s*\[(?P<ornt>[^\]]*)\]\s*,\s*transcriptions:\s*\[(?P<text>.*)\]\s*$', re.S)


def _tt_string(field_text: str) -> str:
    """The first string of a Python-2 style list body such as `u'nauGHTY'` or `u"don't"`."""
    s = field_text.strip()
    if not s:
        return ''
    try:
        value = ast.literal_eval('[' + s + ']')
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return ','.join(value)
    except (ValueError, SyntaxError):
        pass
    m = re.match(r'''^[uUbB]?(['"])(.*)\1$''', s, re.S)
    return m.group(2) if m else s


def _parse_totaltext(path: Path) -> List[TextInstance]:
    # an entry starts with `x:`; long coordinate lists are wrapped over several lines by the exporter
    entries: List[Tuple[int, str]] = []
    for lineno, line in _text_lines(path):
        if line.startswith('x:') or not entries:
            entries.append((lineno, line))
        else:
            entries[-1] = (entries[-1][0], entries[-1][1] + ' ' + line)
    out = []
    for lineno, entry in entries:
        m = _TT_ENTRY.match(entry)
        if m is None:
            raise DatasetError(f'{_where(path, lineno)}: not a Total-Text entry '
                               f"(x: [[...]], y: [[...]], ornt: [u'.'], transcriptions: [u'...']): {entry!r}")
        xs = _numbers(m.group('x').replace(',', ' ').split(), path, lineno, entry)
        ys = _numbers(m.group('y').replace(',', ' ').split(), path, lineno, entry)
        if len(xs) != len(ys):
            raise DatasetError(f'{_where(path, lineno)}: {len(xs)} x but {len(ys)} y coordinates in {entry!r}')
        flat = [v for xy in zip(xs, ys) for v in xy]
        poly = _polygon(flat, path, lineno, entry)
        ornt = _tt_string(m.group('ornt'))
        text = _tt_string(m.group('text'))
        if text == '':
            text = '#'  # an empty transcription list: nothing legible, treated as don't-care
        out.append(TextInstance(poly, text, text == '#' or ornt == '#'))
    return out


def read_totaltext(root: PathLike, split: str = 'train') -> List[TextRecord]:
    """Total-Text with the official txt ground truth (github.com/cs-chan/Total-Text-Dataset):

        root/Images/Train/img11.jpg ...           root/Images/Test/img1.jpg ...
        root/Groundtruth/Polygon/Train/poly_gt_img11.txt ...
        root/Groundtruth/Polygon/Test/poly_gt_img1.txt ...
        (the GT folder may also be root/txt_format/Train|Test, the layout of txt_format.zip; image suffixes
        .jpg and .JPG both occur)

    One polygon per entry: `x: [[115 503 494 115]], y: [[322 346 426 404]], ornt: [u'h'],
    transcriptions: [u'nauGHTY']` (Python-2 style lists; ornt c/h/m, `#` = don't care). The legacy and
    the updated GT use this same syntax; long entries are wrapped over several lines (a new entry starts
    with `x:`). Don't-care: transcription `#` (or orientation `#`); an empty transcription list is read
    as `#`.
    """
    split = _check_split(split)
    root = _root(root, 'read_totaltext', _TT_LAYOUT)
    cap = split.capitalize()
    img_dir = _first_dir(root, [f'Images/{cap}', f'Images/{split}'], 'read_totaltext', f'{split} image',
                         _TT_LAYOUT)
    gt_dir = _first_dir(root, [f'Groundtruth/Polygon/{cap}', f'Groundtruth/Polygon/{split}',
                               f'Groundtruth/Text/Polygon/{cap}', f'txt_format/{cap}', f'txt_format/{split}'],
                        'read_totaltext', f'{split} ground-truth', _TT_LAYOUT)

    def gt_of(img: Path) -> Optional[Path]:
        p = gt_dir / f'poly_gt_{img.stem}.txt'
        return p if p.is_file() else None

    return _pair_by_name(_list_images(img_dir), gt_of, 'read_totaltext', _parse_totaltext,
                         lambda img: gt_dir / f'poly_gt_{img.stem}.txt')


# ----------------------------------------------------------------------------------------------------------
# SCUT-CTW1500

_CTW_LAYOUT = """  original release (github.com/Yuliang-Liu/Curve-Text-Detector, data/README.md):
    root/train/text_image/0001.jpg ...   root/train/text_label_curve/0001.txt ...   (32 values per line)
    root/test/text_image/1001.jpg ...    root/test/text_label_curve/1001.txt ...
  later release (the archives mmocr downloads):
    root/ctw1500_train_images/train_images/0001.jpg ...  root/ctw1500_train_labels/ctw1500_train_labels/0001.xml ...
    root/ctw1500_test_images/test_images/1001.jpg ...    root/ctw1500_test_labels/0001001.txt ...
    (test lines: x1,y1,...,xn,yn,####text)"""


def _parse_ctw_txt(path: Path) -> List[TextInstance]:
    out = []
    for lineno, line in _text_lines(path):
        if '####' in line:  # x1,y1,...,xn,yn,####transcription
            coords, text = line.split('####', 1)
            fields = [f for f in coords.strip().rstrip(',').split(',')]
            values = _numbers(fields, path, lineno, line)
            text = text.strip()
            out.append(TextInstance(_polygon(values, path, lineno, line), text, text == '###'))
            continue
        fields = line.rstrip(',').split(',')
        values = _numbers(fields, path, lineno, line)
        if len(values) != 32:
            raise DatasetError(f'{_where(path, lineno)}: expected 32 values (xmin,ymin,xmax,ymax and 14 offset '
                               f'pairs) or x1,y1,...,xn,yn,####text, got {len(values)} number(s) in {line!r}')
        offsets = np.asarray(values[4:], dtype=np.float64).reshape(14, 2)
        poly = offsets + np.asarray(values[:2], dtype=np.float64)  # offsets are relative to (xmin, ymin)
        out.append(TextInstance(poly.astype(np.float32), '', False))
    return out


def _parse_ctw_xml(path: Path) -> List[TextInstance]:
    try:
        tree = ET.parse(path)
    except ET.ParseError as e:
        raise DatasetError(f'{_where(path, e.position[0])}: not valid XML: {e}') from e
    out = []
    for k, box in enumerate(tree.getroot().iter('box'), 1):
        segs = box.findtext('segs')
        label = (box.findtext('label') or '').strip()
        where = f'{path}, box {k}'
        if segs is None:
            raise DatasetError(f'{where}: <box> without <segs>')
        values = []
        for f in segs.strip().split(','):
            if not _is_number(f):
                raise DatasetError(f'{where}: non-numeric coordinate {f.strip()!r} in <segs>{segs}</segs>')
            values.append(float(f))
        if len(values) % 2 or len(values) < 6:
            raise DatasetError(f'{where}: <segs> needs an even number (>= 6) of coordinates, got {len(values)}')
        out.append(TextInstance(np.asarray(values, dtype=np.float32).reshape(-1, 2), label, label == '###'))
    return out


def _parse_ctw(path: Path) -> List[TextInstance]:
    return _parse_ctw_xml(path) if path.suffix.lower() == '.xml' else _parse_ctw_txt(path)


def _numeric_key(stem: str) -> str:
    return str(int(stem)) if stem.isdigit() else stem


def read_ctw1500(root: PathLike, split: str = 'train') -> List[TextRecord]:
    """SCUT-CTW1500 (curved text lines). Both distributed layouts are read:

    * original release (Curve-Text-Detector `data/README.md`):
      `root/{train,test}/text_image/NNNN.jpg` with `root/{train,test}/text_label_curve/NNNN.txt`; each line
      has 32 values, `xmin,ymin,xmax,ymax` (the circumscribed box) then 14 offset pairs `pw1,ph1,...,pw14,ph14`
      relative to (xmin, ymin): the polygon is (xmin + pw_i, ymin + ph_i). No transcription.
    * later release (archives `ctw1500_{train,test}_images`, `ctw1500_train_labels`, `ctw1500_test_labels`):
      train labels are XML (`<image file=..><box ..><label>TEXT</label><segs>x1,y1,...,x14,y14</segs>..`),
      test labels `000NNNN.txt` with lines `x1,y1,...,xn,yn,####transcription` (14 points in the
      official files; any n >= 3 is accepted, the transcription may contain commas).

    Label files are matched to images by number (`0001001.txt` -> `1001.jpg`); `.txt` lines are
    recognised by content (`####` present, else 32 numbers). Transcription `###` is don't-care.
    """
    split = _check_split(split)
    root = _root(root, 'read_ctw1500', _CTW_LAYOUT)
    img_dir = _first_dir(root, [f'{split}/text_image', f'ctw1500_{split}_images/{split}_images',
                                f'ctw1500_{split}_images', f'{split}_images'],
                         'read_ctw1500', f'{split} image', _CTW_LAYOUT)
    gt_dir = _first_dir(root, [f'{split}/text_label_curve', f'ctw1500_{split}_labels/ctw1500_{split}_labels',
                               f'ctw1500_{split}_labels', f'{split}_labels'],
                        'read_ctw1500', f'{split} label', _CTW_LAYOUT)
    labels: Dict[str, Path] = {}
    for p in sorted(gt_dir.iterdir(), key=lambda q: (q.suffix.lower() != '.txt', q.name)):
        if p.is_file() and p.suffix.lower() in ('.txt', '.xml'):
            labels.setdefault(_numeric_key(p.stem), p)  # .txt wins over .xml for the same image

    return _pair_by_name(_list_images(img_dir), lambda img: labels.get(_numeric_key(img.stem)), 'read_ctw1500',
                         _parse_ctw, lambda img: f'{gt_dir}/{img.stem}.txt, .xml or 000{img.stem}.txt')


# ----------------------------------------------------------------------------------------------------------
# MSRA-TD500

_TD500_LAYOUT = """  root/train/IMG_0001.JPG  root/train/IMG_0001.gt ...
  root/test/IMG_0059.JPG   root/test/IMG_0059.gt ..."""


def msra_box_to_polygon(x: float, y: float, w: float, h: float, theta: float) -> np.ndarray:
    """The 4 corners of an MSRA-TD500 box: the axis-aligned box with top-left (x, y) and size (w, h),
    rotated by `theta` radians about its centre (image coordinates, y down, so a positive theta turns
    clockwise on screen). Corner order: the rotated top-left, top-right, bottom-right, bottom-left."""
    cx, cy = x + w / 2.0, y + h / 2.0
    c, s = math.cos(theta), math.sin(theta)
    corners = [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
    return np.asarray([(cx + (px - cx) * c - (py - cy) * s, cy + (px - cx) * s + (py - cy) * c)
                       for px, py in corners], dtype=np.float32)


def _parse_td500(path: Path) -> List[TextInstance]:
    out = []
    for lineno, line in _text_lines(path):
        fields = line.split()
        if len(fields) != 7:
            raise DatasetError(f'{_where(path, lineno)}: expected 7 values (index difficult x y w h theta), '
                               f'got {len(fields)} in {line!r}')
        index, difficult, x, y, w, h, theta = _numbers(fields, path, lineno, line)
        if w <= 0 or h <= 0:
            raise DatasetError(f'{_where(path, lineno)}: box width and height must be positive in {line!r}')
        if difficult not in (0, 1):
            raise DatasetError(f'{_where(path, lineno)}: difficult flag must be 0 or 1 in {line!r}')
        out.append(TextInstance(msra_box_to_polygon(x, y, w, h, theta), '', difficult == 1))
    return out


def read_msra_td500(root: PathLike, split: str = 'train') -> List[TextRecord]:
    """MSRA-TD500 (multi-oriented text lines, Chinese and English) as distributed:

        root/train/IMG_0001.JPG  root/train/IMG_0001.gt  ...   (300 images)
        root/test/IMG_0059.JPG   root/test/IMG_0059.gt   ...   (200 images)

    Each `.gt` line is `index difficult x y w h theta`, whitespace-separated: a rectangle with top-left
    (x, y) and size (w, h) before rotation, rotated by theta (radians) about its centre; difficult=1 marks
    don't-care lines. Converted to 4-point polygons by `msra_box_to_polygon`. No transcriptions.
    """
    split = _check_split(split)
    root = _root(root, 'read_msra_td500', _TD500_LAYOUT)
    folder = _first_dir(root, [split, split.upper(), split.capitalize()], 'read_msra_td500', split,
                        _TD500_LAYOUT)

    def gt_of(img: Path) -> Optional[Path]:
        p = img.with_suffix('.gt')
        return p if p.is_file() else None

    return _pair_by_name(_list_images(folder), gt_of, 'read_msra_td500', _parse_td500,
                         lambda img: img.with_suffix('.gt'))


# ----------------------------------------------------------------------------------------------------------
# DAST1500

_DAST_LAYOUT = """  root/train_image_and_gt/image/IMG_0001.JPG ...  root/train_image_and_gt/gt/IMG_0001.txt ...
  root/test_image_and_gt/image/... and .../gt/...
  (also accepted: root/<split>/image[s]/ with root/<split>/gt[s]|txt|label[s]/, or GT next to the images;
   GT names IMG_0001.txt, IMG_0001.JPG.txt or gt_IMG_0001.txt)"""


def _parse_dast(path: Path) -> List[TextInstance]:
    out = []
    for lineno, line in _text_lines(path):
        fields = line.split(',')
        n = 0
        while n < len(fields) and _is_number(fields[n]):
            n += 1
        if n == 0:
            raise DatasetError(f'{_where(path, lineno)}: non-numeric coordinate {fields[0].strip()!r} in {line!r}')
        text = ','.join(fields[n:]).strip()
        values = _numbers(fields[:n], path, lineno, line)
        out.append(TextInstance(_polygon(values, path, lineno, line), text, text == '###'))
    return out


def read_dast1500(root: PathLike, split: str = 'train') -> List[TextRecord]:
    """DAST1500 (dense, arbitrary-shaped text; 1,038 train / 500 test images, from the SegLink++ authors).

    No official format description was found. What could be confirmed (an evaluation script that reads
    the test set, `DAST1500_testset/image/IMG_xxxx.JPG` with one `IMG_xxxx.txt` per image) is: one polygon
    per line, integer coordinates separated by commas, a variable number of points, no transcription.
    Accepted here:

    * lines `x1,y1,...,xn,yn` with an even number (>= 6) of numbers, optionally followed by a
      transcription (everything after the last leading number; `###` = don't care);
    * layouts (the first that exists): `root/{split}_image_and_gt/image` (as in public configs that use
      the data) with GT in a sibling `gt`, `txt`, `label`, `labels` or `annotations` folder, or
      `root/{split}/image[s]` likewise, or GT files next to the images; a GT file is named
      `IMG_0001.txt`, `IMG_0001.JPG.txt` or `gt_IMG_0001.txt`.
    """
    split = _check_split(split)
    root = _root(root, 'read_dast1500', _DAST_LAYOUT)
    img_dir = _first_dir(root, [f'{split}_image_and_gt/image', f'{split}_image_and_gt/images', f'{split}/image',
                                f'{split}/images', f'{split}_images', f'DAST1500_{split}set/image', split],
                         'read_dast1500', f'{split} image', _DAST_LAYOUT)
    gt_dirs = [img_dir.parent / d for d in ('gt', 'gts', 'txt', 'label', 'labels', 'annotations', 'txt_annotations')
               if (img_dir.parent / d).is_dir()] + [img_dir]

    def gt_of(img: Path) -> Optional[Path]:
        for d in gt_dirs:
            for name in (f'{img.stem}.txt', f'{img.name}.txt', f'gt_{img.stem}.txt'):
                if (d / name).is_file():
                    return d / name
        return None

    return _pair_by_name(_list_images(img_dir), gt_of, 'read_dast1500', _parse_dast,
                         lambda img: f'{img.stem}.txt in one of {[str(d) for d in gt_dirs]}')


READERS: Dict[str, Callable[..., List[TextRecord]]] = {
    'icdar2015': read_icdar2015,
    'totaltext': read_totaltext,
    'ctw1500': read_ctw1500,
    'msra_td500': read_msra_td500,
    'dast1500': read_dast1500,
}
_ALIASES = {'ic15': 'icdar2015', 'icdar15': 'icdar2015', 'total_text': 'totaltext', 'total-text': 'totaltext',
            'ctw': 'ctw1500', 'scut_ctw1500': 'ctw1500', 'td500': 'msra_td500', 'msra-td500': 'msra_td500',
            'dast': 'dast1500'}


# ----------------------------------------------------------------------------------------------------------
# COCO conversion


def _file_name(image: Path, image_root: Optional[Path]) -> str:
    image = Path(image)
    if image_root is None or not image.is_absolute():
        return image.as_posix()
    for a, b in ((image, image_root), (image.resolve(), image_root.resolve())):
        try:
            return a.relative_to(b).as_posix()
        except ValueError:
            pass
    raise DatasetError(f'image {image} is not under the image root {image_root}')


def records_to_coco(records: Iterable[TextRecord], out_json: Optional[PathLike] = None,
                    image_root: Optional[PathLike] = None, description: str = 'text instances') -> Dict:
    """Write `records` as a COCO dict (see the module docstring) to `out_json` (atomically: a temporary
    file, then `os.replace`; `None` writes nothing) and return it. Image ids are 1.. in record order,
    annotation ids 1.. in instance order; `file_name` is relative to `image_root` (absolute image paths
    must lie under it; relative ones are kept as they are)."""
    root = Path(image_root).absolute() if image_root is not None else None
    images, annotations = [], []
    zero_area = 0
    for image_id, rec in enumerate(records, 1):
        images.append(dict(id=image_id, file_name=_file_name(rec.image, root), width=int(rec.width),
                           height=int(rec.height)))
        for inst in rec.instances:
            poly = np.round(np.asarray(inst.polygon, dtype=np.float64).reshape(-1, 2), 2)
            area = polygon_area(poly)
            if not area > 0:
                zero_area += 1
                continue
            x0, y0 = poly.min(axis=0)
            x1, y1 = poly.max(axis=0)
            annotations.append(dict(
                id=len(annotations) + 1, image_id=image_id, category_id=TEXT_CATEGORY['id'],
                segmentation=[[float(v) for v in poly.reshape(-1)]],
                bbox=[float(x0), float(y0), float(round(x1 - x0, 2)), float(round(y1 - y0, 2))],
                area=round(area, 4), iscrowd=int(inst.ignore), text=inst.text, ignore=bool(inst.ignore)))
    if zero_area:
        warnings.warn(f'records_to_coco: skipped {zero_area} polygon(s) of zero area', stacklevel=2)
    coco = dict(info=dict(description=description), licenses=[], images=images, annotations=annotations,
                categories=[dict(TEXT_CATEGORY)])
    if out_json is not None:
        out_json = Path(out_json)
        out_json.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_json.with_name(out_json.name + '.tmp')
        tmp.write_text(json.dumps(coco), encoding='ascii')  # non-ASCII text is \u-escaped
        os.replace(tmp, out_json)
    return coco


def coco_to_text_gts(coco_json_or_dict: Union[PathLike, Dict]) -> List[Dict]:
    """Per image, in sorted image-id order: `{'image_id', 'polygons': [(N, 2) float32 arrays],
    'ignore': [bool]}`, the ground truth the text metrics take. `ignore` is the annotation's `ignore`
    key, else its `iscrowd`. A multi-part polygon segmentation keeps its largest part; RLE
    segmentations are refused (a text GT must be a polygon)."""
    if isinstance(coco_json_or_dict, dict):
        coco, src = coco_json_or_dict, 'COCO dict'
    else:
        src = str(coco_json_or_dict)
        try:
            coco = json.loads(Path(coco_json_or_dict).read_text(encoding='utf-8'))
        except FileNotFoundError as e:
            raise DatasetError(f'annotation file not found: {src}') from e
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DatasetError(f'annotation file {src} is not valid JSON: {e}') from e
    if not isinstance(coco, dict) or not isinstance(coco.get('images'), list) \
            or not isinstance(coco.get('annotations'), list):
        raise DatasetError(f'{src} is not a COCO dict with images and annotations')
    per_image: Dict[int, List[Dict]] = {img['id']: [] for img in coco['images']}
    for a in sorted(coco['annotations'], key=lambda a: a.get('id', 0)):
        if a.get('image_id') not in per_image:
            raise DatasetError(f"{src}: annotation {a.get('id')} refers to unknown image_id {a.get('image_id')!r}")
        per_image[a['image_id']].append(a)
    out = []
    for image_id in sorted(per_image):
        polys, ignore = [], []
        for a in per_image[image_id]:
            seg = a.get('segmentation')
            if not isinstance(seg, list) or not seg:
                raise DatasetError(f"{src}: annotation {a.get('id')} has no polygon segmentation")
            parts = [np.asarray(p, dtype=np.float32).reshape(-1, 2) for p in seg
                     if isinstance(p, (list, tuple)) and len(p) >= 6 and len(p) % 2 == 0]
            if not parts:
                raise DatasetError(f"{src}: annotation {a.get('id')} has no polygon of >= 3 points")
            polys.append(max(parts, key=polygon_area))
            ignore.append(bool(a.get('ignore', a.get('iscrowd', 0))))
        out.append(dict(image_id=image_id, polygons=polys, ignore=ignore))
    return out


def convert_text_dataset(name: str, root: PathLike, split: str, out_json: PathLike) -> Dict:
    """Read dataset `name` (one of `READERS`, or an alias such as 'ic15', 'td500') at `root` and write
    its `split` as COCO to `out_json`, file names relative to `root`; returns the COCO dict."""
    key = name.lower().replace(' ', '_')
    key = _ALIASES.get(key, key)
    if key not in READERS:
        raise DatasetError(f'unknown text dataset {name!r}; choose from {sorted(READERS)}')
    records = READERS[key](root, split)
    return records_to_coco(records, out_json, image_root=root, description=f'{key} {split}')
