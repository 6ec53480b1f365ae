import pytest
import torch
from torch import nn

pytest.importorskip('torchvision')

from detection.backbone import BackboneError, TimmFPNBackbone


@pytest.fixture(scope='module')
def emo():
    return TimmFPNBackbone('emov2_1m', frozen_stages=1, norm_eval=True)


def test_fpn_levels_and_channels(emo):
    assert emo.out_channels == 256
    assert emo.in_channels == [32, 48, 80, 180]  # the spec's FPN in_channels for EMOv2-1M
    out = emo(torch.randn(1, 3, 128, 160))
    assert list(out) == ['0', '1', '2', '3', 'pool']
    assert [tuple(v.shape[-2:]) for v in out.values()] == [(32, 40), (16, 20), (8, 10), (4, 5), (2, 3)]


def test_feature_info_matches_maps(emo):
    feats = emo.body(torch.randn(1, 3, 96, 128))
    assert [f.shape[1] for f in feats] == emo.body.feature_info.channels()
    assert [96 // f.shape[-2] for f in feats] == emo.body.feature_info.reduction() == [4, 8, 16, 32]


def test_frozen_stages_and_norm_eval(emo):
    frozen = {n for n, p in emo.body.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(('model.stem.', 'model.stages.0.')) for n in frozen)
    assert all(n in frozen for n, _ in emo.body.named_parameters() if n.startswith(('model.stem.', 'model.stages.0.')))
    emo.train()
    bns = [m for m in emo.body.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert bns and not any(m.training for m in bns)
    assert emo.fpn.training
    before = [m.running_mean.clone() for m in bns]
    emo(torch.randn(2, 3, 64, 64))
    assert all(torch.equal(a, m.running_mean) for a, m in zip(before, bns))


def test_stem_only_freeze_and_timm_model():
    b = TimmFPNBackbone('resnet18', frozen_stages=0)
    frozen = [n for n, p in b.body.named_parameters() if not p.requires_grad]
    assert frozen == ['conv1.weight', 'bn1.weight', 'bn1.bias']
    b.train()
    assert not b.body.bn1.training and b.body.layer1[0].bn1.training


def test_retinanet_p6_p7_from_c5():
    b = TimmFPNBackbone('emov2_1m', strides=(8, 16, 32), extra='p6p7', p6_from='input')
    assert b.fpn.extra_blocks.p6.in_channels == 180
    out = b(torch.randn(1, 3, 128, 128))
    assert list(out) == ['0', '1', '2', 'p6', 'p7']
    assert out['p7'].shape[-1] == 1


@pytest.mark.parametrize('name, why', [
    ('vit_tiny_patch16_224', 'isotropic'),
    ('ninformer_cifar10', 'isotropic'),
    ('strip_mlp_t', 'fixed input size'),
    ('no_such_model', 'Unknown model'),
])
def test_refused_with_reason(name, why):
    with pytest.raises(BackboneError, match=why):
        TimmFPNBackbone(name)


def test_pretrained_goes_through_zoo_weight_path():
    from zoo.hub import WeightsError
    with pytest.raises(WeightsError, match='emov2_1m'):  # offline, empty caches: the zoo's error
        TimmFPNBackbone('emov2_1m', pretrained=True)


def test_pretrained_from_local_file(tmp_path):
    import timm
    from safetensors.torch import save_file
    torch.manual_seed(1)
    ref = timm.create_model('emov2_1m')
    save_file(ref.state_dict(), tmp_path / 'w.safetensors')
    torch.manual_seed(2)
    b = TimmFPNBackbone('emov2_1m', pretrained=True, pretrained_cfg_overlay=dict(file=str(tmp_path / 'w.safetensors')))
    ours = b.body.model.state_dict()
    shared = [k for k in ref.state_dict() if k in ours]
    assert len(shared) > 100
    assert all(torch.equal(ref.state_dict()[k], ours[k]) for k in shared)
