"The `rlsub` command as a user runs it: a subprocess, its exit code, its stderr, and what it leaves on disk."
import json, os, shutil, subprocess, sys
from pathlib import Path
import pytest, torch
from safetensors.torch import save_file

RLSUB = [sys.executable, '-c', 'from rlsub.cli import console; console()']   # what the installed `rlsub` runs


def rlsub(*args, cwd=None):
    return subprocess.run(RLSUB + [str(a) for a in args], capture_output=True, text=True, cwd=cwd,
                          env=dict(os.environ, HF_HUB_OFFLINE='1'))


@pytest.fixture(scope='module')
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp('cli')
    r = rlsub('example', d / 'pair', '--layers', 2, '--hidden', 32)
    assert r.returncode == 0, r.stderr
    return d / 'pair'


def test_scan_prints_and_writes(pair, tmp_path):
    r = rlsub('scan', pair / 'base', pair / 'tuned', '-o', tmp_path / 'report.json', '--no-progress')
    assert r.returncode == 0, r.stderr
    for part in ('exact', 'abs', 'rel', 'by kind', 'by layer'): assert part in r.stdout
    doc = json.loads((tmp_path / 'report.json').read_text())
    assert doc['format'] == 'rlsub.DeltaReport' and len(doc['tensors']) == 21
    s = rlsub('show', tmp_path / 'report.json', '--rule', 'rel', '--threshold', '1e-3', '--by', 'layer+kind')
    assert s.returncode == 0 and 'rel: |Δ|/max(|w|,|ŵ|) > 0.001' in s.stdout


def corrupt_copies(pair: Path, tmp: Path) -> dict:
    "Folders and files a user might point at by mistake."
    out = {'missing path': tmp / 'does-not-exist', 'no weights': tmp / 'empty'}
    out['no weights'].mkdir()
    raw = (pair / 'base' / 'model.safetensors').read_bytes()
    (tmp / 'trunc').mkdir(); (tmp / 'trunc' / 'model.safetensors').write_bytes(raw[: len(raw) // 2])
    out['truncated safetensors'] = tmp / 'trunc'
    (tmp / 'garbage.safetensors').write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{not json at all')
    out['corrupt header'] = tmp / 'garbage.safetensors'
    (tmp / 'huge-header.safetensors').write_bytes(b'\xff' * 8 + b'{}')
    out['absurd header length'] = tmp / 'huge-header.safetensors'

    class Evil:
        def __reduce__(self): return (os.system, ('echo pwned',))
    (tmp / 'evil').mkdir(); torch.save({'w': Evil()}, tmp / 'evil' / 'pytorch_model.bin')
    out['pickle refused by weights_only'] = tmp / 'evil'
    (tmp / 'idx').mkdir(); (tmp / 'idx' / 'model.safetensors.index.json').write_text('{"weight_map": {"w": "model-00001-of-00002.safetensors"}}')
    out['index naming a missing shard'] = tmp / 'idx'
    return out


@pytest.mark.parametrize('what', ['missing path', 'no weights', 'truncated safetensors', 'corrupt header', 'absurd header length',
                                  'pickle refused by weights_only', 'index naming a missing shard'])
@pytest.mark.parametrize('side', ['base', 'tuned'])
def test_bad_checkpoints_get_one_line(pair, tmp_path, what, side):
    (tmp_path / 'inputs').mkdir()
    bad = corrupt_copies(pair, tmp_path / 'inputs')[what]
    args = (bad, pair / 'tuned') if side == 'base' else (pair / 'base', bad)
    out = tmp_path / 'out'; out.mkdir()             # outside every input: a loose weights file stands for its whole folder
    r = rlsub('scan', *args, '-o', out / 'out.json', '--no-progress')
    assert r.returncode == 2, (what, r.stdout, r.stderr)
    assert r.stderr.count('\n') == 1 and r.stderr.startswith('rlsub: error: ') and 'Traceback' not in r.stderr, r.stderr
    assert 'pwned' not in r.stdout + r.stderr and 'inside the input checkpoint' not in r.stderr, r.stderr   # the file's own fault is named
    assert list(out.iterdir()) == []


@pytest.mark.parametrize('args, says', [
    (['--rule', 'fuzzy'], 'invalid choice'),
    (['--rule', 'abs', '--threshold', '-1e-5'], '>= 0'),
    (['--rule', 'rel', '--threshold', 'nan'], '>= 0'),
    (['--rule', 'abs', '--threshold', 'lots'], 'invalid float'),
    (['--threshold', '1e-5'], 'takes no --threshold'),
    (['--by', 'colour'], 'not a grouping'),
    (['--device', 'tpu'], 'device'),
])
def test_bad_options_get_one_line(pair, tmp_path, args, says):
    r = rlsub('scan', pair / 'base', pair / 'tuned', '-o', tmp_path / 'out.json', '--no-progress', *args)
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and says in r.stderr, r.stderr
    assert not (tmp_path / 'out.json').exists()


def test_show_refuses_what_is_not_a_report(pair, tmp_path):
    (tmp_path / 'x.json').write_text('[1, 2]')
    for f in (tmp_path / 'x.json', pair / 'base' / 'model.safetensors', tmp_path / 'absent.json'):
        r = rlsub('show', f)
        assert r.returncode == 2 and r.stderr.count('\n') == 1, r.stderr


def test_cuda_refused_clearly_without_a_gpu(pair):
    if torch.cuda.is_available(): pytest.skip('a GPU is present')
    r = rlsub('scan', pair / 'base', pair / 'tuned', '--device', 'cuda', '--no-progress')
    assert r.returncode == 2 and 'no CUDA GPU' in r.stderr


def test_example_refuses_to_overwrite(pair):
    r = rlsub('example', pair)
    assert r.returncode == 2 and 'already exists' in r.stderr


@pytest.fixture(scope='module')
def masks(pair, tmp_path_factory):
    d = tmp_path_factory.mktemp('masks')
    for rule, name in (('exact', 'a'), ('abs', 'b')):
        r = rlsub('mask', pair / 'base', pair / 'tuned', '-o', d / f'{name}.safetensors', '--rule', rule, '--no-progress')
        assert r.returncode == 0, r.stderr
    return d


def test_mask_overlap_rank_trajectory_run(pair, masks, tmp_path):
    r = rlsub('overlap', masks / 'a.safetensors', masks / 'b.safetensors', '--by', 'layer+kind')
    assert r.returncode == 0 and 'chance' in r.stdout, r.stderr
    r = rlsub('rank', pair / 'base', pair / 'tuned', '--kinds', 'q,down', '-o', tmp_path / 'rank.csv', '--no-progress')
    assert r.returncode == 0 and (tmp_path / 'rank.csv').exists(), r.stderr
    run = tmp_path / 'run'
    shutil.copytree(pair / 'base', run / 'checkpoint-0'); shutil.copytree(pair / 'tuned', run / 'checkpoint-1')
    r = rlsub('trajectory', run, '-o', tmp_path / 'steps.csv', '--rule', 'rel', '--no-progress', '--hist', tmp_path / 'hist.png')
    assert r.returncode == 0 and (tmp_path / 'steps.csv').exists(), r.stderr
    assert (tmp_path / 'hist.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and 'histograms drawn in' in r.stdout


@pytest.mark.parametrize('argv, says', [
    (['mask', '{base}', '{tuned}'], 'required'),
    (['mask', '{base}', '{tuned}', '-o', '{tmp}/m.safetensors', '--rule', 'rel', '--threshold', '-3'], '>= 0'),
    (['overlap', '{masks}/a.safetensors', '{base}/model.safetensors'], 'not an rlsub mask'),
    (['overlap', '{masks}/a.safetensors', '{masks}/b.safetensors', '--by', 'status'], 'kind, layer'),
    (['rank', '{base}', '{tuned}', '--kinds', 'attention'], 'unknown kind'),
    (['rank', '{base}', '{tmp}/nothing'], 'no such file'),
    (['trajectory', '{tmp}'], 'checkpoint'),
])
def test_subnetwork_commands_refuse_bad_input(pair, masks, tmp_path, argv, says):
    fill = dict(base=pair / 'base', tuned=pair / 'tuned', masks=masks, tmp=tmp_path)
    r = rlsub(*[a.format(**fill) for a in argv])
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and says in r.stderr and 'Traceback' not in r.stderr, r.stderr
    assert not list(tmp_path.glob('*.safetensors')) and not list(tmp_path.glob('.*'))


def test_help_and_argument_errors_import_nothing_heavy():
    "`rlsub --help` and argument errors answer before torch or pandas is imported (their time: benchmarks/bench_cli.py)."
    code = ("import sys\nfrom rlsub.cli import main\n"
            "for argv in (['scan', 'a', 'b', '--rule', 'fuzzy'], ['scan', 'a', 'b', '--rule', 'abs', '--threshold', '-1']): assert main(argv) == 2\n"
            "heavy = [m for m in ('torch', 'pandas', 'numpy', 'transformers') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    h = subprocess.run(RLSUB + ['--help'], capture_output=True, text=True)
    assert h.returncode == 0 and 'scan' in h.stdout
    from rlsub import __version__
    v = subprocess.run(RLSUB + ['--version'], capture_output=True, text=True)
    assert v.returncode == 0 and v.stdout.strip() == f'rlsub {__version__}'


def test_demo_with_seeds_reads_at_80_columns(tmp_path):
    "`rlsub demo --seeds 2` on an 80-column terminal: every printed line fits, each claim carries its interval and verdict, the report is written."
    r = subprocess.run(RLSUB + ['demo', '--size', 'test', '--seeds', '2', '-o', str(tmp_path / 'demo.html'), '--no-progress'],
                       capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE='1', COLUMNS='80'))
    assert r.returncode == 0, r.stderr
    claims = r.stdout[r.stdout.index('1. RL updates'):]
    assert max(len(line) for line in claims.splitlines()) <= 80, claims
    assert claims.count('   verdict:  ') == 13 and '(2 seeds)' in claims and 'questions × 2 seeds' in claims
    assert (tmp_path / 'demo.html').stat().st_size > 0
    h = rlsub('demo', '--help')
    assert '--seeds' in h.stdout and 'three GRPO runs' not in h.stdout
