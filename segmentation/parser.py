"""Face parsing of whole images: caller-given face boxes -> Tanh-polar warp -> model -> restore -> labels.

The pipeline of the official `FaceParser` (hhj1897/face_parsing, `ibug/face_parsing/parser.py`, MIT):
  1. every face box (x1, y1, x2, y2), used as given (no enlargement, no squaring), is warped with
     `roi_tanh_polar_warp(..., keep_aspect_ratio=True)` to the model's input size (513 x 513);
  2. the warped faces are scaled to [0, 1] and normalised with mean / std (0.5 / 0.5: [-1, 1]) in the
     model's channel order (BGR for the official weights, which were trained on OpenCV images);
  3. the model gets the warped faces and the source-image boxes; its logits (at the input size) go
     through a softmax;
  4. the probabilities are restored to the image with `roi_tanh_polar_restore(..., keep_aspect_ratio=True)`.
     Background: the official code restores 1 - p(background) so that pixels the warp never saw (zero
     padding) come back as background with probability 1 (`background='official'`); `'plain'` restores
     the probabilities as they are, so the outermost ring's labels, fading into the zero padding, win the
     argmax all the way out (faces spill over the image).
Then argmax gives one label map per face, and the faces are merged: a pixel takes the label of the face
with the highest foreground probability there (the official parser returns the per-face maps only).

`precision='bf16'` runs step 3's model under `zoo.precision.autocast` (bfloat16 autocast: on CPU, oneDNN's
AMX / AVX-512 bf16 kernels); the warp, the softmax, the restore and everything returned stay float32.

Differences from the official code: the forward warp is our batched torch warp (the official one uses
the OpenCV reference implementation, one face at a time; they differ by interpolation details at the
pixel level); all faces of an image are warped with one `grid_sample` call, without copying the image.
"""
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from segmentation.roi_tanh import roi_tanh_polar_restore, roi_tanh_polar_warp
from zoo.precision import autocast, check_precision

__all__ = ['FaceParser', 'ParseResult', 'colour_palette', 'overlay_labels']


@dataclass
class ParseResult:
    """labels: [N, H, W] int64, one map per face; merged: [H, W] int64 (all faces); face_index: [H, W]
    int64, the face each merged pixel came from (-1 for background); probs: [N, C, H, W] if kept."""
    labels: torch.Tensor
    merged: torch.Tensor
    face_index: torch.Tensor
    probs: Optional[torch.Tensor] = None


def colour_palette(num_classes: int) -> np.ndarray:
    """[num_classes, 3] uint8 RGB colours; class 0 (background) is black."""
    base = np.array([
        (0, 0, 0), (230, 190, 140), (120, 70, 30), (160, 90, 40), (40, 200, 60), (20, 140, 40),
        (170, 60, 210), (230, 60, 90), (250, 170, 20), (150, 20, 60), (90, 50, 20), (60, 140, 230),
        (30, 90, 200), (240, 240, 60)], dtype=np.uint8)
    if num_classes <= len(base):
        return base[:num_classes]
    rng = np.random.default_rng(num_classes)
    extra = rng.integers(40, 256, size=(num_classes - len(base), 3), dtype=np.uint8)
    return np.concatenate([base, extra])


def overlay_labels(image_rgb: np.ndarray, labels: np.ndarray, alpha: float = 0.5,
                   num_classes: Optional[int] = None) -> np.ndarray:
    """Blend a colour per label over an RGB uint8 image (background left as it is)."""
    num_classes = num_classes or int(labels.max()) + 1
    colours = colour_palette(max(num_classes, int(labels.max()) + 1))[labels]
    fg = (labels > 0)[..., None]
    out = np.where(fg, (1 - alpha) * image_rgb + alpha * colours, image_rgb)
    return out.round().clip(0, 255).astype(np.uint8)


def _to_tensor(image) -> torch.Tensor:
    """An image -> [1, 3, H, W] float32 in [0, 1]. Arrays (and PIL images) are HWC, tensors CHW;
    uint8 is scaled by 1/255, floats are taken as [0, 1]; one channel is repeated, a 4th dropped."""
    if torch.is_tensor(image):
        if image.ndim != 3:
            raise ValueError(f'expected a CHW tensor, got shape {tuple(image.shape)}')
    else:
        image = np.asarray(image)
        if image.ndim == 2:
            image = image[..., None]
        if image.ndim != 3:
            raise ValueError(f'expected an HWC array, got shape {image.shape}')
        image = torch.from_numpy(np.array(image)).permute(2, 0, 1)  # a writable copy
    image = image[:3]
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    image = image.float() / 255.0 if not image.is_floating_point() else image.float()
    return image.unsqueeze(0)


class FaceParser:
    """Parse the faces of an image, given their boxes.

    Args:
        model: a face-parsing model taking (x, rois), e.g. `zoo.models.create_model('rtnet50_fcn11.ibugmask',
            pretrained=True)` (import `segmentation` first).
        input_size: (height, width) of the warped faces (513 x 513 for the official weights).
        mean, std: normalisation after scaling to [0, 1], in the model's channel order.
        model_channel_order: 'bgr' (official weights) or 'rgb'.
        background: 'official' or 'plain' (see the module docstring).
        device: where the model runs (the model is moved there).
        precision: 'fp32' (default) or 'bf16': the model's forward under bfloat16 autocast (`zoo.precision`);
            the weights keep their dtype and the results are float32 either way.
    """

    def __init__(self, model: nn.Module, input_size: Tuple[int, int] = (513, 513),
                 mean: Union[float, Sequence[float]] = 0.5, std: Union[float, Sequence[float]] = 0.5,
                 model_channel_order: str = 'bgr', background: str = 'official',
                 device: Union[str, torch.device] = 'cpu', keep_aspect_ratio: bool = True,
                 precision: str = 'fp32'):
        self.precision = check_precision(precision)
        if model_channel_order.lower() not in ('bgr', 'rgb'):
            raise ValueError("model_channel_order must be 'bgr' or 'rgb'")
        if background not in ('official', 'plain'):
            raise ValueError("background must be 'official' or 'plain'")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.input_size = tuple(input_size)
        self.mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1, 1, 1).expand(3, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).reshape(-1, 1, 1).expand(3, 1, 1)
        self.model_channel_order = model_channel_order.lower()
        self.background = background
        self.keep_aspect_ratio = keep_aspect_ratio

    @classmethod
    def from_name(cls, name: str = 'rtnet50_fcn11', pretrained: bool = True, checkpoint: Optional[str] = None,
                  device: Union[str, torch.device] = 'cpu', precision: str = 'fp32', **kwargs) -> 'FaceParser':
        """Build the model by name (with the official tag's weights, or a local official file); `precision`:
        'fp32' or 'bf16' (see the class)."""
        check_precision(precision)  # before the weights are fetched
        import segmentation  # noqa: F401  (registers the models)
        from zoo.models import create_model
        overlay = dict(file=checkpoint) if checkpoint else None
        model = create_model(name, pretrained=pretrained or bool(checkpoint), pretrained_cfg_overlay=overlay)
        cfg = model.pretrained_cfg
        kwargs.setdefault('input_size', tuple(cfg['input_size'][-2:]))
        kwargs.setdefault('mean', cfg['mean'])
        kwargs.setdefault('std', cfg['std'])
        return cls(model, device=device, precision=precision, **kwargs)

    @torch.inference_mode()
    def predict(self, image, boxes, rgb: bool = True, return_probs: bool = False) -> ParseResult:
        """image: HWC uint8 (or float in [0, 1]) array, or CHW tensor, in RGB order if `rgb` else BGR;
        boxes: [N, >=4] (x1, y1, x2, y2, ...) in pixels."""
        img = _to_tensor(image).to(self.device)
        if rgb != (self.model_channel_order == 'rgb'):
            img = img.flip(1)
        height, width = img.shape[-2:]
        rois = torch.as_tensor(np.asarray(boxes, dtype=np.float32) if not torch.is_tensor(boxes) else boxes,
                               dtype=torch.float32, device=self.device)
        n = rois.shape[0] if rois.numel() else 0
        if n == 0:
            empty = torch.zeros(height, width, dtype=torch.long)
            return ParseResult(torch.zeros(0, height, width, dtype=torch.long), empty, empty - 1)
        rois = rois.reshape(n, -1)[:, :4]
        warped = roi_tanh_polar_warp(img, rois, self.input_size[1], self.input_size[0],
                                     keep_aspect_ratio=self.keep_aspect_ratio,
                                     image_index=torch.zeros(n, dtype=torch.long, device=self.device))
        x = (warped - self.mean.to(self.device)) / self.std.to(self.device)
        with autocast(self.precision, self.device):
            logits = self.model(x, rois)
        logits = logits.float()  # bf16 logits (autocast) -> float32 before the resize, softmax and restore
        if logits.shape[-2:] != warped.shape[-2:]:
            logits = F.interpolate(logits, size=warped.shape[-2:], mode='bilinear', align_corners=False)
        probs = logits.softmax(dim=1)
        if self.background == 'official':
            probs[:, 0] = 1.0 - probs[:, 0]
        probs = roi_tanh_polar_restore(probs, rois, width, height, keep_aspect_ratio=self.keep_aspect_ratio)
        if self.background == 'official':
            probs[:, 0] = 1.0 - probs[:, 0]
        labels = probs.argmax(dim=1)
        fg_conf = torch.where(labels > 0, 1.0 - probs[:, 0], torch.zeros_like(probs[:, 0]))
        best_conf, best_face = fg_conf.max(dim=0)
        merged = labels.gather(0, best_face.unsqueeze(0)).squeeze(0)
        merged = torch.where(best_conf > 0, merged, torch.zeros_like(merged))
        face_index = torch.where(merged > 0, best_face, torch.full_like(best_face, -1))
        return ParseResult(labels.cpu(), merged.cpu(), face_index.cpu(), probs.cpu() if return_probs else None)
