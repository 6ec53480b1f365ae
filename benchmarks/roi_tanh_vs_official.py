"""RoI Tanh warps and RTNet-50: ours vs the official code, on equal inputs and weights.

    python benchmarks/roi_tanh_vs_official.py --official /tmp/official/roi_tanh [--device cuda] [--json out.json]

`--official` is a folder holding the official sources: `ibug/roi_tanh_warping/` (hhj1897/roi_tanh_warping
@5d953d3c) and `ibug/face_parsing/rtnet/rtnet.py` (hhj1897/face_parsing @e5b7de7b), e.g. made with
    git -C roi_tanh_warping archive HEAD ibug | tar x -C DIR
    git -C face_parsing archive HEAD ibug/face_parsing/rtnet | tar x -C DIR
(OpenCV is not needed: the official `rtnet.py` is loaded on its own and composed with its FCN head as
`SegmentationModel` does.)

Measured (median of `--iters` timed calls after `--warmup`; the warps in fp32 only):
  * warps: polar (keep_aspect_ratio), Cartesian, and their restores of `--faces` faces of `--images`
    3 x S x S images (default 1 image with 32 faces, S = 512) to 512 x 512 maps. Ours warps all faces
    of an image with one grid_sample (`image_index`); the official API needs one image per face
    (`image.expand(...)`). Also the max |ours - official| of each output;
  * RTNet-50 + FCN (11 classes) forward at `--model-size` (513), each of `--batch-size` (1): the max
    relative difference of ours' logits (NCHW, channels_last, and in bf16) to the official fp32 ones on the
    same weights; then the official model in fp32 and ours in each `--precision` (fp32, bf16 autocast;
    default both), each in NCHW and channels_last, and ours / official in the best layout of each
    (`common.py`: images/s from the median call).
"""
import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import segmentation  # noqa: E402,F401
from segmentation import roi_tanh as ours  # noqa: E402
from zoo.testing import relative_error  # noqa: E402

import common  # noqa: E402  (benchmarks/common.py)


def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def _time(fn, device, warmup, iters):
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _load_official(folder: Path):
    sys.path.insert(0, str(folder))
    import ibug.roi_tanh_warping.pytorch_impl as warps  # noqa: E402
    spec = importlib.util.spec_from_file_location('official_rtnet', folder / 'ibug/face_parsing/rtnet/rtnet.py')
    rtnet = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rtnet)
    return warps, rtnet


class OfficialSegmentationModel(nn.Module):
    """`SegmentationModel('rtnet50', 'fcn', 11)` of the official parser.py, composed here (no OpenCV)."""

    def __init__(self, rtnet_module, num_classes=11):
        super().__init__()
        self.encoder = rtnet_module.rtnet50()
        self.decoder = rtnet_module.FCN(2048, num_classes)

    def forward(self, x, rois):
        return F.interpolate(self.decoder(self.encoder(x, rois)['c4']), size=x.shape[-2:], mode='bilinear',
                             align_corners=False)


def bench_warps(args, device, official):
    g = torch.Generator().manual_seed(0)
    s, n, b = args.image_size, args.faces, args.images
    images = torch.rand(b, 3, s, s, generator=g).to(device)
    centres = torch.rand(n, 2, generator=g) * s * 0.6 + s * 0.2
    sizes = torch.rand(n, 2, generator=g) * s * 0.2 + s * 0.1
    rois = torch.cat([centres - sizes / 2, centres + sizes / 2], 1).to(device)
    offsets = (torch.rand(n, generator=g) - 0.5).to(device)
    index = (torch.arange(n) % b).to(device)
    per_roi = images[index] if b > 1 else images.expand(n, -1, -1, -1)
    t = args.target
    rows = []
    cases = [
        ('polar warp (kar)', lambda: ours.roi_tanh_polar_warp(images, rois, t, t, offsets, keep_aspect_ratio=True,
                                                              image_index=index),
         lambda: official.roi_tanh_polar_warp(per_roi, rois, t, t, offsets, keep_aspect_ratio=True)),
        ('cartesian warp', lambda: ours.roi_tanh_warp(images, rois, t, t, offsets, image_index=index),
         lambda: official.roi_tanh_warp(per_roi, rois, t, t, offsets)),
    ]
    with torch.no_grad():
        warped_polar = ours.roi_tanh_polar_warp(images, rois, t, t, offsets, keep_aspect_ratio=True, image_index=index)
        warped_cart = ours.roi_tanh_warp(images, rois, t, t, offsets, image_index=index)
    cases += [
        ('polar restore (kar)',
         lambda: ours.roi_tanh_polar_restore(warped_polar, rois, s, s, offsets, keep_aspect_ratio=True),
         lambda: official.roi_tanh_polar_restore(warped_polar, rois, s, s, offsets, keep_aspect_ratio=True)),
        ('cartesian restore', lambda: ours.roi_tanh_restore(warped_cart, rois, s, s, offsets),
         lambda: official.roi_tanh_restore(warped_cart, rois, s, s, offsets)),
    ]
    with torch.no_grad():
        for name, f_ours, f_official in cases:
            diff = (f_ours() - f_official()).abs().max().item()
            rows.append(dict(case=name, ours_ms=_time(f_ours, device, args.warmup, args.iters),
                             official_ms=_time(f_official, device, args.warmup, args.iters), max_abs_diff=diff))
    rows += _bench_opencv(args, images, rois, offsets, index, device)
    return rows


def _bench_opencv(args, images, rois, offsets, index, device):
    """The official parser's path: OpenCV `remap` face by face on the uint8 HxWx3 image
    (`ibug/roi_tanh_warping/reference_impl.py`), vs ours on the float image, all faces at once."""
    try:
        import numpy as np
        import ibug.roi_tanh_warping.reference_impl as ref
    except ImportError as e:  # OpenCV missing
        print(f'(no OpenCV comparison: {e})')
        return []
    t, s = args.target, args.image_size
    frames = [(img.permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8) for img in images]
    rois_np, offsets_np, index_np = rois.cpu().numpy(), offsets.cpu().numpy(), index.cpu().numpy()

    def opencv():
        return [ref.roi_tanh_polar_warp(frames[i], r, t, t, float(a), keep_aspect_ratio=True)
                for r, a, i in zip(rois_np, offsets_np, index_np)]

    def ours_warp():
        return ours.roi_tanh_polar_warp(images, rois, t, t, offsets, keep_aspect_ratio=True, image_index=index)

    with torch.no_grad():
        a = torch.from_numpy(np.stack(opencv())).float()
        b = (ours_warp().permute(0, 2, 3, 1).cpu() * 255)
        diff = (a - b).abs()[:, 2:-2, 1:-2].max().item()  # the official grid's seam rows / outer column aside
        return [dict(case='polar warp vs OpenCV', ours_ms=_time(ours_warp, device, args.warmup, args.iters),
                     official_ms=_time(opencv, torch.device('cpu'), args.warmup, args.iters),
                     max_abs_diff=diff / 255)]


def bench_rtnet(args, device, rtnet_module):
    """Max relative difference to the official logits (ours NCHW, channels_last and in each low precision),
    then the official model in fp32 and ours in each `--precision`, each timed in NCHW and channels_last."""
    import zoo
    torch.manual_seed(0)
    model = zoo.create_model('rtnet50_fcn11').eval().to(device)  # the zoo's registry: not a timm classifier
    with torch.no_grad():  # non-trivial residual branches (the init zeroes the last BN of each block)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.0)
    official = OfficialSegmentationModel(rtnet_module).eval().to(device)
    official.load_state_dict(model.state_dict())
    s = args.model_size

    def inputs(batch):
        x = torch.randn(batch, 3, s, s, device=device)
        return x, torch.tensor([[40.0, 30.0, 300.0, 380.0]], device=device).expand(batch, 4)

    x, rois = inputs(2)
    errors = {}
    with torch.no_grad():
        ref = official(x, rois)
        errors['ours nchw'] = relative_error(model(x, rois), ref)
        common.to_layout(model, 'channels_last')
        errors['ours channels_last'] = relative_error(model(common.to_layout(x, 'channels_last'), rois), ref)
        common.to_layout(model, 'nchw')
    errors.update({f'ours {p} (autocast)': e
                   for p, e in common.precision_errors(model, (x, rois), ref, args.precision).items()})
    print('rtnet50_fcn11: max relative difference to the official fp32 logits: '
          + ', '.join(f'{k} {v:.2e}' for k, v in errors.items()))
    results = common.compare(
        [common.Contender('official', official, official=True), common.Contender('ours', model),
         common.fused_contender(model, (x, rois), ref, args.precision)], inputs, args,
        unit='img/s')
    results.print_ratios(f'rtnet50_fcn11 + FCN at {s} x {s}')
    return dict(rel_diff_vs_official=errors, unit=results.unit,
                speeds=[dict(series=k[0], batch=k[1], layout=k[2], speed=v) for k, v in results.speeds.items()],
                failures=[dict(series=k[0], batch=k[1], layout=k[2], error=v) for k, v in results.failures.items()],
                best=[dict(series=name, batch=bs, speed=results.best(name, bs)[0], layout=results.best(name, bs)[1],
                           ratio_vs_official_fp32=results.ratio(name, bs))
                      for name in results.series for bs in results.batch_sizes])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--official', required=True, type=Path)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--faces', type=int, default=32)
    p.add_argument('--images', type=int, default=1, help='faces are spread over this many images')
    p.add_argument('--image-size', type=int, default=512)
    p.add_argument('--target', type=int, default=512, help='warped map side')
    p.add_argument('--model-size', type=int, default=513)
    p.add_argument('--skip-model', action='store_true')
    p.add_argument('--json', type=Path)
    common.add_arguments(p, batch_size=(1,), threads=None, warmup=3, iters=10)
    args = p.parse_args(argv)
    common.setup(p, args)
    device = torch.device(args.device)
    if device.type == 'cuda':  # compare in true float32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    official_warps, official_rtnet = _load_official(args.official.resolve())
    result = dict(device=str(device) if device.type == 'cpu' else torch.cuda.get_device_name(device),
                  threads=torch.get_num_threads(), args={k: str(v) for k, v in vars(args).items()},
                  warps=bench_warps(args, device, official_warps))
    for r in result['warps']:
        print(f"{r['case']:<22} ours {r['ours_ms']:9.2f} ms  official {r['official_ms']:9.2f} ms  "
              f"max|diff| {r['max_abs_diff']:.2e}")
    if not args.skip_model:
        result['model'] = bench_rtnet(args, device, official_rtnet)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == '__main__':
    main()
