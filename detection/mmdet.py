"""Zoo / timm backbones in mmdet 3.x (the optional extra: `make mmdet`, see `tools/build_mmcv.sh`).

Importing this module registers `ZooBackbone` in mmdet's `MODELS` registry, so any mmdet config can use
a zoo model as its backbone:

    custom_imports = dict(imports=['detection.mmdet'], allow_failed_imports=False)
    model = dict(backbone=dict(_delete_=True, type='ZooBackbone', model_name='emov2_1m',
                               out_indices=(1, 2, 3, 4), frozen_stages=1, norm_eval=True, pretrained=True),
                 neck=dict(in_channels=[32, 48, 80, 180]))

It is the same feature extractor as the torchvision engine's (`TimmFPNBackbone` without its FPN): the
same level selection, `frozen_stages` and `norm_eval` semantics, the same refusals and the zoo's weight
path, so the two engines differ only in their detection heads. `ZooBackbone.neck_in_channels(...)` gives
the `in_channels` the neck needs. The configs in `detection/configs/mmdet/` are the EMOv2 recipes.
"""
from typing import Optional, Sequence, Tuple

import torch
from mmdet.registry import MODELS
from mmengine.model import BaseModule

from detection.backbone import TimmFPNBackbone, backbone_feature_info

__all__ = ['ZooBackbone', 'config_path']


def _strides(model_name: str, info, out_indices: Optional[Sequence[int]]) -> Tuple[int, ...]:
    """The strides `out_indices` (timm feature indices into `info`) name; default C2-C5."""
    if out_indices is None:
        return (4, 8, 16, 32)
    if any(not 0 <= i < len(info) for i in out_indices):
        raise IndexError(f"out_indices {tuple(out_indices)} out of range for '{model_name}', which has "
                         f'{len(info)} feature levels (strides {[int(f["reduction"]) for f in info]})')
    return tuple(int(info[i]['reduction']) for i in out_indices)


@MODELS.register_module()
class ZooBackbone(BaseModule):
    """A zoo / timm model's `features_only` maps as an mmdet backbone (a tuple, finest first).

    Args:
        model_name: any zoo or timm model with `features_only`.
        out_indices: timm feature indices (as mmdet's `TIMMBackbone`); each names a stride, and the
            deepest map at that stride is taken. Default: the maps at strides 4, 8, 16, 32.
        frozen_stages, norm_eval: as mmdet's ResNet (stem and stages up to stride 2 ** (k + 1) frozen;
            BatchNorm statistics kept).
        pretrained: the model's weights through the zoo's weight path (offline errors name the fix).
        init_cfg: mmengine's; the backbone initialises itself, so leave it None.
        **model_kwargs: to `timm.create_model` (window_size, drop_path_rate, pretrained_cfg_overlay, ...).
    """

    def __init__(self, model_name: str, out_indices: Optional[Sequence[int]] = None, frozen_stages: int = -1,
                 norm_eval: bool = False, pretrained: bool = False, init_cfg=None, **model_kwargs):
        super().__init__(init_cfg)
        info = backbone_feature_info(model_name, **model_kwargs)[0] if out_indices is not None else None
        self.features = TimmFPNBackbone(
            model_name, strides=_strides(model_name, info, out_indices), out_channels=None,
            frozen_stages=frozen_stages, norm_eval=norm_eval, pretrained=pretrained, **model_kwargs)
        self.out_channels = list(self.features.in_channels)

    @staticmethod
    def neck_in_channels(model_name: str, out_indices: Optional[Sequence[int]] = None, **model_kwargs):
        """The channels of the maps `ZooBackbone` returns: the neck's `in_channels`."""
        info, _ = backbone_feature_info(model_name, **model_kwargs)
        by_stride = {int(f['reduction']): int(f['num_chs']) for f in info}  # the deepest map per stride wins
        return [by_stride[s] for s in _strides(model_name, info, out_indices)]

    def init_weights(self):
        # weights come from timm (random init or the zoo's pretrained path), not from mmengine's init_cfg
        pass

    def train(self, mode: bool = True):
        super().train(mode)
        self.features.train(mode)  # re-applies frozen stages and norm_eval
        return self

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return tuple(self.features(x))


def config_path(name: str) -> str:
    """The path of one of our mmdet configs (`detection/configs/mmdet/<name>.py`)."""
    from pathlib import Path

    path = Path(__file__).parent / 'configs' / 'mmdet' / (name if name.endswith('.py') else name + '.py')
    if not path.is_file():
        choices = sorted(p.stem for p in path.parent.glob('*.py') if not p.stem.startswith('_'))
        raise FileNotFoundError(f"no mmdet config '{name}'; choose from {', '.join(choices)}")
    return str(path)
