"""`zoo detection train | eval | predict | configs` and `zoo text train | eval | predict | configs`, added
to the `zoo` command through the `zoo.commands` entry point (`register(subparsers)`); `python -m
detection ...` runs the detection verbs, e.g. under `torchrun --nproc_per_node=N -m detection train ...`
(text runs are the same engine: `--model mayor`).

The text verbs differ only where text does: `--model` is a text detector (`mayor`, `text_mask_rcnn`),
`--data` takes `synthetic_text`, eval reports the text protocol's precision / recall / H-mean, predict
draws polygons, and `configs` lists `detection/text/configs/`.
"""
import argparse
import json
import os
import sys
from pathlib import Path
from typing import List, Optional

from zoo.cli import add_debug_flag, fraction, non_negative_int, positive_float, positive_int, run_verb
from zoo.errors import InputError
from zoo.precision import PRECISIONS

IMAGE_SUFFIXES = {'.png', '.jpg', '.jpeg', '.bmp', '.webp', '.tif', '.tiff'}


def _train_config(args) -> dict:
    from detection.config import apply_overrides, load_config

    cfg = load_config(args.config) if args.config else {}
    flags = dict(model=args.model, backbone=args.backbone, data=args.data, epochs=args.epochs, out=args.out,
                 batch_size=args.batch_size, lr=args.lr, workers=args.workers, device=args.device,
                 max_iters=args.max_iters, min_size=args.min_size, max_size=args.max_size,
                 text_protocol=getattr(args, 'protocol', None))
    cfg.update({k: v for k, v in flags.items() if v is not None})
    if args.resume:
        cfg['resume'] = True if args.resume == 'last' else args.resume
    if args.no_progress:
        cfg['progress'] = False
    if args.synthetic_images:  # the validation set follows (a quarter, at least 4), unless set
        synthetic = cfg.setdefault('synthetic', {})
        synthetic['num_train'] = args.synthetic_images
        held_out = 'num_test' if cfg.get('data') == 'synthetic_text' else 'num_val'  # the text benchmark's split
        synthetic.setdefault(held_out, max(4, args.synthetic_images // 4))
    if args.save_optimizer is not None:
        cfg['save_optimizer'] = args.save_optimizer
    return apply_overrides(cfg, args.set or [])


def _cmd_train(args) -> int:
    from detection.engine import train
    result = train(_train_config(args))
    if result['metrics'] and int(os.environ.get('RANK', '0')) == 0:  # under torchrun: rank 0 reports
        print(json.dumps(dict(metrics=result['metrics'], iterations=result['iterations'],
                              checkpoint=result['checkpoint']), indent=1))
    return 0


def _cmd_eval(args) -> int:
    import torch
    from detection.data import CocoDetection, build_transforms
    from detection.checkpoint import load_detector
    from detection.distributed import resolve_device
    from detection.engine import TrainConfig, resolve_data
    from detection.evaluation import evaluate

    model, saved = load_detector(args.checkpoint, use_ema=not args.no_ema)
    cfg = TrainConfig.from_dict({k: v for k, v in saved.items() if k != 'steps'})
    if args.data:
        cfg.data = args.data
    for key in ('val_images', 'val_annotations'):
        if getattr(args, key):
            setattr(cfg, key, getattr(args, key))
    if args.out:
        cfg.out = args.out
    paths = resolve_data(cfg)
    device = resolve_device(args.device)
    dataset = CocoDetection(paths['val_images'], paths['val_annotations'], transforms=build_transforms(False, resize=False))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = evaluate(model.to(device), dataset, device, batch_size=args.batch_size,
                       results_file=out / 'predictions_eval.json', progress=not args.no_progress,
                       text_protocol=getattr(args, 'protocol', None) or cfg.text_protocol, precision=args.precision)
    print(json.dumps(metrics, indent=1))
    return 0


def _images_in(paths: List[str]) -> List[Path]:
    found = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            found.append(p)
        else:
            raise InputError(f'no image or folder at {p}; give image files or folders of images')
    return found


def _cmd_predict(args) -> int:
    import torch
    from PIL import Image
    from torchvision.transforms.v2 import functional as F
    from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

    from detection.checkpoint import load_detector
    from detection.distributed import resolve_device
    from detection.evaluation import predict_images, to_coco_results

    model, saved = load_detector(args.checkpoint, use_ema=not args.no_ema)
    device = resolve_device(args.device)
    model.to(device)
    if getattr(model, 'detector_kind', '') == 'text':
        return _predict_text(model, saved, device, args)
    names = model.class_names or []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for path in _images_in(args.images):
        with Image.open(path) as im:
            img = F.pil_to_tensor(im.convert('RGB'))
        pred = predict_images(model, [F.to_dtype(img, torch.float32, scale=True)], device, args.precision)[0]
        keep = (pred['scores'] >= args.score_thresh) & (pred['labels'] >= 1)
        pred = {k: v[keep].cpu() for k, v in pred.items()}
        canvas = img
        if 'masks' in pred and len(pred['masks']):
            canvas = draw_segmentation_masks(canvas, pred['masks'][:, 0] > 0.5, alpha=0.45)
        labels = [f"{names[l - 1] if 0 < l <= len(names) else l} {s:.2f}"
                  for l, s in zip(pred['labels'].tolist(), pred['scores'].tolist())]
        if len(pred['boxes']):
            canvas = draw_bounding_boxes(canvas, pred['boxes'], labels=labels, colors='yellow', width=2)
        target = out / (path.stem + '_pred.png')
        F.to_pil_image(canvas).save(target)
        for r in to_coco_results([pred], [0], model.label_to_cat_id):
            r['file_name'] = path.name
            r.pop('image_id')
            results.append(r)
        print(f'{path} -> {target}: {len(pred["boxes"])} detection(s)')
    (out / 'predictions.json').write_text(json.dumps(results))
    return 0


def _predict_text(model, saved, device, args) -> int:
    import torch
    from PIL import Image
    from torchvision.transforms.v2 import functional as F

    from detection.evaluation import predict_images
    from detection.text.results import text_predictions
    from detection.text.synthetic import draw_text_polygons

    protocol = args.protocol or saved.get('text_protocol', 'icdar2015')
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for path in _images_in(args.images):
        with Image.open(path) as im:
            img = im.convert('RGB')
        pred = predict_images(model, [F.to_dtype(F.pil_to_tensor(img), torch.float32, scale=True)], device,
                              args.precision)[0]
        found = [r for r in text_predictions(model, pred, dict(height=img.height, width=img.width), protocol)
                 if r['score'] >= args.score_thresh]
        target = out / (path.stem + '_text.png')
        draw_text_polygons(img, [r['polygon'] for r in found], [r['score'] for r in found]).save(target)
        results += [dict(file_name=path.name, **r) for r in found]
        print(f'{path} -> {target}: {len(found)} text instance(s)')
    (out / 'predictions.json').write_text(json.dumps(results))
    return 0


def _cmd_convert(args) -> int:
    from detection.text.data import convert_text_dataset

    out = Path(args.out) if args.out else Path(args.root) / 'annotations' / f'text_{args.split}.json'
    out.parent.mkdir(parents=True, exist_ok=True)
    coco = convert_text_dataset(args.dataset, args.root, args.split, out)
    ignored = sum(1 for a in coco['annotations'] if a.get('iscrowd'))
    print(f"{out}: {len(coco['images'])} images, {len(coco['annotations'])} text instances ({ignored} don't-care)")
    return 0


def _cmd_configs(args) -> int:
    from detection.config import CONFIG_DIR, TEXT_CONFIG_DIR, list_configs, load_config
    if args.name:
        print(json.dumps(load_config(args.name), indent=1))
    else:
        print('\n'.join(list_configs(TEXT_CONFIG_DIR if args.text else CONFIG_DIR)))
    return 0


def add_verbs(sub, text: bool = False) -> None:
    """The detection verbs (or, `text=True`, the text-detection verbs) on an argparse subparsers object."""
    from detection.registry import list_detectors
    from detection.text.metrics import TEXT_PROTOCOLS

    t = sub.add_parser('train', help='train a detector (also under torchrun: python -m detection train)')
    t.add_argument('--config', help='a YAML recipe or a packaged name (see `configs`)')
    t.add_argument('--model', choices=list_detectors('text' if text else 'coco'),
                   help='the detector kind (recipe default)')
    t.add_argument('--backbone', help='any zoo / timm model with features_only, e.g. emov2_1m')
    t.add_argument('--data', help="a COCO root folder or 'synthetic_text' (the embedded dense-text benchmark)"
                   if text else "a COCO root folder or 'synthetic'")
    t.add_argument('--epochs', type=positive_int, help='passes over the training set (recipe default)')
    t.add_argument('--out', help='output folder (checkpoint, metrics.jsonl, metrics.png, predictions)')
    t.add_argument('--batch-size', type=positive_int, help='images per process (recipe default)')
    t.add_argument('--lr', type=positive_float, help='peak learning rate (recipe default)')
    t.add_argument('--workers', type=non_negative_int, help='data loader processes per rank')
    t.add_argument('--device', help="'auto', 'cpu', 'cuda'")
    t.add_argument('--min-size', type=positive_int, help='shorter side of the keep-ratio resize (800)')
    t.add_argument('--max-size', type=positive_int, help='longer side limit (1333)')
    t.add_argument('--max-iters', type=positive_int, help='stop after this many iterations (smoke runs)')
    t.add_argument('--synthetic-images', type=positive_int,
                   help='number of synthetic training images (the validation set: a quarter, at least 4)')
    keep = t.add_mutually_exclusive_group()
    keep.add_argument('--save-optimizer', dest='save_optimizer', action='store_true', default=None,
                      help='keep optimizer, schedule and EMA state in OUT/last.pt so the run can resume (default)')
    keep.add_argument('--weights-only', dest='save_optimizer', action='store_false',
                      help='keep only the weights (and EMA weights): a third of the size, cannot resume')
    t.add_argument('--resume', nargs='?', const='last', help='resume from OUT/last.pt or the given checkpoint')
    t.add_argument('--set', action='append', metavar='KEY=VALUE',
                   help='override any setting, YAML value, dotted keys (e.g. model_kwargs.frozen_stages=1)')
    t.add_argument('--no-progress', action='store_true', help='no progress bars (logs still go to metrics.jsonl)')
    t.set_defaults(func=_cmd_train)
    protocol_help = 'text metric: ' + ', '.join(TEXT_PROTOCOLS) + " (default: the run's text_protocol)"
    if text:
        t.add_argument('--protocol', choices=TEXT_PROTOCOLS, help=protocol_help)

    e = sub.add_parser('eval', help=('precision / recall / H-mean' if text else 'COCO mAP (bbox, segm)')
                       + ' of a trained checkpoint')
    e.add_argument('--checkpoint', required=True, help='a training run\'s OUT/last.pt')
    e.add_argument('--data', help="COCO root or 'synthetic' (default: the training run's)")
    e.add_argument('--val-images', help='folder of the images to evaluate on (default: the run\'s)')
    e.add_argument('--val-annotations', help='their COCO annotation file (default: the run\'s)')
    e.add_argument('--out', help='where predictions_eval.json goes (default: the training run folder)')
    e.add_argument('--batch-size', type=positive_int, default=2, help='images per forward (default 2)')
    e.add_argument('--device', default='auto', help="'auto' (CUDA if available, default), 'cpu', 'cuda'")
    e.add_argument('--no-ema', action='store_true', help='evaluate the raw weights, not the EMA')
    e.add_argument('--no-progress', action='store_true', help='no progress bar')
    e.set_defaults(func=_cmd_eval)

    p = sub.add_parser('predict', help=('draw predicted text polygons' if text else 'draw predicted boxes and masks')
                       + ' into PNGs')
    p.add_argument('images', nargs='+', help='image files or folders')
    p.add_argument('--checkpoint', required=True, help='a training run\'s OUT/last.pt')
    p.add_argument('--out', required=True, help='folder for the drawn PNGs and predictions.json')
    p.add_argument('--score-thresh', type=fraction, default=0.5,
                   help='draw and save detections scoring at least this (default 0.5)')
    p.add_argument('--device', default='auto', help="'auto' (CUDA if available, default), 'cpu', 'cuda'")
    p.add_argument('--no-ema', action='store_true', help='predict with the raw weights, not the EMA')
    p.set_defaults(func=_cmd_predict)
    for verb in (e, p):
        verb.add_argument('--precision', choices=tuple(PRECISIONS), default='fp32',
                          help="fp32 (default), or bf16: the detector's networks under bfloat16 autocast (the CPU's "
                               "AMX / AVX-512 bf16 units, CUDA's tensor cores); box decoding, NMS and the saved "
                               "boxes, scores and masks stay float32")
        if text:
            verb.add_argument('--protocol', choices=TEXT_PROTOCOLS, help=protocol_help)

    if text:
        v = sub.add_parser('convert', help='write a text dataset (official layout) as a COCO file for training')
        v.add_argument('dataset', help='icdar2015, totaltext, ctw1500, msra_td500 or dast1500')
        v.add_argument('root', help="the dataset's folder as distributed")
        v.add_argument('--split', default='train', choices=['train', 'test'], help='which split (default train)')
        v.add_argument('--out', help='COCO file to write (default: ROOT/annotations/text_SPLIT.json)')
        v.set_defaults(func=_cmd_convert)

    c = sub.add_parser('configs', help='list the packaged recipes, or print one fully resolved')
    c.add_argument('name', nargs='?', help='a recipe to print fully resolved (default: list them)')
    c.set_defaults(func=_cmd_configs, text=text)


def register(subparsers) -> None:
    """The `zoo.commands` entry point: `zoo detection ...`."""
    import pycocotools  # noqa: F401  (the detection extra; ImportError -> `zoo` marks the verb unavailable)
    import yaml  # noqa: F401

    p = subparsers.add_parser('detection', help='detectors on zoo backbones: train, eval, predict (COCO)')
    add_verbs(p.add_subparsers(dest='detection_command', required=True))
    p = subparsers.add_parser('text', help='scene-text detectors (MAYOR, Mask R-CNN): train, eval, predict')
    add_verbs(p.add_subparsers(dest='text_command', required=True), text=True)


def build_parser() -> argparse.ArgumentParser:
    """The parser of `python -m detection` (e.g. under torchrun): the detection verbs."""
    parser = argparse.ArgumentParser(prog='python -m detection', description='Detectors on zoo backbones.')
    add_debug_flag(parser)
    add_verbs(parser.add_subparsers(dest='detection_command', required=True))
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    return run_verb(build_parser().parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
