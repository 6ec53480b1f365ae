"""Face parsing: RoI Tanh-polar warps and RTNet.

`import segmentation` registers the face-parsing models (`rtnet50_fcn11`, `rtnet50_fcn14`, `rtnet101_fcn14`,
`resnet50_fcn14`, `resnet50_deeplabv3plus14`) with the zoo's own registry, not timm's (they are not
classifiers): build them with `zoo.models.create_model`. It imports `zoo`, never the reverse.
"""
from typing import List

import zoo  # noqa: F401  (the zoo's models and helpers)
from segmentation import rtnet  # noqa: F401  (registers the face-parsing models with the zoo)
from segmentation.roi_tanh import (  # noqa: F401
    get_restore_func, get_warp_func, make_square_rois, roi_tanh_circular_restore, roi_tanh_circular_warp,
    roi_tanh_polar_restore, roi_tanh_polar_to_roi_tanh, roi_tanh_polar_warp, roi_tanh_restore,
    roi_tanh_to_roi_tanh_polar, roi_tanh_warp)


def segmentation_models(pattern: str = '*') -> List[str]:
    """Names of the models this package registers, matching a glob pattern."""
    from zoo.models import model_entrypoint, project_models
    return [m for m in project_models(pattern) if model_entrypoint(m).__module__.startswith(__name__ + '.')]
