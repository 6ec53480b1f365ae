"""timm's resize API (`set_input_size`) where a family can resize: EMOv2, SpaRTAN, RaftMLP. NiNformer and
Strip-MLP cannot (token-mixing MLPs over a fixed token count, as timm's MLP-Mixer) and keep refusing other sizes."""
import pytest
import timm
import torch
from timm.data import resolve_data_config

import zoo  # noqa: F401


def _out(model, size):
    with torch.inference_mode():
        return model.eval()(torch.randn(1, 3, size, size))


def test_emov2_new_size_and_window():
    torch.manual_seed(0)
    model = timm.create_model('emov2_1m', num_classes=5)
    x = torch.randn(1, 3, 96, 96)
    with torch.inference_mode():
        before = model.eval()(x)
    model.set_input_size(img_size=96)
    assert model.pretrained_cfg['input_size'] == (3, 96, 96) and resolve_data_config({}, model=model)['input_size'] == (3, 96, 96)
    with torch.inference_mode():
        assert torch.equal(model(x), before)  # the size alone changes no number
    model.set_input_size(window_size=8)
    reference = timm.create_model('emov2_1m', num_classes=5, window_size=8)
    reference.load_state_dict(model.state_dict())
    with torch.inference_mode():
        torch.testing.assert_close(model(x), reference.eval()(x))  # as built with window_size=8


def test_spartan_records_size_and_checks_the_minimum():
    model = timm.create_model('spartan_tiny', num_classes=3)
    model.set_input_size(128)
    assert model.pretrained_cfg['input_size'] == (3, 128, 128) and _out(model, 128).shape == (1, 3)
    with pytest.raises(ValueError, match='at least'):
        model.set_input_size(16)


def test_raftmlp_resizes_token_grids_and_returns_to_the_exact_path():
    torch.manual_seed(0)
    model = timm.create_model('raftmlp_s', num_classes=4).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        exact = model(x)
    with pytest.raises(ValueError, match='224'):
        _out(model, 160)
    model.set_input_size(160)
    assert model.pretrained_cfg['input_size'] == (3, 160, 160) and _out(model, 160).shape == (1, 4)
    model.set_input_size(224)  # back at the built size: no resizing, the exact numbers
    with torch.inference_mode():
        assert torch.equal(model(x), exact)
    with pytest.raises(ValueError, match='224'):
        _out(model, 160)


@pytest.mark.parametrize('name', ['ninformer_cifar10', 'strip_mlp_t_light'])
def test_fixed_token_families_have_no_resize(name):
    model = timm.create_model(name)
    assert not hasattr(model, 'set_input_size') and model.pretrained_cfg.get('fixed_input_size')
