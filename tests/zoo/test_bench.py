"""`zoo bench`: figures agree with the fixtures' meta.json; outputs are written."""
import csv
import json

import pytest
import timm
import torch

from zoo import bench
from zoo.testing import has_fixture, load_fixture


@pytest.mark.parametrize('fixture, model_name', [
    ('inception_resnet_v1', 'inception_resnet_v1'),
    ('inception_resnet_v1_vggface2', 'inception_resnet_v1_facenet.vggface2'),
])
def test_params_and_gmacs_agree_with_fixture_meta(fixture, model_name):
    if not has_fixture(fixture):
        pytest.skip(f'fixture {fixture} not found (set ZOO_FIXTURES)')
    meta = load_fixture(fixture)['meta']
    model = timm.create_model(model_name).eval()
    gmacs, acts = bench.count_macs(model, bench.example_inputs(model, 1))
    assert bench.count_params(model) == meta['param_count']
    assert gmacs == pytest.approx(meta['flops_g'], rel=0.01)
    assert acts > 0


def test_example_inputs_follow_cfg_or_model():
    model = timm.create_model('inception_resnet_v1_facenet')
    (x,) = bench.example_inputs(model, 3)
    assert x.shape == (3, 3, 160, 160)
    assert bench.example_inputs(model, 1, img_size=96)[0].shape == (1, 3, 96, 96)

    class Denoiser(torch.nn.Module):
        def example_inputs(self, batch_size):
            return torch.randn(batch_size, 4, 8, 8), torch.ones(batch_size)
    assert [t.shape[0] for t in bench.example_inputs(Denoiser(), 2)] == [2, 2]


def test_run_writes_table_csv_json_and_plot(tmp_path):
    results = bench.run(['inception_resnet_v1_facenet'], batch_sizes=[1, 2], channels_last=True, warmup=1,
                        iters=1, img_size=96, progress=False)
    assert [(r.layout, r.batch) for r in results] == [('nchw', 1), ('nchw', 2), ('channels_last', 1),
                                                        ('channels_last', 2)]
    assert all(r.throughput > 0 and r.latency_ms > 0 for r in results)
    table = bench.format_table(results)
    assert 'GMACs' in table and 'channels_last' in table and 'inception_resnet_v1_facenet' in table
    bench.write_csv(results, tmp_path / 'b.csv')
    bench.write_json(results, tmp_path / 'b.json')
    bench.plot_pareto(results, tmp_path / 'b.png')
    rows = list(csv.DictReader(open(tmp_path / 'b.csv')))
    assert len(rows) == 4 and float(rows[0]['params_m']) == pytest.approx(27.910327)
    assert len(json.loads((tmp_path / 'b.json').read_text())) == 4
    assert (tmp_path / 'b.png').read_bytes()[:4] == b'\x89PNG'


def test_train_mode_times_backward():
    (result,) = bench.run(['inception_resnet_v1_facenet'], batch_sizes=[2], train=True, warmup=0, iters=1,
                          img_size=96, progress=False)
    assert result.mode == 'train' and result.throughput > 0
