"""Strip-MLP: a hierarchical MLP whose token mixing runs along strips of rows and columns.

Paper: "Strip-MLP: Efficient Token Interaction for Vision MLP", G. Cao, S. Luo, W. Huang, X. Lan,
D. Jiang, Y. Wang, J. Zhang, ICCV 2023 (arXiv:2307.11458).

Reference code: Med-Process/Strip_MLP (commit 492d7050, `models/strip_mlp.py`, `StripMLPNet`, built by
`models/build.py` from `configs/smlp_{tiny_light,tiny,small,base}_alpha3_patch4_224_imagenet1k.yaml`).
The README badge and file headers say MIT, but the repository has no LICENSE file. The authors'
ImageNet-1k weights are on Baidu Pan only (login and extraction code), so no tag here downloads them;
`checkpoint_filter_fn` converts such a checkpoint (bare, or wrapped in `model` as the Swin code base
saves it) given as `checkpoint_path=` or `pretrained_cfg_overlay=dict(file=...)`.

The architecture, as the reference code computes it (GELU is exact, BatchNorm eps 1e-5):
  * A 4x4 stride-4 patch convolution (no norm), then 4 stages of widths E, 2E, 4E, 8E at 56, 28, 14 and
    7 tokens a side, joined by 2x2 stride-2 convolutions. Grouped 2x2 stride-2 convolutions carry the
    merged input of stage 2 into stage 3, and the merged input of stage 3 plus that shortcut into
    stage 4. A final BatchNorm, spatial mean and Linear classifier.
  * Each block is x + TokenMixing(x), then x + ChannelMixing(x).
  * TokenMixing: BatchNorm -> GELU -> depthwise 3x3, then a 1x1 conv -> BatchNorm -> GELU, whose
    channels split in halves. The first half goes through the strip MLP: its C' channels are viewed as
    P x G (P = 2 when the block width is a multiple of 80, else 4), a relative-position map is added,
    each row is mixed by a full MLP along its width that also sees the rows above and below it
    (weights per group g, shared over p), the result and the input are fused by a 1x1 conv ->
    BatchNorm -> GELU, a second position map is added, the columns are mixed the same way, and the
    result is fused with the block's (position-free) input by another 1x1 conv. The second half is
    mixed by a 7x3 and a 3x7 depthwise conv, weighted per channel with itself by a softmax over an
    MLP of their pooled sum. A 1x1 conv fuses the halves.
  * ChannelMixing: depthwise 7x7 -> LayerNorm (eps 1e-5) -> Linear (3x) -> GELU -> GRN -> Linear.

Differences from the reference code (none change its numbers beyond float rounding, ~1e-6):
  * The strip MLPs run as one batched matrix product per channel group on 3-line strips unfolded from a
    zero-padded, group-major copy of the input (the reference permutes and copies around a grouped
    convolution whose channels are the line positions, and its views fail on channels_last tensors).
    Their weights are stored in that layout: `mix_w` is the reference's `proj_h` (it mixes along the
    width), `mix_h` its `proj_w`; the depthwise `conv_v` (7x3) and `conv_h` (3x7) are its `fc_w` and
    `fc_h` (names swapped there). `checkpoint_filter_fn` maps every name and layout.
  * GRN is computed in one pass over its input (x * (1 + gamma * Nx) + beta); where the token grid is
    larger than the width (stages 1-2), its per-sample scale and its shift are folded into the weights
    of the Linear after it instead. In eval mode the BatchNorms that follow a 1x1 conv are folded into
    it on the fly; `timm.utils.reparameterize_model` folds them once, hands those GELUs and ChannelMixing's
    fc1 GELU to oneDNN, and runs the depthwise and plain 1x1 convolutions through `zoo.layers.ConvAct`. The
    reweighting MLP runs as Linear layers on the pooled vector, and the three pooled
    means are summed instead of pooling their sum. LayerNorm, DropPath and the norm-act layers are timm's.
    On CPU this is about 1.2-1.3x the reference's speed (one thread, batch 1 and 32, see
    `benchmarks/strip_mlp_vs_official.py`).
  * `drop_path_rate` is the same in every block, as the reference trains it (hard-coded 0.1 there, 0 by
    default here, for inference: pass `drop_path_rate=0.1` to train as the authors did); `drop_rate`
    is classifier dropout (the reference's `drop_rate`, `use_dropout` and `patch_norm` do nothing).
  * The token-mixing weights and position tables fix the token grids to img_size / 4, ..., / 32, so
    another input size is a clear ValueError (`fixed_input_size` in the cfg; `img_size=` builds a model
    for another square size, to be trained). Features at strides 4/8/16/32 (`features_only`,
    `forward_intermediates`) are the stage outputs at that size only: dense prediction at detection
    resolutions would need new position tables and strip-MLP weights.
"""
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import (
    BatchNormAct2d, ConvNormAct, DropPath, LayerNorm, Mlp, create_classifier, get_device_dtype, to_2tuple,
    trunc_normal_,
)
from timm.layers.grn import GlobalResponseNorm as _GlobalResponseNorm
from timm.models import generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint_seq

from zoo.hub import build_model, unwrap_state_dict
from zoo.layers import LinearAct, convs_as_conv_act, fuse_conv_norm_act, spatial_mean

__all__ = ['StripMLP']


def strip_splits(width: int) -> int:
    """P, the number of channel slices that share the strip-MLP weights: the reference's width rule."""
    return 2 if width % 80 == 0 else 4


def _check_input_size(x: torch.Tensor, img_size: int) -> torch.Tensor:
    if x.dim() != 4 or x.shape[-2] != img_size or x.shape[-1] != img_size:
        raise ValueError(
            f'StripMLP takes B x C x {img_size} x {img_size} images (its token-mixing weights and position '
            f'tables are sized for that resolution), got shape {list(x.shape)}; resize or crop the input '
            f'to {img_size} x {img_size}.')
    return x


torch.fx.wrap('_check_input_size')  # a leaf for fx: shape checks can't be traced
torch.fx.wrap('spatial_mean')  # dtype-dependent (zoo.layers)


def _conv_bn_folded(
        x: torch.Tensor,
        conv_weight: torch.Tensor,
        conv_bias: Optional[torch.Tensor],
        bn_weight: torch.Tensor,
        bn_bias: torch.Tensor,
        running_mean: torch.Tensor,
        running_var: torch.Tensor,
        eps: float,
) -> torch.Tensor:
    """A 1x1 conv with an eval-mode BatchNorm folded into its weights on the fly."""
    scale = bn_weight * torch.rsqrt(running_var + eps)
    bias = bn_bias - running_mean * scale
    if conv_bias is not None:
        bias = torch.addcmul(bias, conv_bias, scale)
    return F.conv2d(x, conv_weight * scale.view(-1, 1, 1, 1), bias)


# a leaf for fx: traced inline, the optional conv bias would reach torchscript as Optional[Tensor] (no refinement)
torch.fx.wrap('_conv_bn_folded')


class ConvBnAct(ConvNormAct):
    """1x1 conv -> BatchNorm -> GELU. In eval mode the BatchNorm is folded into the conv on the fly (C x C
    work instead of a pass over the activations); `fuse()` folds it once and hands the GELU to oneDNN."""

    def fuse(self) -> nn.Module:
        return fuse_conv_norm_act(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn = self.bn
        if self.training:
            return bn(self.conv(x))
        x = _conv_bn_folded(
            x, self.conv.weight, self.conv.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.eps)
        return bn.act(x)


class RelativePositionMap(nn.Module):
    """A learned table of 2S + 1 per-channel offsets; map[c, i, j] = table[S + j - i, c] on an S x S grid."""

    def __init__(self, dim: int, size: int, device=None, dtype=None):
        super().__init__()
        self.size = size
        self.table = nn.Parameter(torch.empty(2 * size + 1, dim, device=device, dtype=dtype))
        trunc_normal_(self.table, std=.02)

    def forward(self) -> torch.Tensor:
        # windows[c, s, j] = table[s + j, c]; row i of the map is window S - i
        windows = self.table.t().unfold(1, self.size, 1)
        return windows[:, 1:self.size + 1].flip(1)


class StripLinear(nn.Module):
    """Per channel group, a full MLP along lines of `length` tokens that also reads the 2 neighbouring lines.

    Input: G x B x (length + 2) x length, lines zero-padded by one on each side; output G x B x length x length
    (line, position). This is the reference's grouped (1, 3) convolution whose channels are the line
    positions, as one matrix product per group on the 3-line strips.
    """

    def __init__(self, groups: int, length: int, taps: int = 3, device=None, dtype=None):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.taps = taps
        # weight[g, k * length + i, o]: input position i of line h + k - 1 -> output position o of line h
        self.weight = nn.Parameter(torch.empty(groups, taps * length, length, **dd))
        self.bias = nn.Parameter(torch.empty(groups, 1, length, **dd))
        bound = (taps * length) ** -0.5  # nn.Conv2d's default init for the reference's conv
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g, b, lines, length = x.shape
        n = lines - self.taps + 1
        strips = x.unfold(2, self.taps, 1).transpose(3, 4)  # g, b, line, tap, position
        out = torch.bmm(strips.reshape(g, b * n, self.taps * length), self.weight)
        return out.add_(self.bias).view(g, b, n, -1)


class StripMixing(nn.Module):
    """The strip MLP on C' channels at S x S: rows, fuse with the input, columns, fuse with the input."""

    def __init__(self, dim: int, size: int, splits: int, device=None, dtype=None):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        if dim % splits:
            raise ValueError(f'strip-MLP channels {dim} are not a multiple of {splits} splits')
        self.dim = dim
        self.size = size
        self.splits = splits
        self.groups = dim // splits
        self.pos_rows = RelativePositionMap(dim, size, **dd)
        self.mix_w = StripLinear(self.groups, size, **dd)
        self.fuse_rows = ConvBnAct(2 * dim, dim, 1, act_layer=nn.GELU, **dd)
        self.pos_cols = RelativePositionMap(dim, size, **dd)
        self.mix_h = StripLinear(self.groups, size, **dd)
        self.fuse_cols = nn.Conv2d(2 * dim, dim, 1, bias=False, **dd)

    def reparameterize(self):
        convs_as_conv_act(self, 'fuse_cols')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        p, g, s = self.splits, self.groups, self.size
        x5 = x.reshape(n, p, g, s, s)  # channel c = p * G + g

        # rows: (G, N * P, h, w) with rows h = -1, S zero, mixed along w, 3 taps across h
        pos = self.pos_rows().view(1, p, g, s, s)
        y = F.pad((x5 + pos).permute(2, 0, 1, 3, 4), (0, 0, 1, 1)).reshape(g, n * p, s + 2, s)
        rows = self.mix_w(y).view(g, n, p, s, s).permute(1, 2, 0, 3, 4)
        y = self.fuse_rows(torch.cat([rows, x5], 1).view(n, 2 * self.dim, s, s))

        # columns: (G, N * P, w, h) with columns w = -1, S zero, mixed along h, 3 taps across w
        pos = self.pos_cols().view(1, p, g, s, s)
        y = (y.view(n, p, g, s, s) + pos).permute(2, 0, 1, 4, 3)
        y = F.pad(y, (0, 0, 1, 1)).reshape(g, n * p, s + 2, s)
        cols = self.mix_h(y).view(g, n, p, s, s).permute(1, 2, 0, 4, 3)
        return self.fuse_cols(torch.cat([x5, cols], 1).view(n, 2 * self.dim, s, s))


class LocalMixing(nn.Module):
    """7x3 and 3x7 depthwise convs and the identity, weighted per channel by a softmax over 3."""

    def __init__(self, dim: int, device=None, dtype=None):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.dim = dim
        self.conv_v = nn.Conv2d(dim, dim, (7, 3), padding=(3, 1), groups=dim, bias=False, **dd)
        self.conv_h = nn.Conv2d(dim, dim, (3, 7), padding=(1, 3), groups=dim, bias=False, **dd)
        self.reweight = Mlp(dim, dim // 2, dim * 3, act_layer=nn.GELU, **dd)

    def reparameterize(self):
        convs_as_conv_act(self, 'conv_v', 'conv_h')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xv = self.conv_v(x)
        xh = self.conv_h(x)
        pooled = (spatial_mean(xv) + spatial_mean(xh) + spatial_mean(x)).flatten(1)
        # the reweight output is laid out (channel, branch)
        attn = self.reweight(pooled).reshape(x.shape[0], self.dim, 3, 1, 1).softmax(2)
        out = xv * attn[:, :, 0]
        out = out.addcmul_(xh, attn[:, :, 1])
        return out.addcmul_(x, attn[:, :, 2])


class TokenMixing(nn.Module):
    def __init__(self, dim: int, size: int, device=None, dtype=None):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.half = dim // 2
        self.norm = BatchNormAct2d(dim, act_layer=nn.GELU, **dd)
        self.conv_dw = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False, **dd)
        self.proj_in = ConvBnAct(dim, dim, 1, bias=True, act_layer=nn.GELU, **dd)
        self.strip = StripMixing(self.half, size, strip_splits(dim), **dd)
        self.local = LocalMixing(dim - self.half, **dd)
        self.proj_out = nn.Conv2d(dim, dim, 1, bias=False, **dd)

    def reparameterize(self):
        convs_as_conv_act(self, 'conv_dw', 'proj_out')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj_in(self.conv_dw(self.norm(x)))
        x1 = self.strip(x[:, :self.half])
        x2 = self.local(x[:, self.half:])
        return self.proj_out(torch.cat([x1, x2], 1))


class GlobalResponseNorm(_GlobalResponseNorm):
    """timm's GRN (ConvNeXt-V2) on B x H x W x C, computed as x * scale + bias with scale = 1 + weight * Nx:
    one pass over x instead of three (same values to float rounding)."""

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        x_g = x.square().sum(self.spatial_dim, keepdim=True).sqrt()
        x_n = x_g / (x_g.mean(dim=self.channel_dim, keepdim=True) + self.eps)
        return x_n * self.weight.view(self.wb_shape) + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias.view(self.wb_shape), x, self.scale(x))


class ChannelMixing(nn.Module):
    """Depthwise 7x7 -> LayerNorm -> Linear -> GELU -> GRN -> Linear, the MLP on B x H x W x C.

    Where the token grid is larger than the width, GRN's per-sample scale and its shift are folded into
    the second Linear's weights (a few C x 3C products instead of a pass over the B x H x W x 3C
    activations), which then writes B x C x H x W directly.
    """

    def __init__(self, dim: int, size: int, mlp_ratio: float = 3., device=None, dtype=None):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        hidden = int(mlp_ratio * dim)
        self.fold_grn = size * size > dim
        self.conv_dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim, bias=False, **dd)
        self.norm = LayerNorm(dim, eps=1e-5, **dd)
        self.fc1 = nn.Linear(dim, hidden, **dd)
        self.act = nn.GELU()
        self.grn = GlobalResponseNorm(hidden, eps=1e-6, channels_last=True, **dd)
        self.fc2 = nn.Linear(hidden, dim, **dd)

    def reparameterize(self):
        """For inference: fc1's GELU inside oneDNN's matmul, its weights cast once and prepacked
        (zoo.layers.LinearAct), and fc2's too where the GRN is not folded into its per-sample weights."""
        if not isinstance(self.fc1, LinearAct):
            self.fc1, self.act = LinearAct(self.fc1, self.act), nn.Identity()
            if not self.fold_grn:
                self.fc2 = LinearAct(self.fc2)
        convs_as_conv_act(self, 'conv_dw')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        x = self.norm(self.conv_dw(x).permute(0, 2, 3, 1))
        x = self.act(self.fc1(x))
        if not self.fold_grn:
            return self.fc2(self.grn(x)).permute(0, 3, 1, 2)
        # fc2(x * scale + shift) = (fc2.weight * scale) @ x + (fc2.bias + fc2.weight @ shift), per sample
        weight = self.fc2.weight * self.grn.scale(x).view(n, 1, -1)
        bias = torch.addmv(self.fc2.bias, self.fc2.weight, self.grn.bias)
        out = torch.bmm(weight, x.reshape(n, h * w, -1).transpose(1, 2))
        return out.add_(bias.unsqueeze(1)).view(n, -1, h, w)


class StripMlpBlock(nn.Module):
    def __init__(self, dim: int, size: int, mlp_ratio: float = 3., drop_path: float = 0., device=None, dtype=None):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.token_mixing = TokenMixing(dim, size, **dd)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.channel_mixing = ChannelMixing(dim, size, mlp_ratio, **dd)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.token_mixing(x))
        x = x + self.drop_path2(self.channel_mixing(x))
        return x


class StripMlpStage(nn.Module):
    """Downsample, add the cross-stage shortcuts, run the blocks.

    `shortcut` maps the previous stage's merged input, `shortcut_chain` the previous stage's shortcut
    (each a grouped 2x2 stride-2 conv, or None). Returns (output, merged input, shortcut).
    """

    def __init__(
            self,
            in_dim: int,
            dim: int,
            size: int,
            depth: int,
            downsample: bool = True,
            shortcut_dim: Optional[int] = None,
            chain_dim: Optional[int] = None,
            mlp_ratio: float = 3.,
            drop_path: float = 0.,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.grad_checkpointing = False
        self.downsample = nn.Conv2d(in_dim, dim, 2, 2, bias=False, **dd) if downsample else nn.Identity()
        self.shortcut = None
        if shortcut_dim is not None:
            self.shortcut = nn.Conv2d(shortcut_dim, dim, 2, 2, groups=shortcut_dim, bias=False, **dd)
        self.shortcut_chain = None
        if chain_dim is not None:
            self.shortcut_chain = nn.Conv2d(chain_dim, dim, 2, 2, groups=chain_dim, bias=False, **dd)
        self.blocks = nn.Sequential(*[StripMlpBlock(dim, size, mlp_ratio, drop_path, **dd) for _ in range(depth)])

    def reparameterize(self):
        """For inference: the downsampling and shortcut convolutions' weights cast once and prepacked."""
        convs_as_conv_act(self, 'downsample', 'shortcut', 'shortcut_chain')

    def forward(
            self,
            x: torch.Tensor,
            prev_merged: Optional[torch.Tensor] = None,
            prev_shortcut: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        merged = self.downsample(x)
        x = merged
        shortcut: Optional[torch.Tensor] = None
        if self.shortcut_chain is not None:
            assert prev_shortcut is not None
            shortcut = self.shortcut_chain(prev_shortcut)
            x = x + shortcut
        if self.shortcut is not None:
            assert prev_merged is not None
            s = self.shortcut(prev_merged)
            x = x + s
            shortcut = s if shortcut is None else shortcut + s
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.blocks, x)
        else:
            x = self.blocks(x)
        return x, merged, shortcut


class StripMLP(nn.Module):
    """Strip-MLP.

    Args:
        num_classes: Classifier outputs; 0 removes the classifier.
        in_chans: Input channels.
        img_size: The square input size the token-mixing weights are built for (int or (H, W), H == W).
        embed_dim: Width of the first stage; stages double it.
        depths: Blocks per stage.
        mlp_ratio: Channel-MLP expansion (the reference's alpha).
        drop_rate: Dropout before the classifier.
        drop_path_rate: Stochastic depth, the same in every block (the reference trains with 0.1).
        global_pool: timm pool type.
    """

    def __init__(
            self,
            num_classes: int = 1000,
            in_chans: int = 3,
            img_size: Union[int, Tuple[int, int]] = 224,
            embed_dim: int = 80,
            depths: Tuple[int, ...] = (2, 2, 6, 2),
            mlp_ratio: float = 3.,
            drop_rate: float = 0.,
            drop_path_rate: float = 0.,
            global_pool: str = 'avg',
            output_stride: int = 32,
            device=None,
            dtype=None,
    ):
        super().__init__()
        if output_stride != 32:
            raise ValueError(f'StripMLP supports output_stride=32 only, got {output_stride}.')
        if len(depths) != 4:
            raise ValueError(f'StripMLP has 4 stages, got depths {tuple(depths)}')
        img_h, img_w = to_2tuple(img_size)
        if img_h != img_w or img_h % 32:
            raise ValueError(f'StripMLP needs a square img_size divisible by 32, got {img_size}')
        img_size = img_h
        dd = {'device': device, 'dtype': dtype}
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.img_size = img_size
        self.drop_rate = drop_rate
        dims = [embed_dim * 2 ** i for i in range(4)]
        self.num_features = self.head_hidden_size = dims[-1]
        self.grad_checkpointing = False

        self.stem = nn.Conv2d(in_chans, embed_dim, 4, 4, bias=False, **dd)
        stages = []
        self.feature_info = []
        for i, depth in enumerate(depths):
            stages.append(StripMlpStage(
                dims[max(i - 1, 0)],
                dims[i],
                img_size // 2 ** (i + 2),
                depth,
                downsample=i > 0,
                shortcut_dim=dims[i - 1] if i >= 2 else None,  # from the previous stage's merged input
                chain_dim=dims[i - 1] if i >= 3 else None,  # from the previous stage's shortcut
                mlp_ratio=mlp_ratio,
                drop_path=drop_path_rate,
                **dd,
            ))
            self.feature_info.append(dict(num_chs=dims[i], reduction=2 ** (i + 2), module=f'stages.{i}'))
        self.stages = nn.ModuleList(stages)
        self.norm = nn.BatchNorm2d(self.num_features, **dd)
        self.global_pool, self.head_drop, self.head = create_classifier(
            self.num_features, num_classes, pool_type=global_pool, drop_rate=drop_rate, **dd)
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict:
        return dict(
            stem=r'^stem',
            blocks=r'^stages\.(\d+)' if coarse else [
                (r'^stages\.(\d+)\.(downsample|shortcut|shortcut_chain)\.', (0,)),
                (r'^stages\.(\d+)\.blocks\.(\d+)', None),
                (r'^norm', (99999,)),
            ],
        )

    @torch.jit.ignore
    def no_weight_decay(self):
        return {k for k, _ in self.named_parameters() if k.endswith('.table')}

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True):
        self.grad_checkpointing = enable
        for stage in self.stages:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None):
        dd = get_device_dtype(self)
        self.num_classes = num_classes
        if global_pool is None:
            global_pool = self.global_pool.pool_type
        self.global_pool, self.head = create_classifier(
            self.num_features, num_classes, pool_type=global_pool, **dd)
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()
        self.head.train(self.training)

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Forward features and return intermediates: stage outputs at strides 4, 8, 16 and 32.

        `norm=True` applies the final BatchNorm to the last stage's output when it is taken.
        """
        if output_fmt not in ('NCHW', 'NHWC'):
            raise ValueError(f"StripMLP intermediates are 'NCHW' or 'NHWC', got output_fmt='{output_fmt}'.")
        intermediates = []
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        last_idx = len(self.stages) - 1
        x = self.stem(_check_input_size(x, self.img_size))
        merged: Optional[torch.Tensor] = None
        shortcut: Optional[torch.Tensor] = None
        if torch.jit.is_scripting() or not stop_early:
            stages = self.stages
        else:
            stages = self.stages[:max_index + 1]
        for feat_idx, stage in enumerate(stages):
            x, merged, shortcut = stage(x, merged, shortcut)
            if feat_idx in take_indices:
                x_inter = self.norm(x) if norm and feat_idx == last_idx else x
                if output_fmt == 'NHWC':
                    x_inter = x_inter.permute(0, 2, 3, 1)
                intermediates.append(x_inter)
        if intermediates_only:
            return intermediates
        if len(stages) == len(self.stages):  # not stopped early
            x = self.norm(x)
        return x, intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        """Drop the stages after the last kept feature (and the norm and head)."""
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        self.stages = self.stages[:max_index + 1]
        if prune_norm or max_index < len(self.feature_info) - 1:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(_check_input_size(x, self.img_size))
        merged: Optional[torch.Tensor] = None
        shortcut: Optional[torch.Tensor] = None
        for stage in self.stages:
            x, merged, shortcut = stage(x, merged, shortcut)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        x = self.forward_head(x)
        return x


# official name (after `blocks{s}.{j}.`) -> ours (after `stages.{s-1}.blocks.{j}.`)
_BLOCK_RENAMES = (
    ('token_mixing.dwsc.conv_merge.BN.', 'token_mixing.norm.'),
    ('token_mixing.dwsc.conv_merge.Conv.', 'token_mixing.conv_dw.'),
    ('token_mixing.smlp_block.mlp.0.', 'token_mixing.proj_in.conv.'),
    ('token_mixing.smlp_block.mlp.1.', 'token_mixing.proj_in.bn.'),
    ('token_mixing.smlp_block.proj_h.', 'token_mixing.strip.mix_w.'),
    ('token_mixing.smlp_block.proj_w.', 'token_mixing.strip.mix_h.'),
    ('token_mixing.smlp_block.fuse_h.', 'token_mixing.strip.fuse_rows.conv.'),
    ('token_mixing.smlp_block.BN.', 'token_mixing.strip.fuse_rows.bn.'),
    ('token_mixing.smlp_block.fuse_w.', 'token_mixing.strip.fuse_cols.'),
    ('token_mixing.smlp_block.relate_pos_h.embeddings_table', 'token_mixing.strip.pos_rows.table'),
    ('token_mixing.smlp_block.relate_pos_w.embeddings_table', 'token_mixing.strip.pos_cols.table'),
    ('token_mixing.smlp_block.fc_w.', 'token_mixing.local.conv_v.'),
    ('token_mixing.smlp_block.fc_h.', 'token_mixing.local.conv_h.'),
    ('token_mixing.smlp_block.reweight.', 'token_mixing.local.reweight.'),
    ('token_mixing.smlp_block.fuse.', 'token_mixing.proj_out.'),
    ('channel_mixing.conv_77.', 'channel_mixing.conv_dw.'),
    ('channel_mixing.layer_norm.', 'channel_mixing.norm.'),
    ('channel_mixing.grn.gamma', 'channel_mixing.grn.weight'),
    ('channel_mixing.grn.beta', 'channel_mixing.grn.bias'),
)
_TOP_RENAMES = {
    'patch_embed.weight': 'stem.weight',
    'merging1.weight': 'stages.1.downsample.weight',
    'merging2.weight': 'stages.2.downsample.weight',
    'merging3.weight': 'stages.3.downsample.weight',
    'conv_s1_28.weight': 'stages.2.shortcut.weight',
    'conv_s2_14.weight': 'stages.3.shortcut.weight',
    'conv_s1_14.weight': 'stages.3.shortcut_chain.weight',
}


def _strip_linear_from_conv(value: torch.Tensor) -> torch.Tensor:
    """Reference grouped conv weight [G * L_out, L_in, 1, taps] -> ours [G, taps * L_in, L_out]."""
    out_ch, length, _, taps = value.shape
    value = value.reshape(out_ch // length, length, length, taps)  # g, o, i, k
    return value.permute(0, 3, 2, 1).reshape(-1, taps * length, length)


def _convert_key(key: str, value: torch.Tensor, state_dict: Dict[str, torch.Tensor]) -> Tuple[str, torch.Tensor]:
    if key in _TOP_RENAMES:
        return _TOP_RENAMES[key], value
    if not key.startswith('blocks'):
        return key, value  # norm.*, head.*
    head, index, rest = key.split('.', 2)
    prefix = f'stages.{int(head[len("blocks"):]) - 1}.blocks.{index}.'
    for old, new in _BLOCK_RENAMES:
        if rest.startswith(old):
            rest = new + rest[len(old):]
            break
    if rest.startswith('token_mixing.strip.mix_'):
        if rest.endswith('.weight'):
            value = _strip_linear_from_conv(value)
        else:  # bias [G * L] -> [G, 1, L], L from the conv weight [G * L, L, 1, taps]
            length = state_dict[key[:-len('bias')] + 'weight'].shape[1]
            value = value.reshape(-1, 1, length)
    elif rest.startswith('token_mixing.local.reweight.') and rest.endswith('.weight'):
        value = value.flatten(1)  # 1x1 conv -> Linear
    elif rest.startswith('channel_mixing.grn.'):
        value = value.flatten()
    return prefix + rest, value


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: StripMLP) -> Dict[str, torch.Tensor]:
    """Convert a reference Strip-MLP checkpoint (bare, or wrapped in `model` / `state_dict`, any `module.`
    prefix) to ours. Our own files are returned unchanged."""
    state_dict = unwrap_state_dict(state_dict)
    if 'stem.weight' in state_dict:
        return state_dict
    return dict(_convert_key(key, value, state_dict) for key, value in state_dict.items())


def _create(variant: str, pretrained: bool = False, **kwargs) -> StripMLP:
    return build_model(
        StripMLP,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(feature_cls='getter', out_indices=(0, 1, 2, 3)),
        **kwargs,
    )


def _cfg(**kwargs):
    return {
        'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7), 'fixed_input_size': True,
        'crop_pct': 0.875, 'interpolation': 'bicubic', 'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'stem', 'classifier': 'head',
        'paper_ids': 'arXiv:2307.11458', 'paper_name': 'Strip-MLP: Efficient Token Interaction for Vision MLP',
        'origin_url': 'https://github.com/Med-Process/Strip_MLP', 'license': 'mit',
        'notes': (
            'The reference ImageNet-1k weights are on Baidu Pan only (see the reference README); pass a '
            'downloaded file with pretrained_cfg_overlay=dict(file=...) or checkpoint_path=. MIT is claimed by '
            'the reference README and file headers; the repository has no LICENSE file.',
        ),
        **kwargs,
    }


default_cfgs = generate_default_cfgs({
    'strip_mlp_t_light': _cfg(),
    'strip_mlp_t': _cfg(),
    'strip_mlp_s': _cfg(),
    'strip_mlp_b': _cfg(),
})


@register_model
def strip_mlp_t_light(pretrained: bool = False, **kwargs) -> StripMLP:
    """Strip-MLP-T* (light tiny): E=80, depths 2-2-6-2, 18.2M params, 2.5 GMACs."""
    return _create('strip_mlp_t_light', pretrained, **dict(embed_dim=80, depths=(2, 2, 6, 2), **kwargs))


@register_model
def strip_mlp_t(pretrained: bool = False, **kwargs) -> StripMLP:
    """Strip-MLP-T: E=80, depths 2-2-12-2, 24.9M params, 3.7 GMACs."""
    return _create('strip_mlp_t', pretrained, **dict(embed_dim=80, depths=(2, 2, 12, 2), **kwargs))


@register_model
def strip_mlp_s(pretrained: bool = False, **kwargs) -> StripMLP:
    """Strip-MLP-S: E=96, depths 2-2-18-2, 42.6M params, 6.8 GMACs."""
    return _create('strip_mlp_s', pretrained, **dict(embed_dim=96, depths=(2, 2, 18, 2), **kwargs))


@register_model
def strip_mlp_b(pretrained: bool = False, **kwargs) -> StripMLP:
    """Strip-MLP-B: E=112, depths 2-2-18-2, 57.2M params, 9.2 GMACs."""
    return _create('strip_mlp_b', pretrained, **dict(embed_dim=112, depths=(2, 2, 18, 2), **kwargs))
