"""Inception-ResNet-v1: the ImageNet classifier and the FaceNet face-embedding models.

Paper: "Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning",
C. Szegedy, S. Ioffe, V. Vanhoucke, A. Alemi, AAAI 2017 (arXiv:1602.07261).

Google never released code or weights for Inception-ResNet-v1. The reference implementation is the
FaceNet trunk of timesler/facenet-pytorch (MIT, commit 787da061, `models/inception_resnet_v1.py`),
itself a port of davidsandberg/facenet. The trunk follows the paper (stem Fig. 14, blocks Figs. 10,
11, 13, Reduction-A Fig. 7 with k=l=192, m=256, n=384, Reduction-B Fig. 12) plus one extra final
Block8 without ReLU (the TF-slim convention, as in timm's Inception-ResNet-v2).

Models:
  * `inception_resnet_v1`: FaceNet trunk + the paper's ImageNet head (avg-pool, dropout 0.2, FC).
    No ImageNet weights exist anywhere; this model must be trained.
  * `inception_resnet_v1_paper`: the paper-strict trunk (no extra final Block8).
  * `inception_resnet_v1_facenet`: the FaceNet head (dropout, 1792->512 linear without bias,
    BatchNorm1d). With classes it returns identity logits computed from the un-normalised
    embedding; with `num_classes=0` it returns the L2-normalised 512-d embedding, as
    facenet-pytorch's `classify=False`. Tags `vggface2` and `casia_webface` load the official
    facenet-pytorch release files, converted on load by `checkpoint_filter_fn`.

Differences from the reference code (none change its numbers):
  * timm-style names (`repeat`, `repeat_1`, `repeat_2`, `classif`) as in timm's Inception-ResNet-v2;
    facenet's `repeat_1/2/3` and `logits` are renamed by `checkpoint_filter_fn`.
  * BatchNorm and ReLU are fused into timm's `BatchNormAct2d` with in-place ReLU.
  * For inference, `timm.utils.reparameterize_model(model)` folds every BatchNorm into its conv, merges
    the 1x1 convolutions that open a block's branches into one, and folds the residual scales into the
    up-projections: about 1.15x faster on CPU, outputs equal to ~1e-6 relative.
  * Any input size with at least 75 pixels per side is accepted (the VALID stride-2 convolutions
    need it; smaller inputs get a clear error); features are available at strides 2/4/8/16/32.

Inception-ResNet-v2 and Inception-v4 are timm's own models; the zoo lists them in this family.
"""
from functools import partial
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import ConvNormAct, create_classifier, get_device_dtype
from timm.models import generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint_seq

from zoo.hub import build_model, unwrap_state_dict
from zoo.layers import ConvAct, Linear, conv_with_bn_folded, merged_conv_bn

__all__ = ['InceptionResNetV1']

# (pixel - 127.5) / 128 on 0..255 images, expressed on 0..1 images
FACENET_MEAN = (127.5 / 255,) * 3
FACENET_STD = (128 / 255,) * 3


class ConvBnAct(ConvNormAct):
    """conv (no bias) -> BatchNorm -> ReLU (facenet's BasicConv2d); `fuse()` folds the BatchNorm for inference
    and hands the ReLU to the convolution (`zoo.layers.ConvAct`)."""

    def fuse(self) -> nn.Module:
        return ConvAct(conv_with_bn_folded(self.conv, self.bn), self.bn.act)


class _InceptionBlock(nn.Module):
    """Parallel branches on one input, concatenated.

    `reparameterize()` (called by `timm.utils.reparameterize_model`) merges the 1x1 convolutions that open
    the branches into one wider convolution with BatchNorm folded in: one GEMM instead of several thin ones.
    """
    head_branches: Tuple[str, ...] = ()

    def __init__(self):
        super().__init__()
        self.heads: Optional[nn.Module] = None
        self.head_splits: List[int] = []

    def _branch_inputs(self, x: torch.Tensor) -> List[torch.Tensor]:
        if self.heads is None:
            return [x] * len(self.head_splits)
        return list(self.heads(x).split(self.head_splits, 1))

    @torch.no_grad()
    def reparameterize(self):
        if self.heads is not None or not self.head_branches:
            return
        firsts = []
        for name in self.head_branches:
            branch = getattr(self, name)
            firsts.append(branch[0] if isinstance(branch, nn.Sequential) else branch)
        self.heads, self.head_splits = merged_conv_bn([(block.conv, block.bn) for block in firsts], nn.ReLU())
        for name in self.head_branches:
            branch = getattr(self, name)
            if isinstance(branch, nn.Sequential):
                branch[0] = nn.Identity()
            else:
                setattr(self, name, nn.Identity())


class _ResidualBlock(_InceptionBlock):
    """x + scale * up(concat(branches)), then ReLU (none for the last Block8)."""
    merged: torch.jit.Final[bool] = False  # set by reparameterize(): conv2d is then a ConvAct taking the shortcut

    @torch.no_grad()
    def reparameterize(self):
        super().reparameterize()
        if self.merged:
            return
        if self.scale != 1.0:  # fold the residual scale into the up-projection
            self.conv2d.weight.mul_(self.scale)
            self.conv2d.bias.mul_(self.scale)
            self.scale = 1.0
        # the up-projection, the residual sum and the ReLU in one oneDNN call
        self.conv2d = ConvAct(self.conv2d, self.act)
        self.act = nn.Identity()
        self.merged = True

    def _merge(self, x: torch.Tensor, branches: List[torch.Tensor]) -> torch.Tensor:
        if self.merged:
            return self.conv2d(torch.cat(branches, 1), x)
        # in place on the fresh conv output (its backward does not need it); same op order as the reference
        up = self.conv2d(torch.cat(branches, 1))
        if self.scale != 1.0:
            up = up.mul_(self.scale)
        return self.act(up.add_(x))


class Block35(_ResidualBlock):
    """Inception-ResNet-A (paper Fig. 10) at 35x35, 256 channels."""
    head_branches = ('branch0', 'branch1', 'branch2')

    def __init__(self, scale: float = 1.0, conv_block=ConvBnAct, dd=None):
        super().__init__()
        dd = dd or {}
        self.scale = scale
        self.branch0 = conv_block(256, 32, kernel_size=1, **dd)
        self.branch1 = nn.Sequential(
            conv_block(256, 32, kernel_size=1, **dd),
            conv_block(32, 32, kernel_size=3, padding=1, **dd),
        )
        self.branch2 = nn.Sequential(
            conv_block(256, 32, kernel_size=1, **dd),
            conv_block(32, 32, kernel_size=3, padding=1, **dd),
            conv_block(32, 32, kernel_size=3, padding=1, **dd),
        )
        self.conv2d = nn.Conv2d(96, 256, kernel_size=1, **dd)
        self.act = nn.ReLU(inplace=True)
        self.head_splits = [32, 32, 32]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0, x1, x2 = self._branch_inputs(x)
        return self._merge(x, [self.branch0(x0), self.branch1(x1), self.branch2(x2)])


class Block17(_ResidualBlock):
    """Inception-ResNet-B (paper Fig. 11) at 17x17, 896 channels."""
    head_branches = ('branch0', 'branch1')

    def __init__(self, scale: float = 1.0, conv_block=ConvBnAct, dd=None):
        super().__init__()
        dd = dd or {}
        self.scale = scale
        self.branch0 = conv_block(896, 128, kernel_size=1, **dd)
        self.branch1 = nn.Sequential(
            conv_block(896, 128, kernel_size=1, **dd),
            conv_block(128, 128, kernel_size=(1, 7), padding=(0, 3), **dd),
            conv_block(128, 128, kernel_size=(7, 1), padding=(3, 0), **dd),
        )
        self.conv2d = nn.Conv2d(256, 896, kernel_size=1, **dd)
        self.act = nn.ReLU(inplace=True)
        self.head_splits = [128, 128]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0, x1 = self._branch_inputs(x)
        return self._merge(x, [self.branch0(x0), self.branch1(x1)])


class Block8(_ResidualBlock):
    """Inception-ResNet-C (paper Fig. 13) at 8x8, 1792 channels; the last one has no ReLU."""
    head_branches = ('branch0', 'branch1')

    def __init__(self, scale: float = 1.0, no_relu: bool = False, conv_block=ConvBnAct, dd=None):
        super().__init__()
        dd = dd or {}
        self.scale = scale
        self.branch0 = conv_block(1792, 192, kernel_size=1, **dd)
        self.branch1 = nn.Sequential(
            conv_block(1792, 192, kernel_size=1, **dd),
            conv_block(192, 192, kernel_size=(1, 3), padding=(0, 1), **dd),
            conv_block(192, 192, kernel_size=(3, 1), padding=(1, 0), **dd),
        )
        self.conv2d = nn.Conv2d(384, 1792, kernel_size=1, **dd)
        self.act = nn.Identity() if no_relu else nn.ReLU(inplace=True)
        self.head_splits = [192, 192]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0, x1 = self._branch_inputs(x)
        return self._merge(x, [self.branch0(x0), self.branch1(x1)])


class Mixed6a(nn.Module):
    """Reduction-A (paper Fig. 7, k=l=192, m=256, n=384): 256 -> 896 channels, 35 -> 17.

    The max-pool branch is concatenated last, as in the reference code.
    """

    def __init__(self, conv_block=ConvBnAct, dd=None):
        super().__init__()
        dd = dd or {}
        self.branch0 = conv_block(256, 384, kernel_size=3, stride=2, **dd)
        self.branch1 = nn.Sequential(
            conv_block(256, 192, kernel_size=1, **dd),
            conv_block(192, 192, kernel_size=3, padding=1, **dd),
            conv_block(192, 256, kernel_size=3, stride=2, **dd),
        )
        self.branch2 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x)), 1)


class Mixed7a(_InceptionBlock):
    """Reduction-B (paper Fig. 12): 896 -> 1792 channels, 17 -> 8; max-pool branch last."""
    head_branches = ('branch0', 'branch1', 'branch2')

    def __init__(self, conv_block=ConvBnAct, dd=None):
        super().__init__()
        dd = dd or {}
        self.branch0 = nn.Sequential(
            conv_block(896, 256, kernel_size=1, **dd),
            conv_block(256, 384, kernel_size=3, stride=2, **dd),
        )
        self.branch1 = nn.Sequential(
            conv_block(896, 256, kernel_size=1, **dd),
            conv_block(256, 256, kernel_size=3, stride=2, **dd),
        )
        self.branch2 = nn.Sequential(
            conv_block(896, 256, kernel_size=1, **dd),
            conv_block(256, 256, kernel_size=3, padding=1, **dd),
            conv_block(256, 256, kernel_size=3, stride=2, **dd),
        )
        self.branch3 = nn.MaxPool2d(3, stride=2)
        self.head_splits = [256, 256, 256]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0, x1, x2 = self._branch_inputs(x)
        return torch.cat((self.branch0(x0), self.branch1(x1), self.branch2(x2), self.branch3(x)), 1)


class L2Normalize(nn.Module):
    """The FaceNet embedding output: unit L2 norm over channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, p=2.0, dim=1)


def _check_input_size(x: torch.Tensor, min_size: int = 75) -> torch.Tensor:
    # 75 is the smallest side the VALID stride-2 convolutions and reductions accept
    if x.dim() != 4 or x.shape[-1] < min_size or x.shape[-2] < min_size:
        raise ValueError(
            f'InceptionResNetV1 takes B x C x H x W images with H, W >= {min_size}, got shape {list(x.shape)}; '
            'resize the input (its default size is in model.pretrained_cfg["input_size"]).')
    return x


torch.fx.wrap('_check_input_size')  # a leaf for fx: shape checks can't be traced


class InceptionResNetV1(nn.Module):
    """Inception-ResNet-v1 with either the ImageNet head or the FaceNet embedding head.

    Args:
        num_classes: Classifier outputs; 0 removes the classifier (the FaceNet head then returns the
            L2-normalised embedding).
        in_chans: Input channels.
        drop_rate: Dropout before the classifier (ImageNet head) or before the embedding (FaceNet).
        global_pool: timm pool type; '' (with num_classes=0) returns unpooled maps, the FaceNet head
            applying its embedding at every position.
        embed_dim: Size of the FaceNet embedding; None for the ImageNet head.
        depths: Number of Block35, Block17 and Block8 repeats.
        scales: Residual scales of those repeats.
        final_block: Append the final Block8 without ReLU (facenet / TF-slim); False is the paper.
        norm_eps: BatchNorm eps (TF default 1e-3).
    """

    def __init__(
            self,
            num_classes: int = 1000,
            in_chans: int = 3,
            drop_rate: float = 0.,
            global_pool: str = 'avg',
            output_stride: int = 32,
            embed_dim: Optional[int] = None,
            depths: Tuple[int, int, int] = (5, 10, 5),
            scales: Tuple[float, float, float] = (0.17, 0.10, 0.20),
            final_block: bool = True,
            norm_eps: float = 1e-3,
            device=None,
            dtype=None,
    ):
        super().__init__()
        if output_stride != 32:
            raise ValueError(f'InceptionResNetV1 supports output_stride=32 only, got {output_stride}.')
        dd = {'device': device, 'dtype': dtype}
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.embed_dim = embed_dim
        self.num_features = 1792
        self.grad_checkpointing = False
        # VALID padding everywhere but where SAME is given: every stride-2 op is VALID in the reference
        conv_block = partial(
            ConvBnAct, padding=0, norm_kwargs=dict(eps=norm_eps), act_kwargs=dict(inplace=True))

        self.conv2d_1a = conv_block(in_chans, 32, kernel_size=3, stride=2, **dd)
        self.conv2d_2a = conv_block(32, 32, kernel_size=3, **dd)
        self.conv2d_2b = conv_block(32, 64, kernel_size=3, padding=1, **dd)
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)
        self.conv2d_3b = conv_block(64, 80, kernel_size=1, **dd)
        self.conv2d_4a = conv_block(80, 192, kernel_size=3, **dd)
        self.conv2d_4b = conv_block(192, 256, kernel_size=3, stride=2, **dd)
        self.repeat = nn.Sequential(*[Block35(scales[0], conv_block, dd) for _ in range(depths[0])])
        self.mixed_6a = Mixed6a(conv_block, dd)
        self.repeat_1 = nn.Sequential(*[Block17(scales[1], conv_block, dd) for _ in range(depths[1])])
        self.mixed_7a = Mixed7a(conv_block, dd)
        self.repeat_2 = nn.Sequential(*[Block8(scales[2], False, conv_block, dd) for _ in range(depths[2])])
        self.block8 = Block8(1.0, True, conv_block, dd) if final_block else nn.Identity()

        last = 'block8' if final_block else 'repeat_2'
        self.feature_info = [
            dict(num_chs=64, reduction=2, module='conv2d_2b'),
            dict(num_chs=192, reduction=4, module='conv2d_4a'),
            dict(num_chs=256, reduction=8, module='repeat'),
            dict(num_chs=896, reduction=16, module='repeat_1'),
            dict(num_chs=1792, reduction=32, module=last),
        ]
        # trunk layers in forward order, and the index of each feature tap among them
        self.layer_names = [
            'conv2d_1a', 'conv2d_2a', 'conv2d_2b', 'maxpool_3a', 'conv2d_3b', 'conv2d_4a', 'conv2d_4b',
            'repeat', 'mixed_6a', 'repeat_1', 'mixed_7a', 'repeat_2', 'block8',
        ]
        self.feature_ends = [self.layer_names.index(info['module']) for info in self.feature_info]

        self.global_pool, self.head_drop, _ = create_classifier(
            self.num_features, 0, pool_type=global_pool, drop_rate=drop_rate, **dd)
        # the FaceNet embedding (Identity for the ImageNet head)
        self.last_linear = nn.Identity()
        self.last_bn = nn.Identity()
        if embed_dim:
            pooled = self.num_features * self.global_pool.feat_mult()
            self.last_linear = Linear(pooled, embed_dim, bias=False, **dd)
            self.last_bn = nn.BatchNorm1d(embed_dim, eps=norm_eps, **dd)
        self.classif = self._make_classifier(num_classes, dd)
        self.head_hidden_size = embed_dim or self.num_features * self.global_pool.feat_mult()

    def _make_classifier(self, num_classes: int, dd: Dict) -> nn.Module:
        in_features = self.embed_dim or self.num_features * self.global_pool.feat_mult()
        if num_classes > 0:
            return Linear(in_features, num_classes, **dd)
        return L2Normalize() if self.embed_dim else nn.Identity()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict:
        return dict(
            stem=r'^conv2d_(\d)',
            blocks=[
                (r'^repeat\.(\d+)', (0,)),
                (r'^mixed_6a', (5,)),
                (r'^repeat_1\.(\d+)', (6,) if coarse else None),
                (r'^mixed_7a', (20,)),
                (r'^repeat_2\.(\d+)', (21,) if coarse else None),
                (r'^block8', (30,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True):
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.classif

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None):
        dd = get_device_dtype(self)
        self.num_classes = num_classes
        if global_pool is not None and global_pool != self.global_pool.pool_type:
            pool, _ = create_classifier(self.num_features, 0, pool_type=global_pool, **dd)
            if self.embed_dim and pool.feat_mult() != self.global_pool.feat_mult():
                raise ValueError(
                    f'The FaceNet embedding takes {self.last_linear.in_features} pooled features; '
                    f"global_pool='{global_pool}' gives {self.num_features * pool.feat_mult()}.")
            self.global_pool = pool
            self.head_hidden_size = self.embed_dim or self.num_features * self.global_pool.feat_mult()
        self.classif = self._make_classifier(num_classes, dd)
        self.classif.train(self.training)

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

        Indices 0-4 are the outputs at strides 2, 4, 8, 16 and 32 (`feature_info`).
        """
        if output_fmt != 'NCHW':
            raise ValueError(f"InceptionResNetV1 returns NCHW intermediates only, got output_fmt='{output_fmt}'.")
        intermediates = []
        take_indices, max_index = feature_take_indices(len(self.feature_ends), indices)
        take_ends = [self.feature_ends[i] for i in take_indices]
        layer_names = self.layer_names
        if stop_early or intermediates_only:
            layer_names = layer_names[:self.feature_ends[max_index] + 1]
        x = _check_input_size(x)
        for i, name in enumerate(layer_names):
            x = getattr(self, name)(x)
            if i in take_ends:
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
        """Drop the layers after the last kept feature tap (and the head)."""
        take_indices, max_index = feature_take_indices(len(self.feature_ends), indices)
        for name in self.layer_names[self.feature_ends[max_index] + 1:]:
            setattr(self, name, nn.Identity())
        if max_index < len(self.feature_ends) - 1 or prune_head:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
            self.last_linear, self.last_bn, self.embed_dim = nn.Identity(), nn.Identity(), None
            self.global_pool, self.head_drop, self.classif = create_classifier(
                self.num_features, 0, pool_type='', drop_rate=0.)
            self.num_classes = 0
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2d_1a(_check_input_size(x))
        x = self.conv2d_2a(x)
        x = self.conv2d_2b(x)
        x = self.maxpool_3a(x)
        x = self.conv2d_3b(x)
        x = self.conv2d_4a(x)
        x = self.conv2d_4b(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.repeat, x)
            x = self.mixed_6a(x)
            x = checkpoint_seq(self.repeat_1, x)
            x = self.mixed_7a(x)
            x = checkpoint_seq(self.repeat_2, x)
        else:
            x = self.repeat(x)
            x = self.mixed_6a(x)
            x = self.repeat_1(x)
            x = self.mixed_7a(x)
            x = self.repeat_2(x)
        x = self.block8(x)
        return x

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        if self.embed_dim is not None and self.global_pool.is_identity():
            # unpooled (global_pool=''): the FaceNet embedding at every position, as a 1x1 conv would apply it
            b, _, h, w = x.shape
            x = self.last_bn(self.last_linear(x.flatten(2).transpose(1, 2)).transpose(1, 2))
            return x.reshape(b, -1, h, w)
        return self.last_bn(self.last_linear(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        x = self.head_drop(x)
        x = self._embed(x)
        return x if pre_logits else self.classif(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        x = self.forward_head(x)
        return x


_FACENET_RENAMES = (('repeat_1.', 'repeat.'), ('repeat_2.', 'repeat_1.'), ('repeat_3.', 'repeat_2.'), ('logits.', 'classif.'))


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: InceptionResNetV1) -> Dict[str, torch.Tensor]:
    """Convert a facenet-pytorch checkpoint (or an IRv1 state_dict in its naming) to ours.

    Our own files are returned unchanged (they already use the zoo names).
    """
    state_dict = unwrap_state_dict(state_dict)
    if 'repeat.0.conv2d.weight' in state_dict:
        return state_dict
    out = {}
    for key, value in state_dict.items():
        for old, new in _FACENET_RENAMES:
            if key.startswith(old):
                key = new + key[len(old):]
                break
        out[key] = value
    return out


def _create(variant: str, pretrained: bool = False, **kwargs) -> InceptionResNetV1:
    return build_model(
        InceptionResNetV1,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(feature_cls='getter'),
        **kwargs,
    )


def _cfg(**kwargs):
    return {
        'num_classes': 1000, 'input_size': (3, 299, 299), 'pool_size': (8, 8),
        'crop_pct': 0.8975, 'interpolation': 'bicubic', 'mean': (0.5, 0.5, 0.5), 'std': (0.5, 0.5, 0.5),
        'first_conv': 'conv2d_1a.conv', 'classifier': 'classif',
        'paper_ids': 'arXiv:1602.07261', 'paper_name': 'Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning',
        'origin_url': 'https://github.com/timesler/facenet-pytorch', 'license': 'mit',
        **kwargs,
    }


def _facenet_cfg(file: str, num_classes: int, dataset: str):
    return _cfg(
        url=f'https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/{file}',
        num_classes=num_classes, input_size=(3, 160, 160), pool_size=(3, 3), crop_pct=1.0,
        interpolation='bilinear', mean=FACENET_MEAN, std=FACENET_STD,
        notes=(
            f'FaceNet identity model trained on {dataset} (davidsandberg/facenet, converted by facenet-pytorch). '
            'Input: aligned 160x160 face crops. num_classes=0 gives the L2-normalised 512-d embedding. '
            f'The {dataset} terms of use apply on top of the MIT license.',
        ),
    )


default_cfgs = generate_default_cfgs({
    'inception_resnet_v1': _cfg(),
    'inception_resnet_v1_paper': _cfg(),
    'inception_resnet_v1_facenet.vggface2': _facenet_cfg('20180402-114759-vggface2.pt', 8631, 'VGGFace2'),
    'inception_resnet_v1_facenet.casia_webface': _facenet_cfg(
        '20180408-102900-casia-webface.pt', 10575, 'CASIA-WebFace'),
})


@register_model
def inception_resnet_v1(pretrained: bool = False, **kwargs) -> InceptionResNetV1:
    """Inception-ResNet-v1 for ImageNet: the facenet trunk (with its final no-ReLU Block8) + FC head."""
    return _create('inception_resnet_v1', pretrained, **{'drop_rate': 0.2, **kwargs})


@register_model
def inception_resnet_v1_paper(pretrained: bool = False, **kwargs) -> InceptionResNetV1:
    """Inception-ResNet-v1 exactly as the paper draws it: no extra final Block8."""
    return _create('inception_resnet_v1_paper', pretrained, **{'drop_rate': 0.2, 'final_block': False, **kwargs})


@register_model
def inception_resnet_v1_facenet(pretrained: bool = False, **kwargs) -> InceptionResNetV1:
    """Inception-ResNet-v1 FaceNet: 512-d embedding head, identity logits when num_classes > 0."""
    return _create('inception_resnet_v1_facenet', pretrained, **{'drop_rate': 0.6, 'embed_dim': 512, **kwargs})
