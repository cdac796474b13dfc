"`rlsub table` and `rlsub.measure.table` on bad input and on reruns: every bad PAIRS line is one line naming it, kept reports are reused (counted, not timed)."
import contextlib, io, os, subprocess, sys
from pathlib import Path
import pandas as pd, pytest, torch
from rlsub.measure import table as C
from rlsub.cli import main
from rlsub.examples import make_pair, tiny_config
from rlsub.core import RlsubError


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    "Three planted pairs at known densities, and a tuned checkpoint of another size."
    d = tmp_path_factory.mktemp('compare')
    planted = {name: make_pair(d / name, tiny_config('llama', tie_word_embeddings=False), density=dens, seed=i)
               for i, (name, dens) in enumerate([('a', 0.5), ('b', 0.2), ('c', 0.05)])}
    make_pair(d / 'small', tiny_config('llama', hidden_size=32, intermediate_size=64, tie_word_embeddings=False), seed=9)
    return d, planted


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def scans(monkeypatch):
    "Count the streamed scans `rlsub table` starts."
    calls = []
    real = C.scan_pair
    def counting(*a, **kw):
        calls.append(a); return real(*a, **kw)
    monkeypatch.setattr(C, 'scan_pair', counting)
    return calls


def pairs_file(root: Path, tmp: Path, text: str) -> Path:
    "A PAIRS file in `tmp` whose relative paths point at `root` (through a link named `r`)."
    (tmp / 'r').symlink_to(root) if not (tmp / 'r').exists() else None
    p = tmp / 'pairs.txt'; p.write_text(text)
    return p


GOOD = 'r/a/base r/a/tuned half\nr/b/base r/b/tuned "a fifth"   # comment\n\nr/c/base r/c/tuned\n'


def one_line_error(code, out, err, says):
    assert code == 2, (code, out, err)
    assert err.count('\n') == 1 and err.startswith('rlsub: error: ') and says in err, err


@pytest.mark.parametrize('text, says', [
    ('r/a/base\n', 'line 1: 1 field;'),
    ('# header\nr/a/base r/a/tuned x y\n', 'line 2: 4 fields'),
    ('r/a/base "r/a/tuned\n', 'line 1: unclosed quote'),
    ('\n# nothing but comments\n', 'lists no pairs'),
    ('r/a/base r/a/tuned x\nr/b/base r/b/tuned x\n', "line 2: the name 'x' is already used on line 1"),
    ('r/a/base r/a/tunde\n', 'line 1: r/a/tunde: no such file or folder'),
    ('r/a/base /nowhere/at/all\n', 'line 1: /nowhere/at/all: no such file or folder'),
    ('r/a/base ./missing\n', 'line 1: ./missing: no such file or folder'),
    ('r/a/base r/a/tuned\nnope r/a/tuned\n', 'line 2: nope: no such file or folder'),
])
def test_bad_pairs_lines(root, tmp_path, scans, text, says):
    p = pairs_file(root[0], tmp_path, text)
    one_line_error(*run('table', p, '-o', tmp_path / 't.csv'), says)
    assert str(p) in run('table', p)[2]                                  # the message names the file, then the line
    assert scans == [] and not (tmp_path / 't.csv').exists() and not (tmp_path / 'pairs-reports').exists()


@pytest.mark.parametrize('args, says', [
    (['-o', 'table.xlsx'], "name the file .csv, .md or .html"),
    (['-o', 'link.csv'], "one of this command's input files"),          # a link to the PAIRS file
    (['-o', 'r/a/base/t.csv'], 'inside the input checkpoint folder'),
    (['-o', 'missing-folder/t.csv'], 'does not exist'),
    (['--reports', 'r/a/tuned/kept'], 'inside the input checkpoint folder'),
    (['--reports', 'pairs.txt'], 'is a file'),
    (['--device', 'tpu'], 'device'),
])
def test_bad_options_before_any_scan(root, tmp_path, scans, args, says):
    p = pairs_file(root[0], tmp_path, GOOD)
    (tmp_path / 'link.csv').symlink_to(p)
    args = [str(tmp_path / a) if i and args[i - 1] in ('-o', '--reports') else a for i, a in enumerate(args)]
    one_line_error(*run('table', p, *args), says)
    assert scans == [] and not (tmp_path / 'pairs-reports').exists() and not (root[0] / 'a/tuned/kept').exists()


def test_missing_pairs_file(tmp_path):
    one_line_error(*run('table', tmp_path / 'none.txt'), 'no such PAIRS file')
    one_line_error(*run('table', tmp_path), 'is a folder')


def test_table_numbers_and_reuse(root, tmp_path, scans):
    d, planted = root
    p = pairs_file(d, tmp_path, GOOD)
    code, out, err = run('table', p, '-o', tmp_path / 't.csv', '--no-progress')
    assert code == 0, err
    assert len(scans) == 3 and '3 scanned, 0 kept reports reused, 0 not compared' in out
    t = pd.read_csv(tmp_path / 't.csv', index_col='pair')
    assert list(t.index) == ['half', 'a fifth', 'c/tuned']
    for name, key in (('half', 'a'), ('a fifth', 'b'), ('c/tuned', 'c')):
        pl = planted[key]
        assert t.loc[name, 'exact'] == pytest.approx(1 - pl.changed.sum() / pl.numel.sum(), abs=1e-15)
        assert t.loc[name, 'params'] == pl.numel.sum()
    kept = sorted((tmp_path / 'pairs-reports').glob('*.json.gz'))
    assert len(kept) == 3

    code, out, _ = run('table', p, '-o', tmp_path / 't2.csv', '--no-progress')          # a rerun scans nothing
    assert code == 0 and len(scans) == 3 and '0 scanned, 3 kept reports reused' in out
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / 't2.csv'), pd.read_csv(tmp_path / 't.csv'))

    os.utime(d / 'b/tuned/model.safetensors')                                         # a rewritten weight file: that pair only
    next(k for k in kept if k.name.startswith('half.')).write_bytes(b'\x1f\x8bnot gzip')   # a damaged kept report: scanned again
    code, out, _ = run('table', p, '--no-progress')
    assert code == 0 and len(scans) == 5 and '2 scanned, 1 kept reports reused' in out

    code, out, _ = run('table', p, '--rescan', '--no-progress')
    assert code == 0 and len(scans) == 8

    (tmp_path / 'moved.txt').write_text(GOOD.replace('r/', str(d) + '/'))              # the same pairs by another path: a new key
    assert run('table', tmp_path / 'moved.txt', '--reports', tmp_path / 'pairs-reports', '--no-progress')[0] == 0
    assert len(scans) == 11


def test_refused_pair_is_a_row(root, tmp_path, scans):
    p = pairs_file(root[0], tmp_path, GOOD + 'r/a/base r/small/tuned "other size"\nr/c/base r/c/tuned again\n')
    code, out, err = run('table', p, '-o', tmp_path / 't.md', '--no-progress')
    assert code == 1                                                     # a table, but not every pair in it
    assert 'line 5 (other size): not compared: ' in err and 'different model sizes' in err
    assert '3 scanned, 1 kept reports reused, 1 not compared' in out   # line 6 repeats line 4's pair: its report, just kept
    md = (tmp_path / 't.md').read_text()
    assert '| other size | — | — |' in md and md.count('\n| ') == 6     # header + rule + five rows, in the file's order
    assert md.index('| again |') > md.index('| other size |')


def test_names_and_kinds(root, tmp_path):
    d, _ = root
    reports = [C.report_for(str(d / k / 'base'), str(d / k / 'tuned'), tmp_path, k, progress=False)[0] for k in 'abc']
    t = C.sparsity_table(reports)
    assert list(t.index) == ['a/tuned', 'b/tuned', 'c/tuned']
    assert (t['range min kind'] != '').all() and (t['range min'] <= t['range max']).all()
    with pytest.raises(RlsubError, match='2 names for 3 reports'): C.sparsity_table(reports, names=['x', 'y'])
    with pytest.raises(RlsubError, match='compare takes DeltaReports'): C.sparsity_table([reports[0], 3])
    assert isinstance(t.sort_values('exact'), pd.DataFrame) and 'pair' in repr(t)


def test_cli_end_to_end(root, tmp_path):
    "The installed command in a subprocess: the table on stdout, per-pair lines on stderr, an HTML page written."
    p = pairs_file(root[0], tmp_path, GOOD)
    r = subprocess.run([sys.executable, '-c', 'from rlsub.cli import console; console()', 'table', str(p), '-o', str(tmp_path / 't.html'), '--no-progress'],
                       capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE='1'))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].split()[:3] == ['pair', 'parameters', 'exact'] and 'half' in r.stdout
    assert r.stderr.count('scanned in') == 3
    page = (tmp_path / 't.html').read_text()
    assert page.startswith('<!DOCTYPE html>') and page.count('<tr>') == 4 and 'http' not in page


def test_table_argument_errors_import_nothing_heavy():
    "`rlsub table` with bad arguments answers before torch or pandas is imported, like every other command."
    code = ("import sys\nfrom rlsub.cli import main\n"
            "for argv in (['table'], ['table', 'p.txt', '--bogus'], ['table', '--help']):\n"
            "    try: assert main(argv) == 2\n"
            "    except SystemExit as e: assert e.code == 0\n"
            "heavy = [m for m in ('torch', 'pandas', 'numpy', 'transformers') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_explore_several_reports_at_scale():
    "`explore(*reports)` over four reports with a 6-layer layout: every view and reference, scales shared across the figures of a view."
    import matplotlib; matplotlib.use('Agg')
    from rlsub.viz.explorer import Comparison, explore
    from rlsub.measure.report import synthetic_report
    reps = [synthetic_report(tiny_config('llama', num_hidden_layers=6, tie_word_embeddings=False), seed=s) for s in range(4)]
    cmp = explore(*reps, show=False)
    assert isinstance(cmp, Comparison) and list(cmp.reports) == ['A', 'B', 'C', 'D']
    for rule in ('exact', 'abs', 'rel'):
        cmp.rule.value = rule
        for ref in ('A', 'C'):
            cmp.reference.value = ref
            for view in ('layer', 'kind', 'heatmap', 'diff'):
                cmp.view.value = view
                shown = [i for i, im in enumerate(cmp.images) if im.layout.display != 'none']
                assert shown == {'layer': [0], 'kind': [0], 'heatmap': [1, 2, 3, 4], 'diff': [1, 2, 3]}[view]
                assert all(cmp.images[i].value[:4] == b'\x89PNG' for i in shown)
                if view in ('heatmap', 'diff'):
                    keys = [k for k in cmp._figs if k[0] == view and (view == 'heatmap' or k[2] == ref)]
                    clims = {cmp._figs[k][0].axes[0].images[0].get_clim() for k in keys}
                    assert len(clims) == 1, clims                                # one colour scale for the view
                    lo, hi = clims.pop()
                    if view == 'diff': assert lo == -hi
                    else: assert hi == 1.0 and lo <= min(r.sparsity(rule, None if rule == 'exact' else cmp.threshold.value, by=['layer', 'kind']).sparsity.min() for r in reps)
    assert f"− C" in cmp.headline.value and 'minus C' in repr(cmp)
