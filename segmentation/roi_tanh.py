"""RoI Tanh-polar, Tanh-Cartesian and Tanh-circular warps, their restores, and the polar <-> Cartesian
conversions between warped maps.

Paper: "RoI Tanh-polar Transformer Network for Face Parsing in the Wild", Y. Lin, J. Shen, Y. Wang,
M. Pantic, Image and Vision Computing 112 (2021), arXiv:2102.02717.
Official code: https://github.com/hhj1897/roi_tanh_warping (commit 5d953d3c, `ibug/roi_tanh_warping/
pytorch_impl.py`), MIT license. The math (see `specs/roi_tanh_rtnet.md`) is the official one; the code is ours.

A warp maps a face box (x1, y1, x2, y2) of an image onto a fixed-size map. The Tanh-Cartesian warp
samples ``centre + Rot(a) (w/2 atanh(u), h/2 atanh(v))`` on a pixel-centre grid (u, v) in (-1, 1), so
the box fills the middle ``tanh(1) = 76%`` of the map and the whole image is squeezed into the rest.
The Tanh-polar warp does the same along the radius of an ellipse of the box's area: column j is the
radius ``atanh(j / W)``, row i the angle ``2 pi i / H`` (row 0 along +x, clockwise on screen); with
``keep_aspect_ratio`` the angle is the true polar angle and the radius is scaled by the ellipse's radius
in that direction. The restores invert the warps; restoring a polar map pads it by one row circularly
(top, bottom) and one replicated column on the left first, as the official code does.

Differences from the official code (none change its numbers beyond float rounding):
  * grids are built in closed form for the whole batch (no per-roi Python loop) and always in at
    least float32 (``atanh`` near 1 amplifies rounding); half / bfloat16 maps are sampled in float32
    and the result cast back (a low-precision grid would misplace samples);
  * sample positions use ``arange(n) / n`` rather than ``arange(0, 1, 1 / n)``, which returns n + 1
    values for some sizes (49, 61, 98, ...) and crashes the official code;
  * warps take an optional ``image_index`` ([N] ints, like torchvision's RoIAlign batch index): several
    faces of one image are warped from that image without copying it per face; all faces of all images
    still go through one ``grid_sample`` call (each image's faces are stacked along the grid's height).
    Without it, ``images`` has one image per roi (the official API) or a single image for all rois;
  * on CPU, inference calls keep their grids and padded maps in per-thread buffers between calls
    (`release_workspace` frees them): a fresh 64 MiB grid is new memory from the OS on every call, and
    touching it the first time cost as much as computing it.

Everything is differentiable with respect to the images, the warped maps and the rois.

The public warps, restores and conversions check their rois first (`check_rois`): finite, x2 > x1,
y2 > y1 and, where the image size is known, overlapping the image; a bad box is an `InputError` (a
`ValueError`) naming its index and values, not NaN maps or an empty face.
"""
import math
import threading
from typing import Callable, Optional, Tuple, Union

import torch
import torch.nn.functional as F

from zoo.errors import InputError
from zoo.layers import channels_innermost

__all__ = [
    'check_rois', 'make_square_rois',
    'roi_tanh_warp', 'roi_tanh_restore',
    'roi_tanh_polar_warp', 'roi_tanh_polar_restore',
    'roi_tanh_circular_warp', 'roi_tanh_circular_restore',
    'roi_tanh_polar_to_roi_tanh', 'roi_tanh_to_roi_tanh_polar',
    'get_warp_func', 'get_restore_func',
    'polar_to_cartesian_grid', 'cartesian_to_polar_grid', 'pad_polar_map', 'grid_sample', 'release_workspace',
]

Offsets = Union[float, torch.Tensor]
_EPS = 1e-9
_SQRT_PI = math.sqrt(math.pi)


def _atanh(x: torch.Tensor) -> torch.Tensor:
    """atanh that stays finite at and beyond 1 (values there are far outside any image)."""
    return 0.5 * torch.log((1.0 + x) / (1.0 - x).clamp_min(_EPS))


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(torch.is_tensor(t) and t.requires_grad for t in tensors)


def _reusable(*tensors) -> bool:
    """Whether a grid built from these inputs may live in the reused workspace: not when autograd
    would save it for the backward pass (the next call would overwrite it)."""
    return not _needs_grad(*tensors)


def _norm(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """sqrt(x^2 + y^2) with a finite gradient (zero) at the origin."""
    if not _needs_grad(x, y):
        return torch.hypot(x, y)
    sq = x ** 2 + y ** 2
    pos = sq > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, sq, torch.ones_like(sq))), torch.zeros_like(sq))


def _angle(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """atan2(y, x), 0 at the origin with a finite gradient there."""
    if not _needs_grad(x, y):
        return torch.atan2(y, x)  # atan2(0, 0) = 0
    origin = (x == 0) & (y == 0)
    return torch.where(origin, torch.zeros_like(x), torch.atan2(y, torch.where(origin, torch.ones_like(x), x)))


def _grid_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _grid_sample(maps: torch.Tensor, grid: torch.Tensor, interpolation: str, padding: str) -> torch.Tensor:
    """grid_sample with align_corners=True; half / bfloat16 maps are sampled in float32 (a low-precision
    grid would misplace samples by up to ~1/256 of the map) and the result cast back."""
    if maps.dtype in (torch.float16, torch.bfloat16):
        out = F.grid_sample(maps.float(), grid.float(), mode=interpolation, padding_mode=padding, align_corners=True)
        return out.to(maps.dtype)
    return F.grid_sample(maps, grid.to(maps.dtype), mode=interpolation, padding_mode=padding, align_corners=True)


def check_rois(rois: torch.Tensor, image_width: Optional[int] = None, image_height: Optional[int] = None) -> None:
    """Raise `InputError` for rois that no warp can use: not [N, >=4], a non-finite coordinate, x2 <= x1
    or y2 <= y1 (a box of no size), or, given the image size, a box that does not overlap the image
    ([0, width] x [0, height] in pixels)."""
    if not torch.is_tensor(rois) or rois.dim() != 2 or rois.shape[-1] < 4:
        shape = tuple(rois.shape) if torch.is_tensor(rois) else type(rois).__name__
        raise InputError(f'rois must be a [N, >=4] tensor of boxes (x1, y1, x2, y2, ...) in pixels, got {shape}')
    boxes = rois[:, :4].detach()
    finite = torch.isfinite(boxes).all(1)
    problems = [(~finite, 'has a non-finite coordinate'),
                (finite & ((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])),
                 'has no size (needs x2 > x1 and y2 > y1)')]
    if image_width is not None and image_height is not None:
        outside = (boxes[:, 0] >= image_width) | (boxes[:, 2] <= 0) | (boxes[:, 1] >= image_height) | (boxes[:, 3] <= 0)
        problems.append((finite & outside, f'lies outside the {image_width}x{image_height} image'))
    for bad, why in problems:
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            values = [round(v, 3) for v in boxes[i].tolist()]
            raise InputError(f'box {i} {values} {why}; boxes are (x1, y1, x2, y2) in pixels')


def _roi_geometry(rois: torch.Tensor, dtype: torch.dtype) -> Tuple[torch.Tensor, ...]:
    """Centre x, centre y, width, height of every roi, each [N, 1, 1] for broadcasting over a grid."""
    rois = rois[:, :4].to(dtype)
    x1, y1, x2, y2 = (rois[:, i].view(-1, 1, 1) for i in range(4))
    return (x1 + x2) / 2.0, (y1 + y2) / 2.0, x2 - x1, y2 - y1


def _cos_sin(angular_offsets: Offsets, n: int, dtype, device) -> Tuple[torch.Tensor, torch.Tensor]:
    a = torch.as_tensor(angular_offsets, dtype=dtype, device=device).reshape(-1)
    a = a.expand(n) if a.numel() == 1 else a
    return a.cos().view(-1, 1, 1), a.sin().view(-1, 1, 1)


def _pixel_centres(n: int, dtype, device) -> torch.Tensor:
    """(2k + 1) / n - 1 for k < n: pixel centres of a side of n pixels in (-1, 1)."""
    return (2.0 * torch.arange(n, dtype=dtype, device=device) + 1.0) / n - 1.0


def _ellipse_scale(cos_t: torch.Tensor, sin_t: torch.Tensor, rx: torch.Tensor, ry: torch.Tensor) -> torch.Tensor:
    """Radius of the ellipse with semi-axes (rx, ry) in direction (cos, sin)."""
    return rx * ry / torch.sqrt(ry ** 2 * cos_t ** 2 + rx ** 2 * sin_t ** 2)


def _polar_directions(w, h, width: int, height: int, keep_aspect_ratio: bool, dtype, device):
    """A tanh-polar map samples the roi frame at offsets rho * (px, py): rho [1, 1, width] per column
    (atanh of the radius), (px, py) [N, height, 1] per row (the direction, scaled to the ellipse)."""
    rho = _atanh(torch.arange(width, dtype=dtype, device=device) / width).view(1, 1, -1)
    theta = (2.0 * math.pi / height) * torch.arange(height, dtype=dtype, device=device).view(1, -1, 1)
    cos_t, sin_t = theta.cos(), theta.sin()
    rx, ry = w / _SQRT_PI, h / _SQRT_PI
    if keep_aspect_ratio:
        scale = _ellipse_scale(cos_t, sin_t, rx, ry)
        return rho, scale * cos_t, scale * sin_t
    return rho, rx * cos_t, ry * sin_t


def _polar_offsets(w, h, width: int, height: int, keep_aspect_ratio: bool, dtype, device):
    """Offsets from the roi centre (roi frame, before rotation) sampled by a tanh-polar map."""
    rho, px, py = _polar_directions(w, h, width, height, keep_aspect_ratio, dtype, device)
    return rho * px, rho * py


def _circular_offsets(w, h, width: int, height: int, keep_aspect_ratio: bool, dtype, device):
    u = _pixel_centres(width, dtype, device).view(1, 1, -1)
    v = _pixel_centres(height, dtype, device).view(1, -1, 1)
    r = torch.sqrt(u ** 2 + v ** 2)
    # the centre pixel of an odd-sized map has no direction: any unit vector will do (its radius is 0),
    # but (0, 0) would make the ellipse scale 0 / 0
    centre = r == 0
    cos_t = torch.where(centre, torch.ones_like(u), u / r.clamp_min(_EPS))
    sin_t = torch.where(centre, torch.zeros_like(v), v / r.clamp_min(_EPS))
    rho = _atanh(r)
    rx, ry = w / _SQRT_PI, h / _SQRT_PI
    if keep_aspect_ratio:
        radius = rho * _ellipse_scale(cos_t, sin_t, rx, ry)
        return radius * cos_t, radius * sin_t
    return rx * rho * cos_t, ry * rho * sin_t


def _cartesian_offsets(w, h, width: int, height: int, dtype, device):
    u = _atanh(_pixel_centres(width, dtype, device)).view(1, 1, -1)
    v = _atanh(_pixel_centres(height, dtype, device)).view(1, -1, 1)
    return (w / 2.0) * u, (h / 2.0) * v


def _polar_coords(dx, dy, w, h, keep_aspect_ratio: bool):
    """(tanh radius in [0, 1), angle fraction in [0, 1)) of offsets (roi frame) for a tanh-polar map."""
    rx, ry = w / _SQRT_PI, h / _SQRT_PI
    if keep_aspect_ratio:
        # |d| / (ellipse radius along d) = |(ry dx, rx dy)| / (rx ry)
        rho = _norm(ry * dx, rx * dy) / (rx * ry)
        theta = _angle(dy, dx)
    else:
        qx, qy = dx / rx, dy / ry
        rho = _norm(qx, qy)
        theta = _angle(qy, qx)
    return torch.tanh(rho), torch.remainder(theta / (2.0 * math.pi), 1.0)


def _pad_polar(maps: torch.Tensor, scratch: bool = False) -> torch.Tensor:
    """One row wrapped around at top and bottom (the angle), column 0 repeated once on the left.
    `scratch`: the result only feeds one grid_sample call, so it may live in the workspace."""
    if _needs_grad(maps):
        maps = torch.cat([maps[..., -1:, :], maps, maps[..., :1, :]], dim=-2)
        return torch.cat([maps[..., :1], maps], dim=-1)
    h, w = maps.shape[-2:]
    shape = maps.shape[:-2] + (h + 2, w + 1)
    # one copy of the maps instead of two, in their layout: copying a channels-last map (or a channel slice of
    # one) into an NCHW buffer transposes it, ~10x slower than a copy that keeps the layout (128 x 65 x 65)
    if maps.dim() == 4 and channels_innermost(maps):
        out = torch.empty(shape, dtype=maps.dtype, device=maps.device, memory_format=torch.channels_last)
    else:
        out = _scratch('padded', shape, maps.dtype, maps.device) if scratch else maps.new_empty(shape)
    out[..., 1:h + 1, 1:] = maps
    out[..., 0, 1:] = maps[..., -1, :]
    out[..., h + 1, 1:] = maps[..., 0, :]
    out[..., 0] = out[..., 1]
    return out


def _polar_grid(radius: torch.Tensor, angle: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """grid_sample grid into a padded (`_pad_polar`) tanh-polar map of H x W from (radius in [0, 1),
    angle fraction) [N, h, w]: column radius * W + 1 of W + 1, row angle * H + 1 of H + 2."""
    gx = 2.0 * (radius * width + 1.0) / width - 1.0
    gy = 2.0 * (angle * height + 1.0) / (height + 1.0) - 1.0
    return torch.stack((gx, gy), dim=-1)


def _centred_grid(tx: torch.Tensor, ty: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """grid_sample grid into an H x W map from (tx, ty) in (-1, 1) measured on pixel centres
    (t = -1 / 1: the outer pixel edges)."""
    gx = ((tx + 1.0) * width / 2.0 - 0.5) * (2.0 / max(width - 1, 1)) - 1.0
    gy = ((ty + 1.0) * height / 2.0 - 0.5) * (2.0 / max(height - 1, 1)) - 1.0
    return torch.stack((gx, gy), dim=-1)


def _sample_polar(maps: torch.Tensor, radius: torch.Tensor, angle: torch.Tensor,
                  interpolation: str, padding: str) -> torch.Tensor:
    """Sample tanh-polar maps [N, C, H, W] at (radius in [0, 1), angle fraction) grids [N, h, w]."""
    grid = _polar_grid(radius, angle, *maps.shape[-2:])
    return _grid_sample(_pad_polar(maps), grid, interpolation, padding)


def _sample_centred(maps: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor,
                    interpolation: str, padding: str) -> torch.Tensor:
    return _grid_sample(maps, _centred_grid(tx, ty, *maps.shape[-2:]), interpolation, padding)


def polar_to_cartesian_grid(rois: torch.Tensor, polar_size: Tuple[int, int], target_size: Tuple[int, int],
                            keep_aspect_ratio: bool = False, dtype=torch.float32, device=None) -> torch.Tensor:
    """The grid `roi_tanh_polar_to_roi_tanh` samples with: [N, Ht, Wt, 2] into the polar map of size
    (H, W) after `pad_polar_map` (for reuse: it depends on the rois' sizes and the map sizes only)."""
    _, _, w, h = _roi_geometry(rois, dtype)
    dx, dy = _cartesian_offsets(w, h, target_size[1], target_size[0], dtype, device or rois.device)
    dx, dy = torch.broadcast_tensors(dx, dy)
    radius, angle = _polar_coords(dx, dy, w, h, keep_aspect_ratio)
    return _polar_grid(radius, angle, *polar_size)


def cartesian_to_polar_grid(rois: torch.Tensor, cartesian_size: Tuple[int, int], target_size: Tuple[int, int],
                            keep_aspect_ratio: bool = False, dtype=torch.float32, device=None) -> torch.Tensor:
    """The grid `roi_tanh_to_roi_tanh_polar` samples with: [N, Ht, Wt, 2] into the Cartesian map."""
    _, _, w, h = _roi_geometry(rois, dtype)
    vx, vy = _polar_offsets(w, h, target_size[1], target_size[0], keep_aspect_ratio, dtype, device or rois.device)
    return _centred_grid(torch.tanh(vx / (w / 2.0)), torch.tanh(vy / (h / 2.0)), *cartesian_size)


def pad_polar_map(maps: torch.Tensor) -> torch.Tensor:
    """A tanh-polar map padded as its samplers expect: one row wrapped at top and bottom, column 0
    repeated on the left."""
    return _pad_polar(maps)


def grid_sample(maps: torch.Tensor, grid: torch.Tensor, interpolation: str = 'bilinear',
                padding: str = 'zeros') -> torch.Tensor:
    """`F.grid_sample(..., align_corners=True)`; half / bfloat16 maps are sampled in float32."""
    return _grid_sample(maps, grid, interpolation, padding)


def _pixel_factors(rois, angular_offsets, width: int, height: int, dtype, device):
    """px [N, 1, W], py [N, H, 1] (image pixels from each roi centre), cos / sin of the roi angle
    [N, 1, 1], and the roi width and height [N, 1, 1]: the small factors of `_image_offsets`."""
    cx, cy, w, h = _roi_geometry(rois, dtype)
    cos_a, sin_a = _cos_sin(angular_offsets, rois.shape[0], dtype, device)
    px = torch.arange(width, dtype=dtype, device=device).view(1, 1, -1) - cx
    py = torch.arange(height, dtype=dtype, device=device).view(1, -1, 1) - cy
    return px, py, cos_a, sin_a, w, h


def _image_offsets(rois, angular_offsets, width: int, height: int, dtype, device):
    """Offsets of every image pixel from each roi centre, in the roi's rotated frame: [N, H, W] each."""
    px, py, cos_a, sin_a, w, h = _pixel_factors(rois, angular_offsets, width, height, dtype, device)
    return cos_a * px + sin_a * py, cos_a * py - sin_a * px, w, h


def _warp_grid(images: torch.Tensor, rois: torch.Tensor, angular_offsets: Offsets, offsets,
               reuse: bool) -> torch.Tensor:
    """The grid_sample grid [N, h, w, 2] into `images` of the points centre + Rot(a) (vx, vy).

    `offsets` is ('radial', rho [1, 1, w], px [N, h, 1], py [N, h, 1]) for v = rho * p (tanh-polar), or
    ('sum', vx, vy) with vx, vy broadcastable ([N, 1, w] and [N, h, 1] for tanh-Cartesian). The
    rotation and the normalisation to [-1, 1] are folded into small factors holding both coordinates
    ([..., 2]), so the whole grid is written by one broadcast op into contiguous memory instead of two
    strided passes (one per coordinate), four times as slow.
    """
    n = rois.shape[0]
    dtype = offsets[1].dtype
    cx, cy, _, _ = _roi_geometry(rois, dtype)
    cos_a, sin_a = _cos_sin(angular_offsets, n, dtype, images.device)
    img_h, img_w = images.shape[-2:]
    kx, ky = 2.0 / max(img_w - 1, 1), 2.0 / max(img_h - 1, 1)
    # (gx, gy) = origin + vx (ax, ay) + vy (bx, by)
    origin = torch.stack((cx * kx - 1.0, cy * ky - 1.0), -1)
    along_x = torch.stack((kx * cos_a, ky * sin_a), -1)
    along_y = torch.stack((-kx * sin_a, ky * cos_a), -1)
    if offsets[0] == 'radial':
        _, rho, px, py = offsets
        shape = (n, px.shape[1], rho.shape[2], 2)
        out = _scratch('grid', shape, dtype, images.device) if reuse else None
        return torch.addcmul(origin, rho.unsqueeze(-1), px.unsqueeze(-1) * along_x + py.unsqueeze(-1) * along_y,
                             out=out)
    _, vx, vy = offsets
    shape = (n,) + torch.broadcast_shapes(vx.shape[1:], vy.shape[1:]) + (2,)
    out = _scratch('grid', shape, dtype, images.device) if reuse else None
    return _add_pairs(origin + vx.unsqueeze(-1) * along_x, vy.unsqueeze(-1) * along_y, out)


def _add_pairs(a: torch.Tensor, b: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """a + b for coordinate pairs [..., 2] that broadcast, added as complex numbers: as real tensors the
    pair is the innermost dimension and a broadcast add runs an inner loop of two (six times as slow)."""
    total = torch.add(torch.view_as_complex(a), torch.view_as_complex(b),
                      out=None if out is None else torch.view_as_complex(out))
    return torch.view_as_real(total) if out is None else out


class _Workspace(threading.local):
    def __init__(self):
        self.buffers = {}


_WORKSPACE = _Workspace()
# the largest buffer kept between calls (32 faces restored to 512 x 512: a 64 MiB grid, 101 MiB padded maps)
WORKSPACE_MAX_BYTES = 128 << 20


def _scratch(name: str, shape, dtype, device) -> torch.Tensor:
    """Uninitialised memory for a tensor that one grid_sample call reads and drops (a grid, a padded
    map): never for anything returned, or kept by autograd.

    On CPU it is a per-thread buffer per name kept between calls: a fresh 64 MiB tensor is new memory
    from the OS every call (allocations that large bypass the allocator's free lists), and its
    first-touch page faults took as long as computing the grid (14 ms here). GPU allocators cache already.
    """
    if torch.device(device).type != 'cpu':
        return torch.empty(shape, dtype=dtype, device=device)
    numel = math.prod(shape)
    buffer = _WORKSPACE.buffers.get(name)
    if buffer is None or buffer.dtype != dtype or buffer.numel() < numel:
        with torch.inference_mode(False):  # a normal tensor works in and out of inference mode
            buffer = torch.empty(numel, dtype=dtype)
        if numel * buffer.element_size() <= WORKSPACE_MAX_BYTES:
            _WORKSPACE.buffers[name] = buffer
    return buffer[:numel].view(shape)


def release_workspace() -> None:
    """Frees this thread's buffers kept between inference calls (grids and padded maps)."""
    _WORKSPACE.buffers.clear()


def _sample_images(images: torch.Tensor, grid: torch.Tensor, interpolation: str, padding: str,
                   image_index: Optional[torch.Tensor]) -> torch.Tensor:
    """Sample every roi's grid [N, h, w, 2] from its image; one grid_sample for the whole batch."""
    n = grid.shape[0]
    batch = images.shape[0]
    if image_index is None:
        if batch == n:
            return _grid_sample(images, grid, interpolation, padding)
        if batch != 1:
            raise ValueError(f'{batch} images for {n} rois: pass image_index (the image of every roi)')
    if batch == 1:
        # one image: a stride-0 view gives grid_sample a batch to parallelise over, without a copy
        return _grid_sample(images.expand(n, -1, -1, -1), grid, interpolation, padding)
    image_index = image_index.to(device=images.device, dtype=torch.long).reshape(-1)
    if image_index.numel() != n:
        raise ValueError(f'image_index has {image_index.numel()} entries for {n} rois')
    # slot of every roi among its image's rois; each image's faces are stacked along the grid height
    counts = torch.bincount(image_index, minlength=batch)
    order = torch.argsort(image_index, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.empty_like(image_index)
    slot[order] = torch.arange(n, device=images.device) - starts[image_index[order]]
    k = int(counts.max()) if n else 0
    t_h, t_w = grid.shape[1:3]
    shape = (batch, k, t_h, t_w, 2)
    if _reusable(images, grid):
        stacked = _scratch('stacked', shape, grid.dtype, grid.device).fill_(-2.0)
        stacked.index_put_((image_index, slot), grid)
    else:
        stacked = grid.new_full(shape, -2.0).index_put((image_index, slot), grid)
    # (unused slots sample outside the image; their results are dropped)
    out = _grid_sample(images, stacked.view(batch, k * t_h, t_w, 2), interpolation, padding)
    return out.view(batch, -1, k, t_h, t_w)[image_index, :, slot]


# points per chunk of a restore grid: its chain of elementwise passes stays in cache (one 512 x 512 face)
_CHUNK_POINTS = 1 << 18


def _chunks(grid: torch.Tensor):
    """Slices of the rois of `grid` [N, H, W, 2] a few at a time (CPU), or all at once (GPU: one launch
    per op is better). A chain of elementwise passes over a chunk runs in cache, so memory sees one
    write per grid value: twice as fast as whole-batch passes on a 2-core CPU."""
    n, height, width = grid.shape[:3]
    step = n if grid.device.type != 'cpu' else max(1, _CHUNK_POINTS // max(height * width, 1))
    return [slice(i, i + step) for i in range(0, n, max(step, 1))]


def _restore_grid(build, maps: torch.Tensor, rois: torch.Tensor, angular_offsets: Offsets, height: int, width: int,
                  *args) -> torch.Tensor:
    """The [N, height, width, 2] grid restoring `maps`, written by `build(grid, rois, offsets, *args)`, in
    the workspace unless autograd keeps it."""
    n, dtype, device = rois.shape[0], _grid_dtype(maps), maps.device
    shape = (n, height, width, 2)
    grid = _scratch('grid', shape, dtype, device) if _reusable(maps) else torch.empty(shape, dtype=dtype, device=device)
    return build(grid, rois, angular_offsets, *args) if n else grid


def _rotated(sin_a: torch.Tensor) -> bool:
    """Whether any roi is rotated. Unrotated rois have separable restore grids: x depends on the image
    column only and y on the row, so the transcendental work is done on [N, 1, W] and [N, H, 1]."""
    return bool((sin_a != 0).any())


def _cartesian_restore_grid(grid: torch.Tensor, rois, angular_offsets, map_size) -> torch.Tensor:
    """Writes `roi_tanh_restore`'s grid [N, H, W, 2] (no autograd). Both coordinates are tanh of a sum
    of a column term and a row term: per chunk of rois one broadcast add of [N, 1, W, 2] and [N, H, 1, 2]
    factors into the grid, one in-place tanh and one affine pass (the pixel-centre normalisation is
    linear in tanh). Unrotated rois have one non-zero term per coordinate and tanh(0) = 0, so the tanh
    and the affine map go on the factors and the grid is one add."""
    px, py, cos_a, sin_a, w, h = _pixel_factors(rois, angular_offsets, grid.shape[2], grid.shape[1], grid.dtype,
                                                grid.device)
    map_h, map_w = map_size
    # ((t + 1) n / 2 - 0.5) * 2 / (n - 1) - 1 = t * scale + shift, per coordinate
    scale = grid.new_tensor([map_w / max(map_w - 1, 1), map_h / max(map_h - 1, 1)])
    shift = grid.new_tensor([(n / 2.0 - 0.5) * 2.0 / max(n - 1, 1) - 1.0 for n in (map_w, map_h)])
    # (tx, ty) = px (2 cos / w, -2 sin / h) + py (2 sin / w, 2 cos / h)
    column = px.unsqueeze(-1) * torch.stack((2.0 * cos_a / w, -2.0 * sin_a / h), -1)
    row = py.unsqueeze(-1) * torch.stack((2.0 * sin_a / w, 2.0 * cos_a / h), -1)
    if not _rotated(sin_a):
        return _add_pairs(torch.addcmul(shift, column.tanh_(), scale), row.tanh_() * scale, grid)
    # scale and shift written out along a row: the pass then runs over contiguous memory (a trailing [2]
    # broadcast would make its inner loop two values long)
    width = grid.shape[2]
    scale, shift = scale.expand(width, 2).contiguous(), shift.expand(width, 2).contiguous()
    for part in _chunks(grid):
        chunk = _add_pairs(column[part], row[part], grid[part]).tanh_()
        torch.addcmul(shift, chunk, scale, out=chunk)
    return grid


def _polar_restore_grid(grid: torch.Tensor, rois, angular_offsets, map_size, keep_aspect_ratio: bool) -> torch.Tensor:
    """Writes `roi_tanh_polar_restore`'s grid [N, H, W, 2] into the padded map (no autograd), per chunk of
    rois in seven or eight passes instead of 40: q = -(offset / ellipse radii), each coordinate a column
    term plus a row term (the sign folded in); the radius is tanh |q| and the angle atan2(-y, -x) + pi,
    which lies in (0, 2 pi] (no remainder: an angle of 2 pi lands on the wrapped row, equal to row 0).
    Radius and angle are interleaved as the parts of a complex tensor and normalised in one pass."""
    px, py, cos_a, sin_a, w, h = _pixel_factors(rois, angular_offsets, grid.shape[2], grid.shape[1], grid.dtype,
                                                grid.device)
    map_h, map_w = map_size
    rx, ry = w / _SQRT_PI, h / _SQRT_PI
    qx_column, qx_row = (-cos_a / rx) * px, (-sin_a / rx) * py
    qy_column, qy_row = (sin_a / ry) * px, (-cos_a / ry) * py
    # column radius * W + 1 of W + 1, row (angle + pi) / (2 pi) * H + 1 of H + 2: scale and shift
    # written out along a row so that the pass runs over contiguous memory
    width = grid.shape[2]
    scale = grid.new_tensor([2.0, map_h / (math.pi * (map_h + 1))]).expand(width, 2).contiguous()
    shift = grid.new_tensor([2.0 / map_w - 1.0, 1.0 / (map_h + 1)]).expand(width, 2).contiguous()
    for part in _chunks(grid):
        qx, qy = qx_column[part] + qx_row[part], qy_column[part] + qy_row[part]
        radius = torch.hypot(qx, qy).tanh_()
        if keep_aspect_ratio:  # the angle of (qx, qy ry / rx) = -(dx, dy) / rx, the true direction (rx > 0)
            qy.mul_(ry[part] / rx[part])
        chunk = grid[part]
        torch.complex(radius, torch.atan2(qy, qx), out=torch.view_as_complex(chunk))
        torch.addcmul(shift, chunk, scale, out=chunk)
    return grid


def make_square_rois(rois: torch.Tensor, opt: int = 0) -> torch.Tensor:
    """Square boxes with the same centres: side = min (opt < 0), max (opt > 0) or geometric mean (0)."""
    sizes = rois[..., 2:4] - rois[..., :2]
    if opt < 0:
        side = sizes.min(dim=-1, keepdim=True)[0]
    elif opt > 0:
        side = sizes.max(dim=-1, keepdim=True)[0]
    else:
        side = (sizes[..., :1] * sizes[..., 1:2]).sqrt()
    delta = (sizes - side) / 2.0
    out = rois.clone()
    out[..., :2] = rois[..., :2] + delta
    out[..., 2:4] = rois[..., 2:4] - delta
    return out


def roi_tanh_warp(images: torch.Tensor, rois: torch.Tensor, target_width: int, target_height: int,
                  angular_offsets: Offsets = 0.0, interpolation: str = 'bilinear', padding: str = 'zeros',
                  image_index: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Tanh-Cartesian warp: images [B, C, H, W], rois [N, >=4] -> [N, C, target_height, target_width]."""
    check_rois(rois, images.shape[-1], images.shape[-2])
    dtype = _grid_dtype(images)
    _, _, w, h = _roi_geometry(rois, dtype)
    vx, vy = _cartesian_offsets(w, h, target_width, target_height, dtype, images.device)
    grid = _warp_grid(images, rois, angular_offsets, ('sum', vx, vy), _reusable(images, rois, angular_offsets))
    return _sample_images(images, grid, interpolation, padding, image_index)


def roi_tanh_polar_warp(images: torch.Tensor, rois: torch.Tensor, target_width: int, target_height: int,
                        angular_offsets: Offsets = 0.0, interpolation: str = 'bilinear', padding: str = 'zeros',
                        keep_aspect_ratio: bool = False, image_index: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Tanh-polar warp: width axis = radius, height axis = angle. -> [N, C, target_height, target_width]."""
    check_rois(rois, images.shape[-1], images.shape[-2])
    dtype = _grid_dtype(images)
    _, _, w, h = _roi_geometry(rois, dtype)
    rho, px, py = _polar_directions(w, h, target_width, target_height, keep_aspect_ratio, dtype, images.device)
    grid = _warp_grid(images, rois, angular_offsets, ('radial', rho, px, py),
                      _reusable(images, rois, angular_offsets))
    return _sample_images(images, grid, interpolation, padding, image_index)


def roi_tanh_circular_warp(images: torch.Tensor, rois: torch.Tensor, target_width: int, target_height: int,
                           angular_offsets: Offsets = 0.0, interpolation: str = 'bilinear', padding: str = 'zeros',
                           keep_aspect_ratio: bool = False, image_index: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Tanh-circular warp: a Cartesian map whose radius from the centre is tanh-compressed."""
    check_rois(rois, images.shape[-1], images.shape[-2])
    dtype = _grid_dtype(images)
    _, _, w, h = _roi_geometry(rois, dtype)
    vx, vy = _circular_offsets(w, h, target_width, target_height, keep_aspect_ratio, dtype, images.device)
    grid = _warp_grid(images, rois, angular_offsets, ('sum', vx, vy), _reusable(images, rois, angular_offsets))
    return _sample_images(images, grid, interpolation, padding, image_index)


def roi_tanh_restore(warped_images: torch.Tensor, rois: torch.Tensor, image_width: int, image_height: int,
                     angular_offsets: Offsets = 0.0, interpolation: str = 'bilinear',
                     padding: str = 'zeros') -> torch.Tensor:
    """Inverse of `roi_tanh_warp`: [N, C, h, w] -> [N, C, image_height, image_width], one map per roi."""
    check_rois(rois, image_width, image_height)
    dtype = _grid_dtype(warped_images)
    if not _needs_grad(rois, angular_offsets):
        grid = _restore_grid(_cartesian_restore_grid, warped_images, rois, angular_offsets, image_height, image_width,
                             warped_images.shape[-2:])
        return _grid_sample(warped_images, grid, interpolation, padding)
    dx, dy, w, h = _image_offsets(rois, angular_offsets, image_width, image_height, dtype, warped_images.device)
    return _sample_centred(warped_images, torch.tanh(dx / (w / 2.0)), torch.tanh(dy / (h / 2.0)),
                           interpolation, padding)


def roi_tanh_polar_restore(warped_images: torch.Tensor, rois: torch.Tensor, image_width: int, image_height: int,
                           angular_offsets: Offsets = 0.0, interpolation: str = 'bilinear', padding: str = 'zeros',
                           keep_aspect_ratio: bool = False) -> torch.Tensor:
    """Inverse of `roi_tanh_polar_warp`: [N, C, h, w] -> [N, C, image_height, image_width]."""
    check_rois(rois, image_width, image_height)
    dtype = _grid_dtype(warped_images)
    if not _needs_grad(rois, angular_offsets):
        grid = _restore_grid(_polar_restore_grid, warped_images, rois, angular_offsets, image_height, image_width,
                             warped_images.shape[-2:], keep_aspect_ratio)
        return _grid_sample(_pad_polar(warped_images, scratch=True), grid, interpolation, padding)
    dx, dy, w, h = _image_offsets(rois, angular_offsets, image_width, image_height, dtype, warped_images.device)
    radius, angle = _polar_coords(dx, dy, w, h, keep_aspect_ratio)
    return _sample_polar(warped_images, radius, angle, interpolation, padding)


def roi_tanh_circular_restore(warped_images: torch.Tensor, rois: torch.Tensor, image_width: int,
                              image_height: int, angular_offsets: Offsets = 0.0, interpolation: str = 'bilinear',
                              padding: str = 'zeros', keep_aspect_ratio: bool = False) -> torch.Tensor:
    """Inverse of `roi_tanh_circular_warp`: [N, C, h, w] -> [N, C, image_height, image_width]."""
    check_rois(rois, image_width, image_height)
    dtype = _grid_dtype(warped_images)
    dx, dy, w, h = _image_offsets(rois, angular_offsets, image_width, image_height, dtype, warped_images.device)
    rx, ry = w / _SQRT_PI, h / _SQRT_PI
    if keep_aspect_ratio:
        dist = _norm(dx, dy)
        ox, oy = dx / dist.clamp_min(_EPS), dy / dist.clamp_min(_EPS)
        rho = _norm(ry * dx, rx * dy) / (rx * ry)
    else:
        qx, qy = dx / rx, dy / ry
        rho = _norm(qx, qy)
        ox, oy = qx / rho.clamp_min(_EPS), qy / rho.clamp_min(_EPS)
    r = torch.tanh(rho)
    return _sample_centred(warped_images, ox * r, oy * r, interpolation, padding)


def roi_tanh_polar_to_roi_tanh(warped_images: torch.Tensor, rois: torch.Tensor, target_width: int = 0,
                               target_height: int = 0, interpolation: str = 'bilinear', padding: str = 'zeros',
                               keep_aspect_ratio: bool = False) -> torch.Tensor:
    """Tanh-polar maps -> Tanh-Cartesian maps of the same rois (only the roi sizes matter; 0 = same size)."""
    check_rois(rois)
    target_width = target_width if target_width > 0 else warped_images.shape[-1]
    target_height = target_height if target_height > 0 else warped_images.shape[-2]
    grid = polar_to_cartesian_grid(rois, warped_images.shape[-2:], (target_height, target_width), keep_aspect_ratio,
                                   _grid_dtype(warped_images), warped_images.device)
    # autograd keeps the padded maps when the grid needs a gradient
    return _grid_sample(_pad_polar(warped_images, scratch=_reusable(rois)), grid, interpolation, padding)


def roi_tanh_to_roi_tanh_polar(warped_images: torch.Tensor, rois: torch.Tensor, target_width: int = 0,
                               target_height: int = 0, interpolation: str = 'bilinear', padding: str = 'zeros',
                               keep_aspect_ratio: bool = False) -> torch.Tensor:
    """Tanh-Cartesian maps -> Tanh-polar maps of the same rois (only the roi sizes matter; 0 = same size)."""
    check_rois(rois)
    target_width = target_width if target_width > 0 else warped_images.shape[-1]
    target_height = target_height if target_height > 0 else warped_images.shape[-2]
    grid = cartesian_to_polar_grid(rois, warped_images.shape[-2:], (target_height, target_width), keep_aspect_ratio,
                                   _grid_dtype(warped_images), warped_images.device)
    return _grid_sample(warped_images, grid, interpolation, padding)


_WARPS = {'cartesian': roi_tanh_warp, 'polar': roi_tanh_polar_warp, 'circular': roi_tanh_circular_warp}
_RESTORES = {'cartesian': roi_tanh_restore, 'polar': roi_tanh_polar_restore, 'circular': roi_tanh_circular_restore}


def get_warp_func(variant: str = 'cartesian') -> Callable[..., torch.Tensor]:
    """The warp of a variant: 'cartesian', 'polar' or 'circular'."""
    try:
        return _WARPS[variant.lower().strip()]
    except KeyError:
        raise ValueError(f"variant must be 'cartesian', 'polar' or 'circular', not {variant!r}") from None


def get_restore_func(variant: str = 'cartesian') -> Callable[..., torch.Tensor]:
    """The restore of a variant: 'cartesian', 'polar' or 'circular'."""
    try:
        return _RESTORES[variant.lower().strip()]
    except KeyError:
        raise ValueError(f"variant must be 'cartesian', 'polar' or 'circular', not {variant!r}") from None
