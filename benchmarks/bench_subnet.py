"""Masks and update rank on the benchmark pair: time and peak memory, next to doing it with both models loaded.

Uses the bf16 Llama-layout pairs that bench_scan.py builds (run it first, or pass --build). Each method runs
in its own fresh process; peak resident memory is the kernel's high-water mark (`ru_maxrss` from `wait4`).

  rlsub mask    `rlsub mask BASE TUNED -o mask.safetensors` (streamed, one bit per parameter)
  loaded mask   both models loaded with from_pretrained, `a != b` per tensor (one byte per parameter), torch.save
  rlsub rank    `rlsub rank BASE TUNED --kinds KINDS -o rank.csv` (one matrix pair at a time; three SVDs per
                matrix: of Δ for the rank and of W and W+Δ for the spectral shift)
  paper rank    the paper's update_rank.py approach: both models loaded, every Δ kept, matrix_rank (one SVD) per
                matrix of the same kinds

Usage: python benchmarks/bench_subnet.py [--size 0.85] [--kinds q,k,v,o,gate,up,down] [--work DIR] [--device cpu]
The CUDA speedup for rank: run once with --device cpu and once with --device cuda on a GPU machine.
"""
import argparse, os, subprocess, sys
from pathlib import Path

LOADED_MASK = r'''
import sys, torch
from transformers import AutoModelForCausalLM
a = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.bfloat16).state_dict()
b = AutoModelForCausalLM.from_pretrained(sys.argv[2], dtype=torch.bfloat16).state_dict()
masks = {n: (a[n] != b[n]) for n in a}
torch.save(masks, sys.argv[3])
print(sum(int(m.sum()) for m in masks.values()))
'''

PAPER_RANK = r'''
import sys, torch
from transformers import AutoModelForCausalLM
from rlsub.checkpoints import parse_name
kinds = set(sys.argv[3].split(','))
sft = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.bfloat16)
rl = AutoModelForCausalLM.from_pretrained(sys.argv[2], dtype=torch.bfloat16)
rl_sd, sft_sd = rl.state_dict(), sft.state_dict()
with torch.no_grad():
    deltas = {n: rl_sd[n] - p.data for n, p in sft.named_parameters()}
    ranks = [int(torch.linalg.matrix_rank(d.float())) for n, d in deltas.items() if d.dim() == 2 and parse_name(n)[1] in kinds]
print(len(ranks), sum(ranks))
'''

sys.path.insert(0, str(Path(__file__).parent))
from bench_scan import RLSUB, run   # one way to run and measure a fresh process, shared with the scan benchmark


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--size', default='0.85')
    ap.add_argument('--kinds', default='q,k,v,o,gate,up,down')
    ap.add_argument('--work', default=str(Path(__file__).parent / '_work'))
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--skip', default='', help='comma-separated methods to skip (e.g. "paper rank")')
    args = ap.parse_args()
    work = Path(args.work)
    pair = work / f'llama-{args.size}b'
    if not (pair / 'tuned' / 'config.json').exists():
        subprocess.run([sys.executable, str(Path(__file__).parent / 'bench_scan.py'), '--sizes', args.size, '--repeat', '0', '--work', str(work)], check=True)
    skip = set(args.skip.split(',')) if args.skip else set()
    rows = []
    for name, argv in [
        ('rlsub mask', ('-c', RLSUB, 'mask', pair / 'base', pair / 'tuned', '-o', work / 'mask.safetensors', '--no-progress', '--device', args.device)),
        ('loaded mask', ('-c', LOADED_MASK, pair / 'base', pair / 'tuned', work / 'mask.pt')),
        ('rlsub rank', ('-c', RLSUB, 'rank', pair / 'base', pair / 'tuned', '--kinds', args.kinds, '-o', work / 'rank.csv', '--no-progress', '--device', args.device)),
        ('paper rank', ('-c', PAPER_RANK, pair / 'base', pair / 'tuned', args.kinds)),
    ]:
        if name in skip: continue
        print(f'running {name} ...', flush=True)
        wall, rss, _ = run(*argv)
        rows.append((name, wall, rss))
    print(f"\n{args.size}B bf16 Llama-layout pair; {os.cpu_count()} CPU cores; device {args.device}; rank kinds {args.kinds}")
    print("| method | wall s | peak RSS GiB |")
    print("| --- | ---: | ---: |")
    for name, wall, rss in rows: print(f"| {name} | {wall:.1f} | {rss:.2f} |")
    for f in ('mask.safetensors', 'mask.pt'):
        if (work / f).exists(): print(f"{f}: {(work / f).stat().st_size / 2**20:.0f} MiB on disk")


if __name__ == '__main__':
    main()
