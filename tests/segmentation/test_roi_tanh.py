"""RoI Tanh warps: the official numbers (fixture), batching, round trips, odd sizes, gradients."""
import math

import pytest
import torch

from segmentation import roi_tanh as rt
from tests.helpers import requires_fixture
from zoo.errors import InputError
from zoo.testing import load_fixture, relative_error


def _fixture_outputs(inputs, expected):
    image, rois, offsets = inputs['image'], inputs['rois'], inputs['angular_offsets']
    images = image.expand(rois.shape[0], -1, -1, -1)
    e = {k: v[:, :1] for k, v in expected.items() if k.endswith('warp') or k.endswith('warp_kar')}
    return {
        'polar_warp': rt.roi_tanh_polar_warp(images, rois, 64, 80, offsets),
        'polar_warp_kar': rt.roi_tanh_polar_warp(images, rois, 64, 80, offsets, keep_aspect_ratio=True),
        'cart_warp': rt.roi_tanh_warp(images, rois, 64, 80, offsets),
        'circular_warp': rt.roi_tanh_circular_warp(images, rois, 64, 80, offsets),
        'polar_restore': rt.roi_tanh_polar_restore(e['polar_warp'], rois, 128, 96, offsets),
        'polar_restore_kar': rt.roi_tanh_polar_restore(e['polar_warp_kar'], rois, 128, 96, offsets,
                                                       keep_aspect_ratio=True),
        'cart_restore': rt.roi_tanh_restore(e['cart_warp'], rois, 128, 96, offsets),
        'circular_restore': rt.roi_tanh_circular_restore(e['circular_warp'], rois, 128, 96, offsets),
        'polar_to_cart': rt.roi_tanh_polar_to_roi_tanh(e['polar_warp'], rois, 64, 80),
        'polar_to_cart_kar': rt.roi_tanh_polar_to_roi_tanh(e['polar_warp_kar'], rois, 64, 80, keep_aspect_ratio=True),
        'cart_to_polar': rt.roi_tanh_to_roi_tanh_polar(e['cart_warp'], rois, 64, 80),
        'cart_to_polar_kar': rt.roi_tanh_to_roi_tanh_polar(e['cart_warp'], rois, 64, 80, keep_aspect_ratio=True),
    }


@requires_fixture('roi_tanh')
def test_matches_official_warps():
    fx = load_fixture('roi_tanh')
    ours = _fixture_outputs(fx['inputs'], fx['expected'])
    assert set(ours) == set(fx['expected'])
    errors = {k: relative_error(ours[k], v) for k, v in fx['expected'].items()}
    assert max(errors.values()) <= fx['meta']['rtol_max'], errors
    # a float32 re-implementation sits at the official float32-vs-float64 level, far below the tolerance
    assert max(errors.values()) < 1e-4, errors


def _smooth_image(b=2, c=3, h=96, w=128):
    y = torch.arange(h, dtype=torch.float32).view(-1, 1)
    x = torch.arange(w, dtype=torch.float32).view(1, -1)
    chans = [torch.sin(x / (9 + 3 * i + k)) * torch.cos(y / (13 + 2 * i + k)) for k in range(b) for i in range(c)]
    return torch.stack(chans).view(b, c, h, w)


ROIS = torch.tensor([[30., 20., 78., 80.], [40., 30., 100., 78.], [5., 10., 60., 50.]])


@pytest.mark.parametrize('warp', ['cartesian', 'polar', 'circular'])
def test_several_faces_per_image_with_image_index(warp):
    images = _smooth_image(b=2)
    index = torch.tensor([1, 0, 1])
    kwargs = {} if warp == 'cartesian' else dict(keep_aspect_ratio=True)
    fn = rt.get_warp_func(warp)
    offsets = torch.tensor([0.0, 0.4, -0.2])
    batched = fn(images, ROIS, 40, 48, offsets, image_index=index, **kwargs)
    one_per_roi = fn(images[index], ROIS, 40, 48, offsets, **kwargs)
    torch.testing.assert_close(batched, one_per_roi, atol=1e-6, rtol=0)
    # a single image serves every roi without an index
    torch.testing.assert_close(fn(images[:1], ROIS, 40, 48, offsets, **kwargs),
                               fn(images[:1].expand(3, -1, -1, -1), ROIS, 40, 48, offsets, **kwargs))
    with pytest.raises(ValueError, match='image_index'):
        fn(images, ROIS, 40, 48, offsets, **kwargs)


def _box_mask(rois, h, w, shrink=0.9):
    y = torch.arange(h).view(-1, 1)
    x = torch.arange(w).view(1, -1)
    masks = []
    for x1, y1, x2, y2 in rois.tolist():
        cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, shrink * (x2 - x1) / 2, shrink * (y2 - y1) / 2
        masks.append(((x - cx).abs() <= hw) & ((y - cy).abs() <= hh))
    return torch.stack(masks)


# restore(warp(img)) inside the face box (90% of it): at a 256x256 map of a ~50 px face, bilinear twice
ROUND_TRIP_TOL = 0.03


@pytest.mark.parametrize('variant,kar', [('cartesian', False), ('polar', False), ('polar', True),
                                         ('circular', False), ('circular', True)])
def test_restore_of_warp_reproduces_face_region(variant, kar):
    image = _smooth_image(b=1)
    rois, offsets = ROIS[:2], torch.tensor([0.0, 0.3])
    kwargs = {} if variant == 'cartesian' else dict(keep_aspect_ratio=kar)
    warped = rt.get_warp_func(variant)(image, rois, 256, 256, offsets, **kwargs)
    restored = rt.get_restore_func(variant)(warped, rois, 128, 96, offsets, **kwargs)
    mask = _box_mask(rois, 96, 128).unsqueeze(1).expand_as(restored)
    err = (restored - image.expand_as(restored))[mask].abs().max().item()
    assert err < ROUND_TRIP_TOL, err


def test_polar_rotation_is_a_cyclic_row_shift():
    image = _smooth_image(b=1)
    rois = ROIS[:1]
    h = 64
    base = rt.roi_tanh_polar_warp(image, rois, 32, h, 0.0, keep_aspect_ratio=True)
    rolled = rt.roi_tanh_polar_warp(image, make_square(rois), 32, h, 2 * math.pi * 5 / h)
    square = rt.roi_tanh_polar_warp(image, make_square(rois), 32, h, 0.0)
    torch.testing.assert_close(rolled, torch.roll(square, -5, dims=-2), atol=1e-4, rtol=0)
    assert base.shape == (1, 3, h, 32)


def make_square(rois):
    return rt.make_square_rois(rois, 0)


def test_make_square_rois():
    rois = torch.tensor([[0., 0., 4., 16., 0.9]])
    for opt, side in ((-1, 4.), (1, 16.), (0, 8.)):
        sq = rt.make_square_rois(rois, opt)
        torch.testing.assert_close(sq[0, 2:4] - sq[0, :2], torch.tensor([side, side]))
        torch.testing.assert_close((sq[0, 2:4] + sq[0, :2]) / 2, torch.tensor([2., 8.]))
        assert sq[0, 4] == rois[0, 4]  # extra columns kept


@pytest.mark.parametrize('size', [49, 61, 98, 197])
def test_sizes_that_crash_the_official_grids(size):
    image = _smooth_image(b=1)
    for fn in (rt.roi_tanh_warp, rt.roi_tanh_polar_warp, rt.roi_tanh_circular_warp):
        assert fn(image, ROIS[:1], size, size).shape == (1, 3, size, size)
    polar = rt.roi_tanh_polar_warp(image, ROIS[:1], size, size)
    assert rt.roi_tanh_polar_to_roi_tanh(polar, ROIS[:1]).shape == (1, 3, size, size)
    assert rt.roi_tanh_to_roi_tanh_polar(polar, ROIS[:1], size + 1, size - 1).shape == (1, 3, size - 1, size + 1)


def test_differentiable_wrt_images_and_rois():
    image = _smooth_image(b=1, h=24, w=32).double().requires_grad_()
    rois = torch.tensor([[6., 4., 22., 20.]], dtype=torch.float64, requires_grad=True)
    warped = rt.roi_tanh_polar_warp(image, rois, 16, 16, 0.2, keep_aspect_ratio=True)
    restored = rt.roi_tanh_polar_restore(warped, rois, 32, 24, 0.2, keep_aspect_ratio=True)
    restored.square().sum().backward()
    assert image.grad.abs().sum() > 0 and rois.grad.abs().sum() > 0
    assert torch.isfinite(image.grad).all() and torch.isfinite(rois.grad).all()
    torch.autograd.gradcheck(
        lambda img: rt.roi_tanh_warp(img, rois.detach(), 8, 8, 0.1), (image[..., :12, :16].detach().requires_grad_(),))


def test_half_precision_keeps_dtype():
    image = _smooth_image(b=1)
    out = rt.roi_tanh_polar_warp(image.half(), ROIS[:1], 32, 32, keep_aspect_ratio=True)
    assert out.dtype == torch.float16
    ref = rt.roi_tanh_polar_warp(image, ROIS[:1], 32, 32, keep_aspect_ratio=True)
    assert (out.float() - ref).abs().max() < 2e-3  # float16 rounding of the values only
    restored = rt.roi_tanh_polar_restore(out.bfloat16(), ROIS[:1], 128, 96, keep_aspect_ratio=True)
    assert restored.dtype == torch.bfloat16


def test_unknown_variant():
    with pytest.raises(ValueError, match='variant'):
        rt.get_warp_func('spherical')
    with pytest.raises(ValueError, match='variant'):
        rt.get_restore_func('spherical')


@pytest.mark.parametrize('variant', ['cartesian', 'polar', 'circular'])
@pytest.mark.parametrize('keep', [False, True])
@pytest.mark.parametrize('rotated', [False, True])
def test_inference_grids_equal_the_autograd_path(variant, keep, rotated):
    """Without autograd the warps and restores build their grids from small factors in place; the
    result must equal the differentiable path's."""
    from segmentation.roi_tanh import get_restore_func, get_warp_func

    torch.manual_seed(0)
    images = torch.rand(2, 3, 40, 56)
    rois = torch.tensor([[5.0, 4.0, 30.0, 36.0], [20.0, 10.0, 50.0, 28.0], [1.0, 2.0, 11.0, 9.0]])
    angles = torch.tensor([0.3, -1.2, 2.5]) if rotated else 0.0  # unrotated restores take a separable path
    index = torch.tensor([0, 1, 1])
    kw = {} if variant == 'cartesian' else dict(keep_aspect_ratio=keep)
    warp, restore = get_warp_func(variant), get_restore_func(variant)
    with torch.no_grad():
        fast = warp(images, rois, 33, 29, angles, image_index=index, **kw)
        fast_back = restore(fast, rois, 56, 40, angles, **kw)
    slow_rois = rois.clone().requires_grad_()
    slow = warp(images, slow_rois, 33, 29, angles, image_index=index, **kw)
    slow_back = restore(slow, slow_rois, 56, 40, angles, **kw)
    torch.testing.assert_close(fast, slow.detach(), atol=2e-5, rtol=0)
    torch.testing.assert_close(fast_back, slow_back.detach(), atol=2e-5, rtol=0)


def test_inference_grids_reuse_one_buffer_and_autograd_grids_do_not():
    """Inference grids live in a per-thread buffer kept between calls (no fresh 64 MiB each call);
    a grid autograd saves for backward must not be that buffer, or the next call would overwrite it."""
    torch.manual_seed(0)
    rt.release_workspace()
    maps = torch.rand(3, 2, 20, 24)
    rois = torch.tensor([[5.0, 4.0, 30.0, 36.0], [20.0, 10.0, 50.0, 28.0], [1.0, 2.0, 11.0, 9.0]])
    angles = torch.tensor([0.3, -1.2, 2.5])
    with torch.no_grad():
        big = rt.roi_tanh_restore(maps, rois, 56, 40, angles)
        buffer = rt._WORKSPACE.buffers['grid'].data_ptr()
        small = rt.roi_tanh_polar_restore(maps[:1], rois[:1], 30, 20, angles[:1])
        again = rt.roi_tanh_restore(maps, rois, 56, 40, angles)
        assert rt._WORKSPACE.buffers['grid'].data_ptr() == buffer
    torch.testing.assert_close(again, big, atol=0, rtol=0)
    with torch.inference_mode():  # the kept buffers serve inference mode and plain no_grad alike
        torch.testing.assert_close(rt.roi_tanh_restore(maps, rois, 56, 40, angles), big, atol=0, rtol=0)
    rt.release_workspace()
    with torch.no_grad():
        torch.testing.assert_close(rt.roi_tanh_polar_restore(maps[:1], rois[:1], 30, 20, angles[:1]), small,
                                   atol=0, rtol=0)

    trained = maps.clone().requires_grad_()
    out = rt.roi_tanh_restore(trained, rois, 56, 40, angles)
    rt.roi_tanh_restore(maps.flip(-1), rois.flip(0), 56, 40, angles)  # would overwrite a shared grid
    out.square().sum().backward()
    reference = maps.clone().requires_grad_()
    rt.roi_tanh_restore(reference, rois, 56, 40, angles).square().sum().backward()
    torch.testing.assert_close(trained.grad, reference.grad, atol=0, rtol=0)


@pytest.mark.parametrize('variant', ['cartesian', 'polar', 'circular'])
def test_gradients_wrt_rois_and_angles(variant):
    """The grids are built from complex-number sums and broadcast factors: their gradients with respect
    to the boxes and the angles must match finite differences (centre off the pixel grid: bilinear
    sampling has kinks at integer positions)."""
    torch.manual_seed(0)
    image = torch.rand(1, 2, 12, 16, dtype=torch.float64)
    rois = torch.tensor([[3.3, 2.1, 11.2, 9.4]], dtype=torch.float64, requires_grad=True)
    angle = torch.tensor([0.3], dtype=torch.float64, requires_grad=True)
    kw = {} if variant == 'cartesian' else dict(keep_aspect_ratio=True)
    warp, restore = rt.get_warp_func(variant), rt.get_restore_func(variant)
    assert torch.autograd.gradcheck(lambda r, a: warp(image, r, 6, 5, a, **kw), (rois, angle), eps=1e-6, atol=1e-5)
    assert torch.autograd.gradcheck(lambda r, a: restore(image, r, 10, 9, a, **kw), (rois, angle), eps=1e-6,
                                    atol=1e-5)


_BAD_BOXES = [
    ([[10., 10., 10., 40.]], 'box 0 .* has no size'),             # zero width
    ([[10., 10., 40., 5.]], 'box 0 .* has no size'),              # y2 < y1
    ([[10., 10., 40., 40.], [1., float('nan'), 5., 9.]], 'box 1 .* non-finite'),
    ([[10., 10., float('inf'), 40.]], 'box 0 .* non-finite'),
    ([[200., 10., 260., 40.]], r'box 0 \[200.0, 10.0, 260.0, 40.0\] lies outside the 128x96 image'),
    ([[-50., -50., -10., -1.]], 'box 0 .* lies outside'),
]


@pytest.mark.parametrize('variant', ['cartesian', 'polar', 'circular'])
@pytest.mark.parametrize('boxes, match', _BAD_BOXES)
def test_warps_and_restores_refuse_boxes_they_cannot_use(variant, boxes, match):
    images = torch.rand(1, 3, 96, 128)
    rois = torch.tensor(boxes)
    with pytest.raises(ValueError, match=match) as e:
        rt.get_warp_func(variant)(images, rois, 32, 32)
    assert isinstance(e.value, InputError)
    maps = torch.rand(len(boxes), 3, 32, 32)
    with pytest.raises(InputError, match=match):
        rt.get_restore_func(variant)(maps, rois, 128, 96)


def test_conversions_and_shapes_are_checked():
    maps = torch.rand(1, 3, 32, 32)
    with pytest.raises(InputError, match='has no size'):
        rt.roi_tanh_polar_to_roi_tanh(maps, torch.tensor([[5., 5., 5., 9.]]))
    with pytest.raises(InputError, match='non-finite'):
        rt.roi_tanh_to_roi_tanh_polar(maps, torch.tensor([[5., 5., float('nan'), 9.]]))
    with pytest.raises(InputError, match=r'\[N, >=4\].*got \(4,\)'):
        rt.roi_tanh_polar_warp(torch.rand(1, 3, 16, 16), torch.tensor([1., 1., 5., 5.]), 8, 8)
    # a box partly outside the image is a face at the border: allowed
    assert rt.roi_tanh_polar_warp(torch.rand(1, 3, 16, 16), torch.tensor([[-4., -4., 6., 6.]]), 8, 8).isfinite().all()


def test_polar_padding_keeps_a_channels_last_layout():
    """A channels-last map (or a channel slice of one, as RTNet's Cartesian half) is padded channels-last: the
    same values as the NCHW padding, without transposing the map."""
    maps = torch.randn(2, 6, 7, 5)
    ref = rt.pad_polar_map(maps)
    assert ref.is_contiguous() and ref.shape == (2, 6, 9, 6)
    cl = maps.contiguous(memory_format=torch.channels_last)
    for src, expected in ((cl, ref), (cl[:, 2:], ref[:, 2:])):
        out = rt.pad_polar_map(src)
        assert out.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(out, expected)
