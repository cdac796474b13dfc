"""How fast `rlsub` answers before any work: `--help` and argument errors, against `python -c "import torch"`, side by side.

Each command runs in a fresh process (the installed console script's code), best of N; the last line is the ratio.
Usage: python benchmarks/bench_cli.py [--repeat 5]
"""
import argparse, subprocess, sys, time

RLSUB = [sys.executable, '-c', 'from rlsub.cli import console; console()']   # what the installed `rlsub` runs
CASES = {'rlsub --help': RLSUB + ['--help'],
         'rlsub scan --help': RLSUB + ['scan', '--help'],
         'rlsub scan a b --rule fuzzy (argument error)': RLSUB + ['scan', 'a', 'b', '--rule', 'fuzzy'],
         'rlsub scan a b --rule abs --threshold -1 (value error)': RLSUB + ['scan', 'a', 'b', '--rule', 'abs', '--threshold', '-1'],
         'python -c "import torch"': [sys.executable, '-c', 'import torch'],
         'python -c "pass"': [sys.executable, '-c', 'pass']}


def best(argv, n):
    times = []
    for _ in range(n):
        t0 = time.perf_counter(); subprocess.run(argv, capture_output=True); times.append(time.perf_counter() - t0)
    return min(times)


if __name__ == '__main__':
    ap = argparse.ArgumentParser(); ap.add_argument('--repeat', type=int, default=5)
    n = ap.parse_args().repeat
    res = {name: best(argv, n) for name, argv in CASES.items()}
    print(f"| command | best of {n}, s |\n| --- | ---: |")
    for name, s in res.items(): print(f"| `{name}` | {s:.3f} |")
    torch_s = res['python -c "import torch"']
    print(f"\n`rlsub --help` takes {res['rlsub --help'] / torch_s:.1%} of the time of importing torch ({torch_s:.2f} s)")
