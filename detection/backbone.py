"""Any zoo / timm backbone with `features_only` -> FPN, as torchvision's detectors expect.

`TimmFPNBackbone(name)` builds `timm.create_model(name, features_only=True, out_indices=...)` and a
`torchvision.ops.FeaturePyramidNetwork` on its maps. Its `forward` returns an `OrderedDict` of FPN maps
keyed `'0'`, `'1'`, ... (plus `'pool'` or `'p6'`/`'p7'`) and it exposes `out_channels`, so it can be
given to `MaskRCNN`, `FasterRCNN`, `RetinaNet` and `FCOS` unchanged.

Levels are chosen by stride, not by feature index (models number their levels differently: EMOv2's
index 0 is the stem at stride 2, RaftMLP's is stride 4): `strides=(4, 8, 16, 32)` gives P2-P5.

mmdet-equivalent options:

* `frozen_stages=k`: parameters of the stem and of the stages up to stride `2 ** (k + 1)` are frozen
  and those modules stay in eval mode (`k=0`: stem only, `k=-1`: nothing), as mmdet's backbones do.
* `norm_eval=True`: every BatchNorm of the backbone keeps its running statistics (eval mode) while
  the detector trains; its affine weights still train unless frozen.
* `extra='p6p7'` with `p6_from='input'`: RetinaNet's P6 from C5 (mmdet `add_extra_convs='on_input'`,
  torchvision v2), `relu_before_p7=False` as mmdet (torchvision applies a ReLU).

Models that cannot serve are refused with `BackboneError`: isotropic models (one stride only), models
whose cfg says `fixed_input_size` (position tables sized for one resolution), and models without
`features_only` support.
"""
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelMaxPool

import timm
import zoo  # noqa: F401  (registers the zoo models with timm)

__all__ = ['BackboneError', 'TimmFPNBackbone', 'TimmSSDLiteBackbone', 'LastLevelP6P7', 'backbone_feature_info',
           'build_backbone']


class BackboneError(ValueError):
    """The model cannot be a detection backbone; the message says why."""


class LastLevelP6P7(ExtraFPNBlock):
    """P6 and P7 by stride-2 3x3 convs, as RetinaNet / FCOS use.

    `from_input=True` takes P6 from C5 (mmdet `add_extra_convs='on_input'`); otherwise from P5
    (`'on_output'`). `relu_before_p7`: torchvision applies a ReLU between P6 and P7; mmdet's RetinaNet
    does not (its FCOS does: `relu_before_extra_convs=True`).
    """

    def __init__(self, in_channels: int, out_channels: int, from_input: bool = True, relu_before_p7: bool = False):
        super().__init__()
        self.p6 = nn.Conv2d(in_channels, out_channels, 3, 2, 1)
        self.p7 = nn.Conv2d(out_channels, out_channels, 3, 2, 1)
        for conv in (self.p6, self.p7):
            nn.init.xavier_uniform_(conv.weight)  # mmdet's ConvModule init for FPN convs
            nn.init.zeros_(conv.bias)
        self.from_input = from_input
        self.relu_before_p7 = relu_before_p7

    def forward(self, results: List[torch.Tensor], x: List[torch.Tensor], names: List[str]):
        src = x[-1] if self.from_input else results[-1]
        p6 = self.p6(src)
        p7 = self.p7(F.relu(p6) if self.relu_before_p7 else p6)
        return results + [p6, p7], names + ['p6', 'p7']


def backbone_feature_info(name: str, **kwargs) -> Tuple[List[Dict], Dict]:
    """(feature_info, pretrained_cfg) of a model, built on the meta device (no memory, no weights)."""
    try:
        with torch.device('meta'):
            model = timm.create_model(name, pretrained=False, **kwargs)
    except RuntimeError as e:
        if 'Unknown model' in str(e):
            raise BackboneError(f"Unknown model '{name}': `zoo list` or timm.list_models() shows the choices.") from e
        raise
    info = getattr(model, 'feature_info', None)
    if not info:
        raise BackboneError(f"'{name}' declares no feature_info, so it has no features_only maps to build an FPN on.")
    return [dict(i) for i in info], dict(getattr(model, 'pretrained_cfg', None) or {})


def _select_levels(name: str, info: List[Dict], strides: Sequence[int]) -> List[int]:
    reductions = [int(i['reduction']) for i in info]
    out = []
    for s in strides:
        matches = [k for k, r in enumerate(reductions) if r == s]
        if not matches:
            raise BackboneError(
                f"'{name}' has no feature map at stride {s} (it has {sorted(set(reductions))}); "
                'choose strides among those.')
        out.append(matches[-1])  # the last (deepest) map at that stride
    return out


def _has_param(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False))


class TimmFPNBackbone(nn.Module):
    """A `features_only` timm / zoo model and an FPN; `out_channels` for torchvision's detectors.

    Args:
        name: any timm or zoo model name with `features_only` support.
        strides: the strides of the maps fed to the FPN ((4, 8, 16, 32) = C2-C5; RetinaNet: (8, 16, 32)).
        out_channels: FPN width (256); None builds no FPN and `forward` returns the backbone's maps
            (a list, C2..C5 for the default strides), as mmdet's backbones do.
        extra: 'pool' (LastLevelMaxPool, Faster/Mask R-CNN), 'p6p7' (RetinaNet, FCOS) or None.
        p6_from: 'input' (C5, mmdet `on_input`) or 'output' (P5).
        relu_before_p7: torchvision's ReLU between P6 and P7 (mmdet RetinaNet: False).
        frozen_stages: freeze the stem and the stages up to stride 2 ** (k + 1); -1 freezes nothing.
        norm_eval: keep the backbone's BatchNorm statistics frozen (eval mode) during training.
        pretrained: load the backbone's pretrained weights (the zoo's weight path; `WeightsError` if absent).
        **model_kwargs: passed to `timm.create_model` (drop_path_rate, window_size, pretrained_cfg_overlay, ...).
    """

    def __init__(
            self,
            name: str,
            strides: Sequence[int] = (4, 8, 16, 32),
            out_channels: Optional[int] = 256,
            extra: Optional[str] = 'pool',
            p6_from: str = 'input',
            relu_before_p7: bool = False,
            frozen_stages: int = -1,
            norm_eval: bool = False,
            pretrained: bool = False,
            **model_kwargs,
    ):
        super().__init__()
        info, cfg = backbone_feature_info(name, **model_kwargs)
        reductions = [int(i['reduction']) for i in info]
        if len(set(reductions)) < 2:
            raise BackboneError(
                f"'{name}' is isotropic: every feature map has stride {reductions[0]}, so it has no pyramid "
                'for an FPN. Pick a hierarchical backbone (e.g. emov2_1m, resnet50).')
        if cfg.get('fixed_input_size'):
            raise BackboneError(
                f"'{name}' has a fixed input size {tuple(cfg.get('input_size', ()))[-2:]} (`fixed_input_size` in "
                'its cfg: position tables or token mixers sized for one resolution), so it cannot take '
                'detection inputs of varying size such as 1333x800.')
        out_indices = _select_levels(name, info, strides)
        self.name = name
        self.strides = tuple(int(s) for s in strides)
        try:
            self.body = timm.create_model(
                name, pretrained=pretrained, features_only=True, out_indices=tuple(out_indices), **model_kwargs)
        except (NotImplementedError, TypeError) as e:
            raise BackboneError(f"'{name}' does not support features_only ({type(e).__name__}: {e}).") from e
        in_channels = list(self.body.feature_info.channels())
        reductions = list(self.body.feature_info.reduction())
        if reductions != list(self.strides):
            raise BackboneError(f"'{name}' features_only gave strides {reductions}, expected {list(self.strides)}.")
        if out_channels is None or extra is None:
            extra_block = None
        elif extra == 'pool':
            extra_block = LastLevelMaxPool()
        elif extra == 'p6p7':
            if p6_from not in ('input', 'output'):
                raise ValueError(f"p6_from must be 'input' or 'output', got '{p6_from}'")
            from_input = p6_from == 'input'
            extra_block = LastLevelP6P7(in_channels[-1] if from_input else out_channels, out_channels,
                                        from_input=from_input, relu_before_p7=relu_before_p7)
        else:
            raise ValueError(f"extra must be 'pool', 'p6p7' or None, got '{extra}'")
        self.fpn = None if out_channels is None else FeaturePyramidNetwork(in_channels, out_channels, extra_blocks=extra_block)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.norm_eval = norm_eval
        self.frozen_stages = frozen_stages
        self._frozen: List[nn.Module] = []
        if frozen_stages >= 0:
            self._freeze(info, frozen_stages)
        self.train()

    # ---- freezing ----------------------------------------------------------------------------
    def _module_prefixes(self, module_name: str) -> Tuple[str, ...]:
        # FeatureGetterNet keeps the model as `model.`; FeatureListNet flattens dots into '_'
        return (module_name + '.', 'model.' + module_name + '.', module_name.replace('.', '_') + '.')

    def _freeze(self, info: List[Dict], k: int) -> None:
        names = [n for n, _ in self.body.named_parameters()]
        stage4 = [i for i, f in enumerate(info) if int(f['reduction']) >= 4]
        if not stage4:
            raise BackboneError(f"'{self.name}' has no stage at stride >= 4 to freeze up to.")
        if k == 0:
            prefixes = self._module_prefixes(info[stage4[0]]['module'])
            first = next((i for i, n in enumerate(names) if n.startswith(prefixes)), None)
            if first is None:
                raise BackboneError(f"cannot locate module '{info[stage4[0]]['module']}' of '{self.name}' to freeze")
            cut = first
        else:
            target = 2 ** (k + 1)
            levels = [i for i, f in enumerate(info) if int(f['reduction']) == target]
            if not levels:
                raise BackboneError(
                    f"frozen_stages={k} asks for stride {target}, but '{self.name}' has strides "
                    f"{sorted({int(f['reduction']) for f in info})}.")
            prefixes = self._module_prefixes(info[levels[-1]]['module'])
            hits = [i for i, n in enumerate(names) if n.startswith(prefixes)]
            if not hits:
                raise BackboneError(f"cannot locate module '{info[levels[-1]]['module']}' of '{self.name}' to freeze")
            cut = hits[-1] + 1
        frozen_names = set(names[:cut])
        for n, p in self.body.named_parameters():
            if n in frozen_names:
                p.requires_grad_(False)
        # modules whose own parameters are all frozen stay in eval mode (BN statistics, dropout)
        self._frozen = [m for m in self.body.modules()
                        if _has_param(m) and all(not p.requires_grad for p in m.parameters(recurse=False))]

    def train(self, mode: bool = True):
        super().train(mode)
        if mode:
            for m in self._frozen:
                m.eval()
            if self.norm_eval:
                for m in self.body.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.eval()
        return self

    def forward(self, x: torch.Tensor):
        feats = self.body(x)
        if self.fpn is None:
            return feats
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats)))


def build_backbone(name: str, **kwargs) -> TimmFPNBackbone:
    return TimmFPNBackbone(name, **kwargs)


class TimmSSDLiteBackbone(TimmFPNBackbone):
    """SSDLite's feature extractor on a zoo / timm model: C4 and C5 (`out_indices=(3, 4)` for EMOv2) and
    four depthwise-separable extra levels of `extra_channels` (the EMOv2 SSDLite neck: C4, C5, 512,
    256, 256, 128), each at half the previous resolution. No FPN."""

    def __init__(self, name: str, strides: Sequence[int] = (16, 32),
                 extra_channels: Sequence[int] = (512, 256, 256, 128), **kwargs):
        from functools import partial
        from torchvision.models.detection.ssdlite import _extra_block

        super().__init__(name, strides=strides, out_channels=None, **kwargs)
        norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
        chans = [self.in_channels[-1], *extra_channels]
        self.extra = nn.ModuleList(_extra_block(a, b, norm) for a, b in zip(chans[:-1], chans[1:]))
        self.out_channels_list = [*self.in_channels, *extra_channels]

    def forward(self, x: torch.Tensor) -> 'OrderedDict[str, torch.Tensor]':
        feats = list(self.body(x))
        y = feats[-1]
        for block in self.extra:
            y = block(y)
            feats.append(y)
        return OrderedDict((str(i), f) for i, f in enumerate(feats))
