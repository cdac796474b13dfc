"The explorer at scale and on bad inputs: widget behaviour driven from Python, timings left to benchmarks/bench_explorer.py."
import numpy as np, pandas as pd, pytest
import matplotlib
matplotlib.use('Agg')
from rlsub.core import RlsubError
from rlsub.examples import tiny_config
from rlsub.measure.masks import SubnetMask, random_mask
from rlsub.measure.rules import LADDER
from rlsub.measure.scan import scan_pair
from rlsub.viz.explorer import Comparison, Explorer, MaskComparison, explore
from rlsub.viz.groups import Grouper, headline_numbers, tensor_hist, tensor_table, tensor_table_html
from rlsub.viz.figures import plot_by_kind, plot_changes, plot_curve, plot_heatmap, plot_hist
from rlsub.viz.page import report_html, save_report
from rlsub.measure.report import synthetic_report
from rlsub.measure.scan import tensor_changes


@pytest.fixture(scope='module')
def big():
    return synthetic_report(tiny_config('llama', num_hidden_layers=6, tie_word_embeddings=False), seed=3)


@pytest.fixture(scope='module')
def pair(pairs):
    folder, planted = pairs['llama', __import__('torch').bfloat16, True]
    return folder, scan_pair(folder / 'base', folder / 'tuned', progress=False)


def test_grouper_matches_sparsity_at_every_step(big):
    for by in (['layer'], ['kind'], ['layer', 'kind']):
        g = Grouper(big.table, by)
        for rule in ('abs', 'rel'):
            for thr in LADDER[::7]:
                s = big.sparsity(float(thr), rule, by=by if len(by) > 1 else by[0])
                pd.testing.assert_frame_equal(g(big.changed(rule, float(thr)).to_numpy(), s.columns.name), s)


def test_dom_contract(big):
    ex = Explorer(big)
    for w, c in [(ex.headline, 'rlsub-headline'), (ex.threshold, 'rlsub-threshold'), (ex.readout, 'rlsub-readout'), (ex.rule, 'rlsub-rule'),
                 (ex.figure, 'rlsub-figure'), (ex.tensor, 'rlsub-tensor'), (ex.tabs, 'rlsub-tabs')]:
        assert c in w._dom_classes
    assert type(ex.figure).__name__ == 'ClickImage' and type(ex.table).__name__ == 'ClickTable' and type(ex.headline).__name__ == 'HTML' and type(ex.tensor).__name__ == 'Combobox'
    assert f"{big.sparsity():.2%}" in ex.headline.value
    assert ex.figure.layout.width == '518px' and not ex.threshold.readout      # shown at 5.4 in x 96 px, drawn at more pixels
    from PIL import Image
    assert Image.open(__import__('io').BytesIO(ex.figure.value)).width == round(5.4 * 120)


def test_one_threshold_format(big):
    ex = Explorer(big)
    assert '—' in ex.readout.value                                          # exact: no number by the disabled slider
    j = int(np.flatnonzero(np.isclose(LADDER, 3.15e-4))[0])
    ex.rule.value = 'abs'; ex.threshold.value = float(LADDER[j])             # which '{:g}' writes 0.000315
    assert ex.readout.value == '<b>3.15e-4</b>' and ex.threshold.options[j][0] == '3.15e-4'
    assert 'abs: |Δ| &gt; 3.15e-4' in ex.headline.value and '0.000315' not in ex.headline.value


def test_every_control_changes_what_it_should(big):
    ex = Explorer(big)
    ex.rule.value = 'rel'
    assert ex.state == ('rel', 1e-3) and not ex.threshold.disabled
    for view in ('layer', 'kind', 'heatmap', 'tensors'):
        ex.view.value = view
        seen = set()
        for thr in (1e-6, 1e-4, 1e-2):
            ex.threshold.value = thr
            assert f"{big.sparsity('rel', thr):.2%}" in ex.headline.value
            seen.add(ex.figure.value)
        assert len(seen) == 3, view                               # the figure follows the threshold in every view
    ex.sort.value = 'size'
    first = tensor_table(big, 'rel', 1e-2, 'size').name.iloc[0]
    assert ex.table.value.index(first) < ex.table.value.index(tensor_table(big, 'rel', 1e-2, 'size').name.iloc[-1])
    ex.rule.value = 'exact'
    assert ex.threshold.disabled and ex.state == ('exact', None)


def test_tensor_without_checkpoints(big):
    ex = Explorer(big)
    assert not ex.reachable
    name = big.table.name[5]
    ex.tensor.value = name
    assert ex.hist.value[:4] == b'\x89PNG' and ex.note.value == ''           # the picture is read only when its tab is opened
    ex.tabs.selected_index = 1
    assert 'not reachable' in ex.note.value and 'base=' in ex.note.value and ex.changes.value == b''
    ex.tensor.value = 'layers.0'                                           # typing: not a name yet
    assert ex.chosen is None and ex.tabs.layout.display == 'none'
    ex.tensor.value = ''
    assert ex.tabs.layout.display == 'none' and ex.note.value == ''


def test_search_takes_what_the_table_shows(big):
    "The search box takes a name as the table writes it (no 'model.'), in full, or part of one as text or regex; it says when nothing matches."
    ex = Explorer(big)
    full = 'model.layers.3.mlp.down_proj.weight'
    shown = full.removeprefix('model.')
    assert shown in ex.tensor.options and f">{shown}<" in tensor_table_html(tensor_table(big))
    for typed in (shown, full, '  ' + shown + ' ', 'LAYERS.3.MLP.DOWN', r'3\.mlp\.d'):
        ex.tensor.value = typed
        assert ex.chosen == full and ex.tabs.layout.display is None and ex.note.value == '', typed
    ex.tensor.value = 'layers.3.mlp'                                         # three tensors: none chosen, the line says so
    assert ex.chosen is None and '3 tensors match' in ex.note.value and ex.tabs.layout.display == 'none'
    for typed in ('layers.3.mlp.nowhere', 'down_proj[', 'model.model.layers.3'):       # '[' is no regex: searched as text
        ex.tensor.value = typed
        assert ex.chosen is None and ex.note.value.count('no tensor matches') == 1 and '<br' not in ex.note.value, typed
    ex._on_row(full)                                                          # a click on a row writes the name as the table shows it
    assert ex.tensor.value == shown and ex.chosen == full and ex.table.selected == full


def test_tensor_picture_follows_threshold(pair):
    folder, report = pair
    ex = Explorer(report, size=16)
    name = 'model.layers.1.mlp.up_proj.weight'
    ex.rule.value, ex.tensor.value, ex.tabs.selected_index = 'abs', name, 1
    a = ex.changes.value
    ex.threshold.value = 1e-3
    assert a != ex.changes.value and ex.changes.value[:4] == b'\x89PNG'
    for rule, thr in [('exact', None), ('abs', 0.0), ('rel', 5e-3)]:
        tc = tensor_changes(folder / 'base', folder / 'tuned', name, rule, thr, size=7, band=333)
        assert tc.changed == int(report.changed(rule, thr)[name])
        assert tc.rows.shape == (tc.shape[0],) and tc.blocks.shape == (7, 7)
        assert np.isclose((tc.rows * tc.cols.size).sum(), tc.changed)


def test_clicks_choose_and_cut(big):
    "Every heatmap cell of a 6-layer layout, clicked at its centre, cuts the table to that cell and chooses its largest tensor; rows choose."
    ex = Explorer(big)
    ex.rule.value, ex.view.value = 'abs', 'heatmap'
    assert 'click a cell' in ex.hint.value
    t = tensor_table(big, sort='size')
    lab = lambda v: '—' if v is pd.NA else str(v)
    for (layer, kind), rows in t.groupby([t.layer.map(lab), t.kind], sort=False):
        ex._on_figure_click(*ex.point(layer=rows.layer.iloc[0], kind=kind))
        assert ex.chosen == rows.name.iloc[0] and ex.table.selected == ex.chosen, (layer, kind)
        assert ex.table.value.count('<tr data-name=') == len(rows) and f"only layer {layer} · kind {kind}" in ex.unfilter.description
    ex._on_figure_click(0.005, 0.005)                                       # the margin: nothing changes
    assert ex.filter is not None and ex.chosen == rows.name.iloc[0]
    ex._on_figure_click(*ex.point(layer=0, kind='norm'))                    # two norms in a layer: both listed, the first chosen
    assert ex.table.value.count('<tr data-name=') == 2
    ex._on_row(big.table.name[7]); assert ex.chosen == big.table.name[7]
    ex._on_row('no such tensor'); assert ex.chosen == big.table.name[7]
    ex.view.value = 'layer'
    ex._on_figure_click(*ex.point(layer=3))
    assert ex.filter == {'layer': 3} and ex.table.value.count('<tr data-name=') == (big.table.layer == 3).sum()
    assert ex.hint.value == ''                                             # clicked: the hint has done its job
    ex.focus(None)
    assert ex.table.layout.display == 'none' and ex.unfilter.layout.display == 'none' and "a layer's dot" in ex.hint.value
    ex.view.value = 'tensors'
    assert ex.figure.pointer is False and ex._on_figure_click(0.5, 0.5) is None and ex.filter is None    # the curve has no groups


def test_tensor_hist_counts_match_changed(big):
    name = big.table.name[10]
    for rule in ('abs', 'rel'):
        h = tensor_hist(big, name, rule)
        for j in range(0, len(LADDER), 9):
            assert int(h['count'][h.lo >= LADDER[j]].sum()) == int(big.changed(rule, float(LADDER[j]))[name])
    with pytest.raises(RlsubError, match='histograms exist for rules abs and rel'): tensor_hist(big, name, 'exact')


def test_plain_plots_return_figures(big, pair):
    from matplotlib.figure import Figure
    folder, report = pair
    figs = [plot_by_kind(big, 'abs', 1e-4), plot_heatmap(big.sparsity(by=['layer', 'kind'])), plot_curve(big.curve()),
            plot_hist(tensor_hist(big, big.table.name[0]), 1e-5),
            plot_changes(tensor_changes(folder / 'base', folder / 'tuned', 'model.norm.weight'))]
    assert all(isinstance(f, Figure) for f in figs)


def test_compare_reports_and_masks(pair, big):
    folder, report = pair
    cmp = explore(report, report, labels=('one', 'two'), show=False)
    assert isinstance(cmp, Comparison) and cmp.headline.value.count(f"{report.sparsity():.2%}") == 2
    cmp.rule.value = 'abs'; cmp.threshold.value = 1e-3
    assert cmp.headline.value.count(f"{report.sparsity('abs', 1e-3):.2%}") == 2
    m = SubnetMask.from_pair(folder / 'base', folder / 'tuned')
    mc = explore(m, m, show=False)
    assert isinstance(mc, MaskComparison) and mc.overall.o1 == 1.0 and 'rlsub-figure' in mc.figure._dom_classes
    r = random_mask(m, seed=0)
    assert abs(explore(m, r, show=False).overall.z1) < 5
    with pytest.raises(RlsubError, match='explore takes'): explore(report, m, show=False)
    with pytest.raises(RlsubError, match='explore takes'): explore('report.json', show=False)


def test_html_is_self_contained_and_atomic(pair, tmp_path):
    folder, report = pair
    page = report_html(report, 'rel', 1e-3)
    assert page.startswith('<!DOCTYPE html>') and page.count('data:image/png;base64,') == 4
    assert f"{report.sparsity('rel', 1e-3):.2%}" in page and 'rlsub-headline' in page
    assert all(n in page for n in report.table.name)
    p = save_report(report, tmp_path / 'r.html')
    assert p.read_text().startswith('<!DOCTYPE html>') and [q.name for q in tmp_path.iterdir()] == ['r.html']
    with pytest.raises(RlsubError, match='does not exist'): save_report(report, tmp_path / 'missing' / 'r.html')


def test_headline_and_table_errors(big):
    h = headline_numbers(big, 'abs', 2e-5)                                  # between ladder steps: the step below answers
    assert h['label'].startswith('abs') and h['changed'] == int(big.changed('abs', 2e-5).sum())
    with pytest.raises(RlsubError, match='sort must be one of'): tensor_table(big, sort='colour')
    with pytest.raises(RlsubError, match='unknown rule'): headline_numbers(big, 'fuzzy')
