"""Scan speed and peak memory against the input/output limit and the paper's approach, side by side in one run.

For each pair size it measures, alternating the methods so all see the same page cache and machine state:

  raw read  `cat` of both checkpoints' files to /dev/null: the time just to read the input (files in the page cache)
  start     `python -c "import rlsub.measure.scan"`: Python and the libraries the scan needs, before any weight is read
  rlsub     `rlsub scan BASE TUNED -o report.json --device D`, the installed command as a user runs it (each in its own process)
  paper     the approach of the paper's published check_sparsity.py: both models loaded whole with
            `from_pretrained(dtype=bfloat16)` (moved to the device), state dicts subtracted, all deltas concatenated,
            then the share of zeros and `isclose(atol=1e-5)` counted
  mask, rank  (with --commands) `rlsub mask` and `rlsub rank` on the same pair and device

and prints the ratios: rlsub against the raw read, against raw read + start, and the paper's approach against rlsub.
Peak resident memory comes from the kernel (`ru_maxrss` from `wait4`); this script imports nothing heavy itself unless
it builds a pair, which it does in a child process, because a child's figure can include what its parent held at fork.

Pairs: bf16, Llama layouts of about 0.1B and 0.85B parameters (and 0.01B, 7M, for a quick check of the script) (25 % of entries changed by a few ulps, written by
`rlsub.examples.make_pair`), and `7b`: Qwen2.5-7B's layout (7.62B parameters, 2 x 15 GB; 5 % of entries changed),
generated tensor by tensor on the chosen device (a GPU makes it in well under a minute) and written in 4 GB shards.
Both methods report the sparsity they found, as a check that they measured the same thing.

Usage: python benchmarks/bench_scan.py [--sizes 0.1,0.85] [--device cpu|cuda] [--threads N] [--work DIR] [--repeat N]
                                       [--commands scan,mask,rank]
"""
import argparse, json, os, shutil, struct, subprocess, sys, tempfile, time
from pathlib import Path

CONFIGS = {  # config arguments; parameter counts are read back from the written files
    '0.01': dict(model_type='llama', hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4, vocab_size=8000),
    '0.1': dict(model_type='llama', hidden_size=768, intermediate_size=2048, num_hidden_layers=10, num_attention_heads=12, num_key_value_heads=12, vocab_size=32000),
    '0.85': dict(model_type='llama', hidden_size=2048, intermediate_size=5632, num_hidden_layers=14, num_attention_heads=16, num_key_value_heads=16, vocab_size=32000),
    '7b': dict(model_type='qwen2', hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
               vocab_size=152064, max_position_embeddings=32768),
}
DENSITY = {'0.01': 0.25, '0.1': 0.25, '0.85': 0.25, '7b': 0.05}

BUILD = r"""
import sys, json
from transformers import AutoConfig
from rlsub.examples import make_pair
kw = json.loads(sys.argv[2])
make_pair(sys.argv[1], AutoConfig.for_model(kw.pop('model_type'), **kw, tie_word_embeddings=False), density=float(sys.argv[3]), shard_size=2 * 2**30, overwrite=True)
"""

BUILD_FAST = r"""
# a big pair, quickly: every tensor drawn on the device, a share of its entries moved by 1-4 bf16 ulps, written in 4 GB shards
import sys, json, torch
from pathlib import Path
from safetensors.torch import save_file
from transformers import AutoConfig
from rlsub.examples import checkpoint_layout
out, kw, density, dev = Path(sys.argv[1]), json.loads(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
cfg = AutoConfig.for_model(kw.pop('model_type'), **kw, tie_word_embeddings=False, torch_dtype='bfloat16')
layout = checkpoint_layout(cfg)
g = torch.Generator(dev).manual_seed(0)
shards, cur, size = [], {}, 0
for n, shape in layout.items():
    nbytes = 2 * torch.Size(shape).numel()
    if cur and size + nbytes > 4 * 2**30: shards.append(cur); cur, size = {}, 0
    cur[n] = shape; size += nbytes
shards.append(cur)
for side in ('base', 'tuned'): (out / side).mkdir(parents=True, exist_ok=True); cfg.save_pretrained(out / side)
index = {}
for i, names in enumerate(shards):
    fname = f'model-{i + 1:05d}-of-{len(shards):05d}.safetensors'
    sd = {'base': {}, 'tuned': {}}
    for n, shape in names.items():
        b = (torch.randn(shape, generator=g, device=dev) * 0.02).bfloat16()
        if n.endswith('norm.weight'): b = torch.ones(shape, dtype=torch.bfloat16, device=dev)
        move = (torch.rand(shape, generator=g, device=dev) < density).short() * torch.randint(1, 5, shape, generator=g, device=dev, dtype=torch.int16)
        t = (b.view(torch.int16) + move).view(torch.bfloat16)
        sd['base'][n], sd['tuned'][n] = b.cpu(), t.cpu()
        index[n] = fname
    for side in ('base', 'tuned'): save_file(sd[side], out / side / fname, metadata={'format': 'pt'})
    del sd
for side in ('base', 'tuned'):
    (out / side / 'model.safetensors.index.json').write_text(json.dumps({'metadata': {}, 'weight_map': index}))
(out / 'done').write_text('')
"""

PAPER = r"""
import json, sys, torch
from transformers import AutoModelForCausalLM
dev = sys.argv[3]
sft = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.bfloat16).to(dev)
rl = AutoModelForCausalLM.from_pretrained(sys.argv[2], dtype=torch.bfloat16).to(dev)
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
"""

RLSUB = 'from rlsub.cli import console; console()'   # exactly what the installed `rlsub` script runs
START = 'import rlsub.measure.scan'                   # what the scan imports before it reads a weight


def run(*argv, cmd=None) -> tuple[float, float, str]:
    "Run `python *argv` (or `cmd`) in a fresh process; return its wall seconds, peak RSS (GiB, the kernel's high-water mark) and stdout."
    with tempfile.TemporaryFile('w+') as out, tempfile.TemporaryFile('w+') as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd or [sys.executable, *map(str, argv)], stdout=out, stderr=err)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0); err.seek(0)
        if p.returncode != 0: raise SystemExit(f"benchmark process failed ({(cmd or argv)[:4]}...):\n{err.read()[-2000:]}")
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


def build(work: Path, size: str, device: str) -> Path:
    "The pair of this size, written once (in its own process) and reused."
    out = work / (f'llama-{size}b' if size != '7b' else 'qwen2.5-7b-layout')
    if not (out / 'tuned' / 'config.json').exists() or (size == '7b' and not (out / 'done').exists()):
        print(f'building the {size} pair in {out} ...', flush=True)
        t0 = time.perf_counter()
        if size == '7b': subprocess.run([sys.executable, '-c', BUILD_FAST, str(out), json.dumps(CONFIGS[size]), str(DENSITY[size]), device], check=True)
        else: subprocess.run([sys.executable, '-c', BUILD, str(out), json.dumps(CONFIGS[size]), str(DENSITY[size])], check=True)
        print(f'  built in {time.perf_counter() - t0:.1f} s', flush=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--sizes', default='0.1,0.85', help="comma-separated: 0.01, 0.1, 0.85, 7b")
    ap.add_argument('--device', default='cpu', help='cpu or cuda: where rlsub counts and where the paper approach puts both models')
    ap.add_argument('--threads', type=int, default=None, help="rlsub scan --threads (default: rlsub's own default)")
    ap.add_argument('--work', default=str(Path(__file__).parent / '_work'))
    ap.add_argument('--repeat', type=int, default=3, help='runs of each method, alternating; the fastest of each is reported')
    ap.add_argument('--commands', default='scan', help='rlsub commands to time: scan, and optionally mask and rank')
    ap.add_argument('--no-paper', action='store_true', help="skip the paper's approach (it needs memory for both models)")
    ap.add_argument('--out', default=None, help='also write the printed table to this file')
    args = ap.parse_args()
    work = Path(args.work); work.mkdir(parents=True, exist_ok=True)
    commands = args.commands.split(',')
    threads = ['--threads', str(args.threads)] if args.threads else []
    rows = []
    for size in args.sizes.split(','):
        pair = build(work, size, args.device)
        if args.repeat == 0: continue            # build only
        files = sorted(map(str, [*(pair / 'base').glob('*.safetensors'), *(pair / 'tuned').glob('*.safetensors')]))
        nbytes = sum(os.path.getsize(f) for f in files)
        runs = {m: [] for m in ['raw read', 'start', *commands, *([] if args.no_paper else ['paper'])]}
        run(cmd=['sh', '-c', 'cat "$@" > /dev/null', 'cat', *files])   # warm the page cache once
        for _ in range(args.repeat):  # alternate, so every method sees the same page cache and machine state
            wall, rss, _ = run(cmd=['sh', '-c', 'cat "$@" > /dev/null', 'cat', *files])
            runs['raw read'].append(dict(seconds=wall, rss_gb=rss))
            wall, rss, _ = run('-c', START)
            runs['start'].append(dict(seconds=wall, rss_gb=rss))
            report = work / f'report-{size}.json'
            wall, rss, _ = run('-c', RLSUB, 'scan', pair / 'base', pair / 'tuned', '-o', report, '--no-progress', '--by', 'none', '--device', args.device, *threads)
            runs['scan'].append(dict(seconds=wall, rss_gb=rss, **report_sparsity(report)))
            if 'mask' in commands:
                wall, rss, _ = run('-c', RLSUB, 'mask', pair / 'base', pair / 'tuned', '-o', work / f'mask-{size}.safetensors', '--no-progress', '--device', args.device)
                runs['mask'].append(dict(seconds=wall, rss_gb=rss))
            if 'rank' in commands:
                wall, rss, _ = run('-c', RLSUB, 'rank', pair / 'base', pair / 'tuned', '-o', work / f'rank-{size}.csv', '--no-progress', '--device', args.device)
                runs['rank'].append(dict(seconds=wall, rss_gb=rss))
            if not args.no_paper:
                wall, rss, out = run('-c', PAPER, pair / 'base', pair / 'tuned', args.device)
                runs['paper'].append(dict(seconds=wall, rss_gb=rss, **json.loads(out.strip().splitlines()[-1])))
        rows.append((size, n_params(pair / 'base'), nbytes, {m: min(r, key=lambda x: x['seconds']) for m, r in runs.items()}))
    if not rows: return
    import torch  # only now: the figures above are measured before this process holds any of it
    where = (torch.cuda.get_device_name(0) if args.device.startswith('cuda') else f'{len(os.sched_getaffinity(0))} CPU cores')
    lines = [f"scan of bf16 pairs on {args.device} ({where}), files in the page cache; best of {args.repeat}; "
             f"rlsub threads: {args.threads or 'default'}; {time.strftime('%Y-%m-%d')}",
             "| pair | parameters | method | wall s | peak RSS GiB | sparsity, exact | sparsity, abs 1e-5 |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: |"]
    for size, n, nbytes, best in rows:
        for m, r in best.items():
            sp = (f"{r['exact']:.6f} | {r['abs_1e-5']:.6f}" if 'exact' in r else '— | —')
            what = {'raw read': f'raw read ({nbytes / 1e9:.2f} GB)', 'start': 'Python start', 'scan': 'rlsub scan', 'paper': 'paper, whole models'}.get(m, f'rlsub {m}')
            lines.append(f"| {size} | {n:,} | {what} | {r['seconds']:.2f} | {r['rss_gb']:.2f} | {sp} |")
    lines.append('')
    for size, n, nbytes, best in rows:
        scan, raw, start = best['scan']['seconds'], best['raw read']['seconds'], best['start']['seconds']
        line = (f"{size} ({n:,} parameters): rlsub scan {scan:.2f} s = {scan / raw:.2f}x the raw read ({raw:.2f} s, {nbytes / raw / 1e9:.1f} GB/s), "
                f"{scan / (raw + start):.2f}x raw read + Python start ({raw + start:.2f} s)")
        if 'paper' in best:
            p = best['paper']
            line += f"; {p['seconds'] / scan:.1f}x faster than the paper's approach ({p['seconds']:.2f} s) with {p['rss_gb'] / best['scan']['rss_gb']:.1f}x less peak memory"
            same = abs(p['exact'] - best['scan']['exact']) < 1e-12
            line += '' if same else f" — SPARSITIES DIFFER ({best['scan']['exact']} vs {p['exact']})"
        lines.append(line)
    text = '\n'.join(lines)
    print('\n' + text)
    if args.out: Path(args.out).write_text(text + '\n')


if __name__ == '__main__':
    main()
