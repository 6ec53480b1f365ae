"""One registry of detector kinds: `build_detector(name, backbone, num_classes, ...)` for every detector.

A provider module registers its builders with `@register_detector(name, ..., kind='coco' | 'text')`;
a builder is called as `builder(name, backbone, **kwargs)` and returns an `nn.Module` (it sets
`detector_kind` and `num_object_classes` on it). The providers are listed by module name in `PROVIDERS`
and imported on the first lookup (as mmengine's `Registry(locations=[...])` does), so the registry imports
none of them and they import only the registry: `detection.models` (the torchvision kinds) and
`detection.text.mayor` (the text detectors) never know each other.

    build_detector('mask_rcnn', 'emov2_1m', num_classes=80)   # a COCO detector
    build_detector('mayor', 'resnet50')                       # a text detector (one class)
    list_detectors('text')                                    # ('mayor', 'text_mask_rcnn')

The names are the kinds a checkpoint stores in `config['model']`; they are never renamed.
"""
import importlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

from zoo.errors import InputError

__all__ = ['PROVIDERS', 'FAMILIES', 'register_detector', 'build_detector', 'list_detectors']

# modules that register detectors, imported (in this order) the first time the registry is read
PROVIDERS = ('detection.models', 'detection.text.mayor')
# the families a detector belongs to: COCO boxes / masks, or one-class text polygons
FAMILIES = ('coco', 'text')


@dataclass(frozen=True)
class _Entry:
    name: str
    kind: str
    builder: Callable[..., Any]


_REGISTRY: Dict[str, _Entry] = {}


def register_detector(*names: str, kind: str = 'coco') -> Callable[[Callable], Callable]:
    """Decorator: `builder(name, backbone, **kwargs)` builds the detectors `names` of family `kind`."""
    if kind not in FAMILIES:
        raise ValueError(f"detector family must be one of {FAMILIES}, got '{kind}'")

    def add(builder: Callable) -> Callable:
        for name in names:
            known = _REGISTRY.get(name)
            if known is not None and known.builder is not builder:
                raise ValueError(f"detector '{name}' is already registered (by {known.builder.__module__})")
            _REGISTRY[name] = _Entry(name, kind, builder)
        return builder
    return add


def _load_providers() -> None:
    for module in PROVIDERS:
        importlib.import_module(module)


def list_detectors(kind: Optional[str] = None) -> Tuple[str, ...]:
    """The registered detector names (of family `kind`: 'coco' or 'text'): family by family in `FAMILIES`
    order, each in registration order (so whichever provider was imported first, the order is the same)."""
    _load_providers()
    entries = sorted(_REGISTRY.values(), key=lambda e: FAMILIES.index(e.kind))  # stable: keeps registration order
    return tuple(e.name for e in entries if kind is None or e.kind == kind)


def build_detector(name: str, backbone: str = 'emov2_1m', num_classes: Optional[int] = None, **kwargs):
    """The detector `name` on the zoo / timm `backbone`; `num_classes` (object classes, no background)
    defaults to the builder's (80 for the COCO kinds, 1 for text). The other arguments go to the builder:
    `detection.models.build_torchvision_detector` for 'mask_rcnn', 'faster_rcnn', 'retinanet', 'fcos',
    'ssdlite'; `detection.text.mayor.build_text_detector` for 'mayor', 'text_mask_rcnn'."""
    _load_providers()
    entry = _REGISTRY.get(name)
    if entry is None:
        raise InputError(f"unknown detector '{name}'; choose from {', '.join(list_detectors())}")
    if num_classes is not None:
        kwargs['num_classes'] = num_classes
    return entry.builder(name, backbone, **kwargs)
