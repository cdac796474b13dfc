"""Tokens per second of a GRPO step on the shipped tiny base (CPU): rlsub's train_grpo full and masked, TRL's GRPOTrainer full and
with rlsub.train.trl.MaskedTraining, same model, task and settings, runs interleaved, warmup steps excluded.

    python benchmarks/bench_grpo.py [--steps 10] [--warmup 2] [--repeats 3]

Completion tokens are those actually generated (up to and including <eos>): train_grpo's `tokens` column; for TRL the logged mean
completion length times the completions of the step. Seconds per step are wall time from step start to step end (rollout, reward,
backward, optimizer step, and the masked restore)."""
import argparse, copy, random, tempfile, time
import pandas as pd
import torch
from transformers import TrainerCallback

SETTINGS = dict(G=8, prompts=16, lr=5e-5)


class StepClock(TrainerCallback):
    "Wall seconds of each optimizer step of a Trainer."
    def __init__(self): self.seconds = []
    def on_step_begin(self, args, state, control, **kw): self.t0 = time.perf_counter()
    def on_step_end(self, args, state, control, **kw): self.seconds.append(time.perf_counter() - self.t0)


def run_rlsub(policy, tok, task, steps, mask=None, seed=0):
    from rlsub.train.grpo import GRPOConfig, train_grpo
    cfg = GRPOConfig(steps=steps, prompts_per_step=SETTINGS['prompts'], group_size=SETTINGS['G'], lr=SETTINGS['lr'], seed=seed, device='cpu')
    h = train_grpo(policy, tok, task, cfg, mask=mask, progress=False)
    return h.tokens.tolist(), h.seconds.tolist()


def run_trl(policy, tok, task, steps, mask=None, seed=0):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer
    from rlsub.train.trl import MaskedTraining
    n = SETTINGS['prompts'] * SETTINGS['G']
    ds = Dataset.from_list([dict(prompt=p, answer=a) for p, a in task.batch(SETTINGS['prompts'] * steps, random.Random(seed))])
    def reward(completions, answer, **kw): return [task.reward(c, a) for c, a in zip(completions, answer)]
    with tempfile.TemporaryDirectory() as out:
        args = GRPOConfig(output_dir=out, use_cpu=True, bf16=False, gradient_checkpointing=False, report_to='none', disable_tqdm=True,
                          num_generations=SETTINGS['G'], per_device_train_batch_size=n, max_completion_length=task.max_new_tokens,
                          learning_rate=SETTINGS['lr'], weight_decay=0.0, optim='adamw_torch', lr_scheduler_type='constant',
                          loss_type='grpo', max_steps=steps, logging_steps=1, save_strategy='no', seed=seed, temperature=1.0)
        clock = StepClock()
        tr = GRPOTrainer(model=policy, reward_funcs=reward, args=args, train_dataset=ds, processing_class=tok,
                         callbacks=[clock] + ([MaskedTraining(mask)] if mask is not None else []))
        tr.train()
    lens = [r['completions/mean_length'] for r in tr.state.log_history if 'completions/mean_length' in r]
    return [round(l * n) for l in lens], clock.seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--steps', type=int, default=10); ap.add_argument('--warmup', type=int, default=2); ap.add_argument('--repeats', type=int, default=3)
    a = ap.parse_args()
    from rlsub.measure.masks import SubnetMask
    from rlsub.train.tiny import load_base
    torch.set_num_threads(torch.get_num_threads())
    base, tok, task = load_base('addition')
    # a mask of realistic density: the bf16 update of a short full run of the same settings
    full = copy.deepcopy(base); run_rlsub(full, tok, task, 20)
    mask = SubnetMask.from_pair(copy.deepcopy(base).to(torch.bfloat16).state_dict(), full.to(torch.bfloat16).state_dict())
    print(f"shipped base, {sum(p.numel() for p in base.parameters()):,} parameters; G={SETTINGS['G']}, {SETTINGS['prompts']} prompts a step, "
          f"lr {SETTINGS['lr']}; mask density {mask.density:.1%} (bf16 update of a 20-step full run); {a.steps} steps a run, first {a.warmup} excluded; "
          f"{a.repeats} interleaved repeats; {torch.get_num_threads()} threads")
    arms = {'rlsub full': (run_rlsub, None), 'rlsub masked': (run_rlsub, mask), 'TRL full': (run_trl, None), 'TRL masked': (run_trl, mask)}
    rows = []
    for rep in range(a.repeats):
        order = list(arms) if rep % 2 == 0 else list(reversed(arms))
        for name in order:
            fn, m = arms[name]
            toks, secs = fn(copy.deepcopy(base), tok, task, a.steps, mask=m, seed=rep)
            rows += [dict(arm=name, repeat=rep, step=i, tokens=t, seconds=s) for i, (t, s) in enumerate(zip(toks, secs)) if i >= a.warmup]
    df = pd.DataFrame(rows)
    g = df.groupby('arm', sort=False).agg(steps=('step', 'size'), tokens=('tokens', 'sum'), seconds=('seconds', 'sum'), median_s=('seconds', 'median'))
    g['tokens/s'] = g.tokens / g.seconds
    g['s/step'] = g.seconds / g.steps
    per_rep = df.groupby(['arm', 'repeat']).apply(lambda x: x.tokens.sum() / x.seconds.sum(), include_groups=False).unstack()
    g['tokens/s per repeat'] = [' '.join(f'{v:.0f}' for v in per_rep.loc[k]) for k in g.index]
    g = g.reindex(list(arms))
    print(g[['steps', 'tokens', 's/step', 'median_s', 'tokens/s', 'tokens/s per repeat']].to_string(float_format=lambda x: f'{x:.3f}'))
    r = g['tokens/s']
    print(f"masking costs: rlsub {1 - r['rlsub masked'] / r['rlsub full']:+.1%}, TRL {1 - r['TRL masked'] / r['TRL full']:+.1%} of tokens/s; "
          f"rlsub full vs TRL full: {r['rlsub full'] / r['TRL full']:.2f}x")


if __name__ == '__main__':
    main()
