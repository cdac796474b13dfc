"""Scan speed and peak memory: rlsub against the paper's approach, side by side in one run.

Builds bf16 Llama-layout checkpoint pairs (about 0.1B and 0.85B parameters, 25 % of entries
changed by a few bf16 ulps) with `rlsub.examples.make_pair`, then times each method in its own
fresh process, with peak resident memory from the kernel (`ru_maxrss` from `wait4`; this script
imports nothing heavy itself, because a child's figure can include what its parent held at fork):

  rlsub     `rlsub scan BASE TUNED -o report.json`, the installed command as a user runs it
  paper     the approach of the paper's published check_sparsity.py: both models loaded whole with
            `from_pretrained(dtype=bfloat16)`, state dicts subtracted, all deltas concatenated,
            then the share of zeros and `isclose(atol=1e-5)` counted

Both report the sparsity they found, as a check that they measured the same thing.
Usage: python benchmarks/bench_scan.py [--sizes 0.1,0.85] [--work DIR] [--repeat N]
"""
import argparse, json, os, struct, subprocess, sys, tempfile, time
from pathlib import Path

CONFIGS = {  # LlamaConfig arguments; parameter counts are read back from the written files
    '0.1': dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=10, num_attention_heads=12, num_key_value_heads=12, vocab_size=32000),
    '0.85': dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=14, num_attention_heads=16, num_key_value_heads=16, vocab_size=32000),
}

BUILD = r'''
import sys, json
from transformers import LlamaConfig
from rlsub.examples import make_pair
make_pair(sys.argv[1], LlamaConfig(**json.loads(sys.argv[2]), tie_word_embeddings=False), density=0.25, shard_size=2 * 2**30, overwrite=True)
'''

PAPER = r'''
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
print(json.dumps({'exact': zeros, 'abs_1e-5': close}))
'''

RLSUB = 'from rlsub.cli import console; console()'   # exactly what the installed `rlsub` script runs


def run(*argv) -> tuple[float, float, str]:
    "Run `python *argv` in a fresh process; return its wall seconds, peak RSS (GiB, the kernel's high-water mark) and stdout."
    with tempfile.TemporaryFile('w+') as out, tempfile.TemporaryFile('w+') as err:
        t0 = time.perf_counter()
        p = subprocess.Popen([sys.executable, *map(str, argv)], stdout=out, stderr=err)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0); err.seek(0)
        if p.returncode != 0: raise SystemExit(f"benchmark process failed ({argv[2:]}):\n{err.read()[-2000:]}")
        return wall, usage.ru_maxrss / 2**20, out.read()


def report_sparsity(path: Path) -> dict:
    "Exact and |Δ| <= 1e-5 sparsity from an rlsub report file (plain JSON, read without importing rlsub)."
    doc = json.loads(path.read_text())
    j = doc['ladder'].index(1e-5)
    n = sum(t['numel'] for t in doc['tensors'])
    return {'exact': 1 - sum(t['changed'] for t in doc['tensors']) / n,
            'abs_1e-5': 1 - sum(sum(t['abs_hist'][j + 1:]) for t in doc['tensors']) / n}


def n_params(folder: Path) -> int:
    "Entries in all safetensors files of `folder`, from their headers."
    n = 0
    for f in folder.glob('*.safetensors'):
        with open(f, 'rb') as fh:
            header = json.loads(fh.read(struct.unpack('<Q', fh.read(8))[0]))
        header.pop('__metadata__', None)
        for e in header.values():
            k = 1
            for s in e['shape']: k *= s
            n += k
    return n


def build(work: Path, size: str) -> Path:
    "The pair of this size, written once (in its own process) and reused."
    out = work / f'llama-{size}b'
    if not (out / 'tuned' / 'config.json').exists():
        print(f'building the {size}B pair in {out} ...', flush=True)
        subprocess.run([sys.executable, '-c', BUILD, str(out), json.dumps(CONFIGS[size])], check=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--sizes', default='0.1,0.85')
    ap.add_argument('--work', default=str(Path(__file__).parent / '_work'))
    ap.add_argument('--repeat', type=int, default=3, help='runs of each method, alternating; the fastest of each is reported')
    args = ap.parse_args()
    work = Path(args.work); work.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes.split(','):
        pair = build(work, size)
        if args.repeat == 0: continue            # build only
        runs = {'rlsub': [], 'paper': []}
        for _ in range(args.repeat):  # alternate, so both see the same page cache and machine state
            report = work / f'report-{size}.json'
            wall, rss, _ = run('-c', RLSUB, 'scan', pair / 'base', pair / 'tuned', '-o', report, '--no-progress', '--by', 'none')
            runs['rlsub'].append(dict(seconds=wall, rss_gb=rss, **report_sparsity(report)))
            wall, rss, out = run('-c', PAPER, pair / 'base', pair / 'tuned')
            runs['paper'].append(dict(seconds=wall, rss_gb=rss, **json.loads(out.strip().splitlines()[-1])))
        rows.append((n_params(pair / 'base'), {m: min(r, key=lambda x: x['seconds']) for m, r in runs.items()}))
    if not rows: return
    print(f"\nscan of a bf16 Llama-layout pair, 25 % of entries changed; {os.cpu_count()} CPU cores, best of {args.repeat}")
    print(f"| parameters | method | wall s | peak RSS GiB | sparsity, exact | sparsity, abs 1e-5 |")
    print(f"| ---: | --- | ---: | ---: | ---: | ---: |")
    for n, best in rows:
        for m in ('rlsub', 'paper'):
            r = best[m]
            print(f"| {n:,} | {m} | {r['seconds']:.2f} | {r['rss_gb']:.2f} | {r['exact']:.6f} | {r['abs_1e-5']:.6f} |")
    print()
    for n, best in rows:
        print(f"{n:,} parameters: rlsub is {best['paper']['seconds'] / best['rlsub']['seconds']:.1f}x faster "
              f"and uses {best['paper']['rss_gb'] / best['rlsub']['rss_gb']:.1f}x less peak memory")


if __name__ == '__main__':
    main()
