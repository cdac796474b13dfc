"""Memory of subnet-only GRPO: full AdamW, today's masked AdamW (fp32 weights, start copy, boolean masks) and rlsub.sparse_adam
(train_grpo(optimizer='sparse'): weights in their dtype, fp32 state for the masked entries only, gradients packed in hooks), side by side.

    python benchmarks/bench_masked_memory.py [--policy smollm2-135m] [--steps 2] [--density 0.06]

Each arm runs in a fresh process. Exact figures, counted from the tensors themselves: weight bytes, the optimizer's state bytes
after a step, the gradient bytes held when the optimizer step begins (full .grad tensors, or the packed ones), and the bytes of
today's restore (fp32 start copy + boolean masks). Approximate figure: the kernel's peak resident set (VmHWM) while training,
reset after loading (so the load's own peak does not count), next to the resident set after loading. The mask is a seeded random
one at `--density` (memory depends on how many entries are masked, not which). Times per step are wall seconds on this machine (median
over the steps); bf16 and fp32 weights sample different completions, so compare them with the completion tokens of each step.
"""
import argparse, json, os, resource, subprocess, sys, time
from pathlib import Path
import numpy as np
import torch

ARMS = {   # name -> (optimizer, weights dtype, masked?)
    'full AdamW (fp32)': ('adamw', 'fp32', False),
    'masked AdamW (fp32, today)': ('adamw', 'fp32', True),
    'sparse (fp32)': ('sparse', 'fp32', True),
    'sparse (bf16)': ('sparse', 'bf16', True),
    'sparse, every entry (bf16)': ('sparse', 'bf16', False),
}
SETTINGS = {   # policy -> GRPO settings of the measured steps
    'smollm2-135m': dict(prompts_per_step=8, group_size=4, max_new_tokens=12, micro_batch=8, lr=1e-5),
    'tiny-addition': dict(prompts_per_step=32, group_size=8, max_new_tokens=None, micro_batch=None, lr=1e-4),
}


def _status(key: str) -> int:
    "A `/proc/self/status` field in bytes (VmRSS, VmHWM)."
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(key + ':'): return int(line.split()[1]) * 1024
    raise KeyError(key)


def random_mask(model, density: float, seed: int = 0):
    "A SubnetMask over `model`'s parameters, each entry in with probability `density`."
    from rlsub.masks import SubnetMask
    g = torch.Generator().manual_seed(seed)
    bits = {n: np.packbits((torch.rand(p.shape, generator=g) < density).reshape(-1).numpy(), bitorder='little') for n, p in model.named_parameters()}
    return SubnetMask(bits, {n: tuple(p.shape) for n, p in model.named_parameters()})


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def child(arm: str, policy: str, steps: int, density: float):
    "One arm in this (fresh) process; prints one JSON line."
    from torch.optim.optimizer import register_optimizer_step_pre_hook, register_optimizer_step_post_hook
    import rlsub.grpo as grpo
    from rlsub.zoo import load_policy, default_task
    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', '1')))
    optimizer, dtype, masked = ARMS[arm]
    pol, tok = load_policy(policy, device='cpu', dtype=dtype)
    s = SETTINGS[policy]
    task = default_task(policy, tok)
    mask = random_mask(pol, density) if masked else None
    weights = tensor_bytes(pol.parameters())
    seen = dict(grad=0, state=0, restore=0)
    def pre(opt, *a):
        packed = [st.get('grad') for st in opt.state.values()]
        seen['grad'] = max(seen['grad'], tensor_bytes(p.grad for g in opt.param_groups for p in g['params']) + tensor_bytes(packed))
    def post(opt, *a):
        seen['state'] = max(seen['state'], tensor_bytes(t for st in opt.state.values() for t in st.values()))
    class Freezer(grpo._Freezer):
        def __init__(self, *a):
            super().__init__(*a); seen['restore'] = tensor_bytes([*self.start.values(), *self.masks.values()])
    grpo._Freezer = Freezer
    handles = [register_optimizer_step_pre_hook(pre), register_optimizer_step_post_hook(post)]
    rss_load = _status('VmRSS')
    Path('/proc/self/clear_refs').write_text('5')          # reset the peak resident set: count training, not loading
    cfg = grpo.GRPOConfig(steps=steps, optimizer=optimizer, device='cpu', seed=0, **s)
    hist = grpo.train_grpo(pol, tok, task, cfg, mask=mask, progress=False)
    for h in handles: h.remove()
    print(json.dumps(dict(arm=arm, weights=weights, **seen, rss_load=rss_load, peak=_status('VmHWM'),
                          seconds=float(hist.seconds.median()), tokens=float(hist.tokens.mean()), params=sum(p.numel() for p in pol.parameters()),
                          masked=int(sum(mask.tensor(n).sum() for n, _ in pol.named_parameters())) if mask is not None else None)))


def run_arm(arm: str, policy: str, steps: int, density: float) -> dict:
    r = subprocess.run([sys.executable, __file__, '--child', arm, '--policy', policy, '--steps', str(steps), '--density', str(density)],
                       capture_output=True, text=True, env=dict(os.environ, TRANSFORMERS_VERBOSITY='error'))
    if r.returncode: raise SystemExit(f'arm {arm!r} failed:\n{r.stderr[-3000:]}')
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--policy', default='smollm2-135m', choices=list(SETTINGS))
    ap.add_argument('--steps', type=int, default=2); ap.add_argument('--density', type=float, default=0.06)
    ap.add_argument('--child'); ap.add_argument('--arms', nargs='*', default=list(ARMS))
    a = ap.parse_args()
    if a.child: return child(a.child, a.policy, a.steps, a.density)
    print(f"{a.policy}: {a.steps} GRPO steps, {SETTINGS[a.policy]}, random mask at {a.density:.0%} density, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, load average {os.getloadavg()[0]:.1f}")
    rows = []
    for arm in a.arms:
        t0 = time.perf_counter(); r = run_arm(arm, a.policy, a.steps, a.density); rows.append(r)
        print(f"  {arm}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    MB = 2**20
    print("| arm | weights MiB | gradients MiB | optimizer state MiB | restore copy MiB | sum MiB | RSS after load MiB | peak RSS training MiB | s/step | completion tokens/step |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        tot = r['weights'] + r['grad'] + r['state'] + r['restore']
        print(f"| {r['arm']} | {r['weights'] / MB:.1f} | {r['grad'] / MB:.1f} | {r['state'] / MB:.1f} | {r['restore'] / MB:.1f} | {tot / MB:.1f} "
              f"| {r['rss_load'] / MB:.0f} | {r['peak'] / MB:.0f} | {r['seconds']:.2f} | {r['tokens']:.0f} |")
    by = {r['arm']: r for r in rows}
    full, best = by.get('full AdamW (fp32)'), by.get('sparse (bf16)')
    if full and best:
        exact = lambda r: r['weights'] + r['grad'] + r['state'] + r['restore']
        print(f"at {a.density:.0%} density: peak memory {best['peak'] / full['peak']:.0%} of full AdamW, time per step {best['seconds'] / full['seconds']:.0%} "
              f"(weights + gradients + optimizer state: {exact(best) / exact(full):.0%})")


if __name__ == '__main__':
    main()
