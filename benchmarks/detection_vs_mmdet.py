"""Mask R-CNN + EMOv2-1M + FPN at 800x1333 on CPU: our torchvision engine vs the same detector in mmdet.

Needs the mmdet extra (`make mmdet`). Both detectors use the mmdet 1x settings (RoIAlign aligned,
sampling 0, 1000 RPN proposals in training, 100 detections) and the same EMOv2-1M feature extractor
(`ZooBackbone` is `TimmFPNBackbone` without its FPN), random weights; a train step is forward, backward
and an AdamW step on one 800x1333 image with 8 boxes and masks; inference is one image.

Then our overhead over plain torchvision: torchvision's own `maskrcnn_resnet50_fpn` vs our
`build_detector('mask_rcnn', 'resnet50', preset='torchvision')` (timm's ResNet-50 through
`TimmFPNBackbone`), inference time split into backbone / FPN / RPN + heads.

    python benchmarks/detection_vs_mmdet.py --threads 2 --iters 3
"""
import argparse
import platform
import statistics

import torch

from zoo.bench import _time_calls

H, W = 800, 1333


def _targets(n: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * torch.tensor([W - 300, H - 300])
    wh = 40 + torch.rand(n, 2, generator=g) * 250
    boxes = torch.cat([xy, xy + wh], 1)
    masks = torch.zeros(n, H, W, dtype=torch.uint8)
    for k, (x0, y0, x1, y1) in enumerate(boxes.round().int().tolist()):
        masks[k, y0:y1, x0:x1] = 1
    labels = torch.randint(1, 81, (n,), generator=g)
    return boxes, labels, masks


def ours(iters: int):
    from detection.registry import build_detector

    torch.manual_seed(0)
    model = build_detector('mask_rcnn', 'emov2_1m', num_classes=80, preset='mmdet', min_size=H, max_size=W,
                           frozen_stages=1, norm_eval=True, backbone_kwargs=dict(window_size=10))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    image = torch.rand(3, H, W)
    boxes, labels, masks = _targets()
    target = dict(boxes=boxes, labels=labels, masks=masks)

    def step():
        model.train()
        loss = sum(model([image], [target]).values())
        opt.zero_grad()
        loss.backward()
        opt.step()

    def infer():
        model.eval()
        with torch.inference_mode():
            model([image])

    return statistics.median(_time_calls(step, 1, iters)), statistics.median(_time_calls(infer, 2, iters))


def mmdet(iters: int):
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.structures import InstanceData
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmdet.utils import register_all_modules

    from detection.mmdet import config_path

    register_all_modules()
    torch.manual_seed(0)
    cfg = Config.fromfile(config_path('mask_rcnn_emov2_1m_fpn_1x_coco'))
    cfg.model.backbone.pretrained = False
    model = MODELS.build(cfg.model)
    model.init_weights()
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    boxes, labels, masks = _targets()
    sample = DetDataSample(metainfo=dict(img_shape=(H, W), ori_shape=(H, W), pad_shape=(H, W), scale_factor=(1.0, 1.0),
                                         batch_input_shape=(H, W), flip=False))
    sample.gt_instances = InstanceData(bboxes=boxes, labels=labels - 1, masks=BitmapMasks(masks.numpy(), H, W))
    data = dict(inputs=[(torch.rand(3, H, W) * 255).to(torch.uint8)], data_samples=[sample])

    def step():
        model.train()
        model.train_step(data, optim)

    def infer():
        model.eval()
        with torch.inference_mode():
            model.test_step(data)

    return statistics.median(_time_calls(step, 1, iters)), statistics.median(_time_calls(infer, 2, iters))


def breakdown(model, iters: int):
    """(backbone, FPN, RPN + heads, total) inference seconds of a torchvision-layout Mask R-CNN."""
    from collections import OrderedDict

    model.eval()
    image = torch.rand(3, H, W)
    with torch.inference_mode():
        batch = model.transform([image])[0].tensors
        body = model.backbone.body
        feats = body(batch)
        feats = feats if isinstance(feats, dict) else OrderedDict((str(i), f) for i, f in enumerate(feats))
        t_total = statistics.median(_time_calls(lambda: model([image]), 2, iters))
        t_body = statistics.median(_time_calls(lambda: body(batch), 2, iters))
        t_fpn = statistics.median(_time_calls(lambda: model.backbone.fpn(feats), 2, iters))
    return t_body, t_fpn, t_total - t_body - t_fpn, t_total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--iters', type=int, default=3)
    ap.add_argument('--skip-mmdet', action='store_true')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f'torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}, '
          f'median of {args.iters}')

    print('\nMask R-CNN + EMOv2-1M + FPN, 800x1333, batch 1 (seconds)')
    print('| engine | train step | inference |\n|---|---:|---:|')
    o_train, o_inf = ours(args.iters)
    print(f'| ours (torchvision) | {o_train:.2f} | {o_inf:.2f} |')
    if not args.skip_mmdet:
        m_train, m_inf = mmdet(args.iters)
        print(f'| mmdet 3.3 | {m_train:.2f} | {m_inf:.2f} |')
        print(f'| mmdet / ours (speed-up) | {m_train / o_train:.2f}x | {m_inf / o_inf:.2f}x |')

    from torchvision.models.detection import maskrcnn_resnet50_fpn

    from detection.registry import build_detector
    torch.manual_seed(0)
    tv = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91, min_size=H, max_size=W)
    zo = build_detector('mask_rcnn', 'resnet50', num_classes=90, preset='torchvision', min_size=H, max_size=W,
                        frozen_stages=1, norm_eval=True)
    print('\nMask R-CNN ResNet-50 FPN inference, 800x1333 (seconds): torchvision vs ours (timm ResNet-50)')
    print('| | backbone | FPN | RPN + heads | total |\n|---|---:|---:|---:|---:|')
    rows = {}
    for name, model in (('torchvision', tv), ('ours', zo)):
        rows[name] = breakdown(model, args.iters)
        print(f'| {name} | ' + ' | '.join(f'{t:.2f}' for t in rows[name]) + ' |')
    print('| ours / torchvision | ' + ' | '.join(f'{o / t:.2f}' for o, t in zip(rows['ours'], rows['torchvision'])) + ' |')


if __name__ == '__main__':
    main()
