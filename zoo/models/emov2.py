"""EMOv2: efficient models built from improved inverted residual mobile blocks (i2RMB).

Paper: "EMOv2: Pushing 5M Vision Model Frontier", J. Zhang et al., TPAMI 2025 (arXiv:2412.06674).
Official code: https://github.com/zhangzjn/EMOv2 (commit 582a96fe, `model/lib_emo/emo2.py`). The repository
publishes no license; the pretrained tags load the authors' own release files (converted on load by
`checkpoint_filter_fn`), nothing is redistributed.

Each block (`iiRMB`): norm -> expansion (1x1 conv, or in stages 3-4 the hybrid window attention whose
values are the expansion) -> depthwise conv with an inner skip -> 1x1 projection -> layer scale, with
the outer residual except in each stage's first (downsampling) block. The hybrid attention runs two
window partitions of one zero-padded map, a grid ("remote", tokens `n` apart) and a local ("close")
one, sharing q/k, and sums them; padded tokens carry the conv biases and are not masked.

Differences from the official code (none change its numbers):
  * the classifier returns the logits tensor, not the `{'out', 'out_kd'}` dict;
  * `reset_classifier` works (the official one reads an unset attribute);
  * stages are `nn.Sequential`, so `features_only` works; `forward_intermediates` gives the stem and the
    four stage outputs (strides 2/4/8/16/32) without extra norms, as the official detection backbone;
  * window attention partitions by reshape / permute (one copy per partition and tensor) instead of
    einops rearranges with `.contiguous()` copies, keeps channels-last models channels-last, and
    LayerNorm2d is timm's (permute, no copies);
  * timm-style names (`stem`, `stages.i.j`, `eop`, `bn`); `checkpoint_filter_fn` maps the official ones.

The official `*_256` / `*_512` builders of 1M/2M/20M are the base models with `window_size=8`
(`timm.create_model('emov2_1m', window_size=8)`); `emov2_5m_512` is the published 512 model.
"""
from functools import partial
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import (
    ConvNormAct, DropPath, LayerNorm2d, LayerScale2d, get_act_layer, get_device_dtype, trunc_normal_)
from timm.models import generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint_seq

from zoo.hub import build_model, set_cfg_input_size, unwrap_state_dict
from zoo.layers import ConvAct, fuse_conv_norm_act, pointwise_after_bn, scaled_conv
from zoo.precision import cpu_autocast_dtype

__all__ = ['EMOv2']

NORM_EPS = 1e-6


def _pad_to_windows(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """Zero-pad right and bottom to multiples of the window size."""
    pad_r = (window_size - x.shape[-1] % window_size) % window_size
    pad_b = (window_size - x.shape[-2] % window_size) % window_size
    if pad_r > 0 or pad_b > 0:
        x = F.pad(x, (0, pad_r, 0, pad_b))
    return x


def _gathered_as(t: torch.Tensor, dtype: Optional[torch.dtype]) -> torch.Tensor:
    """A strided (permuted) view gathered into contiguous memory in `dtype`: the cast rides on the copy the
    window reshape makes anyway. `t` unchanged when it is already in `dtype` (the reshape then copies)."""
    if dtype is None or dtype == t.dtype:
        return t
    return torch.empty(t.shape, dtype=dtype, device=t.device).copy_(t)


def _to_windows(t: torch.Tensor, num_heads: int, window_size: int, grid: bool,
                dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """(B, heads * c, Hp, Wp) -> (B * n1 * n2, heads, ws * ws, c) for the grid or the local partition, cast to
    `dtype` in the same copy."""
    b, ch, hp, wp = t.shape
    ws = window_size
    n1, n2 = hp // ws, wp // ws
    if grid:  # window (a, b) takes rows i * n1 + a and columns j * n2 + b
        t = t.reshape(b, num_heads, ch // num_heads, ws, n1, ws, n2).permute(0, 4, 6, 1, 3, 5, 2)
    else:  # window (a, b) takes the ws x ws block at (a * ws, b * ws)
        t = t.reshape(b, num_heads, ch // num_heads, n1, ws, n2, ws).permute(0, 3, 5, 1, 4, 6, 2)
    t = _gathered_as(t, dtype)
    return t.reshape(b * n1 * n2, num_heads, ws * ws, ch // num_heads)


def _from_windows(
        t: torch.Tensor, batch: int, hp: int, wp: int, window_size: int, grid: bool, channels_last: bool,
        dtype: Optional[torch.dtype] = None,
) -> torch.Tensor:
    """Inverse of `_to_windows`: (B * n1 * n2, heads, ws * ws, c) -> (B, heads * c, Hp, Wp), laid out
    channels-last when the model runs so (no layout switch for the next conv), cast to `dtype` in the same
    copy."""
    ws = window_size
    n1, n2 = hp // ws, wp // ws
    heads, c = t.shape[1], t.shape[-1]
    t = t.reshape(batch, n1, n2, heads, ws, ws, c)
    if channels_last:  # -> B, Hp, Wp, C in memory
        t = t.permute(0, 4, 1, 5, 2, 3, 6) if grid else t.permute(0, 1, 4, 2, 5, 3, 6)
    else:
        t = t.permute(0, 3, 6, 4, 1, 5, 2) if grid else t.permute(0, 3, 6, 1, 4, 2, 5)
    t = _gathered_as(t, dtype)
    if channels_last:
        return t.reshape(batch, hp, wp, heads * c).permute(0, 3, 1, 2)
    return t.reshape(batch, heads * c, hp, wp)


def hybrid_window_attention(
        qk: torch.Tensor, v: torch.Tensor, num_heads: int, window_size: int, scale: float,
        dtype: Optional[torch.dtype] = None, out_dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """Grid-window plus local-window multi-head attention on padded maps, summed (both softmaxes separate).

    Explicit matmul / softmax / matmul in the reference order: on CPU this beats the fused kernel here
    (v's head width differs from q's, which sends SDPA to its slow math path). Under CPU autocast it stays in
    fp32: these 49-token batched matmuls run 1.4-3x slower in bf16 on this kind of CPU (oneDNN's bf16 path pays
    off on large GEMMs only), and the fp32 softmax would convert both ways anyway. `dtype` / `out_dtype`: what
    the windows are cast to as they are gathered / the result as it is scattered back.
    """
    batch, _, hp, wp = qk.shape
    channels_last = qk.is_contiguous(memory_format=torch.channels_last) and not qk.is_contiguous()
    if not torch.jit.is_scripting() and cpu_autocast_dtype(qk) is not None:
        return _hybrid_window_attention_fp32(qk, v, num_heads, window_size, scale)
    q, k = qk.chunk(2, dim=1)
    out = torch.empty(0)
    for grid in (True, False):
        qw = _to_windows(q, num_heads, window_size, grid, dtype)
        kw = _to_windows(k, num_heads, window_size, grid, dtype)
        vw = _to_windows(v, num_heads, window_size, grid, dtype)
        attn = qw @ kw.transpose(-2, -1)
        if scale != 1.0:
            attn = attn.mul_(scale)
        attn = attn.softmax(dim=-1)
        part = _from_windows(attn @ vw, batch, hp, wp, window_size, grid, channels_last, out_dtype)
        out = part if grid else out + part
    return out


@torch.jit.unused
def _hybrid_window_attention_fp32(
        qk: torch.Tensor, v: torch.Tensor, num_heads: int, window_size: int, scale: float) -> torch.Tensor:
    with torch.autocast('cpu', enabled=False):
        return hybrid_window_attention(qk, v, num_heads, window_size, scale, torch.float32, qk.dtype)


# shape-dependent padding and window shapes are leaves for fx
torch.fx.wrap('_pad_to_windows')
torch.fx.wrap('hybrid_window_attention')


def _act(act_layer) -> nn.Module:
    """An activation module, in place where it has that option (it always follows a fresh conv output)."""
    try:
        return act_layer(inplace=True)
    except TypeError:
        return act_layer()


class PointwiseAct(nn.Module):
    """1x1 conv with bias, then an activation: the i2RMB expansion in stages 1-2 and the downsamplers."""

    def __init__(self, in_chs: int, out_chs: int, act_layer, dd=None):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, 1, **(dd or {}))
        self.act = _act(act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class HybridWindowAttention(nn.Module):
    """EW-MHSA hybrid: q, k (1x1, C -> 2C, no act) and v (1x1, C -> M, with act) attended over grid and
    local windows; the summed result is the expansion (M channels)."""

    def __init__(self, in_chs: int, out_chs: int, act_layer, dim_head: int, window_size: int, dd=None):
        super().__init__()
        dd = dd or {}
        self.num_heads = in_chs // dim_head
        self.window_size = window_size
        self.scale = dim_head ** -0.5
        self.qk = nn.Conv2d(in_chs, in_chs * 2, 1, **dd)
        self.v = nn.Conv2d(in_chs, out_chs, 1, **dd)
        self.act = _act(act_layer)

    def reparameterize(self):
        """The q/k and v convolutions (with v's activation) as oneDNN calls with their weights cast once, and the
        attention scale folded into q's weights (q k^T * s = (s q) k^T: no pass over the attention maps)."""
        if not isinstance(self.qk, ConvAct):
            with torch.no_grad():
                q_chs = self.qk.out_channels // 2
                self.qk.weight[:q_chs].mul_(self.scale)
                self.qk.bias[:q_chs].mul_(self.scale)
            self.scale = 1.0
            self.qk, self.v, self.act = ConvAct(self.qk), ConvAct(self.v, self.act), nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = _pad_to_windows(x, self.window_size)
        out = hybrid_window_attention(self.qk(x), self.act(self.v(x)), self.num_heads, self.window_size, self.scale)
        return out[:, :, :h, :w]


class IIRMB(nn.Module):
    """Improved inverted residual mobile block.

    `reparameterize()` (timm's `reparameterize_model`) folds for inference: a BatchNorm pre-norm into the
    pointwise expansion after it, the depthwise conv's BatchNorm into it, LayerScale into the projection, and
    hands activations and the residual sum to oneDNN (`zoo.layers.ConvAct`). The attention blocks' pre-norm
    stays: their maps are padded to whole windows after it, and a folded norm would change the padded tokens.
    """
    fused: torch.jit.Final[bool] = False

    def __init__(
            self,
            in_chs: int,
            out_chs: int,
            exp_ratio: float,
            stride: int = 1,
            attention: bool = False,
            norm_layer=nn.BatchNorm2d,
            act_layer=nn.SiLU,
            dw_kernel_size: int = 5,
            dim_head: int = 16,
            window_size: int = 7,
            drop_path: float = 0.,
            ls_init_value: float = 1e-6,
            dd=None,
    ):
        super().__init__()
        dd = dd or {}
        mid_chs = int(in_chs * exp_ratio)
        self.has_skip = in_chs == out_chs and stride == 1
        self.norm = norm_layer(in_chs, eps=NORM_EPS, **dd)
        if attention:
            self.eop = HybridWindowAttention(in_chs, mid_chs, act_layer, dim_head, window_size, dd)
        else:
            self.eop = PointwiseAct(in_chs, mid_chs, act_layer, dd)
        # always SiLU, even in the GELU stages
        self.conv_local = ConvNormAct(
            mid_chs, mid_chs, dw_kernel_size, stride=stride, groups=mid_chs, act_layer='silu',
            norm_kwargs=dict(eps=NORM_EPS), act_kwargs=dict(inplace=True), **dd)
        self.proj = nn.Conv2d(mid_chs, out_chs, 1, bias=False, **dd)
        self.ls = LayerScale2d(out_chs, ls_init_value, inplace=True, **dd)  # on the fresh proj output
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    @torch.no_grad()
    def reparameterize(self):
        if self.fused:
            return
        if isinstance(self.eop, PointwiseAct):
            conv = self.eop.conv
            if isinstance(self.norm, nn.BatchNorm2d):
                conv, self.norm = pointwise_after_bn(self.norm, conv), nn.Identity()
            self.eop = ConvAct(conv, self.eop.act)
        self.conv_local = fuse_conv_norm_act(self.conv_local)
        self.proj = ConvAct(scaled_conv(self.proj, self.ls.gamma))
        self.ls = nn.Identity()
        self.fused = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.eop(self.norm(x))
        if self.fused:  # eval only: no drop path
            if self.has_skip:
                return self.proj(x + self.conv_local(x), shortcut)
            return self.proj(self.conv_local(x))
        if self.has_skip:
            x = x + self.conv_local(x)
            return shortcut + self.drop_path(self.ls(self.proj(x)))
        return self.ls(self.proj(self.conv_local(x)))


class Stem(nn.Sequential):
    """conv-BN-SiLU, depthwise conv-BN-SiLU, 1x1 conv; `reparameterize()` folds the BatchNorms."""

    def reparameterize(self):
        for i in (0, 1):
            if isinstance(self[i], ConvNormAct):
                self[i] = fuse_conv_norm_act(self[i])


def _check_global_pool(global_pool: str) -> str:
    if global_pool not in ('avg', ''):
        raise ValueError(f"EMOv2 pools by the spatial mean: global_pool must be 'avg' or '', got '{global_pool}'.")
    return global_pool


class EMOv2(nn.Module):
    """EMOv2 classifier / backbone.

    Args:
        depths, embed_dims, exp_ratios, dim_heads: per-stage settings of the official builders.
        window_size: attention window (7; 8 for the official `_256` / `_512` builders).
        dw_kernel_size: depthwise kernel of every block.
        ls_init_value: LayerScale init.
    """

    def __init__(
            self,
            num_classes: int = 1000,
            in_chans: int = 3,
            depths: Sequence[int] = (2, 2, 8, 3),
            embed_dims: Sequence[int] = (32, 48, 80, 180),
            exp_ratios: Sequence[float] = (2., 2.5, 3., 3.5),
            dim_heads: Sequence[int] = (16, 16, 20, 20),
            window_size: int = 7,
            dw_kernel_size: int = 5,
            global_pool: str = 'avg',
            drop_rate: float = 0.,
            drop_path_rate: float = 0.,
            ls_init_value: float = 1e-6,
            output_stride: int = 32,
            device=None,
            dtype=None,
    ):
        super().__init__()
        if output_stride != 32:
            raise ValueError(f'EMOv2 supports output_stride=32 only, got {output_stride}.')
        dd = {'device': device, 'dtype': dtype}
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = _check_global_pool(global_pool)
        self.drop_rate = drop_rate
        self.grad_checkpointing = False

        stem_chs = embed_dims[0] // 2
        bn_act = partial(ConvNormAct, norm_kwargs=dict(eps=NORM_EPS), act_layer='silu', act_kwargs=dict(inplace=True))
        self.stem = Stem(
            bn_act(in_chans, stem_chs, 3, stride=2, bias=True, **dd),
            bn_act(stem_chs, stem_chs, 3, groups=stem_chs, **dd),
            nn.Conv2d(stem_chs, stem_chs, 1, bias=False, **dd),
        )
        self.feature_info = [dict(num_chs=stem_chs, reduction=2, module='stem')]

        dpr = torch.linspace(0, drop_path_rate, sum(depths), device='cpu').tolist()
        stages = []
        in_chs = stem_chs
        for i, (depth, dim) in enumerate(zip(depths, embed_dims)):
            late = i >= 2  # stages 3-4: LayerNorm, GELU, window attention
            blocks = []
            for j in range(depth):
                first = j == 0
                blocks.append(IIRMB(
                    in_chs, dim,
                    exp_ratio=exp_ratios[i] * 2 if first else exp_ratios[i],
                    stride=2 if first else 1,
                    attention=late and not first,
                    norm_layer=LayerNorm2d if late else nn.BatchNorm2d,
                    act_layer=get_act_layer('gelu' if late else 'silu'),
                    dw_kernel_size=dw_kernel_size,
                    dim_head=dim_heads[i],
                    window_size=window_size,
                    drop_path=dpr[sum(depths[:i]) + j],
                    ls_init_value=ls_init_value,
                    dd=dd,
                ))
                in_chs = dim
            stages.append(nn.Sequential(*blocks))
            self.feature_info.append(dict(num_chs=dim, reduction=2 ** (i + 2), module=f'stages.{i}'))
        self.stages = nn.Sequential(*stages)
        self.num_features = self.head_hidden_size = embed_dims[-1]
        self.norm = LayerNorm2d(self.num_features, eps=NORM_EPS, **dd)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes, **dd) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module):
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    @torch.jit.ignore
    def no_weight_decay_keywords(self):
        return {'gamma'}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict:
        return dict(
            stem=r'^stem',
            blocks=r'^stages\.(\d+)' if coarse else [(r'^stages\.(\d+)\.(\d+)', None), (r'^norm', (99999,))],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True):
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def set_input_size(self, img_size: Optional[Union[int, Tuple[int, int]]] = None,
                       window_size: Optional[int] = None) -> None:
        """timm's resize API: a new default input size (any size runs: the attention pads to whole windows)
        and/or a new attention window (the official 256 / 512 builders use window_size=8); weights unchanged."""
        if window_size is not None:
            if window_size < 1:
                raise ValueError(f'window_size must be positive, got {window_size}')
            for module in self.modules():
                if isinstance(module, HybridWindowAttention):
                    module.window_size = window_size
        if img_size is not None:
            set_cfg_input_size(self, img_size)

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None):
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = _check_global_pool(global_pool)
        dd = get_device_dtype(self)
        self.head = nn.Linear(self.num_features, num_classes, **dd) if num_classes > 0 else nn.Identity()

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Stem and stage outputs (indices 0-4, strides 2/4/8/16/32); `norm` applies the final LayerNorm
        to the last stage's output."""
        if output_fmt != 'NCHW':
            raise ValueError(f"EMOv2 returns NCHW intermediates only, got output_fmt='{output_fmt}'.")
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        last = len(self.feature_info) - 1
        intermediates = []
        x = self.stem(x)
        if 0 in take_indices:
            intermediates.append(x)
        stages = self.stages if not (stop_early or intermediates_only) else self.stages[:max_index]
        for i, stage in enumerate(stages, start=1):
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint_seq(stage, x)
            else:
                x = stage(x)
            if i in take_indices:
                intermediates.append(self.norm(x) if norm and i == last else x)
        if intermediates_only:
            return intermediates
        if len(stages) == len(self.stages):
            x = self.norm(x)
        return x, intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        self.stages = self.stages[:max_index]
        if prune_norm or max_index < len(self.feature_info) - 1:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.stages, x)
        else:
            x = self.stages(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == 'avg':
            x = x.mean((2, 3))
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: EMOv2) -> Dict[str, torch.Tensor]:
    """Convert an official EMOv2 checkpoint (bare, or a training checkpoint with 'net' / 'net_E') to ours."""
    if isinstance(state_dict, dict) and 'net' in state_dict and isinstance(state_dict['net'], dict):
        state_dict = state_dict['net']  # the released accuracy is the non-EMA weights ('net_E' is the EMA)
    state_dict = unwrap_state_dict(state_dict)
    if 'stem.0.conv.weight' in state_dict:
        return state_dict
    out = {}
    for key, value in state_dict.items():
        if key.startswith('stage0.'):
            key = 'stem.' + key[len('stage0.'):]
        elif key.startswith('stage'):
            stage, rest = key[len('stage'):].split('.', 1)
            key = f'stages.{int(stage) - 1}.{rest}'
        key = (key.replace('.norm.norm.', '.norm.').replace('eops.0.net.', 'eop.').replace('eops.0.', 'eop.')
               .replace('.qk.conv.', '.qk.').replace('.v.conv.', '.v.').replace('.proj.conv.', '.proj.'))
        if key.startswith('norm.norm.'):
            key = key[len('norm.'):]
        if key.startswith('stem.') or '.conv_local.' in key:
            key = key.replace('.norm.', '.bn.')
        if key == 'stem.2.conv.weight':
            key = 'stem.2.weight'
        if key.endswith('.ls.gamma'):
            value = value.reshape(-1)
        out[key] = value
    return out


def _create(variant: str, pretrained: bool = False, **kwargs) -> EMOv2:
    return build_model(
        EMOv2,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(feature_cls='getter', out_indices=(1, 2, 3, 4)),
        **kwargs,
    )


_RELEASES = 'https://github.com/zhangzjn/data/raw/main/emov2_pretrained_weights/'


def _cfg(file: Optional[str] = None, **kwargs):
    return {
        'url': _RELEASES + file if file else None,
        'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
        'crop_pct': 0.875, 'interpolation': 'bicubic', 'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'stem.0.conv', 'classifier': 'head',
        'paper_ids': 'arXiv:2412.06674', 'paper_name': 'EMOv2: Pushing 5M Vision Model Frontier',
        'origin_url': 'https://github.com/zhangzjn/EMOv2', 'license': 'other',
        'notes': ('The official repository publishes no license; the weights are the authors\' files, '
                  'loaded from their release and converted on load.',),
        **kwargs,
    }


default_cfgs = generate_default_cfgs({
    'emov2_1m.in1k_kd': _cfg('EMOv2_1M_224_KD.pth'),
    'emov2_1m.in1k': _cfg('EMOv2_1M_224.pth'),
    'emov2_2m.in1k_kd': _cfg('EMOv2_2M_224_KD.pth'),
    'emov2_2m.in1k': _cfg('EMOv2_2M_224.pth'),
    'emov2_5m.in1k_kd': _cfg('EMOv2_5M_224_KD.pth'),
    'emov2_5m.in1k': _cfg('EMOv2_5M_224.pth'),
    'emov2_5m_512.in1k_kd': _cfg('EMOv2_5M_512.pth', input_size=(3, 512, 512), pool_size=(16, 16), crop_pct=512 / 585),
    'emov2_20m': _cfg(),
})


@register_model
def emov2_1m(pretrained: bool = False, **kwargs) -> EMOv2:
    """EMOv2-1M: 1.46M params, 0.285 GMACs at 224."""
    args = dict(depths=(2, 2, 8, 3), embed_dims=(32, 48, 80, 180), exp_ratios=(2., 2.5, 3., 3.5),
                dim_heads=(16, 16, 20, 20), drop_path_rate=0.04036)
    return _create('emov2_1m', pretrained, **{**args, **kwargs})


@register_model
def emov2_2m(pretrained: bool = False, **kwargs) -> EMOv2:
    """EMOv2-2M: 2.38M params, 0.488 GMACs at 224."""
    args = dict(depths=(3, 3, 9, 3), embed_dims=(32, 48, 120, 200), exp_ratios=(2., 2.5, 3., 3.5),
                dim_heads=(16, 16, 20, 20), drop_path_rate=0.05)
    return _create('emov2_2m', pretrained, **{**args, **kwargs})


@register_model
def emov2_5m(pretrained: bool = False, **kwargs) -> EMOv2:
    """EMOv2-5M: 5.13M params, 1.036 GMACs at 224."""
    args = dict(depths=(3, 3, 9, 3), embed_dims=(48, 72, 160, 288), exp_ratios=(2., 3., 4., 4.),
                dim_heads=(16, 24, 32, 32), drop_path_rate=0.05)
    return _create('emov2_5m', pretrained, **{**args, **kwargs})


@register_model
def emov2_5m_512(pretrained: bool = False, **kwargs) -> EMOv2:
    """EMOv2-5M at 512 with window 8 (the official `EMO2_5M_k5_hybrid_512`): 5.63 GMACs, 82.9 top-1."""
    args = dict(depths=(3, 3, 9, 3), embed_dims=(48, 72, 160, 288), exp_ratios=(2., 3., 4., 4.),
                dim_heads=(16, 24, 32, 32), window_size=8, drop_path_rate=0.05)
    return _create('emov2_5m_512', pretrained, **{**args, **kwargs})


@register_model
def emov2_20m(pretrained: bool = False, **kwargs) -> EMOv2:
    """EMOv2-20M: 20.2M params, 4.02 GMACs at 224 (no ImageNet weights published)."""
    args = dict(depths=(3, 3, 13, 3), embed_dims=(64, 128, 320, 448), exp_ratios=(2., 3., 4., 4.),
                dim_heads=(16, 32, 32, 32), drop_path_rate=0.1)
    return _create('emov2_20m', pretrained, **{**args, **kwargs})
