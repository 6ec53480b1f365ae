"""Inception-ResNet-v1 against the official facenet-pytorch outputs and manifests."""
import pytest
import timm
import torch

import zoo
from tests.helpers import requires_fixture, requires_manifests, to_facenet_names
from zoo.models.inception_resnet import checkpoint_filter_fn
from zoo.testing import assert_matches_fixture, manifest_param_count, manifest_state_dict


@requires_fixture('inception_resnet_v1')
def test_fixture_imagenet_head():
    model = timm.create_model('inception_resnet_v1')

    def forward(m, inputs):
        features = m.forward_features(inputs['x'])
        return dict(features=features, pooled=m.forward_head(features, pre_logits=True),
                    logits=m.forward_head(features))

    assert_matches_fixture('inception_resnet_v1', model, checkpoint_filter_fn, forward)


@requires_fixture('inception_resnet_v1_vggface2')
def test_fixture_facenet_vggface2():
    model = timm.create_model('inception_resnet_v1_facenet.vggface2')

    def forward(m, inputs):
        logits = m(inputs['x'])
        m.reset_classifier(0)  # facenet-pytorch's classify=False: the L2-normalised embedding
        return dict(logits=logits, embeddings=m(inputs['x']))

    assert_matches_fixture('inception_resnet_v1_vggface2', model, checkpoint_filter_fn, forward)


# manifest of an official variant -> how the zoo builds it
VARIANTS = {
    'inception_resnet_v1': ('inception_resnet_v1', {}),
    'inception_resnet_v1_1001': ('inception_resnet_v1', dict(num_classes=1001)),
    'inception_resnet_v1_paper_strict': ('inception_resnet_v1_paper', {}),
    'inception_resnet_v1_facenet': ('inception_resnet_v1_facenet', dict(num_classes=0)),
    'inception_resnet_v1_vggface2': ('inception_resnet_v1_facenet.vggface2', {}),
    'inception_resnet_v1_casia_webface': ('inception_resnet_v1_facenet.casia_webface', {}),
}


@requires_manifests()
@pytest.mark.parametrize('manifest', sorted(VARIANTS))
def test_manifest_loads_strictly_with_exact_params(manifest):
    name, kwargs = VARIANTS[manifest]
    model = timm.create_model(name, **kwargs)
    assert sum(p.numel() for p in model.parameters()) == manifest_param_count(manifest)
    official = manifest_state_dict(manifest)
    model.load_state_dict(checkpoint_filter_fn(official, model), strict=True)


def test_filter_accepts_wrappers_prefixes_and_own_files():
    model = timm.create_model('inception_resnet_v1_facenet', num_classes=5)
    ours = model.state_dict()
    facenet = to_facenet_names(ours)
    assert 'repeat_3.0.conv2d.weight' in facenet and 'logits.weight' in facenet
    for wrapped in (facenet, {'state_dict': facenet}, {'model': {'module.' + k: v for k, v in facenet.items()}}):
        assert checkpoint_filter_fn(wrapped, model).keys() == ours.keys()
    assert checkpoint_filter_fn(ours, model).keys() == ours.keys()


def test_family_lists_timm_members_without_reimplementing_them():
    assert zoo.family_of('inception_resnet_v2') == zoo.family_of('inception_resnet_v1') == 'inception'
    assert {'inception_resnet_v2', 'inception_v4'} <= set(zoo.catalogue(['inception*']))
    assert not zoo.is_zoo_model('inception_resnet_v2') and not zoo.is_zoo_model('inception_v4')
    with torch.device('meta'):
        assert sum(p.numel() for p in timm.create_model('inception_resnet_v2').parameters()) == 55_843_464
        assert sum(p.numel() for p in timm.create_model('inception_v4').parameters()) == 42_679_816


def test_small_and_rectangular_inputs():
    model = timm.create_model('inception_resnet_v1', num_classes=3).eval()
    with torch.inference_mode():
        assert model(torch.randn(1, 3, 75, 75)).shape == (1, 3)
        assert model(torch.randn(1, 3, 96, 200)).shape == (1, 3)


def test_facenet_embedding_is_unit_norm():
    model = timm.create_model('inception_resnet_v1_facenet', num_classes=0).eval()
    with torch.inference_mode():
        emb = model(torch.randn(2, 3, 160, 160))
    assert emb.shape == (2, 512)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2))


def test_too_small_input_is_a_clear_error():
    model = timm.create_model('inception_resnet_v1').eval()
    with pytest.raises(ValueError, match='H, W >= 75'):
        model(torch.randn(1, 3, 74, 128))
    with pytest.raises(ValueError, match='B x C x H x W'):
        model(torch.randn(3, 128, 128))


@pytest.mark.parametrize('name', ['inception_resnet_v1', 'inception_resnet_v1_facenet'])
def test_reparameterized_model_matches_and_scripts(name):
    from timm.utils import reparameterize_model
    model = timm.create_model(name).eval()
    for module in model.modules():  # non-trivial BatchNorm statistics, so folding them is tested
        if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
    fused = reparameterize_model(model)
    assert fused.repeat[0].heads is not None and fused.repeat[0].scale == 1.0
    x = torch.randn(2, 3, 128, 128)
    with torch.inference_mode():
        ref = model(x)
        torch.testing.assert_close(fused(x), ref, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(torch.jit.script(fused)(x), ref, atol=1e-4, rtol=1e-4)
        fused = fused.to(memory_format=torch.channels_last)
        torch.testing.assert_close(fused(x.contiguous(memory_format=torch.channels_last)), ref, atol=1e-4, rtol=1e-4)
