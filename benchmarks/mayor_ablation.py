"""MAYOR vs the plain Mask R-CNN text baseline, and MAYOR without each of its components, on the embedded
dense-text benchmark (`detection/text/synthetic.py`): same data, backbone, schedule and iteration budget.

    python benchmarks/mayor_ablation.py --out runs/mayor_ablation --iters 900            # CPU, ~15 min a run
    python benchmarks/mayor_ablation.py --device cuda --iters 6000 --image-size 384 --batch-size 8

Every run starts from the same seed with a randomly initialised backbone (no ImageNet weights offline)
and is scored on the same test split with the CTW1500 protocol (polygon IoU > 0.5): H-mean at score 0.5
and the best over the mmocr score sweep. Writes `results.json` and prints a markdown table.
"""
import argparse
import json
from pathlib import Path

import torch

RUNS = {
    'MAYOR': dict(model='mayor'),
    'Mask R-CNN baseline (mmocr anchors)': dict(model='text_mask_rcnn'),
    'MAYOR - adaptive assignment (IoU matcher, mmocr anchors)': dict(model='mayor', assignment='iou'),
    'MAYOR - MLP decoder (deconv decoder)': dict(model='mayor', mask_decoder='deconv'),
    'MAYOR - instance-aware targets (proposal frame, BCE only)': dict(model='mayor', mask_target_frame='proposal',
                                                                      mask_dice_weight=0.0),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--out', default='runs/mayor_ablation')
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--iters', type=int, default=900, help='training iterations per run')
    ap.add_argument('--batch-size', type=int, default=2)
    ap.add_argument('--image-size', type=int, default=256)
    ap.add_argument('--train-images', type=int, default=400)
    ap.add_argument('--test-images', type=int, default=40)
    ap.add_argument('--fpn-width', type=int, default=128, help='FPN / mask-tower width (the spec: 256)')
    ap.add_argument('--backbone', default='resnet18')
    ap.add_argument('--lr', type=float, default=1e-3)
    ap.add_argument('--only', nargs='*', help='run only these (indices into the table)')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from detection.engine import train
    from detection.text.synthetic import make_synthetic_text

    out = Path(args.out)
    data = out / 'data'
    if not (data / 'annotations' / 'text_test.json').is_file():
        make_synthetic_text(data, num_train=args.train_images, num_test=args.test_images,
                            image_size=args.image_size, seed=0)
    epochs = -(-args.iters * args.batch_size // args.train_images)
    results_file = out / 'results.json'
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    for k, (name, switches) in enumerate(RUNS.items()):
        if args.only and str(k) not in args.only:
            continue
        switches = dict(switches)
        model = switches.pop('model')
        run = out / f'run{k}'
        cfg = dict(
            model=model, backbone=args.backbone, data=str(data), train_images=str(data / 'train'),
            train_annotations=str(data / 'annotations' / 'text_train.json'), val_images=str(data / 'test'),
            val_annotations=str(data / 'annotations' / 'text_test.json'), text_protocol='ctw1500',
            epochs=epochs, max_iters=args.iters, batch_size=args.batch_size, workers=1, optimizer='adamw',
            lr=args.lr, weight_decay=0.05, schedule='cosine', cosine_begin_epoch=0, warmup_iters=min(100, args.iters // 10),
            grad_clip=5.0, min_size=args.image_size, max_size=int(args.image_size * 1.34), flip_prob=0.0,
            eval_every=epochs, log_every=20, device=args.device, out=str(run), progress=False, seed=0,
            model_kwargs=dict(preset='mmdet', pretrained_backbone=False, out_channels=args.fpn_width,
                              box_batch_size_per_image=128, box_detections_per_img=200, **switches))
        r = train(cfg)
        m = r['metrics']
        results[name] = dict(switches=dict(model=model, **switches), iterations=r['iterations'],
                             final_loss=sum(r['losses'][-50:]) / max(len(r['losses'][-50:]), 1),
                             **{k: m.get(k) for k in ('precision', 'recall', 'hmean', 'best_hmean', 'best_score_thr',
                                                      'best_precision', 'best_recall')})
        results_file.write_text(json.dumps(results, indent=1))
        print(name, json.dumps(results[name]))

    print(f'\n{args.backbone} from scratch, {args.iters} iterations x {args.batch_size} images of ~{args.image_size}px, '
          f'{args.device}; CTW1500 protocol on {args.test_images} test images')
    print('| model | P | R | H (score 0.5) | best H (thr) | loss (last 50) |\n|---|---:|---:|---:|---:|---:|')
    for name, r in results.items():
        print(f"| {name} | {r['precision']:.3f} | {r['recall']:.3f} | {r['hmean']:.3f} | "
              f"{r['best_hmean']:.3f} ({r['best_score_thr']}) | {r['final_loss']:.3f} |")


if __name__ == '__main__':
    main()
