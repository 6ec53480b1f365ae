"""`zoo parse-faces` and `zoo train-faces`: the face-parsing verbs, added to the `zoo` command through
the `zoo.commands` entry point (`register(subparsers)`)."""
import json
from pathlib import Path


def _read_boxes(path: str):
    """[[x1, y1, x2, y2, ...], ...], {"boxes": [...]}, or [{"box"|"bbox": [...]}, ...]."""
    data = json.loads(Path(path).read_text())
    if isinstance(data, dict):
        data = data.get('boxes', data.get('faces', []))
    boxes = []
    for item in data:
        if isinstance(item, dict):
            item = item.get('box', item.get('bbox'))
        boxes.append([float(v) for v in item[:4]])
    return boxes


def _cmd_parse_faces(args) -> int:
    import numpy as np
    import torch
    from PIL import Image

    from segmentation.parser import FaceParser, overlay_labels

    if args.threads:
        torch.set_num_threads(args.threads)
    image = np.asarray(Image.open(args.image).convert('RGB'))
    boxes = _read_boxes(args.boxes)
    parser = FaceParser.from_name(args.model, pretrained=not args.random_init, checkpoint=args.checkpoint,
                                  device=args.device, background=args.background,
                                  model_channel_order=args.model_channel_order,
                                  **({'input_size': (args.size, args.size)} if args.size else {}))
    result = parser.predict(image, boxes, rgb=True)
    num_classes = parser.model.num_classes
    Image.fromarray(overlay_labels(image, result.merged.numpy(), args.alpha, num_classes)).save(args.out)
    if args.labels_out:
        Image.fromarray(result.merged.numpy().astype(np.uint8)).save(args.labels_out)
    counts = np.bincount(result.merged.numpy().ravel(), minlength=num_classes)
    print(json.dumps(dict(faces=len(boxes), overlay=str(args.out), pixels_per_class=counts.tolist())))
    return 0


def _cmd_train_faces(args) -> int:
    from segmentation.train import main_from_args
    return main_from_args(args)


def register(subparsers) -> None:
    p = subparsers.add_parser('parse-faces', help='face parsing of an image with given face boxes (RTNet)')
    p.add_argument('image')
    p.add_argument('--boxes', required=True, help='JSON: [[x1, y1, x2, y2], ...] in pixels')
    p.add_argument('--model', default='rtnet50_fcn11', help='rtnet50_fcn11, rtnet50_fcn14, rtnet101_fcn14, ...')
    p.add_argument('--checkpoint', help='a local official .torch file (or ours) instead of the Hub copy')
    p.add_argument('--random-init', action='store_true', help='no weights (to try the pipeline)')
    p.add_argument('--out', required=True, help='overlay PNG')
    p.add_argument('--labels-out', help='merged label map PNG (label ids as pixel values)')
    p.add_argument('--alpha', type=float, default=0.5)
    p.add_argument('--size', type=int, default=None, help='warped face side (default: the model cfg, 513)')
    p.add_argument('--background', choices=('official', 'plain'), default='official')
    p.add_argument('--model-channel-order', choices=('bgr', 'rgb'), default='bgr',
                   help='channel order the model expects (the official weights: bgr)')
    p.add_argument('--device', default='cpu')
    p.add_argument('--threads', type=int, default=None)
    p.set_defaults(func=_cmd_parse_faces)

    t = subparsers.add_parser('train-faces', help='train / evaluate a face parser (synthetic or folder data)')
    t.add_argument('--data', default='synthetic', help="'synthetic' or a dataset folder")
    t.add_argument('--layout', default='ibugmask', choices=('ibugmask', 'lapa', 'celebamask'))
    t.add_argument('--model', default='rtnet_tiny', help="timm name, or 'rtnet_tiny' (a small RTNet for CPU)")
    t.add_argument('--pretrained', action='store_true')
    t.add_argument('--size', type=int, default=64, help='warped face side')
    t.add_argument('--epochs', type=int, default=1)
    t.add_argument('--steps', type=int, default=None, help='stop after this many steps')
    t.add_argument('--batch-size', type=int, default=8)
    t.add_argument('--lr', type=float, default=3e-3)
    t.add_argument('--train-len', type=int, default=256, help='synthetic: training samples')
    t.add_argument('--val-len', type=int, default=64, help='synthetic: validation samples')
    t.add_argument('--out', default='runs/faces', help='checkpoint folder (last.pt, written atomically)')
    t.add_argument('--resume', action='store_true', help='continue from <out>/last.pt')
    t.add_argument('--device', default=None)
    t.add_argument('--workers', type=int, default=0)
    t.add_argument('--seed', type=int, default=0)
    t.set_defaults(func=_cmd_train_faces)

