"""P3D ResNet: pseudo-3D residual networks for video (clips B x C x T x H x W).

Paper: "Learning Spatio-Temporal Representation with Pseudo-3D Residual Networks", Z. Qiu, T. Yao,
T. Mei, ICCV 2017 (arXiv:1711.10305). Original: ZhaofanQiu/pseudo-3d-residual-networks (Caffe, MIT).
Reference: qijiezhao/pseudo-3d-pytorch (MIT, commit 09bba23a, `p3d_model.py`), whose layout the
converted Kinetics weights use.

Bottleneck blocks factorise a 3x3x3 conv into a spatial (1x3x3) conv S and a temporal (3x1x1) conv T,
wired serially (A: T(S(x))), in parallel (B: S(x) + T(x)) or serially with a skip (C: S(x) + T(S(x))).
The type cycles A, B, C over the global index of the 3-D blocks (res2-res4); res5 is a 2-D ResNet stage.
Spatial strides sit in each stage's first 1x1 conv; time is reduced by max-pooling only (by 2 after the
stem and after each 3-D stage).

Differences from the reference code:
  * any clip of at least 16 frames and any size the strides allow: res5 runs on every remaining time
    step (folded into the batch) and the head averages over time and space, so a 32-frame clip gives one
    prediction, not two; at 16 x 160 x 160 this is exactly the reference (AvgPool2d(5) over 5x5, T'=1).
    Shorter clips and wrong ranks get a clear error (the reference silently changes the batch size);
  * the reference's unused shortcut type 'A' (zero padding) is not implemented: every release uses 'B';
  * the stem's `conv1_custom` / `bn1` are `stem.conv` / `stem.bn`; the blocks' `conv_normal` / `bn_normal` are
    `conv2` / `bn2`.

The released Kinetics P3D-199 RGB / flow weights are `.pth.tar` pickles on Google Drive / BaiduYun only,
so no tag downloads them; a local copy loads through `checkpoint_filter_fn` with
`pretrained_cfg_overlay=dict(file=...)` (read with `torch.load(weights_only=True)`).
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import get_device_dtype
from timm.models import generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint_seq

from zoo.hub import build_model, unwrap_state_dict
from zoo.layers import ConvAct, MaxPool3d, conv_with_bn_folded

__all__ = ['P3D']

def _check_clip(x: torch.Tensor, min_frames: int = 16) -> torch.Tensor:
    # four halvings of time (stem, res2, res3, res4) must leave at least one step
    if x.dim() != 5 or x.shape[2] < min_frames:
        raise ValueError(
            f'P3D takes clips B x C x T x H x W with T >= {min_frames} frames, got shape {list(x.shape)}; '
            'pad or loop short clips (the default input is in model.pretrained_cfg["input_size"]).')
    return x


def _fold_time(x: torch.Tensor) -> torch.Tensor:
    """B x C x T x H x W -> (B * T) x C x H x W, for the 2-D res5."""
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, c, h, w)


def _unfold_time(x: torch.Tensor, batch: int) -> torch.Tensor:
    """(B * T) x C x H x W -> B x C x T x H x W."""
    bt, c, h, w = x.shape
    return x.reshape(batch, bt // batch, c, h, w).transpose(1, 2)


# shape checks and shape-dependent reshapes are leaves for fx
torch.fx.wrap('_check_clip')
torch.fx.wrap('_fold_time')
torch.fx.wrap('_unfold_time')


@torch.no_grad()
def _fuse_block(block: nn.Module, names: Sequence[str]):
    """Inference form of a P3D bottleneck (timm's `reparameterize_model`): each conv with its BatchNorm folded
    and its ReLU fused (zoo.layers.ConvAct), the last one also taking the residual sum; the projection
    shortcut folded."""
    for name in names:
        conv, bn = getattr(block, f'conv{name}'), getattr(block, f'bn{name}')
        setattr(block, f'conv{name}', ConvAct(conv_with_bn_folded(conv, bn), nn.ReLU()))
        setattr(block, f'bn{name}', nn.Identity())
    if isinstance(block.downsample, nn.Sequential):
        block.downsample = ConvAct(conv_with_bn_folded(*block.downsample))


class Stem3d(nn.Module):
    """The reference's stem: 1x7x7 conv (stride 1, 2, 2), BatchNorm, ReLU; `fuse()` (timm's
    `reparameterize_model`) folds the BatchNorm and hands the ReLU to the convolution (zoo.layers.ConvAct)."""

    def __init__(self, in_chans: int, out_chs: int, dd=None):
        super().__init__()
        dd = dd or {}
        self.conv = nn.Conv3d(in_chans, out_chs, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False, **dd)
        self.bn = nn.BatchNorm3d(out_chs, **dd)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    @torch.no_grad()
    def fuse(self) -> ConvAct:
        return ConvAct(conv_with_bn_folded(self.conv, self.bn), nn.ReLU())


# stem keys of the reference (conv1_custom, bn1) and of ours before `Stem3d` -> ours
_STEM_KEYS = (('conv1_custom.', 'stem.conv.'), ('conv1.', 'stem.conv.'), ('bn1.', 'stem.bn.'))


class Bottleneck3d(nn.Module):
    """Pseudo-3D bottleneck: 1x1x1 (with the spatial stride) -> S/T pair of type A, B or C -> 1x1x1 x4."""
    fused: torch.jit.Final[bool] = False

    def __init__(self, in_chs: int, planes: int, stride: int, st_type: str, downsample: Optional[nn.Module],
                 dd=None):
        super().__init__()
        dd = dd or {}
        if st_type not in ('A', 'B', 'C'):
            raise ValueError(f"P3D block type must be 'A', 'B' or 'C', got {st_type!r}.")
        self.st_type = st_type
        self.conv1 = nn.Conv3d(in_chs, planes, 1, stride=(1, stride, stride), bias=False, **dd)
        self.bn1 = nn.BatchNorm3d(planes, **dd)
        self.conv2 = nn.Conv3d(planes, planes, (1, 3, 3), padding=(0, 1, 1), bias=False, **dd)  # S
        self.bn2 = nn.BatchNorm3d(planes, **dd)
        self.conv3 = nn.Conv3d(planes, planes, (3, 1, 1), padding=(1, 0, 0), bias=False, **dd)  # T
        self.bn3 = nn.BatchNorm3d(planes, **dd)
        self.conv4 = nn.Conv3d(planes, planes * 4, 1, bias=False, **dd)
        self.bn4 = nn.BatchNorm3d(planes * 4, **dd)
        self.downsample = downsample if downsample is not None else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def reparameterize(self):
        if not self.fused:
            _fuse_block(self, ('1', '2', '3', '4'))
            self.fused = True

    def _s(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(x) if self.fused else self.act(self.bn2(self.conv2(x)))

    def _t(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(x) if self.fused else self.act(self.bn3(self.conv3(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x) if self.fused else self.act(self.bn1(self.conv1(x)))
        if self.st_type == 'A':
            out = self._t(self._s(out))
        elif self.st_type == 'B':
            out = self._t(out) + self._s(out)
        else:
            s = self._s(out)
            out = s + self._t(s)
        if self.fused:
            return self.conv4(out, self.downsample(x))
        out = self.bn4(self.conv4(out))
        return self.act(out + self.downsample(x))


class Bottleneck2d(nn.Module):
    """The res5 (C2D) bottleneck: 1x1 (with the stride) -> 3x3 -> 1x1 x4."""
    fused: torch.jit.Final[bool] = False

    def __init__(self, in_chs: int, planes: int, stride: int, downsample: Optional[nn.Module], dd=None):
        super().__init__()
        dd = dd or {}
        self.conv1 = nn.Conv2d(in_chs, planes, 1, stride=stride, bias=False, **dd)
        self.bn1 = nn.BatchNorm2d(planes, **dd)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False, **dd)
        self.bn2 = nn.BatchNorm2d(planes, **dd)
        self.conv4 = nn.Conv2d(planes, planes * 4, 1, bias=False, **dd)
        self.bn4 = nn.BatchNorm2d(planes * 4, **dd)
        self.downsample = downsample if downsample is not None else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def reparameterize(self):
        if not self.fused:
            _fuse_block(self, ('1', '2', '4'))
            self.fused = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused:
            return self.conv4(self.conv2(self.conv1(x)), self.downsample(x))
        out = self.act(self.bn1(self.conv1(x)))
        out = self.act(self.bn2(self.conv2(out)))
        out = self.bn4(self.conv4(out))
        return self.act(out + self.downsample(x))


def _check_global_pool(global_pool: str) -> str:
    if global_pool not in ('avg', ''):
        raise ValueError(f"P3D pools by the mean over time and space: global_pool 'avg' or '', got '{global_pool}'.")
    return global_pool


class P3D(nn.Module):
    """P3D ResNet. `layers` are the bottleneck counts of res2-res5; `st_struc` the cycle of 3-D block types."""

    def __init__(
            self,
            layers: Sequence[int] = (3, 4, 6, 3),
            num_classes: int = 400,
            in_chans: int = 3,
            st_struc: Sequence[str] = ('A', 'B', 'C'),
            drop_rate: float = 0.5,
            global_pool: str = 'avg',
            output_stride: int = 32,
            device=None,
            dtype=None,
    ):
        super().__init__()
        if output_stride != 32:
            raise ValueError(f'P3D supports output_stride=32 only, got {output_stride}.')
        dd = {'device': device, 'dtype': dtype}
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = _check_global_pool(global_pool)
        self.grad_checkpointing = False

        self.stem = Stem3d(in_chans, 64, dd)
        # the reference's pool (pad 1, floor), not Caffe's (pad 0, ceil): the converted weights expect it
        self.maxpool = MaxPool3d((2, 3, 3), stride=2, padding=(0, 1, 1))
        self.time_pool = MaxPool3d((2, 1, 1), stride=(2, 1, 1))

        block_index = 0
        in_chs = 64
        stages = []
        for i, (depth, planes) in enumerate(zip(layers, (64, 128, 256, 512))):
            stride = 1 if i == 0 else 2
            is_3d = i < 3
            blocks = []
            for j in range(depth):
                downsample = None
                if j == 0 and (stride != 1 or in_chs != planes * 4):
                    if is_3d:
                        downsample = nn.Sequential(
                            nn.Conv3d(in_chs, planes * 4, 1, stride=(1, stride, stride), bias=False, **dd),
                            nn.BatchNorm3d(planes * 4, **dd))
                    else:
                        downsample = nn.Sequential(
                            nn.Conv2d(in_chs, planes * 4, 1, stride=stride, bias=False, **dd),
                            nn.BatchNorm2d(planes * 4, **dd))
                block_stride = stride if j == 0 else 1
                if is_3d:
                    st_type = st_struc[block_index % len(st_struc)]
                    blocks.append(Bottleneck3d(in_chs, planes, block_stride, st_type, downsample, dd))
                    block_index += 1
                else:
                    blocks.append(Bottleneck2d(in_chs, planes, block_stride, downsample, dd))
                in_chs = planes * 4
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.num_features = self.head_hidden_size = in_chs
        self.feature_info = [dict(num_chs=64, reduction=2, module='stem')] + [
            dict(num_chs=c, reduction=r, module=f'layer{i + 1}')
            for i, (c, r) in enumerate(zip((256, 512, 1024, 2048), (4, 8, 16, 32)))]
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.num_features, num_classes, **dd) if num_classes > 0 else nn.Identity()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict:
        return dict(stem=r'^stem', blocks=r'^layer(\d+)' if coarse else r'^layer(\d+)\.(\d+)')

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True):
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None):
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = _check_global_pool(global_pool)
        dd = get_device_dtype(self)
        self.fc = nn.Linear(self.num_features, num_classes, **dd) if num_classes > 0 else nn.Identity()

    @torch.jit.ignore
    def _stage(self, stage: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(stage, x)
        return stage(x)

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCTHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Stem (stride 2) and res2-res5 outputs (strides 4-32), each before its temporal pooling.

        The 3-D maps are B x C x T' x H x W; res5 is 2-D and comes as (B * T') x C x H x W (B x C x H x W at
        the standard 16-frame input), or 5-D with `output_fmt='NCTHW_ALL'`.
        """
        if output_fmt not in ('NCTHW', 'NCTHW_ALL', 'NCHW'):
            raise ValueError(f"P3D output_fmt must be 'NCTHW' or 'NCTHW_ALL', got '{output_fmt}'.")
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        if stop_early or intermediates_only:
            last = max_index
        else:
            last = len(self.feature_info) - 1
        batch = x.shape[0]
        intermediates = []
        x = self.stem(_check_clip(x))
        if 0 in take_indices:
            intermediates.append(x)
        if last >= 1:
            x = self.maxpool(x)
        for i, stage in enumerate((self.layer1, self.layer2, self.layer3, self.layer4)[:last], start=1):
            if i == 4:
                x = _fold_time(x)
            x = self._stage(stage, x)
            if i in take_indices:
                intermediates.append(_unfold_time(x, batch) if i == 4 and output_fmt == 'NCTHW_ALL' else x)
            if i < 4:
                x = self.time_pool(x)
        if intermediates_only:
            return intermediates
        return _unfold_time(x, batch), intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        for i in range(max(max_index, 1) + 1, 5):
            setattr(self, f'layer{i}', nn.Identity())
        if prune_head:
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """B x C x T x H x W clip -> B x 2048 x T' x H' x W' res5 maps (T' = T // 16)."""
        batch = x.shape[0]
        x = self.maxpool(self.stem(_check_clip(x)))
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return self._checkpointed_stages(x, batch)
        x = self.time_pool(self.layer1(x))
        x = self.time_pool(self.layer2(x))
        x = self.time_pool(self.layer3(x))
        x = self.layer4(_fold_time(x))
        return _unfold_time(x, batch)

    @torch.jit.ignore
    def _checkpointed_stages(self, x: torch.Tensor, batch: int) -> torch.Tensor:
        x = self.time_pool(checkpoint_seq(self.layer1, x))
        x = self.time_pool(checkpoint_seq(self.layer2, x))
        x = self.time_pool(checkpoint_seq(self.layer3, x))
        return _unfold_time(checkpoint_seq(self.layer4, _fold_time(x)), batch)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == 'avg':
            x = x.mean((2, 3, 4))
        x = self.head_drop(x)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: P3D) -> Dict[str, torch.Tensor]:
    """Convert a qijiezhao/pseudo-3d-pytorch checkpoint (`{'state_dict': ...}` `.pth.tar` or bare) to ours."""
    state_dict = unwrap_state_dict(state_dict)
    out = {}
    for key, value in state_dict.items():
        key = key.replace('.conv_normal.', '.conv2.').replace('.bn_normal.', '.bn2.')
        for old, new in _STEM_KEYS:  # the reference's stem names (and ours before the stem was a module)
            if key.startswith(old):
                key = new + key[len(old):]
        out[key] = value
    return out


def _create(variant: str, pretrained: bool = False, **kwargs) -> P3D:
    return build_model(
        P3D, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(feature_cls='getter', out_indices=(1, 2, 3, 4)),
        **kwargs,
    )


def _cfg(**kwargs):
    return {
        'num_classes': 400, 'input_size': (3, 16, 160, 160), 'pool_size': (1, 5, 5),
        'crop_pct': 160 / 256, 'interpolation': 'bilinear', 'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'stem.conv', 'classifier': 'fc',
        'paper_ids': 'arXiv:1711.10305',
        'paper_name': 'Learning Spatio-Temporal Representation with Pseudo-3D Residual Networks',
        'origin_url': 'https://github.com/qijiezhao/pseudo-3d-pytorch', 'license': 'mit',
        'notes': ('Video model: input B x C x T x H x W, T >= 16 frames (16 x 160 x 160 by default, frames resized '
                  'to 256 on the short side, centre 160 crop). The reference port declares ImageNet RGB mean/std; '
                  'the Caffe originals used BGR means [104, 117, 123] without std (open point until converted '
                  'weights are evaluated).',),
        **kwargs,
    }


default_cfgs = generate_default_cfgs({
    'p3d63': _cfg(),
    'p3d131': _cfg(),
    'p3d199': _cfg(),
    'p3d199_flow': _cfg(input_size=(2, 16, 160, 160), mean=(0.5, 0.5), std=(0.226, 0.226)),
})


@register_model
def p3d63(pretrained: bool = False, **kwargs) -> P3D:
    """P3D-63 (ResNet-50 layout, the port author's)."""
    return _create('p3d63', pretrained, **{'layers': (3, 4, 6, 3), **kwargs})


@register_model
def p3d131(pretrained: bool = False, **kwargs) -> P3D:
    """P3D-131 (ResNet-101 layout, the port author's)."""
    return _create('p3d131', pretrained, **{'layers': (3, 4, 23, 3), **kwargs})


@register_model
def p3d199(pretrained: bool = False, **kwargs) -> P3D:
    """P3D-199 (ResNet-152 layout), RGB: the paper's model."""
    return _create('p3d199', pretrained, **{'layers': (3, 8, 36, 3), **kwargs})


@register_model
def p3d199_flow(pretrained: bool = False, **kwargs) -> P3D:
    """P3D-199 on two-channel TV-L1 optical flow (x, y)."""
    return _create('p3d199_flow', pretrained, **{'layers': (3, 8, 36, 3), 'in_chans': 2, **kwargs})
