"""The zoo's model families. Importing this package registers every family with timm.

`FAMILIES` maps a family to its zoo module and to the timm models that belong to it without being
re-implemented here (e.g. Inception-ResNet-v2 and Inception-v4 are timm's own). The heads add their
own model families through the `zoo.families` entry points (name = module); `families()` holds both.
"""
import fnmatch
import functools
import warnings
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Dict, List, Optional, Sequence, Tuple

import timm
from timm.models import model_entrypoint

# one import per family module (importing registers its models with timm)
from zoo.models import inception_resnet
from zoo.models import emov2
from zoo.models import p3d
from zoo.models import spartan
from zoo.models import strip_mlp
from zoo.models import lego
from zoo.models import ninformer
from zoo.models import raftmlp


@dataclass(frozen=True)
class Family:
    module: str
    timm_members: Tuple[str, ...] = field(default_factory=tuple)


FAMILIES: Dict[str, Family] = {
    'inception': Family(inception_resnet.__name__, ('inception_resnet_v2', 'inception_v4')),
    'emov2': Family(emov2.__name__),
    'p3d': Family(p3d.__name__),
    'raftmlp': Family(raftmlp.__name__),
    'ninformer': Family(ninformer.__name__),
    'lego': Family(lego.__name__),
    'strip_mlp': Family(strip_mlp.__name__),
    'spartan': Family(spartan.__name__),
    # one entry per family module
}


def _module_of(name: str) -> Optional[str]:
    try:
        return model_entrypoint(name).__module__
    except RuntimeError:
        return None


def is_zoo_model(name: str) -> bool:
    """True for models this package registers (not timm's own)."""
    return (_module_of(name.split('.')[0]) or '').startswith(__name__ + '.')


def zoo_models(pattern: str = '*') -> List[str]:
    """Names of the models the zoo registers, matching a glob pattern."""
    return [m for m in timm.list_models(pattern) if is_zoo_model(m)]


@functools.lru_cache(maxsize=None)
def _head_families() -> Dict[str, Family]:
    found = {}
    for ep in entry_points(group='zoo.families'):
        try:
            ep.load()  # importing the module registers its models with timm
        except Exception as e:  # a head whose optional dependencies are missing
            warnings.warn(f'model family {ep.name!r} ({ep.value}) left out of the catalogue: {e}')
            continue
        found[ep.name] = Family(ep.value)
    return found


def families() -> Dict[str, Family]:
    """The zoo's families and the heads' (e.g. face parsing from `segmentation`), by name."""
    return {**FAMILIES, **_head_families()}


def family_of(name: str) -> Optional[str]:
    name = name.split('.')[0]
    module = _module_of(name)
    for family, spec in families().items():
        if name in spec.timm_members or module == spec.module:
            return family
    return None


def is_timm_member(name: str) -> bool:
    """True for timm's own models that a zoo family includes (e.g. Inception-v4)."""
    return any(name.split('.')[0] in spec.timm_members for spec in FAMILIES.values())


def catalogue(patterns: Sequence[str] = ('*',)) -> List[str]:
    """The catalogue: the zoo's models, the heads' models and the timm models the families include, by
    glob pattern."""
    specs = families().values()
    modules = {spec.module for spec in specs}
    names = [m for m in timm.list_models() if _module_of(m) in modules]
    for spec in specs:
        names += [m for m in spec.timm_members if m not in names]
    return [n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns)]
