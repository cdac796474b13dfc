"rlsub is layered: core → outputs → checkpoints → examples → style → measure → viz | train → experiments → cli; imports run downward only, and no private name crosses a module line."
import ast, sys
from pathlib import Path
import pytest

PKG = Path(__file__).parents[1] / 'rlsub'
FLOOR = {'core': 0, 'outputs': 1, 'checkpoints': 2, 'examples': 3, 'style': 4, 'measure': 5, 'viz': 6, 'train': 6, 'experiments': 7, 'cli': 8}


def imports(pkg: Path = PKG) -> list[tuple[str, str, list[str]]]:
    "(importer, imported module, names) for every import of an rlsub module anywhere in `pkg`, function-level ones included."
    out = []
    for p in sorted(pkg.rglob('*.py')):
        if p.name in ('_modidx.py', '__init__.py'): continue
        me = '.'.join(p.relative_to(pkg).with_suffix('').parts)
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, ast.ImportFrom) and n.level:           # nbdev writes intra-package imports as relative ones
                base = me.split('.')[:-n.level]
                out.append((me, '.'.join(base + ([n.module] if n.module else [])), [a.name for a in n.names]))
            elif isinstance(n, ast.ImportFrom) and (n.module or '').startswith('rlsub.'):
                out.append((me, n.module[6:], [a.name for a in n.names]))
            elif isinstance(n, ast.Import):
                out += [(me, a.name[6:], []) for a in n.names if a.name.startswith('rlsub.')]
    return out


def problems(pkg: Path = PKG) -> list[str]:
    "Every way the package breaks its layering, one line each."
    out, edges = [], {}
    for me, mod, names in imports(pkg):
        if mod in ('', 'rlsub'): continue                            # `from rlsub import __version__`
        edges.setdefault(me, set()).add(mod)
        out += [f"{me} imports the private name {n} from {mod}" for n in names if n.startswith('_') and not n.startswith('__')]
        a, b = FLOOR[me.split('.')[0]], FLOOR[mod.split('.')[0]]
        if me.split('.')[0] != mod.split('.')[0] and a <= b: out.append(f"{me} imports {mod}, which is not on a lower floor")
    out += [f"import circle among {', '.join(c)}" for c in circles(edges)]
    return sorted(set(out))


def circles(edges: dict[str, set]) -> list[list[str]]:
    "One cycle through each group of modules that import each other (Tarjan's strongly connected components)."
    index, low, stack, on, out = {}, {}, [], set(), []
    def connect(v):
        index[v] = low[v] = len(index); stack.append(v); on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index: connect(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1 or v in edges.get(v, ()): out.append(sorted(comp))
    for v in sorted(edges):
        if v not in index: connect(v)
    return out


def test_layers():
    assert problems() == []


def test_modules_stay_small():
    "No module over 500 lines: a module that grows past it holds more than one idea."
    sizes = {p.name: len(p.read_text().splitlines()) for p in PKG.rglob('*.py') if p.name != '_modidx.py'}
    assert max(sizes.values()) <= 500, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]


@pytest.mark.parametrize('plant, expect', [
    ('measure/rules.py', 'measure.rules imports the private name _planted from core'),
    ('measure/circle.py', 'import circle among measure.circle, measure.circle2'),
    ('measure/up.py', 'measure.up imports viz.groups, which is not on a lower floor'),
])
def test_layers_fail_when_planted(tmp_path, plant, expect):
    import shutil
    pkg = tmp_path / 'rlsub'; shutil.copytree(PKG, pkg, ignore=shutil.ignore_patterns('__pycache__', 'zoo'))
    extra = {'measure/rules.py': 'from ..core import _planted\n', 'measure/up.py': 'from ..viz.groups import Grouper\n',
             'measure/circle.py': 'from .circle2 import x\n'}
    (pkg / plant).write_text((pkg / plant).read_text() + extra[plant] if (pkg / plant).exists() else extra[plant])
    if plant == 'measure/circle.py': (pkg / 'measure/circle2.py').write_text('from .circle import y\n')
    assert any(expect in p for p in problems(pkg)), problems(pkg)


if __name__ == '__main__': print('\n'.join(problems()) or 'layered')
