"""The zoo's model families. Importing this package registers every family with timm.

`FAMILIES` maps a family to its zoo module and to the timm models that belong to it without being
re-implemented here (e.g. Inception-ResNet-v2 and Inception-v4 are timm's own). The heads add their
own model families through the `zoo.families` entry points (name = module); `families()` holds both.

Models that are not classifiers of their input (e.g. the face parsers of `segmentation`: dense per-pixel
logits from a warped face and its box) stay out of timm's registry, whose contract (and test suite) is
that of a classifier; they register here with `register_project_model` instead. `create_model(name,
pretrained=..., **kwargs)` builds either kind (timm's for every other name), and `catalogue`,
`family_of`, `list_pretrained`, `get_pretrained_cfg` and `model_entrypoint` cover both registries.
"""
import dataclasses
import fnmatch
import functools
import sys
import warnings
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import timm
import timm.models
import torch
from timm.models import split_model_name_tag
from timm.models._pretrained import DefaultCfg, PretrainedCfg

from zoo.hub import register_family_module

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
    demo: Optional[str] = None  # the family's model in `zoo bench` / `make demo` (default: its smallest)


FAMILIES: Dict[str, Family] = {
    'inception': Family(inception_resnet.__name__, ('inception_resnet_v2', 'inception_v4'),
                        demo='inception_resnet_v1_facenet'),
    'emov2': Family(emov2.__name__),
    'p3d': Family(p3d.__name__),
    'raftmlp': Family(raftmlp.__name__),
    'ninformer': Family(ninformer.__name__),
    'lego': Family(lego.__name__),
    'strip_mlp': Family(strip_mlp.__name__),
    'spartan': Family(spartan.__name__),
    # one entry per family module
}
for _spec in FAMILIES.values():  # their models load checkpoint_path= through their checkpoint_filter_fn
    register_family_module(_spec.module)


# the zoo's own registry: models that are not classifiers of their input, by name
_project_entrypoints: Dict[str, Callable[..., Any]] = {}
_project_default_cfgs: Dict[str, DefaultCfg] = {}


def register_project_model(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Register a model entrypoint (and its module's `default_cfgs` entry) with the zoo, not with timm.

    For models whose output is not a classification of their input (timm's contract); build them with
    `create_model`. The entrypoint takes `pretrained` and passes `pretrained_cfg` on to
    `zoo.hub.build_model` (so weights load through timm's `build_model_with_cfg`).
    """
    name = fn.__name__
    if name in timm.list_models(name):
        raise ValueError(f"'{name}' is a timm model already: a project model needs its own name")
    _project_entrypoints[name] = fn
    cfg = getattr(sys.modules[fn.__module__], 'default_cfgs', {}).get(name)
    if cfg is not None:
        _project_default_cfgs[name] = cfg
    return fn


def project_models(pattern: str = '*') -> List[str]:
    """Names of the models in the zoo's own registry (not timm's), matching a glob pattern."""
    _head_families()  # the heads register their models when loaded
    return sorted(n for n in _project_entrypoints if fnmatch.fnmatch(n, pattern))


def _project_base(name: str) -> str:
    """The model name without its tag; a name timm does not know loads the heads' families first, so their
    models (e.g. the face parsers) are found after a plain `import zoo`, as `zoo list` finds them."""
    base = split_model_name_tag(name)[0]
    if base not in _project_entrypoints and not timm.is_model(base):
        _head_families()
    return base


def is_model(name: str) -> bool:
    """A model either registry knows (timm's or the zoo's own), with or without its tag."""
    base = _project_base(name)
    return base in _project_entrypoints or timm.is_model(base)


def model_entrypoint(name: str) -> Callable[..., Any]:
    base = _project_base(name)
    if base in _project_entrypoints:
        return _project_entrypoints[base]
    return timm.models.model_entrypoint(base)


def get_pretrained_cfg(name: str) -> Optional[PretrainedCfg]:
    """The pretrained cfg of `model` or `model.tag` (the default tag without one), from either registry."""
    base, tag = _project_base(name), split_model_name_tag(name)[1]
    if base not in _project_entrypoints:
        return timm.models.get_pretrained_cfg(name)
    default_cfg = _project_default_cfgs.get(base)
    if default_cfg is None or (tag and tag not in default_cfg.cfgs):
        return None
    tag = tag or default_cfg.tags[0]
    return dataclasses.replace(default_cfg.cfgs[tag], architecture=base, tag=tag or None)


def list_pretrained(pattern: str = '*') -> List[str]:
    """`model.tag` names (timm's `list_pretrained`) of both registries, matching a glob pattern."""
    _head_families()  # the heads register their models when loaded
    names = [f'{base}.{tag}' if tag else base
             for base, default_cfg in _project_default_cfgs.items() for tag in default_cfg.tags]
    return timm.list_pretrained(pattern) + sorted(n for n in names if fnmatch.fnmatch(n, pattern))


def create_model(
        model_name: str,
        pretrained: bool = False,
        pretrained_cfg: Optional[Union[str, Dict[str, Any], PretrainedCfg]] = None,
        pretrained_cfg_overlay: Optional[Dict[str, Any]] = None,
        checkpoint_path: Optional[str] = None,
        **kwargs,
) -> torch.nn.Module:
    """`timm.create_model` over both registries: the zoo's own models by name (and tag), any other through timm."""
    base, tag = _project_base(model_name), split_model_name_tag(model_name)[1]
    if base not in _project_entrypoints:
        return timm.create_model(
            model_name, pretrained=pretrained, pretrained_cfg=pretrained_cfg,
            pretrained_cfg_overlay=pretrained_cfg_overlay, checkpoint_path=checkpoint_path, **kwargs)
    if pretrained_cfg is None or isinstance(pretrained_cfg, str):  # a tag, as timm takes it
        tag = pretrained_cfg or tag
        pretrained_cfg = get_pretrained_cfg(f'{base}.{tag}' if tag else base)
        if pretrained_cfg is None:
            raise RuntimeError(f"Unknown pretrained tag '{tag}' for model '{base}'; "
                               f"choose from {list_pretrained(base + '.*')}")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}  # as timm: None means the default
    model = _project_entrypoints[base](
        pretrained=pretrained, pretrained_cfg=pretrained_cfg, pretrained_cfg_overlay=pretrained_cfg_overlay,
        **kwargs)
    if checkpoint_path:
        from zoo.hub import load_checkpoint  # the family filter and clear errors, as for timm's models
        load_checkpoint(model, checkpoint_path)
    return model


def _module_of(name: str) -> Optional[str]:
    try:
        return model_entrypoint(name).__module__
    except (RuntimeError, KeyError):  # timm raises either for an unknown name
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
        register_family_module(ep.value)
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
    names = [m for m in timm.list_models() + project_models() if _module_of(m) in modules]
    for spec in specs:
        names += [m for m in spec.timm_members if m not in names]
    return [n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns)]


def unknown_model_error(name: str):
    """An `InputError` for a model name no registry knows, with the closest names of the catalogue."""
    import difflib
    from zoo.errors import InputError

    close = difflib.get_close_matches(name.split('.')[0], catalogue(), n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ''
    return InputError(f"unknown model '{name}': {hint}`zoo list` shows the catalogue.")
