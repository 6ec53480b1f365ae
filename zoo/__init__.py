"""A zoo of vision backbones for timm.

`import zoo` registers every zoo model with timm; then `timm.create_model(name, pretrained=...)`.
"""
from zoo import models  # noqa: F401  (registers the models with timm)
from zoo.errors import InputError, WeightsError, ZooError
from zoo.models import (FAMILIES, catalogue, create_model, families, family_of, is_timm_member, is_zoo_model,
                        zoo_models)

__version__ = '0.1.0'

__all__ = ['InputError', 'WeightsError', 'ZooError', 'FAMILIES', 'catalogue', 'create_model', 'families', 'family_of',
           'is_timm_member', 'is_zoo_model', 'zoo_models', '__version__']
