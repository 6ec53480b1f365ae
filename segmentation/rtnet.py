"""RTNet: face parsing on RoI Tanh-polar warped faces, and its ResNet-50 FCN / DeepLabV3+ baselines.

Paper: "RoI Tanh-polar Transformer Network for Face Parsing in the Wild", Y. Lin, J. Shen, Y. Wang,
M. Pantic, Image and Vision Computing 112 (2021) 104190, arXiv:2102.02717.
Official code: https://github.com/hhj1897/face_parsing (commit e5b7de7b, `ibug/face_parsing/rtnet/rtnet.py`,
`ibug/face_parsing/parser.py`, `ibug/face_parsing/resnet/`), MIT license. The pretrained tags load the
authors' `.torch` files from their Hugging Face copy (`public-data/ibug-face-parsing`), converted on load
by `checkpoint_filter_fn`; nothing is redistributed.

The input is a face already warped to Tanh-polar space (width = radius, height = angle; see
`segmentation.roi_tanh`). The encoder is a dilated ResNet (output stride 8) whose blocks from layer 2 on
are HybridBlocks: the bottleneck's 3x3 conv is split into two half-width branches, a polar one (padded
circularly along the angle axis, replicated along the radius) and a Cartesian one that converts its
input to Tanh-Cartesian space, convolves there and converts back (`roi_tanh_polar_to_roi_tanh` /
`roi_tanh_to_roi_tanh_polar`, keep_aspect_ratio=True, so only the face box's aspect ratio matters).
The first block of every layer is a HybridBlock without the Cartesian round trip; layer 1's other
blocks are timm's plain `Bottleneck`. An FCN head (3x3 conv, BN, ReLU, dropout, 1x1 conv) on the
stride-8 map gives the logits, upsampled bilinearly to the input size.

The models register with the zoo's own registry (`zoo.models.register_project_model`), not timm's: a face
parser maps a warped face and its box to per-pixel logits, it is not a classifier of its input, so
timm's contract (pooled logits, `reset_classifier(0, '')`, `features_only`) and test suite do not apply.
Build them with `zoo.models.create_model('rtnet50_fcn11.ibugmask', pretrained=True)`; weights still load
through timm's `build_model_with_cfg` with the tag's cfg passed explicitly. `zoo list / info / bench` and
`segmentation.FaceParser.from_name` know them through that registry.

Differences from the official code (none change its numbers):
  * `forward(x, rois=None)`: without rois the face box is taken to have the input's aspect ratio
    (the conversions only use the box's aspect ratio), so the model also runs as a plain timm model;
  * the stem and the plain blocks are timm's ResNet parts with timm's names, so a timm (or torchvision)
    ResNet checkpoint initialises them (`init_from_resnet`); the baselines' encoder is timm's ResNet
    with output stride 8 (the official one is torchvision's with the same layout and names);
  * `checkpoint_filter_fn` also takes the training checkpoints (`backbone.` prefix, `aux*` heads);
  * blocks pass the rois as an argument rather than through a dict, and the Cartesian round trip's
    sampling grids are built once per forward and map size (the official code rebuilds them per block).
"""
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models import generate_default_cfgs
from timm.models.resnet import Bottleneck, ResNet

from segmentation.roi_tanh import cartesian_to_polar_grid, grid_sample, pad_polar_map, polar_to_cartesian_grid
from zoo.hub import build_model, unwrap_state_dict
from zoo.layers import ConvAct, FusedBottleneck, channels_innermost, conv_with_bn_folded, merged_conv_bn
from zoo.models import register_project_model

__all__ = ['RTNet', 'RTNetEncoder', 'HybridBlock', 'ResNetEncoder', 'FCNHead', 'DeepLabV3PlusHead',
           'checkpoint_filter_fn', 'init_from_resnet', 'LABELS_11', 'LABELS_14']

LABELS_11 = ('background', 'skin', 'left_eyebrow', 'right_eyebrow', 'left_eye', 'right_eye', 'nose',
             'upper_lip', 'inner_mouth', 'lower_lip', 'hair')
LABELS_14 = LABELS_11 + ('left_ear', 'right_ear', 'glasses')


class MixPad2d(nn.Module):
    """Pad a polar map: circularly along the height (angle), replicating along the width (radius)."""

    def __init__(self, pad: int):
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.pad
        x = torch.cat([x[..., -p:, :], x, x[..., :p, :]], dim=-2)
        return F.pad(x, (p, p, 0, 0), mode='replicate')

    def extra_repr(self) -> str:
        return f'pad={self.pad}, height=circular, width=replicate'


def _conv_bn(in_chs: int, out_chs: int, stride: int, dilation: int, polar: bool) -> nn.Sequential:
    """3x3 conv + BN; the polar one pads itself (keys `0.1.weight`), the other pads with zeros."""
    if polar:
        conv = nn.Sequential(MixPad2d(dilation), nn.Conv2d(
            in_chs, out_chs, 3, stride=stride, padding=0, dilation=dilation, bias=False))
    else:
        conv = nn.Conv2d(in_chs, out_chs, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(out_chs))


class HybridBlock(nn.Module):
    """Bottleneck with a polar and a (optionally Tanh-Cartesian) half-width 3x3 branch.

    `reparameterize()` (timm's `reparameterize_model`) folds every BatchNorm, merges the two 1x1 entry
    convolutions into one, and hands the ReLUs and the residual sum to oneDNN (`zoo.layers.ConvAct`); the
    Cartesian branch's ReLU stays after its warp back, where the reference applies it.
    """
    expansion = 4
    fused: torch.jit.Final[bool] = False

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None,
                 dilation: int = 1, hybrid: bool = False):
        super().__init__()
        width = planes // 2
        self.hybrid = hybrid
        self.conv1_a = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1_a = nn.BatchNorm2d(width)
        self.conv1_b = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1_b = nn.BatchNorm2d(width)
        self.conv_polar = _conv_bn(width, width, stride, dilation, polar=True)
        self.conv_cart = _conv_bn(width, width, stride, dilation, polar=False)
        self.conv3 = nn.Conv2d(width * 2, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.act = nn.ReLU(inplace=True)
        self.downsample = downsample

    def zero_init_last(self):
        nn.init.zeros_(self.bn3.weight)

    @staticmethod
    def _grid(grids: Optional[Dict], kind: str, rois: torch.Tensor, size, like: torch.Tensor) -> torch.Tensor:
        key = (kind, size)
        if grids is not None and key in grids:
            return grids[key]
        dtype = torch.float64 if like.dtype == torch.float64 else torch.float32
        make = polar_to_cartesian_grid if kind == 'to_cart' else cartesian_to_polar_grid
        grid = make(rois, size, size, keep_aspect_ratio=True, dtype=dtype, device=like.device)
        if grids is not None:
            grids[key] = grid
        return grid

    @torch.no_grad()
    def reparameterize(self):
        if self.fused:
            return
        self.conv1_a, _ = merged_conv_bn([(self.conv1_a, self.bn1_a), (self.conv1_b, self.bn1_b)], nn.ReLU())
        self.conv1_b = self.bn1_a = self.bn1_b = nn.Identity()
        pad, conv = self.conv_polar[0]
        self.conv_polar = nn.Sequential(pad, ConvAct(conv_with_bn_folded(conv, self.conv_polar[1]), nn.ReLU()))
        self.conv_cart = ConvAct(conv_with_bn_folded(*self.conv_cart), None if self.hybrid else nn.ReLU())
        self.conv3 = ConvAct(conv_with_bn_folded(self.conv3, self.bn3), nn.ReLU())
        self.bn3 = nn.Identity()
        if self.downsample is not None:
            self.downsample = ConvAct(conv_with_bn_folded(*self.downsample))
        self.fused = True

    def forward(self, x: torch.Tensor, rois: torch.Tensor, grids: Optional[Dict] = None) -> torch.Tensor:
        """rois: this stage's face boxes; grids: a per-forward cache of the conversion grids (with
        keep_aspect_ratio they depend on the boxes' aspect ratios and the map sizes only)."""
        shortcut = x if self.downsample is None else self.downsample(x)
        if self.fused:  # conv1_a is both entry convolutions, conv_polar / conv_cart end with their ReLU
            a, b = self.conv1_a(x).chunk(2, dim=1)
        else:
            a = self.act(self.bn1_a(self.conv1_a(x)))
            b = self.act(self.bn1_b(self.conv1_b(x)))
        a = self.conv_polar(a)
        if self.hybrid:
            size = tuple(b.shape[-2:])
            b = self.conv_cart(grid_sample(pad_polar_map(b), self._grid(grids, 'to_cart', rois, size, b)))
            out_size = tuple(b.shape[-2:])  # the official code scales the rois by h1 / h2 (no-op with kar)
            b = grid_sample(b, self._grid(grids, 'to_polar', rois / (size[0] / out_size[0]), out_size, b))
            # grid_sample returns NCHW whatever its input; concatenated with a channels-last `a`, the result would
            # be NCHW too, a's half transposed on the way (15 ms at 2 x 128 x 65 x 65) and conv3 copying it back
            b = self.act(b.contiguous(memory_format=torch.channels_last if channels_innermost(a) else
                                      torch.contiguous_format))
        else:
            b = self.conv_cart(b)
        if self.fused:
            return self.conv3(torch.cat([a, b], dim=1), shortcut)
        out = torch.cat([self.act(a), self.act(b) if not self.hybrid else b], dim=1)
        out = self.bn3(self.conv3(out))
        return self.act(out + shortcut)


class RoiLayer(nn.Sequential):
    """A ResNet layer whose hybrid blocks also take the rois (plain blocks take the map only)."""

    def forward(self, x: torch.Tensor, rois: torch.Tensor, grids: Optional[Dict] = None) -> torch.Tensor:
        for block in self:
            x = block(x, rois, grids) if isinstance(block, HybridBlock) else block(x)
        return x


def _fuse_resnet(module: nn.Module):
    """A ResNet trunk's inference form: its stem (conv1, bn1, act1) as one ConvAct with the BatchNorm folded,
    and every timm Bottleneck below it replaced by zoo.layers.FusedBottleneck."""
    if isinstance(module.conv1, nn.Conv2d):
        module.conv1 = ConvAct(conv_with_bn_folded(module.conv1, module.bn1), nn.ReLU())
        module.bn1 = module.act1 = nn.Identity()
    for layer in module.modules():
        if isinstance(layer, nn.Sequential):
            for i, block in enumerate(layer):
                if isinstance(block, Bottleneck):
                    layer[i] = FusedBottleneck(block)


def _default_rois(x: torch.Tensor, rois: Optional[torch.Tensor]) -> torch.Tensor:
    if rois is not None:
        return rois.to(dtype=torch.float32 if rois.dtype != torch.float64 else rois.dtype)
    h, w = x.shape[-2:]
    return x.new_tensor([[0.0, 0.0, float(w), float(h)]], dtype=torch.float32).expand(x.shape[0], 4)


class RTNetEncoder(nn.Module):
    """The RTNet encoder: ResNet stem, then layers of HybridBlocks, output stride 8 (dilated=True)."""

    def __init__(self, layers: Sequence[int] = (3, 4, 6, 3), in_chans: int = 3, dilated: bool = True,
                 hybrid_stages: Sequence[bool] = (True, True, True), zero_init_residual: bool = True,
                 widths: Sequence[int] = (64, 128, 256, 512)):
        super().__init__()
        self.inplanes = widths[0]  # stem width (the official models: 64, as every ResNet)
        self.conv1 = nn.Conv2d(in_chans, self.inplanes, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        strides = (1, 2, 1, 1) if dilated else (1, 2, 2, 2)
        dilations = (1, 1, 2, 4) if dilated else (1, 1, 1, 1)
        hybrid = (False, *hybrid_stages)
        for i, (planes, blocks) in enumerate(zip(widths, layers)):
            self.add_module(f'layer{i + 1}', self._make_layer(planes, blocks, strides[i], dilations[i], hybrid[i]))
        reductions = (4, 8, 8, 8) if dilated else (4, 8, 16, 32)
        self.feature_info = [dict(num_chs=w * HybridBlock.expansion, reduction=r, module=f'layer{i + 1}')
                             for i, (w, r) in enumerate(zip(widths, reductions))]
        self.num_features = widths[-1] * HybridBlock.expansion
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if hasattr(m, 'zero_init_last'):
                    m.zero_init_last()

    def _make_layer(self, planes: int, blocks: int, stride: int, dilation: int, hybrid: bool) -> RoiLayer:
        out_chs = planes * HybridBlock.expansion
        downsample = None
        if stride != 1 or self.inplanes != out_chs:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, out_chs, 1, stride=stride, bias=False), nn.BatchNorm2d(out_chs))
        # the first block keeps the previous dilation (1 -> 1, 2 -> 1, 4 -> 2), as the official code
        first_dilation = 2 if dilation == 4 else 1
        layer = [HybridBlock(self.inplanes, planes, stride, downsample, first_dilation, hybrid=False)]
        self.inplanes = out_chs
        for _ in range(1, blocks):
            if hybrid:
                layer.append(HybridBlock(out_chs, planes, dilation=dilation, hybrid=True))
            else:  # the official plain blocks ignore the layer's dilation (used only in layer 1)
                layer.append(Bottleneck(out_chs, planes))
        return RoiLayer(*layer)

    @torch.no_grad()
    def reparameterize(self):
        """The stem's BatchNorm and ReLU into its convolution; layer 1's plain bottlenecks fused (the
        HybridBlocks reparameterize themselves)."""
        _fuse_resnet(self)

    def forward(self, x: torch.Tensor, rois: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
        """[c1, c2, c3, c4]; rois are the face boxes in the source image (x1, y1, x2, y2, ...)."""
        rois = _default_rois(x, rois)[:, :4]
        height = x.shape[-2]
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        feats, grids = [], {}
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x, rois / (height / x.shape[-2]), grids)
            feats.append(x)
        return feats


class ResNetEncoder(nn.Module):
    """The baselines' encoder: timm's ResNet at output stride 8 (torchvision's layout and names); no rois."""

    def __init__(self, layers: Sequence[int] = (3, 4, 6, 3), in_chans: int = 3):
        super().__init__()
        self.body = ResNet(Bottleneck, list(layers), num_classes=0, in_chans=in_chans, output_stride=8,
                           global_pool='')
        self.feature_info = [dict(num_chs=c, reduction=r, module=f'body.layer{i + 1}')
                             for i, (c, r) in enumerate(zip((256, 512, 1024, 2048), (4, 8, 8, 8)))]
        self.num_features = 2048

    @torch.no_grad()
    def reparameterize(self):
        _fuse_resnet(self.body)

    def forward(self, x: torch.Tensor, rois: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
        b = self.body
        x = b.maxpool(b.act1(b.bn1(b.conv1(x))))
        feats = []
        for layer in (b.layer1, b.layer2, b.layer3, b.layer4):
            x = layer(x)
            feats.append(x)
        return feats


class FCNHead(nn.Sequential):
    """Conv3x3 (C -> C/4) - BN - ReLU - Dropout - Conv1x1 (-> classes)."""
    low_level = False

    def __init__(self, in_chs: int, num_classes: int, drop_rate: float = 0.1):
        mid = in_chs // 4
        super().__init__(
            nn.Conv2d(in_chs, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Dropout(drop_rate), nn.Conv2d(mid, num_classes, 1))

    @property
    def classifier(self) -> nn.Conv2d:
        return self[4]

    def reset(self, num_classes: int):
        old = self[4].weight
        self[4] = nn.Conv2d(self[4].in_channels, num_classes, 1, device=old.device, dtype=old.dtype)

    @torch.no_grad()
    def reparameterize(self):
        if isinstance(self[0], nn.Conv2d):
            self[0] = ConvAct(conv_with_bn_folded(self[0], self[1]), nn.ReLU())
            self[1] = self[2] = nn.Identity()

    def forward(self, high: torch.Tensor, low: Optional[torch.Tensor] = None) -> torch.Tensor:
        return super().forward(high)


class ConvBNReLU(nn.Module):
    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 3, dilation: int = 1,
                 padding: Optional[int] = None):
        super().__init__()
        padding = dilation * (kernel_size // 2) if padding is None else padding
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, padding=padding, dilation=dilation, bias=True)
        self.bn = nn.BatchNorm2d(out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class ASPP(nn.Module):
    """1x1 and 3x3 rates 6 / 12 / 18 branches (no image pooling), concatenated, then 1x1.

    The official output 1x1 conv zero-pads by 1 (its ConvBNReLU's default padding), so the ASPP map is
    2 px larger each way than c4; the decoder then resizes it to c1 (align_corners=True). Kept as is."""

    def __init__(self, in_chs: int = 2048, out_chs: int = 256):
        super().__init__()
        self.conv1 = ConvBNReLU(in_chs, out_chs, 1)
        self.conv2 = ConvBNReLU(in_chs, out_chs, 3, 6)
        self.conv3 = ConvBNReLU(in_chs, out_chs, 3, 12)
        self.conv4 = ConvBNReLU(in_chs, out_chs, 3, 18)
        self.conv_out = ConvBNReLU(out_chs * 4, out_chs, 1, padding=1)  # official quirk, see above

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(torch.cat([self.conv1(x), self.conv2(x), self.conv3(x), self.conv4(x)], 1))


class DeepLabDecoder(nn.Module):
    def __init__(self, num_classes: int, low_chs: int = 256):
        super().__init__()
        self.conv_low = ConvBNReLU(low_chs, 48, 1)
        self.conv_cat = nn.Sequential(ConvBNReLU(304, 256), ConvBNReLU(256, 256))
        self.conv_out = nn.Conv2d(256, num_classes, 1, bias=False)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        high = F.interpolate(high, size=low.shape[-2:], mode='bilinear', align_corners=True)
        return self.conv_out(self.conv_cat(torch.cat([self.conv_low(low), high], 1)))


class DeepLabV3PlusHead(nn.Module):
    """ASPP on c4, fused with a 48-channel projection of c1 (official names `aspp.*`, `decoder.*`)."""
    low_level = True

    def __init__(self, in_chs: int, num_classes: int):
        super().__init__()
        self.aspp = ASPP(in_chs, 256)
        self.decoder = DeepLabDecoder(num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=1)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @property
    def classifier(self) -> nn.Conv2d:
        return self.decoder.conv_out

    def reset(self, num_classes: int):
        old = self.decoder.conv_out.weight
        self.decoder.conv_out = nn.Conv2d(256, num_classes, 1, bias=False, device=old.device, dtype=old.dtype)

    def forward(self, high: torch.Tensor, low: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.decoder(low, self.aspp(high))


class RTNet(nn.Module):
    """Face parsing model: encoder (RTNet or ResNet) + head; `forward(x, rois=None)` -> logits at x's size.

    `x` is a Tanh-polar warped face ([B, C, H, W]; width = radius, height = angle), `rois` [B, >=4] the
    face boxes in the source image (only their aspect ratio matters to the model).
    """

    def __init__(self, encoder: str = 'rtnet', layers: Sequence[int] = (3, 4, 6, 3), head: str = 'fcn',
                 num_classes: int = 11, in_chans: int = 3, drop_rate: float = 0.1, device=None, dtype=None,
                 **kwargs):
        super().__init__()
        kwargs.pop('pretrained_cfg', None)
        if device is not None:  # timm's construction arguments: build there directly
            with torch.device(device):
                self._build(encoder, layers, head, num_classes, in_chans, drop_rate, **kwargs)
        else:
            self._build(encoder, layers, head, num_classes, in_chans, drop_rate, **kwargs)
        if dtype is not None:
            self.to(dtype)

    def _build(self, encoder, layers, head, num_classes, in_chans, drop_rate, **kwargs):
        if encoder == 'rtnet':
            self.encoder = RTNetEncoder(layers, in_chans=in_chans, **kwargs)
        elif encoder == 'resnet':
            self.encoder = ResNetEncoder(layers, in_chans=in_chans)
        else:
            raise ValueError(f"encoder must be 'rtnet' or 'resnet', not {encoder!r}")
        self.num_features = self.head_hidden_size = self.encoder.num_features
        self.num_classes = num_classes
        self.head_type = head
        self.decoder = self._make_head(head, num_classes, drop_rate)
        self.feature_info = [dict(f, module='encoder.' + f['module']) for f in self.encoder.feature_info]

    def _make_head(self, head: str, num_classes: int, drop_rate: float) -> nn.Module:
        if head == 'fcn':
            return FCNHead(self.num_features, num_classes, drop_rate)
        if head == 'deeplabv3plus':
            return DeepLabV3PlusHead(self.num_features, num_classes)
        raise ValueError(f"head must be 'fcn' or 'deeplabv3plus', not {head!r}")

    def get_classifier(self) -> nn.Module:
        return self.decoder.classifier

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None):
        self.num_classes = num_classes
        self.decoder.reset(num_classes)

    def forward_encoder(self, x: torch.Tensor, rois: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """The encoder's maps {'c1': stride 4, 'c2'..'c4': stride 8} (official names)."""
        return dict(zip(('c1', 'c2', 'c3', 'c4'), self.encoder(x, rois)))

    def forward_features(self, x: torch.Tensor, rois: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.encoder(x, rois)[-1]

    def forward_head(self, feats: Dict[str, torch.Tensor], size: Sequence[int]) -> torch.Tensor:
        logits = self.decoder(feats['c4'], feats['c1'])
        return F.interpolate(logits, size=tuple(size), mode='bilinear', align_corners=False)

    def forward(self, x: torch.Tensor, rois: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.forward_head(self.forward_encoder(x, rois), x.shape[-2:])


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: RTNet) -> Dict[str, torch.Tensor]:
    """An official `.torch` file (bare or {'state_dict': ...}) or training checkpoint (`backbone.` prefix,
    `aux*` heads) -> ours. The released files already use our names."""
    state_dict = unwrap_state_dict(state_dict)
    out = {}
    for key, value in state_dict.items():
        if key.split('.', 1)[0].startswith('aux'):
            continue  # the training-time auxiliary head
        if key.startswith('backbone.'):
            key = 'encoder.' + key[len('backbone.'):]
        out[key] = value
    return out


def init_from_resnet(model: RTNet, resnet_state_dict: Dict[str, torch.Tensor]) -> List[str]:
    """Initialise an RTNet (or baseline) encoder from a timm / torchvision ResNet checkpoint.

    Shared layouts (stem, plain blocks, downsamples, 1x1 convs) copy over; a HybridBlock takes the
    bottleneck's 1x1 reduction split in two halves, the two diagonal blocks of its 3x3 conv and its
    1x1 expansion. Returns the encoder keys left at their initial values.
    """
    sd = unwrap_state_dict(resnet_state_dict)
    sd = {k: v for k, v in sd.items() if not k.startswith('fc.')}
    target = model.encoder.state_dict()
    prefix = 'body.' if isinstance(model.encoder, ResNetEncoder) else ''
    new = {}
    for key, value in sd.items():
        tk = prefix + key
        if tk in target and target[tk].shape == value.shape:
            new[tk] = value
    if not prefix:
        for name, module in model.encoder.named_modules():
            if not isinstance(module, HybridBlock):
                continue
            half = module.conv1_a.out_channels
            src = name + '.'
            if src + 'conv1.weight' not in sd:
                continue
            w1, w2 = sd[src + 'conv1.weight'], sd[src + 'conv2.weight']
            new[src + 'conv1_a.weight'], new[src + 'conv1_b.weight'] = w1[:half], w1[half:]
            new[src + 'conv_polar.0.1.weight'], new[src + 'conv_cart.0.weight'] = w2[:half, :half], w2[half:, half:]
            for stat in ('weight', 'bias', 'running_mean', 'running_var'):
                b1, b2 = sd[src + f'bn1.{stat}'], sd[src + f'bn2.{stat}']
                new[src + f'bn1_a.{stat}'], new[src + f'bn1_b.{stat}'] = b1[:half], b1[half:]
                new[src + f'conv_polar.1.{stat}'], new[src + f'conv_cart.1.{stat}'] = b2[:half], b2[half:]
    missing = sorted(k for k in target if k not in new and not k.endswith('num_batches_tracked'))
    model.encoder.load_state_dict(new, strict=False)
    return missing


def _create(variant: str, pretrained: bool = False, **kwargs) -> RTNet:
    return build_model(RTNet, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
                       feature_cfg=dict(flatten_sequential=False), **kwargs)


_HF_REPO = 'public-data/ibug-face-parsing'


def _cfg(file: Optional[str] = None, num_classes: int = 11, **kwargs):
    return {
        'hf_hub_id': _HF_REPO if file else None, 'hf_hub_filename': file,
        'num_classes': num_classes, 'input_size': (3, 513, 513), 'fixed_input_size': False,
        'crop_pct': 1.0, 'interpolation': 'bilinear', 'mean': (0.5, 0.5, 0.5), 'std': (0.5, 0.5, 0.5),
        'first_conv': 'encoder.conv1', 'classifier': 'decoder.4',
        'paper_ids': 'arXiv:2102.02717',
        'paper_name': 'RoI Tanh-polar Transformer Network for Face Parsing in the Wild',
        'origin_url': 'https://github.com/hhj1897/face_parsing', 'license': 'mit',
        'notes': ('Input: a face warped with roi_tanh_polar_warp(..., keep_aspect_ratio=True) to 513x513, '
                  'BGR, scaled to [-1, 1]; the authors\' .torch file, converted on load.',),
        **kwargs,
    }


default_cfgs = generate_default_cfgs({
    'rtnet50_fcn11.ibugmask': _cfg('rtnet/rtnet50-fcn-11.torch', 11),
    'rtnet50_fcn14.ibugmask': _cfg('rtnet/rtnet50-fcn-14.torch', 14),
    'rtnet101_fcn14.ibugmask': _cfg('rtnet/rtnet101-fcn-14.torch', 14),
    'resnet50_fcn14.ibugmask': _cfg('resnet/resnet50-fcn-14.torch', 14),
    'resnet50_deeplabv3plus14.ibugmask': _cfg('resnet/resnet50-deeplabv3plus-14.torch', 14,
                                              classifier='decoder.decoder.conv_out'),
})


@register_project_model
def rtnet50_fcn11(pretrained: bool = False, **kwargs) -> RTNet:
    """RTNet-50 + FCN, 11 classes (iBugMask / LaPa labels): 27.33M params, 119 GMACs at 513."""
    return _create('rtnet50_fcn11', pretrained, **dict(dict(layers=(3, 4, 6, 3), num_classes=11), **kwargs))


@register_project_model
def rtnet50_fcn14(pretrained: bool = False, **kwargs) -> RTNet:
    """RTNet-50 + FCN, 14 classes (adds ears and glasses): 27.33M params."""
    return _create('rtnet50_fcn14', pretrained, **dict(dict(layers=(3, 4, 6, 3), num_classes=14), **kwargs))


@register_project_model
def rtnet101_fcn14(pretrained: bool = False, **kwargs) -> RTNet:
    """RTNet-101 + FCN, 14 classes: 41.31M params, 178 GMACs at 513."""
    return _create('rtnet101_fcn14', pretrained, **dict(dict(layers=(3, 4, 23, 3), num_classes=14), **kwargs))


@register_project_model
def resnet50_fcn14(pretrained: bool = False, **kwargs) -> RTNet:
    """Baseline: dilated ResNet-50 (output stride 8, no rois) + FCN, 14 classes."""
    args = dict(encoder='resnet', layers=(3, 4, 6, 3), num_classes=14)
    return _create('resnet50_fcn14', pretrained, **dict(args, **kwargs))


@register_project_model
def resnet50_deeplabv3plus14(pretrained: bool = False, **kwargs) -> RTNet:
    """Baseline: dilated ResNet-50 + DeepLabV3+ (ASPP 6/12/18, no image pooling), 14 classes."""
    args = dict(encoder='resnet', layers=(3, 4, 6, 3), head='deeplabv3plus', num_classes=14)
    return _create('resnet50_deeplabv3plus14', pretrained, **dict(args, **kwargs))
