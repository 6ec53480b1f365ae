"""A zoo of vision backbones for timm.

`import zoo` registers every zoo model with timm; then `timm.create_model(name, pretrained=...)`.
"""
from zoo import models  # noqa: F401  (registers the models with timm)
from zoo.errors import InputError, WeightsError, ZooError
from zoo.models import (FAMILIES, catalogue, create_model, families, family_of, is_timm_member, is_zoo_model,
                        zoo_models)

try:  # the installed distribution's version (pyproject.toml), one source of truth
    from importlib.metadata import PackageNotFoundError, version as _version
    __version__ = _version('vision-zoo')
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = '0.0.0+unknown'

__all__ = ['InputError', 'WeightsError', 'ZooError', 'FAMILIES', 'catalogue', 'create_model', 'families', 'family_of',
           'is_timm_member', 'is_zoo_model', 'zoo_models', '__version__']
