"""The README agrees with the code: every command it shows parses with the real `zoo` parser and names
models, configs, files and make targets that exist; its Python blocks compile and name real models; the
checkpoint its eval / predict lines read is the one training writes; the cheap commands run as written."""
import ast
import re
import shlex
from pathlib import Path

import pytest

import zoo
from zoo.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / 'README.md').read_text()
BLOCKS = re.findall(r'```(\w+)\n(.*?)```', README, re.S)


def _commands():
    """(line, argv) of every command line in the README's bash blocks, comments and `[optional ...]` removed."""
    found = []
    for lang, body in BLOCKS:
        if lang != 'bash':
            continue
        for line in body.splitlines():
            text = re.sub(r'\[[^\]]*\]', '', line)  # `[--dry-run]`: optional parts
            argv = [a for a in shlex.split(text, comments=True) if a != '...']
            if argv:
                found.append((line.strip(), argv))
    return found


COMMANDS = _commands()
ZOO = [(line, argv[1:]) for line, argv in COMMANDS if argv[0] == 'zoo']


def test_readme_has_commands_and_python():
    assert len(ZOO) >= 20 and any(lang == 'python' for lang, _ in BLOCKS)


@pytest.mark.parametrize('line, argv', ZOO, ids=[line for line, _ in ZOO])
def test_zoo_commands_parse_and_name_real_things(line, argv):
    args = build_parser().parse_args(argv)  # a wrong verb or flag exits 2 here
    given = [a.lstrip('-') for a in argv] + ([argv[1]] if argv[0] in ('info', 'weights') else [])
    names = [getattr(args, k) for k in ('model', 'backbone') if k in given and isinstance(getattr(args, k, None), str)]
    if argv[0] in ('info',) or argv[:2] == ['weights', 'convert']:
        names.append(args.model)
    for name in names:
        assert zoo.models.is_model(name) or name in _detector_kinds(), f'{line}: unknown model {name!r}'
    for pattern in getattr(args, 'models', None) or []:
        assert zoo.catalogue([pattern]), f'{line}: {pattern!r} matches no model'
    if getattr(args, 'config', None):
        from detection.config import find_config
        find_config(args.config)


def _detector_kinds():
    from detection.registry import list_detectors
    return list_detectors()


def test_other_commands_name_real_targets_and_files():
    makefile = (ROOT / 'Makefile').read_text()
    for line, argv in COMMANDS:
        if argv[0] == 'make':
            assert re.search(rf'^{argv[1]}:', makefile, re.M), f'{line}: no make target {argv[1]}'
        elif argv[0] == 'python':
            assert (ROOT / argv[1]).is_file(), f'{line}: no {argv[1]}'
        elif argv[0] == 'torchrun':
            rest = argv[argv.index('-m') + 2:]
            from detection.cli import build_parser as detection_parser
            detection_parser().parse_args(rest or ['train'])
        else:
            assert argv[0] == 'zoo', f'{line}: a command the README test does not know'


def test_eval_and_predict_read_the_checkpoint_training_writes():
    """`--checkpoint runs/X/NAME` after a training line with `--out runs/X`: NAME is the file the run writes."""
    from zoo.hub import RUN_CHECKPOINT
    outs = {args[args.index('--out') + 1].rstrip('/') for _, args in ZOO if 'train' in args and '--out' in args}
    checked = 0
    for line, args in ZOO:
        if '--checkpoint' in args:
            path = Path(args[args.index('--checkpoint') + 1])
            if str(path.parent) in outs:
                assert path.name == RUN_CHECKPOINT, f'{line}: training writes {RUN_CHECKPOINT}, not {path.name}'
                checked += 1
    assert checked >= 3


def test_python_blocks_compile_and_name_real_models():
    calls = ('create_model', 'from_name', 'build_detector')
    for lang, body in BLOCKS:
        if lang != 'python':
            continue
        tree = ast.parse(body)  # a syntax error fails here
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, 'attr', getattr(node.func, 'id', '')) in calls:
                first = node.args[0] if node.args else None
                if isinstance(first, ast.Constant) and isinstance(first.value, str) and ':' not in first.value:
                    name = first.value
                    assert zoo.models.is_model(name) or name in _detector_kinds(), f'unknown model {name!r}'
                backbone = next((k.value for k in node.keywords if k.arg == 'backbone'), None)
                if isinstance(backbone, ast.Constant):
                    assert zoo.models.is_model(backbone.value)


@pytest.mark.parametrize('argv', [['info', 'inception_resnet_v1'], ['detection', 'configs'], ['text', 'configs'],
                                  ['list']])
def test_cheap_commands_run_as_written(argv, capsys):
    assert any(a == argv[:len(a)] for _, a in ZOO), f'zoo {" ".join(argv)} is not in the README'
    assert main(argv) == 0 and capsys.readouterr().out
