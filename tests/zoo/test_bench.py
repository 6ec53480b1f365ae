"""`zoo bench`: figures agree with the fixtures' meta.json; outputs are written."""
import csv
import json
import math
import time

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
    assert all(r.throughput > 0 and r.latency_ms > 0 and r.calls == 1 and r.threads >= 1 for r in results)
    table = bench.format_table(results)
    assert 'GMACs' in table and 'channels_last' in table and 'inception_resnet_v1_facenet' in table
    assert torch.__version__ in table and 'spread %' in table and 'calls' in table
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


def test_default_set_is_one_model_per_family():
    import zoo
    names = bench.representatives()
    families = [zoo.family_of(n) for n in names]
    assert sorted(families) == sorted(zoo.families())  # every family, the heads' included, once
    assert 'inception_resnet_v1_facenet' in names  # a family's named demo model
    assert 'emov2_1m' in names  # else the family's smallest


def test_large_models_are_counted_on_meta_and_not_timed(monkeypatch):
    import zoo
    monkeypatch.setattr(bench, 'LARGE_PARAMS', 5_000_000)  # emov2_1m (1.5M) is timed, emov2_20m is "large"
    real_create_model = zoo.models.create_model

    def no_real_build(name, **kwargs):
        if torch.get_default_device().type != 'meta' and name == 'emov2_20m':
            raise AssertionError('a large model was built on the CPU')
        return real_create_model(name, **kwargs)
    monkeypatch.setattr(zoo.models, 'create_model', no_real_build)
    results = bench.run(['emov2_1m', 'emov2_20m'], batch_sizes=[1, 2], warmup=0, iters=1, progress=False)
    large = [r for r in results if r.model == 'emov2_20m']
    assert len(large) == 1 and math.isnan(large[0].latency_ms) and large[0].calls == 0
    assert large[0].gmacs == pytest.approx(4.0, rel=0.05) and 'meta device' in large[0].notes[0]
    assert len([r for r in results if r.model == 'emov2_1m']) == 2
    assert 'note: emov2_20m: over 5M params' in bench.format_table(results)
    monkeypatch.setattr(zoo.models, 'create_model', real_create_model)
    timed = bench.run(['emov2_20m'], batch_sizes=[1], warmup=0, iters=1, progress=False, include_large=True,
                      img_size=64)
    assert timed[0].calls == 1 and timed[0].latency_ms > 0


def test_max_seconds_bounds_warmup_and_timing(monkeypatch):
    calls = []

    def step():
        calls.append(1)
        time.sleep(0.05)
    times = bench._time_calls(step, warmup=10, iters=100, max_seconds=0.2)
    # warm-up stops after 0.1 s (2 calls), timing after 0.2 s (4 calls); never fewer than one of each
    assert 2 <= len(calls) - len(times) <= 3 and 4 <= len(times) <= 5
    calls.clear()
    assert len(bench._time_calls(step, warmup=3, iters=100, max_seconds=0.001)) == 1 and len(calls) == 2
    assert len(bench._time_calls(step, warmup=1, iters=3)) == 3  # no bound: all the calls asked for


def test_bf16_precision_is_timed_and_carries_its_rates():
    fp32, bf16 = (bench.run(['emov2_1m'], batch_sizes=[2], warmup=0, iters=1, img_size=64, progress=False,
                            precision=p)[0] for p in ('fp32', 'bf16'))
    assert (fp32.precision, bf16.precision) == ('fp32', 'bf16')
    for r in (fp32, bf16):
        assert r.gflops == pytest.approx(2 * r.gmacs * r.throughput) and r.peak_gflops > 0
    assert bench.matmul_peak('bf16') > 0 and 'precision' in bench.format_table([fp32, bf16])
    weights = bench.run(['emov2_1m'], batch_sizes=[1], warmup=0, iters=1, img_size=64, progress=False,
                        weights_dtype='bf16')[0]
    assert weights.throughput > 0
    with pytest.raises(ValueError, match='precision'):
        bench.run(['emov2_1m'], batch_sizes=[1], warmup=0, iters=1, img_size=64, progress=False, precision='fp8')


def test_a_call_expected_to_outlast_the_budget_gets_no_warmup(monkeypatch):
    seen = []

    def fake_bench_model(model, bs, warmup, max_seconds, **kwargs):
        seen.append((bs, warmup))
        return 1000.0 * bs * 0.3, 1 / 0.3, 0.0, 1  # 0.3 s a sample
    monkeypatch.setattr(bench, 'bench_model', fake_bench_model)
    bench.run(['ninformer_mnist'], batch_sizes=[8, 1], warmup=3, progress=False, max_seconds=1.0)
    assert seen == [(1, 3), (8, 0)]  # batch 1 warms up; batch 8 (2.4 s expected > 1 s budget) does not
    seen.clear()
    bench.run(['ninformer_mnist'], batch_sizes=[1, 8], warmup=3, progress=False)  # no budget: always warm up
    assert seen == [(1, 3), (8, 3)]


def test_keep_freed_memory_is_recorded():
    from zoo import bench
    assert bench.keep_freed_memory()  # glibc here
    assert bench.machine()['allocator'] == 'keep'
