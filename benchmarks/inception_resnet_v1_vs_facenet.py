"""Our Inception-ResNet-v1 vs the official facenet-pytorch model, side by side, on the same weights.

The official code is not part of this project: point --official at a checkout of
timesler/facenet-pytorch (the folder holding `models/inception_resnet_v1.py`), kept outside the repo.

    python benchmarks/inception_resnet_v1_vs_facenet.py --official /tmp/official/facenet --batch-size 1 32

Checks first that both give the same logits on the same (random) weights (and how far ours in bf16 is
from them), then times eager CPU inference for each batch size in NCHW and channels_last, after warm-up:
the official model in fp32, ours and ours after `timm.utils.reparameterize_model` (`fused`) in each
`--precision` (fp32, bf16 autocast; default both), and prints ours / official in the best layout of each
(`common.py`).
"""
import argparse
import importlib
import sys
import types

import timm
import torch
from timm.utils import reparameterize_model

import zoo  # noqa: F401
from zoo.models.inception_resnet import checkpoint_filter_fn
from zoo.testing import relative_error

import common  # benchmarks/common.py


def load_official(path: str):
    sys.path.insert(0, path)
    sys.modules.setdefault('requests', types.ModuleType('requests'))  # only used for downloads
    adapters = types.ModuleType('requests.adapters')
    adapters.HTTPAdapter = object
    sys.modules.setdefault('requests.adapters', adapters)
    return importlib.import_module('models.inception_resnet_v1').InceptionResnetV1


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--official', required=True, help='facenet-pytorch checkout (outside this repo)')
    parser.add_argument('--img-size', type=int, default=160)
    common.add_arguments(parser, batch_size=(1, 32), warmup=3, iters=10)
    args = parser.parse_args()
    common.setup(parser, args)

    torch.manual_seed(0)
    official = load_official(args.official)(classify=True, num_classes=8631).eval()
    ours = timm.create_model('inception_resnet_v1_facenet.vggface2').eval()
    ours.load_state_dict(checkpoint_filter_fn(official.state_dict(), ours))
    x = torch.randn(2, 3, args.img_size, args.img_size)
    with torch.inference_mode():
        ref = official(x)
        err = relative_error(ours(x), ref)
    fused = reparameterize_model(ours)
    with torch.inference_mode():
        err_fused = relative_error(fused(x), ref)
    print(f'outputs: max relative difference {err:.2e}, reparameterized {err_fused:.2e} (fixture tolerance 1e-4)')
    for who, model in (('ours', ours), ('reparameterized', fused)):
        errors = common.precision_errors(model, (x,), ref, args.precision)
        if errors:
            print(f'  {who} vs the official fp32 output: {common.format_errors(errors)}')

    results = common.compare(
        [common.Contender('official', official, official=True), common.Contender('ours', ours),
         common.Contender('fused', fused)],
        lambda bs: (torch.randn(bs, 3, args.img_size, args.img_size),), args, unit='img/s')
    results.print_ratios('inception_resnet_v1_facenet')


if __name__ == '__main__':
    main()
