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
