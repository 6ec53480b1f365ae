"""User mistakes get one clear line (exit 2) from every `zoo` verb, and bad weight files a `WeightsError`
naming the file; internal bugs keep their traceback."""
import json
import os
import pickle

import pytest
import timm
import torch
from safetensors.torch import save_file

import zoo
from zoo.cli import main
from zoo.errors import InputError, WeightsError, ZooError, describe_user_error, is_user_error
from zoo.hub import pickle_needs_code, read_run_checkpoint

from tests.helpers import to_facenet_names

MODEL = 'inception_resnet_v1_facenet'


def _run(capsys, argv):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.err


def _assert_one_line_error(code, err, *names):
    assert code == 2
    assert err.startswith('error: ') and 'Traceback' not in err, err
    assert len(err.strip().splitlines()) == 1, err
    for name in names:
        assert str(name) in err, (name, err)


# ---- the error boundary ---------------------------------------------------------------------------------
def test_user_errors_are_the_zoo_errors_and_path_errors():
    assert issubclass(InputError, ValueError) and issubclass(InputError, ZooError)
    assert issubclass(WeightsError, ZooError) and zoo.WeightsError is WeightsError
    assert is_user_error(InputError('x')) and is_user_error(FileNotFoundError(2, 'No such file', 'a.json'))
    assert not is_user_error(ValueError('a bug')) and not is_user_error(KeyError('a bug'))
    assert describe_user_error(FileNotFoundError(2, 'No such file', 'a.json')) == 'a.json: no such file or folder'


def test_weights_error_exits_2_with_one_line(capsys, tmp_path):
    code, err = _run(capsys, ['weights', 'convert', MODEL + '.vggface2', '--checkpoint', str(tmp_path / 'missing.pt'),
                              '--out', str(tmp_path / 'o')])
    _assert_one_line_error(code, err, tmp_path / 'missing.pt', '--checkpoint')
    assert not (tmp_path / 'o').exists()


def _noise(seed: int, size: int = 4096) -> bytes:
    """Random bytes, the same for a seed: different seeds make torch's unpickler fail in different ways
    (UnpicklingError, IndexError, ...)."""
    import random
    return random.Random(seed).randbytes(size)


@pytest.mark.parametrize('seed', range(8))
def test_corrupt_file_to_weights_convert_is_not_called_a_code_pickle(capsys, tmp_path, seed):
    path = tmp_path / 'random.pth'
    path.write_bytes(_noise(seed))
    code, err = _run(capsys, ['weights', 'convert', MODEL + '.vggface2', '--checkpoint', str(path),
                              '--out', str(tmp_path / 'o')])
    _assert_one_line_error(code, err, path, 'corrupt or truncated')
    assert 'carries code' not in err and not (tmp_path / 'o').exists()


@pytest.mark.parametrize('argv, names', [
    (['bench', '--batch-size', '0'], ['--batch-size', '0']),
    (['bench', '--iters', 'ten'], ['--iters', 'ten']),
    (['sample', 'lego_s_u_32', '--steps', '0', '--out', 'x.png'], ['--steps']),
    (['parse-faces', 'img.png', '--boxes', 'b.json', '--out', 'o.png', '--alpha', '2'], ['--alpha']),
    (['train-faces', '--batch-size', '-1'], ['--batch-size']),
    (['detection', 'train', '--min-size', '0'], ['--min-size']),
    (['detection', 'predict', 'a.png', '--checkpoint', 'c', '--out', 'o', '--score-thresh', '1.5'], ['--score-thresh']),
])
def test_bad_argument_values_are_refused_when_parsed(capsys, argv, names):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert 'Traceback' not in err and all(n in err for n in names), err


def test_debug_flag_and_env_show_the_traceback(capsys, tmp_path, monkeypatch):
    argv = ['weights', 'convert', MODEL + '.vggface2', '--checkpoint', str(tmp_path / 'missing.pt'), '--out',
            str(tmp_path / 'o')]
    with pytest.raises(WeightsError):
        main(['--debug'] + argv)
    monkeypatch.setenv('ZOO_DEBUG', '1')
    with pytest.raises(WeightsError):
        main(argv)


def test_internal_bugs_keep_their_traceback(monkeypatch):
    import zoo.cli

    def buggy(args):
        raise KeyError('an internal bug')
    parser = zoo.cli.build_parser()
    args = parser.parse_args(['list'])
    args.func = buggy
    with pytest.raises(KeyError):
        zoo.cli.run_verb(args)


def test_missing_input_file_names_it(capsys, tmp_path):
    code, err = _run(capsys, ['parse-faces', str(tmp_path / 'nope.png'), '--boxes', str(tmp_path / 'b.json'),
                              '--out', str(tmp_path / 'o.png'), '--random-init'])
    _assert_one_line_error(code, err, tmp_path / 'b.json')


# ---- checkpoint_path= goes the way of pretrained_cfg_overlay=dict(file=...) ---------------------------
@pytest.fixture(scope='module')
def small_model():
    torch.manual_seed(0)
    return timm.create_model(MODEL, num_classes=10).eval()


def test_official_file_as_checkpoint_path_is_converted(small_model, tmp_path):
    official = tmp_path / 'official.pt'
    torch.save({'state_dict': {'module.' + k: v for k, v in to_facenet_names(small_model.state_dict()).items()}},
               official)
    loaded = timm.create_model(MODEL, num_classes=10, checkpoint_path=str(official))
    for (k, a), b in zip(small_model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    # the same file through pretrained_cfg_overlay: the same trunk (timm leaves a head of another size new)
    overlay = timm.create_model(MODEL, num_classes=10, pretrained=True, pretrained_cfg_overlay=dict(file=str(official)))
    trunk = {k: v for k, v in overlay.state_dict().items() if not k.startswith('classif.')}
    assert trunk and all(torch.equal(v, loaded.state_dict()[k]) for k, v in trunk.items())


def _truncated(path, save, state):
    save(state, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


class _Payload:
    def __reduce__(self):
        return (print, ('this pickle runs code',))


@pytest.mark.parametrize('kind, match', [
    ('truncated.safetensors', 'corrupt or truncated'),
    ('truncated.pt', 'corrupt or truncated'),
    ('random.pth', 'corrupt or truncated'),
    ('code.pt', 'imports code'),
    ('missing.pt', 'not found'),
    ('resnet.safetensors', 'does not fit'),
    ('seven_classes.safetensors', 'num_classes=7'),
])
def test_bad_checkpoint_path_is_a_weights_error_naming_the_file(small_model, tmp_path, kind, match):
    path = tmp_path / kind
    if kind == 'truncated.safetensors':
        _truncated(path, save_file, small_model.state_dict())
    elif kind == 'truncated.pt':
        _truncated(path, torch.save, small_model.state_dict())
    elif kind == 'random.pth':
        path.write_bytes(_noise(5000))
    elif kind == 'code.pt':
        with open(path, 'wb') as f:
            pickle.dump({'x': _Payload()}, f)
    elif kind == 'resnet.safetensors':
        save_file(timm.create_model('resnet18').state_dict(), path)
    elif kind == 'seven_classes.safetensors':
        save_file(timm.create_model(MODEL, num_classes=7).state_dict(), path)
    before = path.read_bytes() if path.exists() else None
    with pytest.raises(WeightsError, match=match) as e:
        timm.create_model(MODEL, num_classes=10, checkpoint_path=str(path))
    assert str(path) in str(e.value)
    assert (path.read_bytes() if path.exists() else None) == before  # the file is left as it was


def test_timm_models_keep_timm_checkpoint_loading(tmp_path):
    path = tmp_path / 'r.safetensors'
    save_file(timm.create_model('resnet18', num_classes=3).state_dict(), path)
    assert timm.create_model('resnet18', num_classes=3, checkpoint_path=str(path)).num_classes == 3
    with pytest.raises(RuntimeError) as e:  # timm's own error, not ours, for timm's own models
        timm.create_model('resnet18', checkpoint_path=str(path))
    assert not isinstance(e.value, WeightsError)


def test_pickle_needs_code_reads_opcodes_only(tmp_path, capsys):
    code = tmp_path / 'code.pkl'
    with open(code, 'wb') as f:
        pickle.dump({'x': _Payload()}, f)
    zipped = tmp_path / 'code_zip.pt'
    torch.save({'w': torch.ones(1), 'cls': _Payload}, zipped)  # torch's zip format, a class inside
    tensors = tmp_path / 'tensors.pt'
    torch.save({'w': torch.ones(2)}, tensors)
    noise = tmp_path / 'noise.pth'
    noise.write_bytes(_noise(3000))
    assert pickle_needs_code(code) and pickle_needs_code(zipped)
    assert not pickle_needs_code(noise)
    assert capsys.readouterr().out == ''  # nothing was unpickled (the payload prints when run)


def test_read_run_checkpoint_names_the_file(tmp_path):
    (tmp_path / 'last.pt').write_bytes(b'')
    with pytest.raises(InputError, match=r'last\.pth not found.*last\.pt'):
        read_run_checkpoint(tmp_path / 'last.pth')
    torch.save({'weights': torch.ones(1)}, tmp_path / 'other.pth')
    with pytest.raises(InputError, match=r"other\.pth is not a training checkpoint: it lacks \['model'\]"):
        read_run_checkpoint(tmp_path / 'other.pth')
    with pytest.raises(WeightsError, match='corrupt or truncated'):
        read_run_checkpoint(_truncated(tmp_path / 't.pth', torch.save, {'model': {'w': torch.ones(100)}}))


def test_bench_mistakes_fail_before_any_timing(capsys, tmp_path, monkeypatch):
    from zoo import bench

    monkeypatch.setattr(bench, 'run', lambda *a, **k: pytest.fail('timing started'))
    code, err = _run(capsys, ['bench', '--models', 'emov2_1mm'])
    _assert_one_line_error(code, err, "'emov2_1mm'", "did you mean 'emov2_1m'")
    code, err = _run(capsys, ['bench', '--models', 'nothing*'])
    _assert_one_line_error(code, err, 'nothing*', 'zoo list')
    code, err = _run(capsys, ['bench', '--models', 'emov2_1m', '--csv', str(tmp_path / 'no_dir' / 'b.csv')])
    _assert_one_line_error(code, err, tmp_path / 'no_dir')
    code, err = _run(capsys, ['info', 'inception_resnet_v1_facnet'])
    _assert_one_line_error(code, err, "did you mean 'inception_resnet_v1_facenet'")
