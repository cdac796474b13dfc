"""Make README.md from nbs/index.ipynb (markdown, with code cells as fenced blocks); --check fails if README.md differs.

nbdev_readme needs Quarto, which is not installable here; nbconvert renders the same notebook to GitHub markdown.
Cells marked `#| hide` are left out and `#| ...` directive lines are dropped, as nbdev does; image links relative to nbs/ are rewritten relative to the repository root.
"""
import sys
from pathlib import Path
import nbformat
from nbconvert import MarkdownExporter

ROOT = Path(__file__).resolve().parents[1]


def render() -> str:
    nb = nbformat.read(ROOT / 'nbs' / 'index.ipynb', as_version=4)
    cells = []
    for c in nb.cells:
        lines = c.source.splitlines()
        if c.cell_type == 'code':
            if any(l.strip().replace(' ', '') in ('#|hide', '#|export', '#|exporti') for l in lines): continue
            c.source = '\n'.join(l for l in lines if not l.lstrip().startswith('#|')).strip()
            if not c.source: continue
        cells.append(c)
    nb.cells = cells
    body, _ = MarkdownExporter(exclude_output_prompt=True, exclude_input_prompt=True).from_notebook_node(nb)
    body = body.replace('](images/', '](nbs/images/')     # images live next to the notebook; README.md sits one folder up
    return '<!-- generated from nbs/index.ipynb by .ci/readme.py: edit the notebook, not this file -->\n\n' + body.strip() + '\n'


if __name__ == '__main__':
    text = render()
    if '--check' in sys.argv:
        if (ROOT / 'README.md').read_text() != text:
            sys.exit('README.md is not what .ci/readme.py makes of nbs/index.ipynb: run `python .ci/readme.py` and commit')
    else:
        (ROOT / 'README.md').write_text(text)
