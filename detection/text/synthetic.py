"""An embedded dense scene-text benchmark: procedurally rendered text with tight polygons, in COCO format.

`make_synthetic_text(root, num_train=..., num_test=..., seed=0)` writes

    root/train/000000.png ...            root/test/000000.png ...
    root/annotations/text_train.json     root/annotations/text_test.json

through `detection.text.data.records_to_coco` (one category `text`; don't-care text has `iscrowd=1` and
`ignore=true`), so `CocoDetection(root / 'train', root / 'annotations/text_train.json')` loads it and
`coco_to_text_gts` gives the text-metric ground truth. It is meant for tests, smoke runs and the dense
case MAYOR targets, not as a stand-in for real data.

Each image (default 384 x 384, sides jittered by +-`size_jitter`) is a smooth random colour field with
pixel noise and non-text clutter (rectangles, ellipses, strokes, bar patterns), over which "units" of
text are placed without overlapping each other:

* **straight lines** of random words (letters / digits, 2-`max_chars` characters), half of them
  near-horizontal, the rest at angles up to +-45 degrees or, less often, up to vertical; the polygon
  is the rotated tight quadrilateral of the rendered strip;
* **curved lines**: the strip is warped onto a circular arc (frown or smile, 0.6-2.1 rad of arc, the
  arc itself rotated), one line or 2-3 concentric lines; the polygon is the upper boundary left to
  right then the lower boundary right to left, 7-10 points per side;
* **dense paragraphs**: 2-5 parallel lines in a rotated frame with gaps of 0.1-0.45 of the line
  height (at least 2 px), so a box around one line overlaps its neighbours - the dense case;
* **don't-care** text (`ignore=True`, text `###`): tiny (5-8 px) or blurred text.

Text is rendered with Pillow's built-in font: `ImageFont.load_default(size=...)` is a scalable FreeType
font (Pillow >= 10.1 with FreeType); otherwise the bitmap default font is rendered and resized.
Font sizes are spread log-uniformly over `text_scale` (a fraction of the shorter image side), line
lengths log-uniformly up to `max_chars` characters, which gives aspect ratios from about 1:1 to 1:20.
Text colours are drawn at random and pushed away from the local background luminance for contrast.

Polygons are tight and exact by construction: each instance is a strip (the text's ink bounding box
plus 1 px) mapped to the image by a known transform (rotation, or the polar map of an arc), rendered by
inverse mapping with bilinear sampling, and the polygon is the image of the strip rectangle shrunk by
0.5 px. For arcs, the vertices of the outer boundary are pushed out by 1/cos(step/2) so that the chords
enclose the arc. Every ink pixel (alpha >= 0.5) therefore lies inside its polygon; `synthetic_text_image`
returns the per-instance ink label map that the tests check this with.

Everything depends only on `seed` (one numpy generator per image, seeded with (seed, split, index)), so
the same call writes byte-identical files. `draw_text_polygons` draws polygons (and scores) on an image
for visual checks.
"""
import math
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from detection.synthetic import write_jittered_images
from detection.text.data import TextInstance, TextRecord, records_to_coco

__all__ = ['make_synthetic_text', 'synthetic_text_image', 'draw_text_polygons', 'render_text_strip']

_LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
_DIGITS = '0123456789'
_BITMAP_HEIGHT = 11  # Pillow's bitmap default font: about 11 px from ascender to descender


# ----------------------------------------------------------------------------------------------------------
# text rendering


@lru_cache(maxsize=128)
def _scalable_font(size: int):
    """Pillow's default font at `size` px if it is scalable (Pillow >= 10.1 with FreeType), else None."""
    try:
        font = ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError, AttributeError):
        return None
    return font if isinstance(font, ImageFont.FreeTypeFont) else None


@lru_cache(maxsize=1)
def _bitmap_font():
    loader = getattr(ImageFont, 'load_default_imagefont', None)
    return loader() if loader is not None else ImageFont.load_default()


def render_text_strip(text: str, size: int, blur: float = 0.0) -> np.ndarray:
    """`text` rendered at `size` px as an alpha strip (h, w) float32 in [0, 1]: cropped to the ink
    bounding box (alpha > 0.02), then padded by 1 px of zeros."""
    size = max(int(size), 4)
    font = _scalable_font(size)
    margin = 2 + int(math.ceil(3 * blur))
    if font is not None:
        l, t, r, b = font.getbbox(text)
        canvas = Image.new('L', (max(r - l, 1) + 2 * margin, max(b - t, 1) + 2 * margin), 0)
        ImageDraw.Draw(canvas).text((margin - l, margin - t), text, font=font, fill=255)
    else:  # bitmap fallback: render at the native size, then scale
        bfont = _bitmap_font()
        l, t, r, b = bfont.getbbox(text)
        native = Image.new('L', (max(r - l, 1) + 4, max(b - t, 1) + 4), 0)
        ImageDraw.Draw(native).text((2 - l, 2 - t), text, font=bfont, fill=255)
        f = size / _BITMAP_HEIGHT
        scaled = native.resize((max(1, round(native.width * f)), max(1, round(native.height * f))),
                               Image.Resampling.BILINEAR)
        canvas = Image.new('L', (scaled.width + 2 * margin, scaled.height + 2 * margin), 0)
        canvas.paste(scaled, (margin, margin))
    if blur > 0:
        canvas = canvas.filter(ImageFilter.GaussianBlur(blur))
    alpha = np.asarray(canvas, dtype=np.float32) / 255.0
    ys, xs = np.nonzero(alpha > 0.02)
    if len(xs) == 0:
        return np.zeros((3, 3), dtype=np.float32)
    crop = alpha[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    crop = np.where(crop > 0.02, crop, 0.0).astype(np.float32)
    return np.pad(crop, 1)


def _random_words(rng: np.random.Generator, n_chars: int) -> str:
    words, total = [], 0
    while total < n_chars:
        k = int(rng.integers(1, 9))
        style = rng.random()
        if style < 0.15:
            alphabet = _DIGITS
        elif style < 0.25:
            alphabet = _LETTERS + _DIGITS
        else:
            alphabet = _LETTERS[:26] if rng.random() < 0.5 else _LETTERS[26:]
        w = ''.join(alphabet[j] for j in rng.integers(0, len(alphabet), k))
        if style >= 0.25 and rng.random() < 0.3:
            w = w.capitalize()
        words.append(w)
        total += k + 1
    return ' '.join(words)[:max(n_chars, 1)].strip() or 'A'


# ----------------------------------------------------------------------------------------------------------
# geometry: strip coordinates (u, v), pixel centres at i + 0.5, mapped into the image


def _bilinear(strip: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    h, w = strip.shape
    x, y = u - 0.5, v - 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0).astype(np.float32), (y - y0).astype(np.float32)
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    p = np.pad(strip, 1)
    xa, xb = np.clip(x0, -1, w) + 1, np.clip(x0 + 1, -1, w) + 1
    ya, yb = np.clip(y0, -1, h) + 1, np.clip(y0 + 1, -1, h) + 1
    return ((p[ya, xa] * (1 - fx) + p[ya, xb] * fx) * (1 - fy) + (p[yb, xa] * (1 - fx) + p[yb, xb] * fx) * fy)


def _straight(shape: Tuple[int, int], cx: float, cy: float, angle: float):
    """Strip centred at (cx, cy), its u axis at `angle` (radians, image coordinates)."""
    hs, ws = shape
    c, s = math.cos(angle), math.sin(angle)

    def inverse(x, y):
        dx, dy = x - cx, y - cy
        return ws / 2 + dx * c + dy * s, hs / 2 - dx * s + dy * c

    corners = [(0.5, 0.5), (ws - 0.5, 0.5), (ws - 0.5, hs - 0.5), (0.5, hs - 0.5)]
    poly = np.array([(cx + (u - ws / 2) * c - (v - hs / 2) * s, cy + (u - ws / 2) * s + (v - hs / 2) * c)
                     for u, v in corners], dtype=np.float64)
    return poly, inverse


def _arc(shape: Tuple[int, int], cx: float, cy: float, radius: float, theta_c: float, sigma: int):
    """Strip bent onto the circle of `radius` about (cx, cy), its middle at angle `theta_c`. sigma=+1:
    the text's top faces away from the centre (a frown); -1: towards it (a smile)."""
    hs, ws = shape

    def inverse(x, y):
        dx, dy = x - cx, y - cy
        r = np.hypot(dx, dy)
        d = np.mod(np.arctan2(dy, dx) - theta_c + math.pi, 2 * math.pi) - math.pi
        return ws / 2 + sigma * d * radius, hs / 2 - sigma * (r - radius)

    span = (ws - 1) / radius
    k = int(np.clip(math.ceil(span / 0.15) + 1, 7, 10))
    us = np.linspace(0.5, ws - 0.5, k)
    th = theta_c + sigma * (us - ws / 2) / radius
    r_top, r_bot = radius + sigma * (hs / 2 - 0.5), radius - sigma * (hs / 2 - 0.5)
    push = 1.0 / math.cos(span / (k - 1) / 2)  # chords of the outer boundary must enclose its arc
    if r_top > r_bot:
        r_top *= push
    else:
        r_bot *= push
    ring = np.stack([np.cos(th), np.sin(th)], axis=1)
    top = np.array([cx, cy]) + r_top * ring
    bottom = np.array([cx, cy]) + r_bot * ring
    return np.concatenate([top, bottom[::-1]]), inverse


def _bounds(poly: np.ndarray, w: int, h: int) -> Tuple[int, int, int, int]:
    x0 = max(int(math.floor(poly[:, 0].min())) - 1, 0)
    y0 = max(int(math.floor(poly[:, 1].min())) - 1, 0)
    x1 = min(int(math.ceil(poly[:, 0].max())) + 1, w)
    y1 = min(int(math.ceil(poly[:, 1].max())) + 1, h)
    return x0, y0, x1, y1


def _poly_mask(poly: np.ndarray, box: Tuple[int, int, int, int], grow: int = 0) -> np.ndarray:
    x0, y0, x1, y1 = box
    canvas = Image.new('L', (max(x1 - x0, 1), max(y1 - y0, 1)), 0)
    pts = [(float(x - x0), float(y - y0)) for x, y in poly]
    draw = ImageDraw.Draw(canvas)
    draw.polygon(pts, fill=1)
    if grow:
        draw.line(pts + pts[:1], fill=1, width=2 * grow + 1)
    return np.asarray(canvas, dtype=bool)


# ----------------------------------------------------------------------------------------------------------
# image synthesis


def _background(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    gh, gw = int(rng.integers(2, 6)), int(rng.integers(2, 6))
    coarse = rng.uniform(0, 255, (gh, gw, 3)).astype(np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32)
    fine = rng.uniform(-40, 40, (12, 12, 3)).astype(np.float32)
    fine = np.asarray(Image.fromarray(np.uint8(fine + 128)).resize((w, h), Image.Resampling.BILINEAR),
                      dtype=np.float32) - 128
    img = field + fine * rng.uniform(0.2, 1.0) + rng.normal(0, rng.uniform(2, 7), (h, w, 3))
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    side = min(h, w)
    for _ in range(int(rng.integers(3, 11))):  # clutter that is not text
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.random()
        x, y = float(rng.uniform(0, w)), float(rng.uniform(0, h))
        s = float(side * rng.uniform(0.04, 0.35))
        if kind < 0.3:
            draw.rectangle([x, y, x + s * rng.uniform(0.3, 1.5), y + s * rng.uniform(0.3, 1.5)], fill=colour)
        elif kind < 0.55:
            draw.ellipse([x, y, x + s, y + s * rng.uniform(0.4, 1.0)], fill=colour)
        elif kind < 0.8:  # strokes
            pts = [(x, y)] + [(x + float(rng.uniform(-s, s)), y + float(rng.uniform(-s, s))) for _ in range(3)]
            draw.line(pts, fill=colour, width=int(rng.integers(1, 5)))
        else:  # a bar pattern (text-like texture)
            step = float(rng.uniform(3, 9))
            for k in range(int(rng.integers(3, 9))):
                draw.line([(x + k * step, y), (x + k * step, y + s * 0.5)], fill=colour, width=int(rng.integers(1, 3)))
    return pil


def _luminance(c: np.ndarray) -> float:
    return float(0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2])


def _contrast_colour(rng: np.random.Generator, background: float, min_diff: float = 90.0) -> np.ndarray:
    colour = rng.uniform(0, 255, 3)
    lum = _luminance(colour)
    if background > 127:  # dark text on a light background
        target = background - min_diff
        if lum > target:
            colour = colour * (max(target, 0.0) / max(lum, 1e-3))
    else:
        target = background + min_diff
        if lum < target:
            colour = 255 - (255 - colour) * ((255 - min(target, 255.0)) / max(255 - lum, 1e-3))
    return np.clip(colour, 0, 255).astype(np.float32)


class _Canvas:
    def __init__(self, img: np.ndarray):
        self.img = img
        self.h, self.w = img.shape[:2]
        self.occupied = np.zeros((self.h, self.w), dtype=bool)
        self.labels = np.zeros((self.h, self.w), dtype=np.int32)
        self.instances: List[TextInstance] = []

    def fits(self, polys: Sequence[np.ndarray], margin: int = 2) -> bool:
        for p in polys:
            if p[:, 0].min() < 1 or p[:, 1].min() < 1 or p[:, 0].max() > self.w - 1 or p[:, 1].max() > self.h - 1:
                return False
            box = _bounds(p, self.w, self.h)
            if (self.occupied[box[1]:box[3], box[0]:box[2]] & _poly_mask(p, box, grow=margin)).any():
                return False
        return True

    def background_luminance(self, polys: Sequence[np.ndarray]) -> float:
        pts = np.concatenate(polys)
        x0, y0, x1, y1 = _bounds(pts, self.w, self.h)
        region = self.img[y0:y1, x0:x1].reshape(-1, 3).mean(axis=0)
        return _luminance(region)

    def paint(self, strip: np.ndarray, poly: np.ndarray, inverse, colour: np.ndarray, opacity: float,
              text: str, ignore: bool, margin: int = 2) -> None:
        x0, y0, x1, y1 = box = _bounds(poly, self.w, self.h)
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64) + 0.5
        u, v = inverse(xs, ys)
        alpha = _bilinear(strip, u, v) * np.float32(opacity)
        region = self.img[y0:y1, x0:x1]
        region += (colour[None, None, :] - region) * alpha[..., None]
        self.instances.append(TextInstance(poly.astype(np.float32), text, ignore))
        self.labels[y0:y1, x0:x1][alpha >= 0.5] = len(self.instances)
        self.occupied[y0:y1, x0:x1] |= _poly_mask(poly, box, grow=margin)


def _font_size(rng: np.random.Generator, side: int, scale: Tuple[float, float]) -> int:
    return max(5, int(round(side * math.exp(rng.uniform(math.log(scale[0]), math.log(scale[1]))))))


def _n_chars(rng: np.random.Generator, lo: int, hi: int) -> int:
    return int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))


def _fitting_strip(rng, size, n_chars, max_len, blur=0.0):
    text = _random_words(rng, n_chars)
    strip = render_text_strip(text, size, blur)
    while strip.shape[1] > max_len and len(text) > 1:
        text = text[:max(1, int(len(text) * max_len / strip.shape[1]) - 1)].strip() or text[0]
        strip = render_text_strip(text, size, blur)
    return text, strip


def _line_angle(rng: np.random.Generator) -> float:
    r = rng.random()
    if r < 0.5:
        return float(rng.normal(0, 0.03))
    if r < 0.85:
        return float(rng.uniform(-math.pi / 4, math.pi / 4))
    return float(rng.uniform(-math.pi / 2, math.pi / 2))


def _place_straight(canvas: _Canvas, rng, side, scale, max_chars, ignore=False) -> bool:
    if ignore:
        size = int(rng.integers(5, 9)) if rng.random() < 0.5 else _font_size(rng, side, (scale[0], scale[0] * 2))
        blur = 0.0 if size <= 8 else float(rng.uniform(1.2, 2.5))
    else:
        size, blur = _font_size(rng, side, scale), 0.0
    angle = _line_angle(rng)
    text, strip = _fitting_strip(rng, size, _n_chars(rng, 2, max_chars), int(0.9 * max(canvas.w, canvas.h)), blur)
    for _ in range(15):
        cx, cy = rng.uniform(0, canvas.w), rng.uniform(0, canvas.h)
        poly, inverse = _straight(strip.shape, cx, cy, angle)
        if canvas.fits([poly]):
            bg = canvas.background_luminance([poly])
            colour = _contrast_colour(rng, bg, 40.0 if ignore else 90.0)
            opacity = float(rng.uniform(0.6, 1.0)) if ignore else 1.0
            canvas.paint(strip, poly, inverse, colour, opacity, '###' if ignore else text, ignore)
            return True
    return False


def _place_paragraph(canvas: _Canvas, rng, side, scale, max_chars) -> bool:
    size = _font_size(rng, side, (scale[0], scale[1] * 0.7))
    n_lines = int(rng.integers(2, 6))
    max_len = int(0.75 * min(canvas.w, canvas.h))
    lines = [_fitting_strip(rng, size, _n_chars(rng, 4, max_chars), max_len) for _ in range(n_lines)]
    max_h = max(s.shape[0] for _, s in lines)
    gap = max(2.0, float(rng.uniform(0.1, 0.45)) * max_h)
    pitch = max_h + gap
    angle = float(rng.normal(0, 0.03)) if rng.random() < 0.5 else float(rng.uniform(-0.6, 0.6))
    if rng.random() < 0.1:
        angle = float(rng.uniform(-math.pi / 2, math.pi / 2))
    e1 = np.array([math.cos(angle), math.sin(angle)])
    e2 = np.array([-math.sin(angle), math.cos(angle)])
    indents = [float(rng.uniform(0, 0.15 * max_h)) for _ in lines]
    for _ in range(15):
        origin = np.array([rng.uniform(0, canvas.w), rng.uniform(0, canvas.h)])
        geo = []
        for k, (text, strip) in enumerate(lines):
            c = origin + (indents[k] + strip.shape[1] / 2) * e1 + (k * pitch + pitch / 2) * e2
            geo.append(_straight(strip.shape, float(c[0]), float(c[1]), angle))
        if _paint_group(canvas, rng, lines, geo):
            return True
    return False


def _paint_group(canvas: _Canvas, rng, lines, geo) -> bool:
    """Paints lines [(text, strip)] at their geometry [(polygon, inverse map)] in one colour if every
    polygon fits on the canvas; returns whether it did."""
    polys = [g[0] for g in geo]
    if not canvas.fits(polys):
        return False
    colour = _contrast_colour(rng, canvas.background_luminance(polys))
    for (text, strip), (poly, inverse) in zip(lines, geo):
        canvas.paint(strip, poly, inverse, colour, 1.0, text, False, margin=0)
    canvas.occupied |= _dilated_union(polys, canvas)
    return True


def _dilated_union(polys: Sequence[np.ndarray], canvas: _Canvas, grow: int = 2) -> np.ndarray:
    out = np.zeros_like(canvas.occupied)
    for p in polys:
        box = _bounds(p, canvas.w, canvas.h)
        out[box[1]:box[3], box[0]:box[2]] |= _poly_mask(p, box, grow=grow)
    return out


def _place_curved(canvas: _Canvas, rng, side, scale, max_chars) -> bool:
    size = _font_size(rng, side, (max(scale[0], 0.03), scale[1] * 0.8))
    n_lines = 1 if rng.random() < 0.6 else int(rng.integers(2, 4))
    max_len = int(0.9 * min(canvas.w, canvas.h))
    lines = [_fitting_strip(rng, size, _n_chars(rng, 5, max(6, max_chars)), max_len) for _ in range(n_lines)]
    max_h = max(s.shape[0] for _, s in lines)
    w0 = lines[0][1].shape[1]
    span = float(rng.uniform(0.6, 2.1))
    radius0 = max(w0 / span, 2.5 * max_h * n_lines)
    sigma = 1 if rng.random() < 0.5 else -1
    gap = max(3.0, float(rng.uniform(0.15, 0.45)) * max_h) + 2.0  # + room for the arc chords
    pitch = max_h + gap
    radii = [radius0 - sigma * k * pitch for k in range(n_lines)]
    if min(radii) - max_h < max_h:
        return False
    theta_c = (-math.pi / 2 if sigma == 1 else math.pi / 2) + float(rng.uniform(-0.6, 0.6))
    if any(s.shape[1] / r > 2.3 for (_, s), r in zip(lines, radii)):
        return False
    for _ in range(15):
        mx, my = rng.uniform(0, canvas.w), rng.uniform(0, canvas.h)
        cx, cy = mx - radius0 * math.cos(theta_c), my - radius0 * math.sin(theta_c)
        geo = [_arc(s.shape, cx, cy, r, theta_c, sigma) for (_, s), r in zip(lines, radii)]
        if _paint_group(canvas, rng, lines, geo):
            return True
    return False


def synthetic_text_image(
        rng: np.random.Generator,
        size: Tuple[int, int],
        max_units: int = 10,
        text_scale: Tuple[float, float] = (0.025, 0.11),
        max_chars: int = 36,
        unit_probs: Tuple[float, float, float, float] = (0.4, 0.25, 0.2, 0.15),
) -> Tuple[np.ndarray, List[TextInstance], np.ndarray]:
    """One image: (H x W x 3 uint8, its text instances, the ink label map).

    Units are drawn with probabilities `unit_probs` = (straight line, dense paragraph, curved line(s),
    don't-care) until `max_units` (at least 3) were tried; each unit is placed where it overlaps no
    earlier one, or dropped. The ink label map (H x W int32) holds k + 1 where instance k's text alpha is
    >= 0.5 (0 elsewhere)."""
    h, w = size
    canvas = _Canvas(np.asarray(_background(rng, h, w), dtype=np.float32).copy())
    side = min(h, w)
    p = np.asarray(unit_probs, dtype=np.float64)
    p = p / p.sum()
    for _ in range(int(rng.integers(3, max(max_units, 3) + 1))):
        kind = int(rng.choice(4, p=p))
        if kind == 0:
            _place_straight(canvas, rng, side, text_scale, max_chars)
        elif kind == 1:
            _place_paragraph(canvas, rng, side, text_scale, max_chars)
        elif kind == 2:
            _place_curved(canvas, rng, side, text_scale, max_chars)
        else:
            _place_straight(canvas, rng, side, text_scale, max_chars, ignore=True)
    img = np.clip(np.rint(canvas.img), 0, 255).astype(np.uint8)
    return img, canvas.instances, canvas.labels


def make_synthetic_text(
        root: Union[str, Path],
        num_train: int = 200,
        num_test: int = 50,
        image_size: Union[int, Tuple[int, int]] = (384, 384),
        size_jitter: float = 0.15,
        seed: int = 0,
        **image_kwargs,
) -> Dict[str, Path]:
    """Write the benchmark under `root`; returns `train_images`, `train_annotations`, `test_images`,
    `test_annotations` (paths). `image_size` is (H, W) or a side, each side jittered by up to
    +-`size_jitter`; `**image_kwargs` go to `synthetic_text_image` (max_units, text_scale, max_chars,
    unit_probs)."""
    root = Path(root)
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    out: Dict[str, Path] = {}
    for split_id, (split, count) in enumerate((('train', num_train), ('test', num_test))):
        folder = root / split
        draw = lambda rng, size: synthetic_text_image(rng, size, **image_kwargs)  # noqa: E731
        records = [TextRecord(image=Path(name), width=w, height=h, instances=instances)
                   for name, h, w, (instances, _) in write_jittered_images(
                       folder, count, seed, split_id, image_size, size_jitter, draw, compress_level=1)]
        ann = root / 'annotations' / f'text_{split}.json'
        records_to_coco(records, ann, description=f'zoo synthetic dense text, seed {seed}, {split}')
        out[f'{split}_images'] = folder
        out[f'{split}_annotations'] = ann
    return out


# ----------------------------------------------------------------------------------------------------------
# visualisation


def _to_pil(image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert('RGB')
    if hasattr(image, 'detach'):  # a torch tensor, C x H x W (float in [0, 1] or uint8)
        image = image.detach().cpu().numpy()
        if image.ndim == 3 and image.shape[0] in (1, 3):
            image = image.transpose(1, 2, 0)
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    return Image.fromarray(arr).convert('RGB')


def draw_text_polygons(
        image,
        polygons: Sequence,
        scores: Optional[Sequence[float]] = None,
        ignore: Optional[Sequence[bool]] = None,
        color: Tuple[int, int, int] = (255, 40, 40),
        ignore_color: Tuple[int, int, int] = (120, 120, 255),
        width: int = 2,
) -> Image.Image:
    """A copy of `image` (PIL, H x W x 3 array, or C x H x W tensor) as RGB with each polygon ((N, 2) or
    flat) outlined, its score (if given) written at its top-left vertex; `ignore` polygons in
    `ignore_color`."""
    out = _to_pil(image).copy()
    draw = ImageDraw.Draw(out)
    font = _scalable_font(max(10, min(out.size) // 40)) or _bitmap_font()
    for k, poly in enumerate(polygons):
        pts = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        if len(pts) < 2:
            continue
        col = ignore_color if ignore is not None and ignore[k] else color
        xy = [(float(x), float(y)) for x, y in pts]
        draw.line(xy + xy[:1], fill=col, width=width, joint='curve')
        if scores is not None:
            x, y = pts[np.argmin(pts.sum(axis=1))]
            label = f'{float(scores[k]):.2f}'
            l, t, r, b = draw.textbbox((x, y), label, font=font)
            ty = y - (b - t) - 2 if y - (b - t) - 2 >= 0 else y + 2
            draw.rectangle([x, ty, x + (r - l) + 2, ty + (b - t) + 2], fill=col)
            draw.text((x + 1 - (l - x), ty + 1 - (t - y)), label, fill=(255, 255, 255), font=font)
    return out
