"""The project's structure: no import cycle among the modules of `zoo`, `detection` and `segmentation`
(imports inside functions included), and one registry holding every detector kind."""
import ast
from pathlib import Path
from typing import Dict, List, Set

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ('zoo', 'detection', 'segmentation')


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix('').parts)
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def import_graph() -> Dict[str, Set[str]]:
    """module -> the project modules it imports anywhere in its body (top level or inside functions).
    `from a.b import c` counts as importing `a.b.c` when that is a module, else `a.b`; a parent package
    is not implied by importing its submodule (as grimp / import-linter count)."""
    files = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob('*.py')}
    graph: Dict[str, Set[str]] = {}
    for name, path in files.items():
        is_pkg = path.name == '__init__.py'
        deps: Set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ''
                if node.level:
                    anchor = name.split('.') if is_pkg else name.split('.')[:-1]
                    anchor = anchor[:len(anchor) - (node.level - 1)]
                    base = '.'.join(anchor + ([base] if base else []))
                targets = [f'{base}.{a.name}' if f'{base}.{a.name}' in files else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in files:  # `import a.b.c` of a non-module name -> a.b
                    target = target.rpartition('.')[0]
                if target and target != name:
                    deps.add(target)
        graph[name] = deps
    return graph


def find_cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    cycles: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_cycle_finder_sees_function_level_imports(tmp_path):
    assert find_cycles({'a': {'b'}, 'b': {'a'}, 'c': {'a'}}) == [['a', 'b']]
    assert find_cycles({'a': {'b'}, 'b': set()}) == []


def test_no_import_cycle():
    graph = import_graph()
    assert 'detection.registry' in graph and 'detection.text.mayor' in graph and 'zoo.hub' in graph
    assert find_cycles(graph) == []


def test_imports_point_down():
    graph = import_graph()
    for name, deps in graph.items():
        if name.startswith('zoo'):  # the backbones know nothing about heads
            assert not {d for d in deps if d.startswith(('detection', 'segmentation'))}, name
    # the COCO detectors know nothing of the text ones, and the registry imports no provider
    assert not {d for d in graph['detection.models'] if d.startswith('detection.text')}
    assert graph['detection.registry'] <= {'zoo.errors'}


def test_one_registry_for_every_detector():
    from detection.registry import build_detector, list_detectors

    # the names runs store in their checkpoints' config['model']
    assert list_detectors('coco') == ('mask_rcnn', 'faster_rcnn', 'retinanet', 'fcos', 'ssdlite')
    assert list_detectors('text') == ('mayor', 'text_mask_rcnn')
    assert list_detectors() == list_detectors('coco') + list_detectors('text')
    model = build_detector('text_mask_rcnn', 'resnet18', min_size=64, max_size=64, out_channels=32)
    assert model.detector_kind == 'text'
