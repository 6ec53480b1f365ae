"""Inference-time building blocks shared by the families' `fuse()` / `reparameterize()` (timm's
`reparameterize_model` calls them): BatchNorm folding, and a convolution or linear layer that applies its
activation (and a residual sum) in the same oneDNN call on CPU.

On CPU, eager PyTorch runs `relu(conv(x) + shortcut)` as three passes over memory; oneDNN can apply the sum and
the activation as post-ops of the convolution while its output is still in cache. `torch.ops.mkldnn.
_convolution_pointwise` / `_linear_pointwise` are the kernels torch.compile's CPU backend emits for the same
patterns; here eager code calls them. They are not covered by autocast, so under CPU autocast the input is cast
to autocast's dtype here and the weights once per dtype (cached, refreshed when the weights change), which
also spares autocast's per-call weight casts. For a channels-last call the kernel is also reordered once into
oneDNN's blocked layout for that input shape (what torch.compile's weight prepacking does): torch's eager
convolution redoes that reorder on every call, which at batch 1 is up to 3/4 of the call (a 1792x1792 1x1 conv
on a 3x3 map: 1.27 -> 0.46 ms fp32). Anything else (training with gradients, CUDA, TorchScript, fx
tracing, a torch without oneDNN) takes the plain path, with the same numbers up to summation order.

Dense 3x3 stride-1 float32 convolutions with wide enough inputs and outputs (`WINOGRAD_MIN_INTENSITY`) run as
Winograd F(4x4, 3x3) instead (`winograd_conv3x3`): 4x fewer multiplications, spent in one batched GEMM, where
oneDNN's direct kernel already runs at this CPU's GEMM rate. Its outputs differ from the direct convolution's by
rounding only (relative error up to ~1e-5).
"""
import math
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.utils import _triple
import timm.layers as timm_layers
from timm.layers import GELUTanh

from zoo.precision import cpu_autocast_dtype

__all__ = ['fold_bn', 'conv_with_bn_folded', 'merged_conv_bn', 'pointwise_after_bn', 'scaled_conv',
           'fuse_conv_norm_act', 'ConvAct', 'LinearAct', 'Linear', 'Mlp', 'MaxPool3d', 'spatial_mean',
           'FusedBottleneck', 'fuse_mlp', 'convs_as_conv_act', 'channels_innermost', 'winograd_kernel',
           'winograd_conv3x3']

# Outputs smaller than this many elements run torch's own convolution (still with the cast-once weights) and a
# separate activation: the fused op costs some 30 us more per call here (it builds its oneDNN primitive each
# call), more than the activation pass it saves on a small map (EMOv2 at batch 1 ran 10 % slower fused).
FUSE_MIN_WORK = 1 << 17
# Channels-last calls with a prepacked kernel pay that overhead back sooner, from saving the kernel's reorder as
# well. The op costs some 30 us however small the call; torch's bf16 and depthwise convolutions cost as much or
# more, so those always take it, while a dense fp32 convolution under this many output plus kernel elements runs
# torch's (a 256 -> 64 1x1 conv on a 7x7 map, 20k: 26 us against 64 us packed).
PACKED_MIN_WORK = 1 << 15
# Prepacked kernels kept per layer (one per input shape seen last; another shape still runs, oneDNN reordering)
_PACKED_SHAPES = 4
# Call signatures (input shape, strides, dtype, autocast, shortcut) whose path a layer keeps worked out
_PLANS = 8
# Dense 3x3 stride-1 fp32 convolutions take the Winograd path (`winograd_conv3x3`) when in * out / (in + out), the
# GEMM's multiply-adds per tile element its transforms read and write, is at least this. Timed here (2 threads,
# channels-last, against the prepacked oneDNN call): 2048 -> 512 on 65 x 65 1.75x faster, 256 -> 256 (dilation 4)
# 1.4-1.6x, 128 -> 128 (dilation 2) 1.3x, 80 -> 192 at batch 32 1.5x, 96 -> 96 1.1x, 128 -> 128 on 32 x 17 x 17
# about even (its last tiles are mostly padding; 1.4x on 16 x 16); 64 -> 64 is slower (8.6 against 11.4 ms at
# batch 32 on 38 x 38), and so are narrower ones, their transforms outweighing the GEMM.
# Set to math.inf before a layer's first call to keep every convolution direct.
WINOGRAD_MIN_INTENSITY = 48
# ... and when a call has at least this many 4 x 4 output tiles: the rows of each of the 36 GEMMs, which read a kernel
# 4x the size of the direct one (36 against 9 values per channel pair) and need rows to pay for it. At batch 1,
# 256 -> 256 on 8 x 8 (4 tiles) ran 0.74x the direct kernel, 8 tiles 1.1x, 16 tiles 1.5x.
WINOGRAD_MIN_TILES = 8
# Bytes of tiles (input and output, Winograd domain) a step of `winograd_conv3x3` takes at most: some images'
# worth that stays in cache (one image at least)
WINOGRAD_STEP_BYTES = 4 << 20

# activation module -> (oneDNN post-op name, its algorithm)
_POST_OPS = (
    (nn.ReLU, 'relu', ''),
    (nn.SiLU, 'swish', ''),
    (nn.Identity, None, ''),
    (GELUTanh, 'gelu', 'tanh'),
    (timm_layers.GELU, 'gelu', 'none'),
)


def _bn_affine(bn: nn.modules.batchnorm._BatchNorm) -> Tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) of `bn` in eval mode: bn(x) = x * scale + shift per channel."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def fold_bn(conv: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> Tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of `conv` (2-D or 3-D) followed by `bn` in eval mode, as one convolution."""
    scale, bias = _bn_affine(bn)
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    return conv.weight * scale.reshape(-1, *([1] * (conv.weight.dim() - 1))), bias


@torch.no_grad()
def conv_with_bn_folded(conv: nn.Module, bn: Optional[nn.Module] = None, weight: Optional[torch.Tensor] = None,
                        bias: Optional[torch.Tensor] = None) -> nn.Module:
    """A copy of `conv` (nn.Conv2d / nn.Conv3d) with a bias: `bn` folded in, or the given weight and bias (whose
    output width may differ from conv's, e.g. several branches' convolutions concatenated)."""
    if bn is not None:
        weight, bias = fold_bn(conv, bn)
    weight = conv.weight if weight is None else weight
    bias = (conv.bias if conv.bias is not None else torch.zeros_like(weight[:, 0].flatten(1)[:, 0])) \
        if bias is None else bias
    out = type(conv)(
        weight.shape[1] * conv.groups, weight.shape[0], conv.kernel_size, conv.stride, conv.padding, conv.dilation,
        conv.groups, bias=True, padding_mode=conv.padding_mode, device=weight.device, dtype=weight.dtype)
    out.weight.copy_(weight)
    out.bias.copy_(bias)
    return out


@torch.no_grad()
def merged_conv_bn(pairs: Sequence[Tuple[nn.Module, nn.Module]], act: Optional[nn.Module] = None
                   ) -> Tuple['ConvAct', List[int]]:
    """Several (conv, BatchNorm) pairs that read the same input, with the same kernel geometry, as one wider
    convolution (BatchNorms folded, outputs concatenated: one GEMM instead of several thin ones) and `act`;
    returns it and the output widths to split its result by."""
    folded = [fold_bn(conv, bn) for conv, bn in pairs]
    weight = torch.cat([w for w, _ in folded])
    bias = torch.cat([b for _, b in folded])
    return ConvAct(conv_with_bn_folded(pairs[0][0], weight=weight, bias=bias), act), [w.shape[0] for w, _ in folded]


@torch.no_grad()
def pointwise_after_bn(bn: nn.modules.batchnorm._BatchNorm, conv: nn.Module) -> nn.Module:
    """A 1x1 `conv` (ungrouped) that takes what `bn` (eval mode) took: conv(bn(x)) as one convolution. Exact
    only for a pointwise conv, which sees no padding."""
    if any(k != 1 for k in conv.kernel_size) or conv.groups != 1:
        raise ValueError('only an ungrouped 1x1 convolution can absorb the BatchNorm before it')
    scale, shift = _bn_affine(bn)
    flat = conv.weight.flatten(1)
    bias = flat @ shift + (conv.bias if conv.bias is not None else 0)
    return conv_with_bn_folded(conv, weight=conv.weight * scale.reshape(1, -1, *([1] * (conv.weight.dim() - 2))),
                               bias=bias)


@torch.no_grad()
def scaled_conv(conv: nn.Module, gamma: torch.Tensor) -> nn.Module:
    """`conv` followed by a per-channel scale (LayerScale) as one convolution."""
    shape = (-1,) + (1,) * (conv.weight.dim() - 1)
    bias = conv.bias * gamma if conv.bias is not None else torch.zeros_like(gamma)
    return conv_with_bn_folded(conv, weight=conv.weight * gamma.reshape(shape), bias=bias)


def fuse_conv_norm_act(block: nn.Module) -> 'ConvAct':
    """timm's ConvNormAct (conv, BatchNormAct2d carrying its activation) as one ConvAct."""
    return ConvAct(conv_with_bn_folded(block.conv, block.bn), block.bn.act)


# Winograd F(4x4, 3x3) (A. Lavin, S. Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016),
# interpolation points 0, 1, -1, 2, -2: Y = A^T [(G g G^T) * (B^T d B)] A for a 6 x 6 input tile d and 3 x 3 kernel g
_WINOGRAD_BT = torch.tensor([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                             [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=torch.float64)
_WINOGRAD_G = torch.tensor([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                            [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], dtype=torch.float64)
_WINOGRAD_AT = torch.tensor([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                             [0, 1, -1, 8, -8, 1]], dtype=torch.float64)
# both sides' transforms as one matrix on a flattened tile (kron(M, M) vec(d) = vec(M d M^T)): a single GEMM
_WINOGRAD_IN = torch.kron(_WINOGRAD_BT, _WINOGRAD_BT).float()  # 36 x 36
_WINOGRAD_OUT = torch.kron(_WINOGRAD_AT, _WINOGRAD_AT).float()  # 16 x 36
_TILE = 4  # outputs per tile side


def winograd_kernel(weight: torch.Tensor) -> torch.Tensor:
    """A 3x3 kernel (out, in, 3, 3) in the Winograd domain, as the batched GEMM takes it: (36, in, out), made
    in float64 and rounded once."""
    g = _WINOGRAD_G.to(weight.device)
    u = g @ weight.detach().double() @ g.T  # out x in x 6 x 6
    return u.permute(2, 3, 1, 0).reshape(36, weight.shape[1], weight.shape[0]).to(weight.dtype).contiguous()


def _winograd_grid(size: int, padding: int, dilation: int) -> Tuple[int, int]:
    """Along one axis of a 3x3 stride-1 convolution: its output size, and the output tiles on each of its
    `dilation` interleaved sub-grids."""
    out = size + 2 * padding - 2 * dilation
    return out, math.ceil(math.ceil(out / dilation) / _TILE)


def winograd_conv3x3(x: torch.Tensor, kernel: torch.Tensor, bias: Optional[torch.Tensor],
                     padding: Sequence[int], dilation: Sequence[int]) -> torch.Tensor:
    """conv2d(x, weight, bias, stride 1, padding, dilation) for a 3x3 `weight` given as `winograd_kernel(weight)`;
    the result is channels-last.

    A dilation-d convolution is d x d independent undilated ones on the map's interleaved sub-grids, so the
    6 x 6 input tiles are read at stride d straight off one zero-padded copy of the map (no space-to-batch
    copies), and the 4 x 4 output tiles written back interleaved. The batch runs a few images at a time, so
    that each step's tiles stay in cache between the transforms and the GEMM (`WINOGRAD_STEP_BYTES`: at batch
    32, 80 -> 192 channels on 38 x 38, 21 against 35 ms for the whole batch at once). Inference only: the
    kernel is a detached copy, and no gradients are recorded."""
    if torch.is_grad_enabled() and x.requires_grad:
        raise ValueError('winograd_conv3x3 is for inference: call it under torch.inference_mode() or no_grad(), or '
                         'train the nn.Conv2d itself')
    n, c, h, w = x.shape
    c_out = kernel.shape[-1]
    (ph, pw), (dh, dw) = padding, dilation
    (h_out, tiles_h), (w_out, tiles_w) = _winograd_grid(h, ph, dh), _winograd_grid(w, pw, dw)
    tiled = (tiles_h, _TILE, dh, tiles_w, _TILE, dw, c_out)  # the output as whole tiles, cropped to h_out x w_out
    tiles_per_image = tiles_h * dh * tiles_w * dw
    step = max(1, min(n, WINOGRAD_STEP_BYTES // (36 * tiles_per_image * (c + c_out) * x.element_size())))
    padded = x.new_zeros(step, dh * _TILE * tiles_h + 2 * dh, dw * _TILE * tiles_w + 2 * dw, c)
    s_n, s_h, s_w, _ = padded.stride()
    out = x.new_empty(n, h_out, w_out, c_out)
    cropped = (tiles_h * _TILE * dh, tiles_w * _TILE * dw) != (h_out, w_out)
    whole_tiles = x.new_empty(step, *tiled) if cropped else None
    source = x.permute(0, 2, 3, 1)
    for i in range(0, n, step):
        k = min(step, n - i)
        padded[:k, ph:ph + h, pw:pw + w].copy_(source[i:i + k])  # the border stays zero from the first step
        # (tile row a, tile column b, image, tile, sub-grid row, tile, sub-grid column, channel)
        tiles = padded.as_strided((6, 6, k, tiles_h, dh, tiles_w, dw, c),
                                  (dh * s_h, dw * s_w, s_n, dh * _TILE * s_h, s_h, dw * _TILE * s_w, s_w, 1))
        count = k * tiles_per_image
        v = torch.mm(_WINOGRAD_IN, tiles.reshape(36, count * c)).view(36, count, c)
        y = torch.mm(_WINOGRAD_OUT, torch.bmm(v, kernel).view(36, count * c_out))
        # output row r * 4 * d + u * d + s is tile r's row u on sub-grid s
        y = y.view(_TILE, _TILE, k, tiles_h, dh, tiles_w, dw, c_out).permute(2, 3, 0, 4, 5, 1, 6, 7)
        dest = whole_tiles[:k] if cropped else out[i:i + k].view(k, *tiled)
        if bias is None:
            dest.copy_(y)
        else:
            torch.add(y, bias.detach(), out=dest)
        if cropped:
            out[i:i + k].copy_(dest.reshape(k, tiles_h * _TILE * dh, tiles_w * _TILE * dw, c_out)[:, :h_out, :w_out])
    return out.permute(0, 3, 1, 2)


def _winograd_applies(x: torch.Tensor, weight: torch.Tensor, geometry: tuple, dtype: torch.dtype,
                      fmt: torch.memory_format) -> bool:
    padding, stride, dilation, groups = geometry
    c_out, c_in = weight.shape[:2]
    if not (dtype == torch.float32 and fmt == torch.channels_last and weight.dim() == 4
            and tuple(weight.shape[2:]) == (3, 3) and tuple(stride) == (1, 1) and groups == 1
            and c_in * c_out / (c_in + c_out) >= WINOGRAD_MIN_INTENSITY):
        return False
    tiles = x.shape[0]
    for size, p, d in zip(x.shape[-2:], padding, dilation):
        out, tiles_per_grid = _winograd_grid(size, p, d)
        if out < 1:  # a map too small for the kernel keeps torch's own error
            return False
        tiles *= tiles_per_grid * d
    return tiles >= WINOGRAD_MIN_TILES


def _post_op(act: nn.Module) -> Optional[Tuple[Optional[str], str]]:
    for cls, name, algorithm in _POST_OPS:
        if type(act) is cls:
            return name, algorithm
    if isinstance(act, nn.GELU):
        return 'gelu', act.approximate
    return None  # an activation oneDNN is not given: applied after the call


_ONEDNN = torch.backends.mkldnn.is_available()
_MKL = torch._C.has_mkl
_DTYPES = (torch.float32, torch.bfloat16)


def _fused_path_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether a call may take oneDNN's fused ops: a CPU tensor, not an fx trace, no gradients to record (the
    dtype is checked once per call signature, in the layers' plans)."""
    return (_ONEDNN and not isinstance(x, torch.fx.Proxy) and x.is_cpu
            and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)))


def _put_bounded(entries: Dict[tuple, object], key: tuple, value, limit: int):
    """entries[key] = value, dropping the oldest entry first when `limit` are held."""
    if len(entries) >= limit:
        entries.pop(next(iter(entries)))
    entries[key] = value
    return value


# a plan may be None (the plain module), so a missing one is told apart by this
_NO_PLAN = object()


class _CastCache:
    """The layer's weights in the dtype and memory format of the call, made once per weight version (a load or an
    in-place update makes new ones), and whether the kernel itself is laid out channels-last."""

    def __init__(self):
        self.version: Optional[tuple] = None
        self.entries: Dict[tuple, tuple] = {}
        self.packed: Dict[tuple, torch.Tensor] = {}
        self.plans: Dict[tuple, object] = {}
        self.weight_cl = False

    # derived data: a copy (deepcopy, pickle / torch.save) starts empty and is rebuilt on its first call; packed
    # oneDNN tensors cannot be copied or pickled anyway
    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self.__init__()

    def __deepcopy__(self, memo):
        return _CastCache()

    def refresh(self, weight: torch.Tensor, bias: Optional[torch.Tensor]):
        version = (weight.data_ptr(), 0 if weight.is_inference() else weight._version)
        if bias is not None:
            version += (bias.data_ptr(), 0 if bias.is_inference() else bias._version)
        if version != self.version:
            self.version, self.entries, self.packed, self.plans = version, {}, {}, {}
            self.weight_cl = _is_channels_last(weight)

    def plan(self, key: tuple, make, *args):
        """The plan kept for calls with signature `key`, made by `make(*args)` the first time (at most `_PLANS`
        signatures are kept; the oldest goes)."""
        plan = self.plans.get(key, _NO_PLAN)
        if plan is _NO_PLAN:
            plan = _put_bounded(self.plans, key, make(*args), _PLANS)
        return plan

    def get(self, weight: torch.Tensor, bias: Optional[torch.Tensor], dtype: torch.dtype, fmt: torch.memory_format):
        hit = self.entries.get((dtype, fmt))
        if hit is None:
            w = weight.detach().to(dtype=dtype, memory_format=fmt)  # .to restrides 1x1 kernels, see zoo.bench
            b = None if bias is None else bias.detach().to(dtype)
            hit = self.entries[(dtype, fmt)] = (w, b)
        return hit

    def get_winograd(self, weight: torch.Tensor) -> torch.Tensor:
        hit = self.entries.get('winograd')
        if hit is None:
            hit = self.entries['winograd'] = winograd_kernel(weight)
        return hit

    def get_packed(self, weight: torch.Tensor, x: torch.Tensor, geometry: tuple) -> torch.Tensor:
        """`weight` (already cast) in the blocked layout oneDNN picks for a convolution of `x`'s shape with
        `geometry` (padding, stride, dilation, groups)."""
        key = (weight.dtype, tuple(x.shape))
        packed = self.packed.get(key)
        if packed is None:
            reorder = (torch._C._nn.mkldnn_reorder_conv2d_weight if weight.dim() == 4
                       else torch._C._nn.mkldnn_reorder_conv3d_weight)
            packed = _put_bounded(self.packed, key, reorder(weight.contiguous().to_mkldnn(), *geometry, list(x.shape)),
                                  _PACKED_SHAPES)
        return packed

    def get_packed_linear(self, weight: torch.Tensor, rows: int, mkl: bool = False) -> torch.Tensor:
        """`weight` (already cast) in the blocked layout oneDNN's matmul (or MKL's sgemm) picks for `rows` input
        rows: the layout depends on them (bf16 2048 x 384 -> 1152: 0.72 ms packed for 2048 rows, 1.42 ms for 64)."""
        key = ('mkl' if mkl else 'onednn', weight.dtype, rows)
        packed = self.packed.get(key)
        if packed is None:
            reorder = torch.ops.mkl._mkl_reorder_linear_weight if mkl else torch.ops.mkldnn._reorder_linear_weight
            packed = _put_bounded(self.packed, key, reorder(weight, rows), _PACKED_SHAPES)
        return packed


def _planar_form(conv: nn.Module) -> Tuple[Optional[str], tuple]:
    """How a 3-D convolution of a channels-last-3d clip runs as a 2-D one on a view of the same memory, and its
    2-D geometry: 'frames' when it works on each frame alone (1 x kh x kw, no stride or padding in time: the
    frames folded into the batch), 'time' when it works along time alone (kt x 1 x 1, no spatial stride or
    padding: a T x (H*W) plane). oneDNN's 2-D kernels are the faster ones here in bf16 (a 3x1x1 conv over a
    4 x 64 x 8 x 40 x 40 batch: 1.51 -> 0.94 ms; P3D's stem 33 -> 24 ms), and no slower in fp32."""
    if not isinstance(conv, nn.Conv3d):
        return None, ()
    (kt, kh, kw), (st, sh, sw), (pt, ph, pw), (dt, dh, dw) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    if kt == 1 and st == 1 and pt == 0:
        return 'frames', ([ph, pw], [sh, sw], [dh, dw], conv.groups)
    if kh == kw == 1 and sh == sw == 1 and ph == pw == 0:
        return 'time', ([pt, 0], [st, 1], [dt, 1], conv.groups)
    return None, ()


def _to_planar(t: torch.Tensor, form: str) -> torch.Tensor:
    """B x C x T x H x W (channels-last-3d) as the 2-D map of `_planar_form`: a view, channels-last."""
    if form == 'frames':
        return t.transpose(1, 2).flatten(0, 1)
    return t.flatten(3)


def _from_planar(y: torch.Tensor, form: str, batch: int, width: int) -> torch.Tensor:
    if form == 'frames':
        return y.unflatten(0, (batch, -1)).transpose(1, 2)
    return y.unflatten(3, (-1, width))


class ConvAct(nn.Module):
    """act(conv(x) [+ shortcut]): one oneDNN call on CPU in inference (see the module docstring).

    `conv` is an nn.Conv2d or nn.Conv3d (zero padding), `act` an activation module: ReLU, SiLU, GELU and
    Identity become post-ops; any other runs after the call. A 3-D convolution that works per frame or along
    time alone runs as a 2-D one on a view of a channels-last-3d clip (`_planar_form`)."""

    def __init__(self, conv: nn.Module, act: Optional[nn.Module] = None):
        super().__init__()
        if conv.padding_mode != 'zeros' or isinstance(conv.padding, str):
            raise ValueError('ConvAct takes a zero-padded convolution with explicit padding')
        self.conv = conv
        self.act = act if act is not None else nn.Identity()
        self._post = _post_op(self.act)
        self._cache = _CastCache()
        self._planar, self._planar_geometry = _planar_form(conv)

    # as nn.Conv2d's, for code that reads them off the layer it wraps (timm's ConvNormAct properties)
    @property
    def in_channels(self) -> int:
        return self.conv.in_channels

    @property
    def out_channels(self) -> int:
        return self.conv.out_channels

    def _plain(self, x: torch.Tensor, shortcut: Optional[torch.Tensor]) -> torch.Tensor:
        y = self.conv(x)
        if shortcut is not None:
            y = y + shortcut
        return self.act(y)

    def forward(self, x: torch.Tensor, shortcut: Optional[torch.Tensor] = None) -> torch.Tensor:
        if torch.jit.is_scripting():
            return self._plain(x, shortcut)
        return self._fused(x, shortcut)

    @torch.jit.unused
    def _fused(self, x: torch.Tensor, shortcut: Optional[torch.Tensor]) -> torch.Tensor:
        conv = self.conv
        if not _fused_path_applies(x, conv.weight):
            return self._plain(x, shortcut)
        cache = self._cache
        cache.refresh(conv.weight, conv.bias)
        key = (x.shape, x.stride(), x.dtype, cpu_autocast_dtype(x),
               None if shortcut is None else (shortcut.dtype, shortcut.stride()))
        return self._run(cache.plan(key, self._plan, x, shortcut), x, shortcut)

    @torch.jit.unused
    def _plan(self, x: torch.Tensor, shortcut: Optional[torch.Tensor]) -> Optional['_ConvPlan']:
        """How calls with `x`'s shape, strides and dtype (and such a shortcut) run, worked out once per call
        signature: the layout, dtype and path choices and the kernel's cast / packed form cost more than the
        call itself at batch 1 (some 20 us of Python a call). None: the plain module."""
        conv = self.conv
        if x.dim() != conv.weight.dim() or x.dtype not in _DTYPES:
            return None
        cache = self._cache
        dtype = cpu_autocast_dtype(x) or conv.weight.dtype
        fmt = _memory_format(x, cache.weight_cl)
        weight, bias = cache.get(conv.weight, conv.bias, dtype, fmt)
        cast = dtype if x.dtype != dtype else None
        outputs = x.numel() // x.shape[1] * conv.out_channels // math.prod(conv.stride)
        if fmt == torch.contiguous_format:
            nothing_to_fuse = shortcut is None and self._post is not None and self._post[0] is None
            use_torch_conv = nothing_to_fuse or outputs < FUSE_MIN_WORK
        else:  # a packed kernel pays even with nothing to fuse
            use_torch_conv = (dtype == torch.float32 and conv.groups == 1
                              and outputs + weight.numel() < PACKED_MIN_WORK)
        if use_torch_conv:
            return _ConvPlan(cast, True, weight, bias)
        geometry = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
        form, planar = None, x
        if fmt == torch.channels_last_3d and self._planar is not None:
            form, geometry = self._planar, self._planar_geometry
            planar = _to_planar(x, form)
            weight = weight[:, :, 0] if form == 'frames' else weight[..., 0]
            fmt = torch.channels_last
        name, algorithm = self._post if self._post is not None else (None, '')
        if _winograd_applies(planar, weight, geometry, dtype, fmt):
            return _ConvPlan(cast, False, cache.get_winograd(weight), bias, geometry, form, x.shape[0], x.shape[-1],
                             'winograd', name)
        if fmt != torch.contiguous_format:
            weight = cache.get_packed(weight, planar, geometry)  # the op's output is channels-last, as the input
        shortcut_ready = False
        if shortcut is None:
            kind = 'unary'
        elif dtype != torch.float32 and (fmt == torch.contiguous_format or conv.groups > 1):
            kind = 'sum_after'  # oneDNN leaves these bf16 cases to torch's add_relu, which has no bf16 kernel
        else:
            # oneDNN's sum-then-activation fusion here takes ReLU only
            kind = 'binary' if name in (None, 'relu') else 'binary_then_act'
            if form is not None:
                shortcut = _to_planar(shortcut, form)
            shortcut_ready = shortcut.dtype == dtype and shortcut.is_contiguous(memory_format=fmt)
        return _ConvPlan(cast, False, weight, bias, geometry, form, x.shape[0], x.shape[-1], kind, name, algorithm,
                         dtype, fmt, shortcut_ready)

    @torch.jit.unused
    def _run(self, plan: Optional['_ConvPlan'], x: torch.Tensor, shortcut: Optional[torch.Tensor]) -> torch.Tensor:
        if plan is None:
            return self._plain(x, shortcut)
        if plan.cast is not None:
            x = x.to(plan.cast)
        if plan.torch_conv:  # torch's convolution, with the weights cast once
            y = self.conv._conv_forward(x, plan.weight, plan.bias)
            return self.act(y if shortcut is None else y.add_(shortcut))
        form, weight, bias, geometry = plan.form, plan.weight, plan.bias, plan.geometry
        if form is not None:
            x = _to_planar(x, form)
            if shortcut is not None:
                shortcut = _to_planar(shortcut, form)
        op = torch.ops.mkldnn._convolution_pointwise
        kind, name = plan.kind, plan.name
        if kind == 'winograd':
            y = winograd_conv3x3(x, weight, bias, geometry[0], geometry[2])
            if shortcut is not None:
                y.add_(shortcut)
            y = y.relu_() if name == 'relu' else self.act(y)
        elif kind == 'unary':  # the overload named: the packet's overload resolution costs ~2 us a call
            y = op.default(x, weight, bias, *geometry, name or 'none', [], plan.algorithm)
        elif kind == 'sum_after':
            y = self.act(op.default(x, weight, bias, *geometry, 'none', [], '').add_(shortcut.to(plan.dtype)))
        else:
            if not plan.shortcut_ready:
                shortcut = shortcut.to(dtype=plan.dtype, memory_format=plan.fmt)
            if kind == 'binary':
                y = op.binary(x, shortcut, weight, bias, *geometry, 'add', None, name, [], '')
            else:
                y = self.act(op.binary(x, shortcut, weight, bias, *geometry, 'add', None, None, [], ''))
        if kind in ('unary', 'binary') and self._post is None:
            y = self.act(y)
        return y if form is None else _from_planar(y, form, plan.batch, plan.width)


class _ConvPlan(NamedTuple):
    """A ConvAct call signature's path (`ConvAct._plan`): the input's cast, torch's convolution or oneDNN's
    fused op, the kernel (cast, packed, or in the Winograd domain) and bias, and for oneDNN the geometry, the 3-D
    planar form, and how a shortcut joins (unary: none; binary: oneDNN's sum post-op, then its activation, or
    `act` after the call (binary_then_act); sum_after: summed after the call; winograd: `winograd_conv3x3`, then
    the sum and the activation)."""
    cast: Optional[torch.dtype]
    torch_conv: bool
    weight: torch.Tensor
    bias: Optional[torch.Tensor]
    geometry: tuple = ()
    form: Optional[str] = None
    batch: int = 0
    width: int = 0
    kind: str = 'unary'
    name: Optional[str] = None
    algorithm: str = ''
    dtype: torch.dtype = torch.float32
    fmt: torch.memory_format = torch.contiguous_format
    shortcut_ready: bool = False  # already in the call's dtype and layout


def channels_innermost(t: torch.Tensor) -> bool:
    """A map stored channels-last (a channel slice of one included), told by its channel stride alone."""
    return t.shape[1] > 1 and t.stride(1) == 1 and not t.is_contiguous()


def _is_channels_last(t: torch.Tensor) -> bool:
    """Channels innermost: a channels-last map or a channel slice of one, or a kernel laid out channels-last
    (a 1x1 kernel counts as contiguous in both layouts, so its strides are compared exactly)."""
    if t.dim() not in (4, 5):
        return False
    if channels_innermost(t):
        return True
    c, spatial = t.shape[1], t.shape[2:]
    strides, step = [1], c
    for size in reversed(spatial):
        strides.insert(0, step)
        step *= size
    return tuple(t.stride()) == (step, 1, *strides[:-1])


def _memory_format(x: torch.Tensor, weight_channels_last: bool) -> torch.memory_format:
    """The layout a call runs in, chosen as torch's own oneDNN convolution chooses it: channels-last when the
    kernel is (`_is_channels_last`, cached per weight version) or the input's channels are innermost (a channel
    slice of a channels-last map included)."""
    if weight_channels_last or channels_innermost(x):
        return torch.channels_last if x.dim() == 4 else torch.channels_last_3d
    return torch.contiguous_format


class LinearAct(nn.Module):
    """act(linear(x)) for inference on CPU, as ConvAct: the weights cast once and prepacked, the activation inside
    the matmul where that pays.

    Torch's matmul repacks a plain weight into its kernel's blocked layout on every call; here that is done once
    per weight version, dtype and number of input rows (what torch.compile's weight prepacking does; the layout
    depends on the rows: a bf16 2048 x 384 -> 1152 matmul took 0.72 ms packed for its rows, 1.42 ms packed for
    64, ~1.6 ms in torch's call). bf16 calls take oneDNN's packed matmul with the activation as a post-op
    (64 x 256 -> 512 with GELU 59 us, against 70 + 22 us for torch's matmul and GELU). fp32 calls take MKL's
    packed sgemm, whose call costs 6 us against oneDNN's 20 (64 x 256 -> 512: 63 us, against 82 us for torch's
    and 84 us oneDNN's), unless the output is big enough (`FUSE_MIN_WORK`) for oneDNN's post-op to save more
    than that: 2048 x 256 -> 512 with GELU 1.84 ms, against 1.75 + 0.29 ms.
    """

    def __init__(self, linear: nn.Linear, act: Optional[nn.Module] = None):
        super().__init__()
        self.linear = linear
        self.act = act if act is not None else nn.Identity()
        self._post = _post_op(self.act)
        self._cache = _CastCache()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return self.act(self.linear(x))
        return self._fused(x)

    @torch.jit.unused
    def _fused(self, x: torch.Tensor) -> torch.Tensor:
        lin = self.linear
        if not _fused_path_applies(x, lin.weight):
            return self.act(lin(x))
        cache = self._cache
        cache.refresh(lin.weight, lin.bias)
        plan = cache.plan((x.shape, x.dtype, cpu_autocast_dtype(x)), self._plan, x)  # as ConvAct's
        if plan is None:
            return self.act(lin(x))
        cast, packed, weight, bias, rows, post, act_after = plan
        if cast is not None:  # contiguous, as the matmul needs it: one pass for the cast and the copy
            x = x.to(cast, memory_format=torch.contiguous_format)
        if post is None:
            out = torch.ops.mkl._mkl_linear.default(x, packed, weight, bias, rows)
        else:
            out = torch.ops.mkldnn._linear_pointwise.default(x, packed, bias, post[0], [], post[1])
        return self.act(out) if act_after else out

    @torch.jit.unused
    def _plan(self, x: torch.Tensor) -> Optional[tuple]:
        """(input cast, packed weight, cast weight, bias, rows, oneDNN post-op and its algorithm or None for MKL's
        sgemm, whether self.act follows), or None: the plain module."""
        lin = self.linear
        if x.dtype not in _DTYPES or x.numel() == 0:
            return None
        dtype = cpu_autocast_dtype(x) or lin.weight.dtype
        weight, bias = self._cache.get(lin.weight, lin.bias, dtype, torch.contiguous_format)
        cast = dtype if x.dtype != dtype else None
        rows = x.numel() // x.shape[-1]
        has_post = self._post is not None and self._post[0] is not None
        if dtype == torch.float32 and _MKL and not (has_post and rows * lin.out_features >= FUSE_MIN_WORK):
            packed = self._cache.get_packed_linear(weight, rows, mkl=True)
            return cast, packed, weight, bias, rows, None, self._post is None or has_post
        packed = self._cache.get_packed_linear(weight, rows)
        post = self._post if has_post else ('none', '')
        return cast, packed, weight, bias, rows, post, not has_post


class Linear(nn.Linear):
    """nn.Linear whose `fuse()` (`timm.utils.reparameterize_model`) makes it a LinearAct: for heads and other
    linears nothing else reparameterizes, whose weights autocast would otherwise cast on every call (FaceNet's
    8631-way classifier: 2.9 ms of a 19 ms bf16 call at batch 1)."""

    def fuse(self) -> LinearAct:
        return LinearAct(self)


def _max_over_time(x: torch.Tensor, k: int) -> torch.Tensor:
    """Max pooling of (C, T, H, W) / (B, C, T, H, W) over disjoint windows of k steps in time, in x's dtype and
    layout."""
    steps = x.shape[-3] // k
    out = x[..., 0:k * steps:k, :, :]
    for i in range(1, k):
        out = torch.maximum(out, x[..., i:k * steps:k, :, :])
    return out


torch.fx.wrap('_max_over_time')  # shape-dependent slicing: a leaf for fx


class MaxPool3d(nn.MaxPool3d):
    """nn.MaxPool3d in its input's dtype under CPU autocast. Autocast lists max_pool3d among its fp32 ops, so a
    bf16 map would be copied to fp32, pooled, and cast back by the next convolution; a max of bf16 values is
    exact in bf16 (P3D-63's two pools over a 4-clip batch: 82 -> 32 ms). A pool over time alone in disjoint
    windows (k x 1 x 1, stride k) is the elementwise maximum of k strided views of the clip, 3-6x faster than
    torch's max_pool3d here in either layout."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        k, s, p, d = (_triple(v) for v in (self.kernel_size, self.stride, self.padding, self.dilation))
        time_only = k[1:] == (1, 1) and s == k and p == (0, 0, 0) and d == (1, 1, 1) and not self.ceil_mode
        self.time_window = k[0] if time_only and not self.return_indices else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.time_window > 0:
            return _max_over_time(x, self.time_window)
        if torch.jit.is_scripting():
            return self._pool(x)
        return self._pool_in_input_dtype(x)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)

    @torch.jit.unused
    def _pool_in_input_dtype(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(x, torch.fx.Proxy) or cpu_autocast_dtype(x) is None:
            return self._pool(x)
        with torch.autocast('cpu', enabled=False):
            return self._pool(x)


def spatial_mean(x: torch.Tensor) -> torch.Tensor:
    """x.mean((2, 3), keepdim=True), as F.adaptive_avg_pool2d(x, 1), of a B x C x H x W map in either layout.

    A bf16 map is summed and then divided: torch's CPU `mean` of a bf16 map runs ~16x slower than its `sum` here
    (32 x 128 x 64 x 64 channels-last: 17 against 1.0 ms), which accumulates in fp32 and rounds once, as the
    mean does (then the division rounds once more)."""
    if x.dtype != torch.bfloat16 or x.device.type != 'cpu':
        return x.mean((2, 3), keepdim=True)
    return x.sum((2, 3), keepdim=True) / (x.shape[-2] * x.shape[-1])


class FusedBottleneck(nn.Module):
    """A ResNet bottleneck for inference: three ConvActs, the last one taking the (folded) shortcut.

    Built from any block with conv1/bn1, conv2/bn2, conv3/bn3, an optional `downsample` (conv, BatchNorm) and
    ReLUs, as timm's `Bottleneck` (without SE, DropBlock or anti-aliasing) and its 3-D variants are."""

    def __init__(self, block: nn.Module):
        super().__init__()
        for name in ('se', 'drop_block', 'aa'):
            extra = getattr(block, name, None)
            if extra is not None and not isinstance(extra, nn.Identity):
                raise ValueError(f'FusedBottleneck does not fold {name}')
        self.conv1 = ConvAct(conv_with_bn_folded(block.conv1, block.bn1), nn.ReLU())
        self.conv2 = ConvAct(conv_with_bn_folded(block.conv2, block.bn2), nn.ReLU())
        self.conv3 = ConvAct(conv_with_bn_folded(block.conv3, block.bn3), nn.ReLU())
        down = block.downsample
        self.downsample = None if down is None else ConvAct(conv_with_bn_folded(down[0], down[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.conv3(self.conv2(self.conv1(x)), shortcut)


def fuse_mlp(mlp: nn.Module) -> nn.Module:
    """timm's `Mlp` (fc1, act, drop, norm, fc2, drop) in place for inference: fc1 with its activation fused, fc2
    with its weights cast once (LinearAct)."""
    if isinstance(mlp.fc1, nn.Linear):  # not yet fused
        mlp.fc1, mlp.act = LinearAct(mlp.fc1, mlp.act), nn.Identity()
        mlp.fc2 = LinearAct(mlp.fc2)
    return mlp


class Mlp(timm_layers.Mlp):
    """timm's Mlp whose `fuse()` (`timm.utils.reparameterize_model`) fuses it in place for inference
    (`fuse_mlp`): the same parameters and state_dict keys, for families to build with where timm's would do."""

    def fuse(self) -> nn.Module:
        return fuse_mlp(self)


def convs_as_conv_act(module: nn.Module, *names: str):
    """Makes `module`'s named plain convolutions ConvActs in place (no activation): their weights cast once and,
    channels-last, prepacked per input shape. Names already converted are left as they are."""
    for name in names:
        conv = getattr(module, name)
        if isinstance(conv, (nn.Conv2d, nn.Conv3d)):
            setattr(module, name, ConvAct(conv))
