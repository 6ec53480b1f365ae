"""The `zoo` command, run in-process."""
import json

import pytest

from zoo.cli import main


def test_list(capsys):
    assert main(['list', 'inception*']) == 0
    out = capsys.readouterr().out
    assert 'inception_resnet_v1 ' in out and 'no published weights' in out
    assert 'inception_resnet_v2' in out and '(timm)' in out and 'vggface2' in out


def test_list_includes_the_heads_model_families(capsys):
    """The face-parsing models live in `segmentation` and join the catalogue via its `zoo.families`
    entry point; they are the zoo's own, not timm's."""
    import zoo

    assert {'rtnet50_fcn11', 'rtnet101_fcn14', 'resnet50_deeplabv3plus14'} <= set(zoo.catalogue(['r*']))
    assert zoo.family_of('rtnet50_fcn11.ibugmask') == 'face_parsing'
    assert main(['list', 'rtnet*']) == 0
    out = capsys.readouterr().out
    assert 'rtnet50_fcn11 ' in out and 'face_parsing ' in out and '(timm)' not in out and 'ibugmask' in out
    assert main(['info', 'rtnet50_fcn11']) == 0
    info = json.loads(capsys.readouterr().out)
    assert info['family'] == 'face_parsing' and info['implemented_by'] == 'zoo'


def test_info(capsys):
    assert main(['info', 'inception_resnet_v1_facenet']) == 0
    info = json.loads(capsys.readouterr().out)
    assert info['params'] == 27_910_327 and info['family'] == 'inception'
    assert info['tags']['inception_resnet_v1_facenet.vggface2']['source'] == 'url'
    assert info['tags']['inception_resnet_v1_facenet.vggface2']['manifest']['metric']['value'] == 0.9965
    assert main(['info', 'no_such_model']) == 2


def test_bench(capsys, tmp_path):
    args = ['bench', '--models', 'inception_resnet_v1_facenet', '--batch-size', '1', '--channels-last', '--fuse',
            '--warmup', '0', '--iters', '1', '--img-size', '96', '--quiet', '--csv', str(tmp_path / 'b.csv'),
            '--json', str(tmp_path / 'b.json'), '--plot', str(tmp_path / 'b.png')]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert 'channels_last' in out and 'GMACs' in out
    assert all((tmp_path / f).is_file() for f in ('b.csv', 'b.json', 'b.png'))
    assert main(['bench', '--models', 'nothing*']) == 2


def test_weights_errors_exit_cleanly(capsys, tmp_path):
    assert main(['weights', 'convert', 'inception_resnet_v1_facenet.vggface2', '--checkpoint',
                 str(tmp_path / 'missing.pt'), '--out', str(tmp_path / 'o')]) == 2
    assert 'Checkpoint not found' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(['weights'])


def test_console_script_is_installed():
    import shutil
    import subprocess
    import sys
    from pathlib import Path
    script = shutil.which('zoo') or str(Path(sys.executable).parent / 'zoo')
    result = subprocess.run([script, '--help'], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and 'bench' in result.stdout and 'weights' in result.stdout


def _options_without_help(parser, path):
    import argparse
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options_without_help(sub, path + [name])
        elif not action.help and not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield ' '.join(path), (action.option_strings or [action.dest])[-1]


def test_every_argument_of_every_verb_says_what_it_is():
    from zoo.cli import build_parser
    assert list(_options_without_help(build_parser(), ['zoo'])) == []


def test_version(capsys):
    import zoo
    with pytest.raises(SystemExit) as e:
        main(['--version'])
    assert e.value.code == 0 and zoo.__version__ in capsys.readouterr().out and zoo.__version__ != '0.0.0+unknown'


def test_face_parsers_after_a_plain_import_zoo():
    """`import zoo` is enough for every model `zoo list` shows, the heads' included (a fresh process)."""
    import subprocess
    import sys
    code = "import zoo; m = zoo.create_model('rtnet50_fcn11', num_classes=3); print(type(m).__name__)"
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == 'RTNet', out.stderr[-2000:]


def test_the_default_tag_is_said(capsys, caplog):
    """A bare name loads one of several published weights: `zoo list` / `info` say which, and loading says so."""
    assert main(['list', 'emov2_1m']) == 0
    assert 'in1k_kd (default)' in capsys.readouterr().out
    assert main(['info', 'emov2_1m']) == 0
    assert json.loads(capsys.readouterr().out)['default_tag'] == 'in1k_kd'
    import timm
    import torch
    from zoo.hub import url_cache_path
    for tag in ('emov2_1m.in1k', 'emov2_1m.in1k_kd'):  # both official files, where torch hub keeps downloads
        path = url_cache_path(timm.models.get_pretrained_cfg(tag).url)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(timm.create_model('emov2_1m').state_dict(), path)
    caplog.set_level('INFO', logger='zoo.hub')
    timm.create_model('emov2_1m', pretrained=True)
    assert "'emov2_1m' without a tag loads its default weights 'emov2_1m.in1k_kd'" in caplog.text
    caplog.clear()
    timm.create_model('emov2_1m.in1k', pretrained=True)
    assert 'default weights' not in caplog.text  # a named tag is a choice, not a default
