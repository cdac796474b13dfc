"benchmarks/bench_gpu.py, the one-command GPU check, at its --dry size on the CPU: every part runs (or says why not) and the table is written."
import subprocess, sys
from pathlib import Path
import pytest, torch

ROOT = Path(__file__).resolve().parent.parent


def test_bench_gpu_dry_runs_every_part_and_writes_one_table(tmp_path):
    out = tmp_path / 'check'
    p = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / 'bench_gpu.py'), '--dry', '--out', str(out), '--budget', '900'],
                       capture_output=True, text=True, timeout=1200, cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    table = (out / 'table.md').read_text()
    assert table.splitlines()[0].startswith('bench_gpu on CPU (--dry)') and table in p.stdout
    rows = {l.split('|')[1].strip(): [c.strip() for c in l.split('|')[2:-1]] for l in table.splitlines()[3:]}
    assert list(rows) == ['profile', 'tests', 'scan', 'demo', 'demo-lm']
    assert rows['tests'][0] == 'ok' and 'skipped' in rows['tests'][2]          # on the CPU every CUDA-marked test skips
    assert rows['profile'][0] == 'ok' and 'eager' in rows['profile'][2] and 'static' in rows['profile'][2] and 's/step' in rows['profile'][2]
    assert rows['scan'][0] == 'ok' and 'x the raw read' in rows['scan'][2]
    assert rows['demo'][0] == 'ok' and int(rows['demo'][2].split()[0]) >= 5                 # base and the four runs
    assert rows['demo-lm'][0] == 'skipped'
    for part in ('tests', 'profile', 'scan', 'demo'): assert (out / f'{part}.log').is_file()
    assert (out / 'profile.txt').is_file() and (out / 'scan.txt').is_file() and (out / 'demo.html').is_file()


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the refusal without CUDA')
def test_bench_gpu_without_cuda_says_to_use_dry(tmp_path):
    p = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / 'bench_gpu.py'), '--out', str(tmp_path / 'x')], capture_output=True, text=True, timeout=300)
    assert p.returncode != 0 and 'no CUDA device here; run with --dry' in p.stderr


def test_profile_step_refuses_an_unknown_variant(tmp_path):
    p = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / 'profile_step.py'), '--variants', 'eager,warp'], capture_output=True, text=True, timeout=300)
    assert p.returncode != 0 and "unknown variant 'warp'" in p.stderr
