"""Scan speed and peak memory: rlsub against the paper's approach, side by side in one run.

Builds bf16 Llama-layout checkpoint pairs (about 0.1B and 0.85B parameters, 25 % of entries
changed by a few bf16 ulps) with `rlsub.examples.make_pair`, then times, each in its own fresh
process, with peak resident memory read from the kernel (VmHWM in /proc/self/status, read by the
process as it ends; `ru_maxrss` of a child can include its parent's memory at fork time):

  rlsub     `rlsub scan BASE TUNED -o report.json` (the CLI, as a user runs it)
  paper     the approach of the paper's published check_sparsity.py: both models loaded whole with
            `from_pretrained(dtype=bfloat16)`, state dicts subtracted, all deltas concatenated,
            then the share of zeros and `isclose(atol=1e-5)` counted

Usage: python benchmarks/bench_scan.py [--sizes 0.1,0.85] [--work DIR] [--repeat N]
"""
import argparse, json, os, subprocess, sys, time
from pathlib import Path

CONFIGS = {  # LlamaConfig arguments; parameter counts are printed from the written files
    '0.1': dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=10, num_attention_heads=12, num_key_value_heads=12, vocab_size=32000),
    '0.85': dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=14, num_attention_heads=16, num_key_value_heads=16, vocab_size=32000),
}

BASELINE = r'''
import json, sys, torch
from transformers import AutoModelForCausalLM
sft = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.bfloat16)
rl = AutoModelForCausalLM.from_pretrained(sys.argv[2], dtype=torch.bfloat16)
rl_sd, sft_sd = rl.state_dict(), sft.state_dict()
deltas = []
with torch.no_grad():
    for name, _ in sft.named_parameters():
        delta = rl_sd[name] - sft_sd[name]
        (delta != 0).sum().item()                     # the per-tensor count the script keeps
        deltas.append(delta.view(-1))
    all_deltas = torch.cat(deltas)
    zeros = (all_deltas == 0).sum().item() / all_deltas.numel()
    close = torch.isclose(all_deltas, torch.zeros_like(all_deltas), atol=1e-5).sum().item() / all_deltas.numel()
print(json.dumps({'exact': zeros, 'abs_1e-5': close, 'rss_gb': PEAK()}))
'''

RLSUB = r'''
import json, sys
from rlsub.cli import main
code = main(['scan', sys.argv[1], sys.argv[2], '-o', sys.argv[3], '--no-progress', '--by', 'none'])
from rlsub.scan import DeltaReport
r = DeltaReport.load(sys.argv[3])
print(json.dumps({'exact': float(r.sparsity()), 'abs_1e-5': float(r.sparsity(1e-5, 'abs')), 'rss_gb': PEAK()}))
sys.exit(code)
'''

PEAK = r'''
def PEAK():
    "Peak resident memory of this process so far, in GiB (the kernel's high-water mark)."
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'): return int(line.split()[1]) / 2**20
'''


def measure(code: str, *args) -> dict:
    "Run `code` in a fresh Python process; return its wall seconds and its JSON answer (which includes its peak RSS)."
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, '-c', PEAK + code, *map(str, args)], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0: raise SystemExit(f"benchmark process failed ({args}):\n{p.stderr[-2000:]}")
    return dict(seconds=wall, **json.loads(p.stdout.strip().splitlines()[-1]))


BUILD = r'''
import sys, json
from transformers import LlamaConfig
from rlsub.examples import make_pair
make_pair(sys.argv[1], LlamaConfig(**json.loads(sys.argv[2]), tie_word_embeddings=False), density=0.25, shard_size=2 * 2**30, overwrite=True)
'''


def build(work: Path, size: str) -> tuple[Path, int]:
    "The pair of this size, written once (in its own process) and reused."
    out = work / f'llama-{size}b'
    if not (out / 'tuned' / 'config.json').exists():
        print(f'building the {size}B pair in {out} ...', flush=True)
        subprocess.run([sys.executable, '-c', BUILD, str(out), json.dumps(CONFIGS[size])], check=True)
    from rlsub.checkpoints import open_checkpoint
    with open_checkpoint(out / 'base') as ck: n = ck.numel
    return out, n


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--sizes', default='0.1,0.85')
    ap.add_argument('--work', default=str(Path(__file__).parent / '_work'))
    ap.add_argument('--repeat', type=int, default=3, help='runs of each method, alternating; the fastest of each is reported')
    args = ap.parse_args()
    work = Path(args.work); work.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes.split(','):
        pair, n = build(work, size)
        runs = {m: [] for m in ('rlsub', 'paper')}
        for _ in range(args.repeat):  # alternate, so both see the same page cache and machine state
            runs['rlsub'].append(measure(RLSUB, pair / 'base', pair / 'tuned', work / f'report-{size}.json'))
            runs['paper'].append(measure(BASELINE, pair / 'base', pair / 'tuned'))
        best = {m: min(r, key=lambda x: x['seconds']) for m, r in runs.items()}
        rows.append((n, best))
    print(f"\nscan of a bf16 Llama-layout pair, 25 % of entries changed; {os.cpu_count()} CPU cores, best of {args.repeat}")
    print(f"{'parameters':>13} | {'method':<6} | {'wall s':>7} | {'peak RSS GB':>11} | {'sparsity exact':>14} | {'sparsity |Δ|≤1e-5':>18}")
    for n, best in rows:
        for m in ('rlsub', 'paper'):
            r = best[m]
            print(f"{n:>13,} | {m:<6} | {r['seconds']:>7.2f} | {r['rss_gb']:>11.2f} | {r['exact']:>14.6f} | {r['abs_1e-5']:>18.6f}")
        print(f"{'':>13} | rlsub is {best['paper']['seconds'] / best['rlsub']['seconds']:.1f}x faster and uses "
              f"{best['paper']['rss_gb'] / best['rlsub']['rss_gb']:.1f}x less peak memory")


if __name__ == '__main__':
    main()
