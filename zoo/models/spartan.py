"""SpaRTAN: a hierarchical ConvNet whose blocks mix space (SMixer) and channels (CMixer).

Paper: "SpaRTAN: Spatial Reinforcement Token-based Aggregation Network for Visual Recognition",
Q. B. Pay, V. M. Baskaran, J. Y. Loo, K. Wong, S. See, IJCNN 2025 (arXiv:2507.10999).

Official code: henry-pay/SpaRTAN (Apache-2.0, commit 1715a430, `src/model/spartan.py`, config
`src/config/model/spartan.yaml`). This is a re-implementation from that code's facts (shapes, op order,
names); `checkpoint_filter_fn` converts the official state_dict (and its training checkpoints) to ours.

Architecture (SpaRTAN-T): a stem of two 3x3 stride-2 conv-BN-GELU, then four stages of 3/3/12/2 blocks at
32/64/128/256 channels (strides 4/8/16/32); stages 2-4 open with a 2x2 stride-2 conv-BN-SiLU. A block is
    x = x + scale_1 * SMixer(GroupNorm1(x)),   x = x + scale_2 * CMixer(GroupNorm1(x)).
SMixer halves the width, adds `gamma * (u - mean(u))`, runs a 3x3 branch and a dilated 3x3 x2 branch
(each with squeeze-excite) and projects their concatenation back. CMixer expands the width r times with
two 1x1 convs (theta through GELU, and proj), multiplies them and adds the product of their values at the
input's channel argmax, multiplies channel pairs (2k, 2k+1), read as complex numbers, by a learned complex
weight, then runs a grouped 3x3 conv-BN-GELU, a squeeze-excite (squeeze width C/4) and a 1x1 projection.
The head is global average pooling and a linear layer; there is no final norm.

Official quirks kept as they are (they change the numbers):
  * the block norms are GroupNorm with one group (normalising C, H, W jointly), eps 1e-6, computed with
    `F.group_norm` as the official code does: the CMixer argmax is taken on its output, and a reformulated
    norm can flip near-tied argmax decisions;
  * every BatchNorm has eps 1e-6; the downsamplers use SiLU, the second stem conv GELU;
  * the group rule is inverted between the mixers: in stages 1-2 the SMixer 3x3 convs are dense and the
    CMixer 3x3 conv is depthwise, in stages 3-4 the SMixer convs are depthwise and the CMixer conv has
    one group per input channel (r channels per group); the CMixer squeeze-excite squeezes to C/4, not N/4;
  * the complex modulation runs in float32 for float16/bfloat16 inputs (the official code forces float32
    with autocast disabled); unlike the official code it runs in float64 for float64 inputs, which the
    official model cannot run at all;
  * stochastic depth grows as `drop_path_rate * i / num_blocks` over the global block index i
    (the official config trains with 0.1; timm's default here is 0).

Differences from the official code (none change its outputs beyond float rounding, ~1e-7 relative):
  * timm-style layout: `stem`, `stages.N.downsample` (the official downsampler after stage N-1 opens
    stage N), `stages.N.blocks.M`, `head.fc`; timm's ConvNormAct (`conv`, `bn`) and SEModule (`fc1`, `fc2`);
    the complex weight is stored as (N/2, 2). Everything else keeps the official names.
  * Speed (eager CPU): the mixers run channels_last inside whatever the input layout is. Their 1x1 convs are
    batched GEMMs, which read a transposed operand for free: they switch layouts without a copy, and with
    several threads they are much faster than oneDNN's NCHW 1x1 convolutions. The squeeze-excite gates fold
    into the following 1x1 conv's per-sample weights; the complex multiply needs no NHWC round trip (a complex
    view of channels_last data, or, where the following grouped conv sees whole pairs, a fold into its weight);
    the channel argmax is `max(dim)` (the same first-index rule, several times faster on CPU than `argmax`);
    GELU on channels_last data runs on its contiguous NHWC view (PyTorch's CPU kernel is ~1.7x slower on the
    channels_last-strided NCHW view). fvcore still counts the official 1.0685 GMACs.
  * `timm.utils.reparameterize_model` folds the BatchNorms into their convs, the layer scales into the output
    projections and, in stages 3-4, the complex weight into the CMixer conv; the convolutions then run as
    `zoo.layers.ConvAct` (weights cast once under autocast). Under bf16 autocast, maps that two GEMMs or
    convolutions read are cast once, not once by each.
  * Any input with at least 29 pixels per side works; features are at strides 4/8/16/32.

Variants: only SpaRTAN-T (`spartan_tiny`, 3.82M params, 1.07 GMACs at 256) is defined by published facts.
The only released checkpoint is SpaRTAN-S (Hugging Face henry-pay/SpaRTAN-S), whose configuration is not
in the repository; `spartan_small` is not registered until its shapes have been read off that checkpoint.
There are no SpaRTAN-T weights, so `spartan_tiny` has no pretrained tag.
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import ClassifierHead, ConvNormAct, DropPath, SEModule, get_device_dtype, trunc_normal_
from timm.models import generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint_seq

from zoo.hub import build_model, set_cfg_input_size, unwrap_state_dict
from zoo.layers import ConvAct, conv_with_bn_folded, convs_as_conv_act, spatial_mean
from zoo.precision import bf16_matmuls

__all__ = ['SpaRTAN']

_BN_EPS = 1e-6
_NORM_EPS = 1e-6


def _is_channels_last(x: torch.Tensor) -> bool:
    """True for a channels_last tensor that is not also NCHW-contiguous."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _gelu(x: torch.Tensor) -> torch.Tensor:
    """Exact (erf) GELU. A channels_last tensor goes through its contiguous NHWC view: PyTorch's CPU GELU
    takes a much slower path on a channels_last-strided NCHW tensor than on the same memory seen as NHWC."""
    if _is_channels_last(x):
        return F.gelu(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    return F.gelu(x)


def _pair_weights(pairs: torch.Tensor, dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
    """Real and imaginary parts of the (N/2, 2) complex weight, each (N/2,)."""
    pairs = pairs.to(dtype)
    return pairs[:, 0], pairs[:, 1]


def _modulate(x: torch.Tensor, pairs: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Channels (2k, 2k+1) of x, read as a complex number, times pairs[k] (real, imag), in x's dtype.
    `inplace`: x is a temporary the caller gives up (a channels-last x is then overwritten: the in-place
    complex product runs 2.4x faster here than into a new tensor)."""
    B, N, H, W = x.shape
    if _is_channels_last(x):
        # the pairs are adjacent in memory: a complex view of the NHWC data, no copy
        z = torch.view_as_complex(x.permute(0, 2, 3, 1).reshape(B, H, W, N // 2, 2))
        w = torch.view_as_complex(pairs.to(x.dtype).contiguous())
        z = z.mul_(w) if inplace else z * w
        return torch.view_as_real(z).reshape(B, H, W, N).permute(0, 3, 1, 2)
    re_w, im_w = _pair_weights(pairs, x.dtype)
    a = torch.stack([re_w, re_w], 1).reshape(1, N // 2, 2, 1, 1)
    b = torch.stack([-im_w, im_w], 1).reshape(1, N // 2, 2, 1, 1)
    xp = x.reshape(B, N // 2, 2, H, W)
    # (re, im) * (c + id) = (re c - im d, re d + im c): x * (c, c) + swap(x) * (-d, d)
    return torch.addcmul(xp * a, xp.flip(2), b).reshape(B, N, H, W)


def _fold_pairs(weight: torch.Tensor, pairs: torch.Tensor, groups: int) -> torch.Tensor:
    """The weight of a grouped conv applied after `_modulate`, when every group holds whole channel pairs."""
    out_chs, in_per_group, kh, kw = weight.shape
    w = weight.reshape(groups, out_chs // groups, in_per_group // 2, 2, kh, kw)
    re_w, im_w = _pair_weights(pairs, weight.dtype)
    c = re_w.reshape(groups, 1, in_per_group // 2, 1, 1)
    d = im_w.reshape(groups, 1, in_per_group // 2, 1, 1)
    w_re, w_im = w[:, :, :, 0], w[:, :, :, 1]
    folded = torch.stack([w_re * c + w_im * d, w_im * c - w_re * d], 3)
    return folded.reshape(out_chs, in_per_group, kh, kw)


def _modulated_conv(
        x: torch.Tensor, pairs: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], groups: int,
) -> torch.Tensor:
    """3x3 conv (padding 1) of the complex-modulated x.

    float16/bfloat16 inputs are modulated in float32 (as the official code does) and cast back; float32 and
    float64 inputs are modulated in their own dtype, folded into the conv weight where the groups allow it.
    """
    dtype = x.dtype
    if dtype == torch.float16 or dtype == torch.bfloat16:
        x = _modulate(x.float(), pairs, inplace=not torch.is_grad_enabled()).to(dtype)
    elif (weight.shape[1] % 2) == 0:
        return F.conv2d(x, _fold_pairs(weight, pairs, groups), bias, 1, 1, 1, groups)
    else:
        x = _modulate(x, pairs)
    return F.conv2d(x, weight, bias, 1, 1, 1, groups)


def _pointwise(
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: Optional[torch.Tensor],
        channels_last: bool,
        gate: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """1x1 conv of `x * gate[:, :, None, None]` as one batched GEMM, output in the layout asked for.

    A GEMM reads a transposed operand for free, so this switches between NCHW and channels_last without a
    copy, and a squeeze-excite gate folds into the (small) per-sample weights instead of a pass over x. On
    CPU this is also much faster than oneDNN's NCHW 1x1 convolution with several threads.
    """
    B, C, H, W = x.shape
    out_chs = weight.shape[0]
    w = weight.reshape(out_chs, C)
    if channels_last and not x.is_contiguous() and not torch.jit.is_scripting() and bf16_matmuls(x):
        # bf16: one (B*H*W) x C GEMM runs 1.5-4.5x faster than the batched per-sample form here (the batched
        # bf16 kernels do not use the matrix units well), so a gate costs a pass over x instead
        rows = x.permute(0, 2, 3, 1)
        if gate is not None:
            rows = rows * gate[:, None, None, :].to(rows.dtype)
        return F.linear(rows, w, bias).permute(0, 3, 1, 2)
    if gate is None:
        w = w.expand(B, out_chs, C)
    else:
        w = w * gate[:, None, :]
    if x.is_contiguous():
        cols = x.reshape(B, C, H * W)
        rows = cols.transpose(1, 2)
    else:
        rows = x.permute(0, 2, 3, 1).reshape(B, H * W, C)  # a view for channels_last
        cols = rows.transpose(1, 2)
    if channels_last:
        y = torch.bmm(rows, w.transpose(1, 2))
        if bias is not None:
            y = y.add_(bias)
        return y.reshape(B, H, W, out_chs).permute(0, 3, 1, 2)
    y = torch.bmm(w, cols)
    if bias is not None:
        y = y.add_(bias.reshape(out_chs, 1))
    return y.reshape(B, out_chs, H, W)


def _addcmul_as_x(shift: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """shift + x * factor at the promoted precision, then in x's dtype. Under bf16 autocast x is bf16 and
    shift / factor float32: the float32 result would be cast back by each of the two convolutions that read it;
    this casts it once. (Storing bf16 from the float32 op directly, `out=`, takes torch's mixed-dtype path,
    3x slower than both passes.)"""
    out = torch.addcmul(shift, x, factor)
    return out if out.dtype == x.dtype else out.to(x.dtype)


def _for_matmuls(x: torch.Tensor) -> torch.Tensor:
    """x as bf16 if matmuls on it run in bf16 (CPU autocast): cast once for GEMMs that share it, instead of once
    by autocast in each."""
    if not torch.jit.is_scripting() and x.dtype == torch.float32 and bf16_matmuls(x):
        return x.to(torch.bfloat16)
    return x


# dtype- and layout-dependent paths: leaves for fx
torch.fx.wrap('_addcmul_as_x')
torch.fx.wrap('_for_matmuls')
torch.fx.wrap('_is_channels_last')
torch.fx.wrap('_gelu')
torch.fx.wrap('_modulated_conv')
torch.fx.wrap('_pointwise')
torch.fx.wrap('spatial_mean')  # dtype-dependent (zoo.layers)


def _check_input(x: torch.Tensor, in_chans: int, min_size: int = 29) -> torch.Tensor:
    if x.dim() != 4 or x.shape[1] != in_chans or x.shape[-2] < min_size or x.shape[-1] < min_size:
        raise ValueError(
            f'SpaRTAN takes B x {in_chans} x H x W images with H, W >= {min_size}, got shape {list(x.shape)}; '
            'its default size is in model.pretrained_cfg["input_size"].')
    return x


torch.fx.wrap('_check_input')  # a leaf for fx: shape checks can't be traced


class GELU(nn.Module):
    """Exact GELU, fast on channels_last CPU tensors (`_gelu`)."""

    def __init__(self, inplace: bool = False):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _gelu(x)


class PointwiseConv(nn.Conv2d):
    """A 1x1 conv (nn.Conv2d weights) run as one GEMM, optionally gated, in the output layout asked for."""

    def __init__(self, in_chs: int, out_chs: int, bias: bool = True, dd=None):
        super().__init__(in_chs, out_chs, 1, bias=bias, **(dd or {}))

    def forward(
            self, x: torch.Tensor, channels_last: bool = False, gate: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        return _pointwise(x, self.weight, self.bias, channels_last, gate)


class ConvBnAct(ConvNormAct):
    """timm's ConvNormAct with BatchNorm (eps 1e-6); `fuse()` folds the BatchNorm for inference."""

    def fuse(self) -> nn.Module:
        return ConvAct(conv_with_bn_folded(self.conv, self.bn), self.bn.act)


def _conv_bn_act(in_chs: int, out_chs: int, kernel_size: int, act_layer=GELU, dd=None, fusable=True,
                 **kwargs) -> ConvNormAct:
    return (ConvBnAct if fusable else ConvNormAct)(
        in_chs, out_chs, kernel_size, norm_layer=nn.BatchNorm2d, act_layer=act_layer,
        norm_kwargs=dict(eps=_BN_EPS), **kwargs, **(dd or {}))


class SqueezeExcite(SEModule):
    """timm's SEModule (pool -> fc1 -> ReLU -> fc2 -> sigmoid, biases); the 1x1 convs run as linears on the
    pooled vector. `gate_for(x)` returns the (B, C) gate alone, for folding into a following 1x1 conv."""

    def __init__(self, channels: int, rd_channels: int, dd=None):
        super().__init__(channels, rd_channels=rd_channels, **(dd or {}))

    def gate_for(self, x: torch.Tensor) -> torch.Tensor:
        s = spatial_mean(x).flatten(1)
        s = self.act(F.linear(s, self.fc1.weight.flatten(1), self.fc1.bias))
        return self.gate(F.linear(s, self.fc2.weight.flatten(1), self.fc2.bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate_for(x)[:, :, None, None]


class SMixer(nn.Module):
    """Spatial mixer: 1x1 to C/2, gamma-weighted mean removal, 3x3 and dilated 3x3 x2 branches with SE, 1x1.

    Runs channels_last inside whatever x's layout (the 1x1 GEMMs switch layouts for free) and returns x's.
    """

    def __init__(self, dim: int, depthwise: bool, dd=None):
        super().__init__()
        dd = dd or {}
        hidden = dim // 2
        groups = hidden if depthwise else 1
        self.gamma = nn.Parameter(torch.full((1, hidden, 1, 1), 1e-5, **dd))
        self.proj_in = PointwiseConv(dim, hidden, dd=dd)
        self.h_conv = _conv_bn_act(hidden, hidden, 3, padding=1, groups=groups, dd=dd)
        self.l_conv = nn.Sequential(
            nn.Conv2d(hidden, hidden, 3, padding=2, dilation=2, groups=groups, bias=False, **dd),
            _conv_bn_act(hidden, hidden, 3, padding=2, dilation=2, groups=groups, dd=dd),
        )
        self.h_attn = SqueezeExcite(hidden, hidden // 4, dd)
        self.l_attn = SqueezeExcite(hidden, hidden // 4, dd)
        self.proj_out = PointwiseConv(dim, dim, dd=dd)

    def reparameterize(self):
        """For inference: the plain first dilated conv through ConvAct (its weights cast once, prepacked); the
        conv-BN-GELUs fuse themselves."""
        convs_as_conv_act(self.l_conv, '0')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels_last = _is_channels_last(x)
        # u + gamma * (u - mean(u)) with u = proj_in(x) = u0 + bias, as (1 + gamma) * u0 + (bias - gamma * mean(u0))
        u = _pointwise(x, self.proj_in.weight, None, True)
        shift = spatial_mean(u).mul(-self.gamma)
        bias = self.proj_in.bias
        if bias is not None:
            shift = shift + bias.reshape(1, -1, 1, 1)
        u = _addcmul_as_x(shift, u, 1. + self.gamma)
        h = self.h_conv(u)
        low = self.l_conv(u)
        gate = torch.cat([self.h_attn.gate_for(h), self.l_attn.gate_for(low)], 1)
        return self.proj_out(torch.cat([h, low], 1), channels_last, gate)


class CMixer(nn.Module):
    """Channel mixer: gated expansion with the argmax term, complex pair modulation, grouped 3x3, SE, 1x1.

    Runs channels_last inside whatever x's layout (the 1x1 GEMMs switch layouts for free) and returns x's.
    """

    modulation_folded: torch.jit.Final[bool]  # fixed when scripted: the unfolded branch reads conv.weight

    def __init__(self, dim: int, expand_ratio: int, grouped: bool, dd=None):
        super().__init__()
        dd = dd or {}
        hidden = dim * expand_ratio
        if hidden % 2:
            raise ValueError(f'CMixer needs an even expanded width for its complex pairs, got {hidden}.')
        self.theta = PointwiseConv(dim, hidden, dd=dd)
        self.proj = PointwiseConv(dim, hidden, dd=dd)
        self.complex = nn.Parameter(torch.randn(hidden // 2, 2, **dd))
        # not fused as a whole: the complex modulation sits between its conv and its norm
        self.conv = _conv_bn_act(
            hidden, hidden, 3, padding=1, groups=dim if grouped else hidden, fusable=False, dd=dd)
        self.attn = SqueezeExcite(hidden, dim // 4, dd)
        self.proj_out = PointwiseConv(hidden, dim, dd=dd)
        self.modulation_folded = False

    @torch.no_grad()
    def reparameterize(self):
        """For inference: fold the BatchNorm after the 3x3 conv into it, and the complex modulation (which acts
        on the conv's input side) into its weight where every group holds whole channel pairs."""
        if isinstance(self.conv.bn, nn.BatchNorm2d):
            self.conv.conv = conv_with_bn_folded(self.conv.conv, self.conv.bn)
            self.conv.bn = self.conv.bn.act
        conv = self.conv.conv
        if isinstance(conv, nn.Conv2d) and not self.modulation_folded and conv.weight.shape[1] % 2 == 0:
            conv.weight.copy_(_fold_pairs(conv.weight, self.complex, conv.groups))
            self.modulation_folded = True
        if self.modulation_folded:  # a plain conv now: weights cast once, prepacked (zoo.layers.ConvAct)
            convs_as_conv_act(self.conv, 'conv')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels_last = _is_channels_last(x)
        # index of the largest channel at each pixel (the first one on ties, as argmax; max(dim) is faster)
        idx = x.max(1, keepdim=True)[1]
        x_mm = _for_matmuls(x)
        theta = _gelu(self.theta(x_mm, True))
        weight = self.proj(x_mm, True)
        peak = theta.gather(1, idx) * weight.gather(1, idx)
        x = torch.addcmul(peak, weight, theta)
        conv = self.conv.conv
        if self.modulation_folded:
            x = conv(x)
        else:
            x = _modulated_conv(x, self.complex, conv.weight, conv.bias, conv.groups)
        x = self.conv.bn(x)
        return self.proj_out(x, channels_last, self.attn.gate_for(x))


class SpaRTANBlock(nn.Module):
    def __init__(
            self,
            dim: int,
            expand_ratio: int,
            late_stage: bool,
            drop_path: float = 0.,
            dd=None,
    ):
        super().__init__()
        dd = dd or {}
        self.norm_1 = nn.GroupNorm(1, dim, eps=_NORM_EPS, **dd)
        self.smixer = SMixer(dim, depthwise=late_stage, dd=dd)
        self.scale_1 = nn.Parameter(torch.full((1, dim, 1, 1), 1e-5, **dd))
        self.drop_path_1 = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm_2 = nn.GroupNorm(1, dim, eps=_NORM_EPS, **dd)
        self.cmixer = CMixer(dim, expand_ratio, grouped=late_stage, dd=dd)
        self.scale_2 = nn.Parameter(torch.full((1, dim, 1, 1), 1e-5, **dd))
        self.drop_path_2 = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.use_drop_path = drop_path > 0.

    @torch.no_grad()
    def reparameterize(self):
        """Fold the layer scales into the mixers' output projections (for inference)."""
        for scale, proj in ((self.scale_1, self.smixer.proj_out), (self.scale_2, self.cmixer.proj_out)):
            proj.weight.mul_(scale.reshape(-1, 1, 1, 1))
            proj.bias.mul_(scale.reshape(-1))
            scale.fill_(1.)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_drop_path and self.training:
            x = x + self.drop_path_1(self.scale_1 * self.smixer(self.norm_1(x)))
            x = x + self.drop_path_2(self.scale_2 * self.cmixer(self.norm_2(x)))
        else:
            x = torch.addcmul(x, self.scale_1, self.smixer(self.norm_1(x)))
            x = torch.addcmul(x, self.scale_2, self.cmixer(self.norm_2(x)))
        return x


class SpaRTANStage(nn.Module):
    def __init__(
            self,
            in_chs: int,
            out_chs: int,
            depth: int,
            expand_ratio: int,
            late_stage: bool,
            drop_path_rates: Sequence[float],
            downsample: bool,
            dd=None,
    ):
        super().__init__()
        dd = dd or {}
        self.grad_checkpointing = False
        if downsample:
            self.downsample = _conv_bn_act(in_chs, out_chs, 2, act_layer='silu', stride=2, padding=0, dd=dd)
        else:
            self.downsample = nn.Identity()
        self.blocks = nn.Sequential(*[
            SpaRTANBlock(out_chs, expand_ratio, late_stage, drop_path_rates[i], dd) for i in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.blocks, x)
        else:
            x = self.blocks(x)
        return x


class SpaRTAN(nn.Module):
    """SpaRTAN.

    Args:
        num_classes: Classifier outputs; 0 removes the classifier.
        in_chans: Input channels.
        depths: Blocks per stage.
        dims: Channels per stage (the stem outputs dims[0]).
        expand_ratios: CMixer expansion per stage.
        stem_chs: Channels of the first stem conv (official: dims[0] // 2).
        global_pool: timm pool type.
        drop_rate: Dropout before the classifier (none in the official model).
        drop_path_rate: Stochastic depth: block i of n drops with drop_path_rate * i / n (official training: 0.1).
    """

    def __init__(
            self,
            num_classes: int = 1000,
            in_chans: int = 3,
            depths: Tuple[int, ...] = (3, 3, 12, 2),
            dims: Tuple[int, ...] = (32, 64, 128, 256),
            expand_ratios: Tuple[int, ...] = (4, 4, 2, 2),
            stem_chs: Optional[int] = None,
            global_pool: str = 'avg',
            drop_rate: float = 0.,
            drop_path_rate: float = 0.,
            output_stride: int = 32,
            device=None,
            dtype=None,
    ):
        super().__init__()
        if output_stride != 32:
            raise ValueError(f'SpaRTAN supports output_stride=32 only, got {output_stride}.')
        if not len(depths) == len(dims) == len(expand_ratios):
            raise ValueError('depths, dims and expand_ratios need one entry per stage.')
        dd = {'device': device, 'dtype': dtype}
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.grad_checkpointing = False
        num_stages = len(depths)
        stem_chs = stem_chs or dims[0] // 2
        # the stem gives ceil(H / 4), then each 2x2 stride-2 downsampler floors a half: at least 1 pixel at the end
        self.min_input_size = 2 ** (num_stages + 1) - 3

        self.stem = nn.Sequential(
            _conv_bn_act(in_chans, stem_chs, 3, stride=2, padding=1, dd=dd),
            _conv_bn_act(stem_chs, dims[0], 3, stride=2, padding=1, dd=dd),
        )
        total = sum(depths)
        dpr = [drop_path_rate * i / total for i in range(total)]
        stages = []
        self.feature_info = []
        in_chs = dims[0]
        first = 0
        for i in range(num_stages):
            stages.append(SpaRTANStage(
                in_chs, dims[i], depths[i], expand_ratios[i],
                late_stage=i >= num_stages // 2,
                drop_path_rates=dpr[first:first + depths[i]],
                downsample=i > 0,
                dd=dd,
            ))
            first += depths[i]
            in_chs = dims[i]
            self.feature_info.append(dict(num_chs=dims[i], reduction=4 * 2 ** i, module=f'stages.{i}'))
        self.stages = nn.Sequential(*stages)

        self.num_features = self.head_hidden_size = dims[-1]
        self.head = ClassifierHead(self.num_features, num_classes, pool_type=global_pool, drop_rate=drop_rate, **dd)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self):
        """The official init: convs N(0, sqrt(2 / fan_out)), linear trunc_normal(0.02), biases 0, BN 1/0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
            if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)) and m.bias is not None:
                nn.init.zeros_(m.bias)

    @torch.jit.ignore
    def no_weight_decay(self):
        # the official training skips weight decay for norms (1-D here, skipped by timm) and SMixer gammas
        return {name for name, _ in self.named_parameters() if name.endswith('.gamma')}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict:
        return dict(
            stem=r'^stem',
            blocks=r'^stages\.(\d+)' if coarse else [
                (r'^stages\.(\d+)\.downsample', (0,)),
                (r'^stages\.(\d+)\.blocks\.(\d+)', None),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True):
        self.grad_checkpointing = enable
        for stage in self.stages:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def set_input_size(self, img_size: Optional[Union[int, Tuple[int, int]]] = None) -> None:
        """timm's resize API: a new default input size. SpaRTAN is convolutional, so any size from
        `min_input_size` up runs with the same weights; this records the size in the cfg."""
        if img_size is not None:
            if min((img_size, img_size) if isinstance(img_size, int) else img_size) < self.min_input_size:
                raise ValueError(f'SpaRTAN needs inputs of at least {self.min_input_size} px, got img_size={img_size}')
            set_cfg_input_size(self, img_size)

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None):
        self.num_classes = num_classes
        self.head.reset(num_classes, pool_type=global_pool)
        self.head_hidden_size = self.head.num_features

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Forward features and return intermediates.

        Indices 0-3 are the stage outputs at strides 4, 8, 16 and 32 (`feature_info`). There is no final
        norm, so `norm` changes nothing.
        """
        if output_fmt != 'NCHW':
            raise ValueError(f"SpaRTAN returns NCHW intermediates only, got output_fmt='{output_fmt}'.")
        intermediates = []
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        x = self.stem(_check_input(x, self.in_chans, self.min_input_size))
        if torch.jit.is_scripting() or not (stop_early or intermediates_only):  # can't slice in torchscript
            stages = self.stages
        else:
            stages = self.stages[:max_index + 1]
        for feat_idx, stage in enumerate(stages):
            x = stage(x)
            if feat_idx in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        """Drop the stages after the last kept feature tap (and the head)."""
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        prune_end = max_index < len(self.stages) - 1
        self.stages = self.stages[:max_index + 1]
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
            self.head = ClassifierHead(self.num_features, 0, pool_type='', **get_device_dtype(self))
            self.num_classes = 0
        elif prune_head:
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(_check_input(x, self.in_chans, self.min_input_size))
        x = self.stages(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        x = self.forward_head(x)
        return x


def _official_block_map(depths: Sequence[int]) -> Dict[int, str]:
    """Official flat `layers.{i}` index -> our module path (blocks and the downsampler after each stage)."""
    out = {}
    i = 0
    for stage, depth in enumerate(depths):
        for block in range(depth):
            out[i] = f'stages.{stage}.blocks.{block}'
            i += 1
        if stage < len(depths) - 1:
            out[i] = f'stages.{stage + 1}.downsample'
            i += 1
    return out


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: SpaRTAN) -> Dict[str, torch.Tensor]:
    """Convert an official SpaRTAN state_dict (bare, or a `main.py` checkpoint's 'model', any wrapper or
    'module.' prefix) to ours. Our own state_dicts are returned unchanged."""
    state_dict = unwrap_state_dict(state_dict)
    if any(k.startswith('stages.') for k in state_dict):
        return state_dict
    depths = [len(stage.blocks) for stage in model.stages]
    layer_map = _official_block_map(depths)
    out = {}
    for key, value in state_dict.items():
        if key.startswith('conv.'):  # stem: conv.{0,1}.{conv,norm}
            key = 'stem.' + key[len('conv.'):]
        elif key.startswith('layers.'):
            _, index, rest = key.split('.', 2)
            key = f'{layer_map[int(index)]}.{rest}'
        elif key.startswith('linear.'):
            key = 'head.fc.' + key[len('linear.'):]
        key = key.replace('.norm.', '.bn.')  # ConvNormAct's norm is timm's `bn`
        key = key.replace('.l_conv.0.conv.', '.l_conv.0.')  # the plain first dilated conv
        key = key.replace('_attn.squeeze.', '_attn.fc1.').replace('_attn.expand.', '_attn.fc2.')
        key = key.replace('.attn.squeeze.', '.attn.fc1.').replace('.attn.expand.', '.attn.fc2.')
        if key.endswith('.cmixer.complex'):
            value = value.reshape(-1, 2)  # official [1, 1, 1, N/2, 2]
        out[key] = value
    return out


def _create(variant: str, pretrained: bool = False, **kwargs) -> SpaRTAN:
    return build_model(
        SpaRTAN,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(feature_cls='getter', out_indices=(0, 1, 2, 3)),
        **kwargs,
    )


def _cfg(**kwargs):
    return {
        'num_classes': 1000, 'input_size': (3, 256, 256), 'pool_size': (8, 8),
        'crop_pct': 1.0, 'interpolation': 'bilinear', 'mean': (0.485, 0.456, 0.406), 'std': (0.229, 0.224, 0.225),
        'first_conv': 'stem.0.conv', 'classifier': 'head.fc',
        'paper_ids': 'arXiv:2507.10999',
        'paper_name': 'SpaRTAN: Spatial Reinforcement Token-based Aggregation Network for Visual Recognition',
        'origin_url': 'https://github.com/henry-pay/SpaRTAN', 'license': 'apache-2.0',
        **kwargs,
    }


default_cfgs = generate_default_cfgs({
    'spartan_tiny': _cfg(notes=('SpaRTAN-T (official spartan.yaml). No published weights: train it or load an '
                                'official checkpoint with checkpoint_path=.',)),
})


@register_model
def spartan_tiny(pretrained: bool = False, **kwargs) -> SpaRTAN:
    """SpaRTAN-T: depths 3/3/12/2, widths 32/64/128/256, CMixer expansion 4/4/2/2 (3.82M params)."""
    model_args = dict(depths=(3, 3, 12, 2), dims=(32, 64, 128, 256), expand_ratios=(4, 4, 2, 2))
    return _create('spartan_tiny', pretrained, **dict(model_args, **kwargs))
