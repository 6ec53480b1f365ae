"""zoo.layers: the fused convolution / linear layers give the plain layers' numbers on every path."""
import math

import pytest
import torch
import torch.nn as nn

from zoo import layers
from zoo.layers import ConvAct, LinearAct, conv_with_bn_folded
from zoo.testing import relative_error

ACTS = [nn.ReLU(), nn.SiLU(), nn.GELU(), nn.GELU(approximate='tanh'), nn.Identity(), nn.Hardswish()]


def _conv(dim: int, groups: int) -> nn.Module:
    conv = nn.Conv2d(8, 16, 3, 2, 1, groups=groups) if dim == 2 else nn.Conv3d(8, 16, (1, 3, 3), (1, 2, 2), (0, 1, 1))
    return conv.eval()


@pytest.mark.parametrize('act', ACTS, ids=lambda a: type(a).__name__ + getattr(a, 'approximate', ''))
@pytest.mark.parametrize('dim,groups', [(2, 1), (2, 2), (3, 1)])
@pytest.mark.parametrize('channels_last', [False, True])
@pytest.mark.parametrize('with_shortcut', [False, True])
@pytest.mark.parametrize('oneDNN_op', [True, False], ids=['fused-op', 'small-map'])
def test_conv_act_matches_conv_then_act(act, dim, groups, channels_last, with_shortcut, oneDNN_op, monkeypatch):
    if oneDNN_op:  # these maps are small: make them take the fused oneDNN call
        monkeypatch.setattr(layers, 'FUSE_MIN_WORK', 0)
        monkeypatch.setattr(layers, 'PACKED_MIN_WORK', 0)
    torch.manual_seed(0)
    layer = ConvAct(_conv(dim, groups), act)
    time = [4] if dim == 3 else []
    x = torch.randn(2, 8, *time, 16, 16)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last if dim == 2 else torch.channels_last_3d)
    shortcut = torch.randn(2, 16, *time, 8, 8) if with_shortcut else None
    with torch.inference_mode():
        ref = layer._plain(x, shortcut)
        assert relative_error(layer(x, shortcut), ref) < 1e-5
        with torch.autocast('cpu', dtype=torch.bfloat16):
            out = layer(x, shortcut)
        assert out.dtype == torch.bfloat16  # it ran in bf16, within bf16's rounding
        assert 0 < relative_error(out.float(), ref) < 0.02


def test_conv_act_trains_and_scripts_through_the_plain_path():
    layer = ConvAct(nn.Conv2d(3, 4, 3, 1, 1), nn.ReLU())
    x = torch.randn(1, 3, 8, 8)
    layer(x).sum().backward()
    assert layer.conv.weight.grad is not None
    torch.testing.assert_close(torch.jit.script(layer.eval())(x), layer._plain(x, None))


def test_cached_weights_follow_weight_updates():
    layer = ConvAct(nn.Conv2d(3, 4, 3, 1, 1), nn.ReLU()).eval()
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        layer(x)
        layer.conv.weight.mul_(2)
        torch.testing.assert_close(layer(x), layer._plain(x, None))


@pytest.mark.parametrize('act', [nn.ReLU(), nn.GELU(approximate='tanh'), nn.GELU(), nn.Identity(), nn.SiLU()],
                         ids=lambda a: type(a).__name__ + getattr(a, 'approximate', ''))
def test_linear_act_matches_linear_then_act(act):
    torch.manual_seed(0)
    layer = LinearAct(nn.Linear(32, 64), act)
    x = torch.randn(3, 5, 32)
    with torch.inference_mode():
        ref = act(layer.linear(x))
        assert relative_error(layer(x), ref) < 1e-5
        with torch.autocast('cpu', dtype=torch.bfloat16):
            out = layer(x)
        assert out.dtype == torch.bfloat16 and 0 < relative_error(out.float(), ref) < 0.02


def test_bn_folding_is_exact_in_2d_and_3d():
    for conv, bn in ((nn.Conv2d(4, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6)),
                     (nn.Conv3d(4, 6, 3, padding=1), nn.BatchNorm3d(6))):
        bn.running_mean.normal_(), bn.running_var.uniform_(0.5, 2), bn.weight.data.uniform_(0.5, 2)
        bn.eval()
        x = torch.randn(2, 4, *([5] * (conv.weight.dim() - 2)))
        with torch.no_grad():
            torch.testing.assert_close(conv_with_bn_folded(conv, bn)(x), bn(conv(x)), atol=1e-5, rtol=1e-5)


def test_layout_follows_the_input_or_the_weight():
    """As torch's own oneDNN convolution: channels-last if the input or the kernel is (1x1 kernels included,
    which count as contiguous in both layouts)."""
    w = torch.randn(64, 32, 1, 1)
    x = torch.randn(2, 32, 5, 5)
    cl = torch.channels_last
    assert not layers._is_channels_last(w) and layers._is_channels_last(w.to(memory_format=cl))
    assert layers._memory_format(x, layers._is_channels_last(w)) == torch.contiguous_format
    assert layers._memory_format(x, layers._is_channels_last(w.to(memory_format=cl))) == cl
    assert layers._memory_format(x.to(memory_format=cl)[:, :16], False) == cl  # a channel slice of a channels-last map


def test_packed_kernels_follow_input_shapes_and_weight_updates(monkeypatch):
    """Channels-last calls run on a kernel prepacked per input shape; any shape, and a weight update, still
    give the plain layer's numbers."""
    monkeypatch.setattr(layers, 'PACKED_MIN_WORK', 0)
    torch.manual_seed(0)
    layer = ConvAct(nn.Conv2d(8, 16, 3, 1, 1), nn.ReLU()).eval()
    with torch.inference_mode():
        for size in (5, 6, 7, 8, 9, 5):
            x = torch.randn(2, 8, size, size).to(memory_format=torch.channels_last)
            torch.testing.assert_close(layer(x), layer._plain(x, None), atol=1e-5, rtol=1e-5)
        assert 0 < len(layer._cache.packed) <= layers._PACKED_SHAPES
        assert all(w.is_mkldnn for w in layer._cache.packed.values())
    with torch.no_grad():
        layer.conv.weight.mul_(-1)
        torch.testing.assert_close(layer(x), layer._plain(x, None), atol=1e-5, rtol=1e-5)


def test_call_plans_follow_each_call_signature(monkeypatch):
    """A layer works out its path once per call signature (input shape, strides, dtype, autocast, shortcut):
    calls that alternate between signatures each still get their own path's numbers and dtype, a weight update
    drops the plans, and at most _PLANS are kept."""
    monkeypatch.setattr(layers, 'PACKED_MIN_WORK', 0)
    torch.manual_seed(0)
    layer = ConvAct(nn.Conv2d(8, 16, 3, 1, 1), nn.ReLU()).eval()
    x = torch.randn(2, 8, 9, 9)
    cl = x.to(memory_format=torch.channels_last)
    shortcut = torch.randn(2, 16, 9, 9)
    calls = [(x, None), (cl, None), (cl, shortcut), (cl, shortcut.to(memory_format=torch.channels_last)),
             (x, shortcut), (cl[:1], None)]
    with torch.inference_mode():
        for _ in range(2):
            for inp, s in calls:
                torch.testing.assert_close(layer(inp, s), layer._plain(inp, s), atol=1e-5, rtol=1e-5)
                with torch.autocast('cpu', dtype=torch.bfloat16):
                    low = layer(inp, s)
                assert low.dtype == torch.bfloat16 and relative_error(low.float(), layer._plain(inp, s)) < 0.02
        assert len(layer._cache.plans) == layers._PLANS
    with torch.no_grad():
        layer.conv.weight.mul_(-1)
    with torch.inference_mode():
        torch.testing.assert_close(layer(cl), layer._plain(cl, None), atol=1e-5, rtol=1e-5)
        assert len(layer._cache.plans) == 1
    out = layer(x.requires_grad_())  # a training call takes the plain module, gradients and all
    out.sum().backward()
    assert x.grad is not None and layer.conv.weight.grad is not None


def test_plain_path_plans_are_kept_too():
    """A signature oneDNN does not take (float64 here) is worked out once as well: its plan, the plain module,
    is kept rather than redone on every call."""
    layer = ConvAct(nn.Conv2d(8, 16, 3, 1, 1).double(), nn.ReLU()).eval()
    x = torch.randn(2, 8, 9, 9, dtype=torch.float64)
    calls = []
    plan = layer._plan
    layer._plan = lambda *a: calls.append(1) or plan(*a)
    with torch.inference_mode():
        for _ in range(3):
            torch.testing.assert_close(layer(x), layer._plain(x, None))
    assert len(calls) == 1 and list(layer._cache.plans.values()) == [None]


def test_max_pool_3d_keeps_bf16_under_autocast():
    """Autocast would pool in fp32 (a copy each way); the max of bf16 values is exact in bf16."""
    pool = layers.MaxPool3d((2, 3, 3), stride=2, padding=(0, 1, 1))
    x = torch.randn(1, 4, 4, 9, 9).to(torch.bfloat16, memory_format=torch.channels_last_3d)
    with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16):
        out, plain = pool(x), nn.MaxPool3d((2, 3, 3), stride=2, padding=(0, 1, 1))(x)
    assert plain.dtype == torch.float32 and out.dtype == torch.bfloat16
    assert torch.equal(out.float(), plain)
    torch.testing.assert_close(torch.jit.script(pool)(x.float()), pool(x.float()))


@pytest.mark.parametrize('act', [nn.GELU(), nn.Identity(), nn.Hardswish()], ids=lambda a: type(a).__name__)
@pytest.mark.parametrize('big', [False, True], ids=['mkl-sgemm', 'onednn-post-op'])
def test_linear_act_packs_per_row_count_and_follows_weight_updates(act, big, monkeypatch):
    """fp32 takes MKL's packed sgemm, or oneDNN's packed matmul with the activation as a post-op once the output
    reaches FUSE_MIN_WORK; each row count (batch x tokens) gets its own packed weight, any input layout works,
    and an in-place weight update is seen on the next call."""
    if big:
        monkeypatch.setattr(layers, 'FUSE_MIN_WORK', 0)
    torch.manual_seed(0)
    layer = LinearAct(nn.Linear(32, 64), act)
    with torch.inference_mode():
        for x in (torch.randn(3, 5, 32), torch.randn(7, 32), torch.randn(32), torch.randn(5, 32, 3).transpose(1, 2)):
            torch.testing.assert_close(layer(x), act(layer.linear(x)), rtol=1e-5, atol=1e-5)
        fused = isinstance(act, nn.GELU) and big
        kinds = {key[0] for key in layer._cache.packed}
        assert kinds == ({'onednn'} if fused else {'mkl'}), kinds
        assert {key[2] for key in layer._cache.packed} == {15, 7, 1}
    with torch.no_grad():
        layer.linear.weight.mul_(2)
        x = torch.randn(7, 32)
        torch.testing.assert_close(layer(x), act(layer.linear(x)), rtol=1e-5, atol=1e-5)


def test_linear_act_bf16_applies_the_activation_in_the_matmul():
    torch.manual_seed(0)
    layer = LinearAct(nn.Linear(32, 64), nn.GELU())
    x = torch.randn(4, 32)
    with torch.inference_mode():
        ref = layer.act(layer.linear(x))
        with torch.autocast('cpu', dtype=torch.bfloat16):
            out = layer(x)
    assert out.dtype == torch.bfloat16 and relative_error(out.float(), ref) < 0.02
    assert {key[:2] for key in layer._cache.packed} == {('onednn', torch.bfloat16)}
    assert layer._cache.plans[next(iter(layer._cache.plans))][5] == ('gelu', 'none')


def test_linear_fuses_to_cast_once_linear():
    from timm.utils import reparameterize_model
    model = nn.Sequential(layers.Linear(8, 4)).eval()
    fused = reparameterize_model(model)
    assert isinstance(fused[0], LinearAct)
    x = torch.randn(2, 8)
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), model(x))


def test_mlp_fuses_in_place_with_the_same_state_dict_keys():
    from timm.utils import reparameterize_model
    torch.manual_seed(0)
    model = nn.Sequential(layers.Mlp(8, 16, act_layer=nn.GELU)).eval()
    keys = set(model.state_dict())
    fused = reparameterize_model(model)
    mlp = fused[0]
    assert isinstance(mlp.fc1, LinearAct) and isinstance(mlp.fc2, LinearAct) and isinstance(mlp.act, nn.Identity)
    assert isinstance(mlp.fc1.act, nn.GELU)
    assert {k.replace('.linear.', '.') for k in fused.state_dict()} == keys
    x = torch.randn(2, 5, 8)
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), model(x))
        torch.testing.assert_close(reparameterize_model(fused)(x), model(x))  # fusing again changes nothing


@pytest.mark.parametrize('kernel,stride,padding,form', [
    ((1, 3, 3), (1, 2, 2), (0, 1, 1), 'frames'), ((1, 1, 1), 1, 0, 'frames'), ((3, 1, 1), (2, 1, 1), (1, 0, 0), 'time'),
    ((3, 3, 3), 1, 1, None)])
def test_3d_convs_run_planar_on_channels_last_clips(kernel, stride, padding, form, monkeypatch):
    """Per-frame and time-only 3-D convolutions run as 2-D ones on a view of the clip, with the same numbers
    and a channels-last-3d output."""
    monkeypatch.setattr(layers, 'PACKED_MIN_WORK', 0)
    torch.manual_seed(0)
    layer = ConvAct(nn.Conv3d(8, 16, kernel, stride, padding).eval(), nn.ReLU())
    assert layer._planar == form
    x = torch.randn(2, 8, 6, 10, 12).to(memory_format=torch.channels_last_3d)
    with torch.inference_mode():
        ref = layer._plain(x, None)
        shortcut = torch.randn_like(ref).to(memory_format=torch.channels_last_3d)
        for s in (None, shortcut):
            out = layer(x, s)
            torch.testing.assert_close(out, layer._plain(x, s), atol=1e-5, rtol=1e-5)
            assert out.is_contiguous(memory_format=torch.channels_last_3d)
            with torch.autocast('cpu', dtype=torch.bfloat16):
                low = layer(x, s)
            assert low.dtype == torch.bfloat16 and relative_error(low.float(), layer._plain(x, s)) < 0.02


@pytest.mark.parametrize('channels_last', [False, True])
def test_spatial_mean_matches_torch_in_both_dtypes(channels_last):
    x = torch.randn(3, 16, 9, 7) + 1
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    for dtype, tol in ((torch.float32, 1e-6), (torch.bfloat16, 8e-3)):
        ours = layers.spatial_mean(x.to(dtype))
        assert ours.shape == (3, 16, 1, 1) and ours.dtype == dtype
        assert relative_error(ours.float(), x.mean((2, 3), keepdim=True)) < tol
    scripted = torch.jit.script(layers.spatial_mean)
    torch.testing.assert_close(scripted(x), x.mean((2, 3), keepdim=True))


@pytest.mark.parametrize('window', [2, 3])
@pytest.mark.parametrize('channels_last', [False, True])
def test_max_pool_over_time_is_torchs(window, channels_last):
    pool = layers.MaxPool3d((window, 1, 1), stride=(window, 1, 1))
    assert pool.time_window == window
    x = torch.randn(2, 4, 8, 5, 6)
    if channels_last:
        x = x.to(memory_format=torch.channels_last_3d)
    ref = nn.MaxPool3d((window, 1, 1), stride=(window, 1, 1))(x)
    assert torch.equal(pool(x), ref) and torch.equal(torch.jit.script(pool)(x), ref)
    assert layers.MaxPool3d((2, 3, 3), stride=2, padding=(0, 1, 1)).time_window == 0


def test_layers_copy_and_save_after_running(tmp_path):
    """The cast / packed weights are a cache: deepcopy and torch.save work after inference and start empty."""
    import copy
    layer = ConvAct(nn.Conv2d(8, 16, 3, 1, 1), nn.ReLU()).eval()
    x = torch.randn(2, 8, 16, 16).to(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16):
        layer(x)
    assert layer._cache.packed or layer._cache.entries
    twin = copy.deepcopy(layer)
    assert not twin._cache.packed and not twin._cache.entries
    torch.save(layer, tmp_path / 'layer.pt')
    loaded = torch.load(tmp_path / 'layer.pt', weights_only=False)  # our own file, written above
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), layer._plain(x, None))
        torch.testing.assert_close(twin(x), layer._plain(x, None))


@pytest.mark.parametrize('size,padding,dilation', [
    ((13, 13), (1, 1), (1, 1)), ((16, 9), (0, 0), (1, 1)), ((17, 11), (2, 2), (2, 2)), ((21, 19), (4, 1), (4, 1)),
    ((8, 8), (4, 4), (4, 4)), ((3, 3), (1, 1), (1, 1))])
@pytest.mark.parametrize('bias', [True, False])
@pytest.mark.parametrize('step_bytes', [layers.WINOGRAD_STEP_BYTES, 1], ids=['whole-batch', 'image-by-image'])
def test_winograd_conv3x3_matches_the_direct_convolution(size, padding, dilation, bias, step_bytes, monkeypatch):
    """Any map size (tiles cropped at the edge), padding and dilation, each axis on its own, the batch at once or
    in steps; channels-last out."""
    monkeypatch.setattr(layers, 'WINOGRAD_STEP_BYTES', step_bytes)
    torch.manual_seed(0)
    conv = nn.Conv2d(12, 20, 3, padding=padding, dilation=dilation, bias=bias)
    x = torch.randn(3, 12, *size).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        ref = conv(x)
        out = layers.winograd_conv3x3(x, layers.winograd_kernel(conv.weight), conv.bias, padding, dilation)
    assert out.shape == ref.shape and out.is_contiguous(memory_format=torch.channels_last)
    assert relative_error(out, ref) < 1e-5
    assert relative_error(layers.winograd_conv3x3(x.contiguous(), layers.winograd_kernel(conv.weight), conv.bias,
                                                  padding, dilation), ref) < 1e-5  # an NCHW input too


def test_wide_3x3_convs_take_the_winograd_path_in_fp32_only(monkeypatch):
    """Dense 3x3 stride-1 fp32 channels-last convolutions (2-D, or per frame of a clip) wide enough
    (WINOGRAD_MIN_INTENSITY) run as Winograd, shortcut and activation after; bf16, NCHW, strided, grouped and
    narrower ones keep oneDNN's direct kernel, and so do calls with too few tiles (WINOGRAD_MIN_TILES)."""
    monkeypatch.setattr(layers, 'WINOGRAD_MIN_INTENSITY', 8)
    monkeypatch.setattr(layers, 'WINOGRAD_MIN_TILES', 1)
    monkeypatch.setattr(layers, 'PACKED_MIN_WORK', 0)
    torch.manual_seed(0)

    def kinds(layer):
        return [plan.kind for plan in layer._cache.plans.values()]

    x = torch.randn(2, 16, 11, 11).to(memory_format=torch.channels_last)
    shortcut = torch.randn(2, 24, 11, 11)
    with torch.inference_mode():
        for act in (nn.ReLU(), nn.GELU(), nn.Identity()):
            layer = ConvAct(nn.Conv2d(16, 24, 3, padding=2, dilation=2).eval(), act)
            for s in (None, shortcut):
                out = layer(x, s)
                assert relative_error(out, layer._plain(x, s)) < 1e-5
                assert out.is_contiguous(memory_format=torch.channels_last)
            assert kinds(layer) == ['winograd', 'winograd']
            with torch.autocast('cpu', dtype=torch.bfloat16):
                layer(x)
            layer(x.contiguous())
            assert kinds(layer)[2:] == ['unary', 'unary']
        clip = torch.randn(1, 16, 3, 9, 10).to(memory_format=torch.channels_last_3d)
        layer = ConvAct(nn.Conv3d(16, 24, (1, 3, 3), padding=(0, 1, 1)).eval(), nn.ReLU())
        out = layer(clip)
        assert kinds(layer) == ['winograd'] and out.is_contiguous(memory_format=torch.channels_last_3d)
        assert relative_error(out, layer._plain(clip, None)) < 1e-5
        for conv in (nn.Conv2d(16, 24, 3, stride=2, padding=1), nn.Conv2d(16, 24, 3, padding=1, groups=2),
                     nn.Conv2d(16, 8, 3, padding=1), nn.Conv2d(16, 24, 5, padding=2)):
            layer = ConvAct(conv.eval())
            layer(x)
            assert kinds(layer) == ['unary']
        layer = ConvAct(nn.Conv2d(16, 24, 3).eval())
        tiny = x[..., :3, :3]
        assert relative_error(layer(tiny), layer._plain(tiny, None)) < 1e-5 and kinds(layer) == ['winograd']
        with pytest.raises(RuntimeError, match="Kernel size can't be greater"):  # torch's own error, kept
            layer(x[..., :2, :2])
        monkeypatch.setattr(layers, 'WINOGRAD_MIN_TILES', 8)  # too few tiles (2 here) for the batched GEMM
        layer = ConvAct(nn.Conv2d(16, 24, 3).eval())
        layer(tiny)
        assert kinds(layer) == ['unary']
    monkeypatch.setattr(layers, 'WINOGRAD_MIN_INTENSITY', math.inf)  # the switch that keeps them all direct
    layer = ConvAct(nn.Conv2d(16, 24, 3, padding=1).eval())
    with torch.inference_mode():
        layer(x)
    assert kinds(layer) == ['unary']


def test_winograd_conv3x3_refuses_inputs_that_need_gradients():
    conv = nn.Conv2d(4, 4, 3, padding=1)
    with pytest.raises(ValueError, match='inference'):
        layers.winograd_conv3x3(torch.randn(1, 4, 8, 8, requires_grad=True), layers.winograd_kernel(conv.weight),
                                conv.bias, (1, 1), (1, 1))
