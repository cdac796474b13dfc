"""Execute notebooks in place through a real Jupyter kernel, keeping their outputs, with the cells flagged `#| slow` or `#| gpu` skipped
(they keep the outputs of their last full-size run, if any), as nbdev's test runner skips them: `python .ci/run_nbs.py nbs/measure/13_scan.ipynb ...`.

nbconvert --execute would run every cell, including the slow ones that retrain the shipped base or run the full demos.
Sets IN_TEST like nbdev's runner, so notebooks pick their small sizes. Each notebook is written atomically, only if it ran to the end."""
import os, sys, time
from pathlib import Path
import nbformat
from nbclient import NotebookClient

SKIP = ('slow', 'gpu')

def _flagged(cell) -> bool:
    lines = [l.strip() for l in cell.source.splitlines()]
    return cell.cell_type == 'code' and any(l.startswith('#|') and any(f in l.split() for f in SKIP) for l in lines)

def run(path: Path, timeout: int = 1800):
    nb = nbformat.read(path, as_version=4)
    keep = [c for c in nb.cells if not _flagged(c)]
    runnable = nbformat.v4.new_notebook(metadata=nb.metadata); runnable.cells = keep
    t0 = time.perf_counter()
    NotebookClient(runnable, timeout=timeout, kernel_name='python3', store_widget_state=False, resources={'metadata': {'path': str(path.parent)}}).execute()
    for c in nb.cells:
        if c.cell_type == 'code' and _flagged(c): c.execution_count = None   # not run here: its outputs are those of the last full-size run
    tmp = path.with_name(f'.{path.name}.tmp')
    nbformat.write(nb, tmp); os.replace(tmp, path)
    print(f'{path}: {time.perf_counter() - t0:.0f} s', flush=True)

if __name__ == '__main__':
    os.environ.setdefault('IN_TEST', '1')
    for p in sys.argv[1:]: run(Path(p))
