"""`zoo parse-faces` and `zoo train-faces`: the face-parsing verbs, added to the `zoo` command through
the `zoo.commands` entry point (`register(subparsers)`)."""
import json
from pathlib import Path

from zoo.cli import fraction, positive_float, positive_int, non_negative_int
from zoo.precision import PRECISIONS


BOXES_FORMAT = '[[x1, y1, x2, y2], ...], {"boxes": [...]} or [{"box": [x1, y1, x2, y2]}, ...] in pixels'


def _read_boxes(path: str):
    """The face boxes of a JSON file: [[x1, y1, x2, y2, ...], ...], {"boxes": [...]}, or
    [{"box"|"bbox": [...]}, ...]; `InputError` naming the file and the entry otherwise."""
    from zoo.errors import InputError

    try:
        data = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f'--boxes {path} is not JSON ({e}); expected {BOXES_FORMAT}') from e
    if isinstance(data, dict):
        data = data.get('boxes', data.get('faces'))
    if not isinstance(data, list):
        raise InputError(f'--boxes {path} holds no list of boxes; expected {BOXES_FORMAT}')
    boxes = []
    for i, item in enumerate(data):
        if isinstance(item, dict):
            item = item.get('box', item.get('bbox'))
        if not (isinstance(item, list) and len(item) >= 4
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in item[:4])):
            raise InputError(f'--boxes {path}: entry {i} ({json.dumps(item)}) is not a box of 4 numbers; '
                             f'expected {BOXES_FORMAT}')
        boxes.append([float(v) for v in item[:4]])
    return boxes


def _cmd_parse_faces(args) -> int:
    import numpy as np
    import torch
    from PIL import Image

    from segmentation.parser import FaceParser, overlay_labels

    if args.threads:
        torch.set_num_threads(args.threads)
    boxes = _read_boxes(args.boxes)  # the cheap checks before the model is built
    with Image.open(args.image) as im:
        image = np.asarray(im.convert('RGB'))
    from segmentation.roi_tanh import check_rois
    from zoo.errors import InputError
    try:
        check_rois(torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4), image.shape[1], image.shape[0])
    except InputError as e:
        raise InputError(f'--boxes {args.boxes}: {e}') from None
    from zoo.errors import WeightsError
    try:
        parser = FaceParser.from_name(args.model, pretrained=not args.random_init, checkpoint=args.checkpoint,
                                      device=args.device, background=args.background,
                                      model_channel_order=args.model_channel_order, precision=args.precision,
                                      **({'input_size': (args.size, args.size)} if args.size else {}))
    except WeightsError as e:  # the fix in this command's flags, not the Python API's
        raise e.with_fix('Pass a local copy of the official file with --checkpoint FILE, or try the pipeline '
                         'without weights with --random-init.') from e.__cause__
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
    p.add_argument('image', help='the image (PNG, JPEG, ...)')
    p.add_argument('--boxes', required=True, help='JSON: [[x1, y1, x2, y2], ...] in pixels')
    p.add_argument('--model', default='rtnet50_fcn11', help='rtnet50_fcn11, rtnet50_fcn14, rtnet101_fcn14, ...')
    p.add_argument('--checkpoint', help='a local official .torch file (or ours) instead of the Hub copy')
    p.add_argument('--random-init', action='store_true', help='no weights (to try the pipeline)')
    p.add_argument('--out', required=True, help='overlay PNG')
    p.add_argument('--labels-out', help='merged label map PNG (label ids as pixel values)')
    p.add_argument('--alpha', type=fraction, default=0.5, help='overlay opacity, 0-1 (default 0.5)')
    p.add_argument('--size', type=positive_int, default=None, help='warped face side (default: the model cfg, 513)')
    p.add_argument('--background', choices=('official', 'plain'), default='official',
                   help="pixels the warp never saw: 'official' restores 1 - p(background) (default), 'plain' the "
                        'probabilities as they are')
    p.add_argument('--model-channel-order', choices=('bgr', 'rgb'), default='bgr',
                   help='channel order the model expects (the official weights: bgr)')
    p.add_argument('--device', default='cpu', help="'cpu' (default), 'cuda', ...")
    p.add_argument('--precision', choices=tuple(PRECISIONS), default='fp32',
                   help="fp32 (default), or bf16: the model under bfloat16 autocast (the CPU's AMX / AVX-512 bf16 "
                        "units, CUDA's tensor cores); the label maps are computed from float32 probabilities")
    p.add_argument('--threads', type=positive_int, default=None, help='torch.set_num_threads')
    p.set_defaults(func=_cmd_parse_faces)

    t = subparsers.add_parser('train-faces', help='train / evaluate a face parser (synthetic or folder data)')
    t.add_argument('--data', default='synthetic', help="'synthetic' or a dataset folder")
    t.add_argument('--layout', default='ibugmask', choices=('ibugmask', 'lapa', 'celebamask'),
                   help='how a --data folder is laid out (default ibugmask)')
    t.add_argument('--model', default='rtnet_tiny', help="face-parsing model (`zoo list`), or 'rtnet_tiny' (a small RTNet for CPU)")
    t.add_argument('--pretrained', action='store_true', help="start from the model's published weights")
    t.add_argument('--size', type=positive_int, default=64, help='warped face side (default 64)')
    t.add_argument('--epochs', type=positive_int, default=1, help='passes over the data (default 1)')
    t.add_argument('--steps', type=positive_int, default=None, help='stop after this many steps')
    t.add_argument('--batch-size', type=positive_int, default=8, help='faces per step (default 8)')
    t.add_argument('--lr', type=positive_float, default=3e-3, help='learning rate (default 3e-3)')
    t.add_argument('--train-len', type=positive_int, default=256, help='synthetic: training samples')
    t.add_argument('--val-len', type=positive_int, default=64, help='synthetic: validation samples')
    t.add_argument('--out', default='runs/faces', help='checkpoint folder (last.pt, written atomically)')
    t.add_argument('--resume', action='store_true', help='continue from <out>/last.pt')
    t.add_argument('--device', default=None, help="'cpu', 'cuda' (default: CUDA if available)")
    t.add_argument('--workers', type=non_negative_int, default=0, help='data loader processes (default 0)')
    t.add_argument('--seed', type=int, default=0, help='seed of the weights and the data order (default 0)')
    t.set_defaults(func=_cmd_train_faces)

