"What a reader sees: every rlsub figure displays as an image through a real Jupyter kernel, with no `%matplotlib` magic; no committed notebook output is a `<Figure ...>` text."
import json
from pathlib import Path
import nbformat, pytest
from nbclient import NotebookClient

NBS = Path(__file__).parents[1] / 'nbs'

SETUP = """
import tempfile, pandas as pd
from pathlib import Path
from rlsub.examples import make_pair
from rlsub.measure.scan import scan_pair
from rlsub.measure.masks import SubnetMask, overlap
from rlsub.viz.figures import plot_sparsity, plot_by_layer, plot_by_kind, plot_heatmap, plot_hist, plot_curve, plot_changes, plot_overlap; from rlsub.viz.groups import tensor_hist; from rlsub.measure.scan import tensor_changes
from rlsub.train.callbacks import plot_history
d = Path(tempfile.mkdtemp()); make_pair(d / 'p', seed=0)
r = scan_pair(d / 'p/base', d / 'p/tuned', progress=False)
name = r.table.name[2]
m1 = SubnetMask.from_pair(d / 'p/base', d / 'p/tuned', 'exact')
hist = pd.DataFrame(dict(step=[1, 2, 3], reward=[.2, .4, .5], accuracy=[.1, .3, .4], sparsity_bf16=[None, None, .9]))
"""
FIGURES = {   # one cell each: its last expression is a figure
    'plot_by_layer': "plot_by_layer(r, 'abs', 1e-5)",
    'plot_by_kind': "plot_by_kind(r)",
    'plot_sparsity': "plot_sparsity(r.sparsity('exact', None, by='kind'), r.sparsity('abs', 1e-5, by='kind'), labels=['exact', 'abs'])",
    'plot_heatmap': "plot_heatmap(r.sparsity('exact', None, by=['layer', 'kind']))",
    'plot_curve': "plot_curve(r.curve(), 'abs', 1e-5)",
    'plot_hist': "plot_hist(tensor_hist(r, name, 'abs'), 1e-5)",
    'plot_changes': "plot_changes(tensor_changes(d / 'p/base', d / 'p/tuned', name, 'exact'))",
    'plot_overlap': "plot_overlap(overlap(m1, m1, by='kind'))",
    'plot_history': "plot_history(hist)",
}


@pytest.fixture(scope='module')
def executed():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SETUP)] + [nbformat.v4.new_code_cell(src) for src in FIGURES.values()]
    NotebookClient(nb, timeout=300, kernel_name='python3').execute()
    return dict(zip(FIGURES, nb.cells[1:]))


@pytest.mark.parametrize('fn', FIGURES)
def test_figure_displays_as_image(executed, fn):
    outs = [o for o in executed[fn].outputs if o.output_type == 'execute_result']
    assert len(outs) == 1, f'{fn}: expected one displayed result, got {executed[fn].outputs}'
    data, meta = outs[0]['data'], outs[0].get('metadata', {})
    assert 'image/png' in data, f"{fn} displays as {data.get('text/plain')!r}, not an image"
    assert data['image/png'].startswith('iVBOR')                  # base64 of the PNG signature
    w = meta.get('image/png', {}).get('width')
    assert w and 300 <= w <= 1000, f'{fn}: shown {w} px wide'   # drawn at twice that: sharp, and fits a notebook column


def _outputs(nb_path):
    for cell in json.loads(nb_path.read_text())['cells']:
        for o in cell.get('outputs', []): yield o


@pytest.mark.parametrize('nb', sorted(p for p in NBS.rglob('*.ipynb') if '.ipynb_checkpoints' not in p.parts), ids=lambda p: str(p.relative_to(NBS)))
def test_no_committed_figure_text(nb):
    for o in _outputs(nb):
        data = o.get('data', {})
        text = ''.join(data.get('text/plain', '')) + ''.join(o.get('text', ''))
        assert not ('<Figure size' in text and 'image/png' not in data), f'{nb.name} has a cell showing {text.strip()[:60]!r} instead of a picture'


DASHBOARDS = {   # one cell each, as a reader writes them
    'assigned': "ex = explore(r)",                                         # displayed by explore
    'last': "explore(r, r, labels=('a', 'b'))",                            # displayed by explore, then returned as the cell's value
    'redisplayed': "ex.view.value = 'kind'; ex.tensor.value = name; display(ex)",
}


@pytest.fixture(scope='module')
def dashboards():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SETUP + "from rlsub.viz.explorer import explore")] + [nbformat.v4.new_code_cell(s) for s in DASHBOARDS.values()]
    NotebookClient(nb, timeout=300, kernel_name='python3').execute()
    return dict(zip(DASHBOARDS, nb.cells[1:]))


@pytest.mark.parametrize('cell', DASHBOARDS)
def test_dashboard_carries_a_static_snapshot(dashboards, cell):
    "Each dashboard output holds the widget (a live kernel) and HTML with the figure and the table (GitHub, nbviewer, no kernel), once."
    outs = dashboards[cell].outputs
    shown = [o for o in outs if 'application/vnd.jupyter.widget-view+json' in o.get('data', {})]
    assert len(shown) == 1, f'{cell}: expected the dashboard once, got {[sorted(o.get("data", {})) for o in outs]}'
    h = shown[0]['data'].get('text/html', '')
    assert h.count("src='data:image/png;base64,iVBOR") >= 1 and 'sparsity' in h, f'{cell}: no figure or headline in {h[:200]!r}'
    assert '<table' in h or cell == 'last', f'{cell}: no table in the snapshot'
    assert shown[0]['data']['text/plain'].split()[0] in ('Explorer', 'Comparison')
    if cell == 'last':
        assert [o['data']['text/plain'] for o in outs if o.output_type == 'execute_result'] == ["Comparison of a, b: rule exact, threshold None, view layer, minus a"]
    if cell == 'redisplayed':   # the state at display: kinds' table, the chosen tensor's histogram beside the figure
        assert '<th>q</th>' in h and h.count('<img') == 2
