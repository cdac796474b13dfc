"""Selective rollouts on the tiny addition task: plain GRPO, dynamic sampling and GRESO, rollouts and time to a held-out accuracy.

Each run starts from the shipped addition base (rlsub.train.tiny.load_base), trains with the same GRPOConfig and seed on a
fixed pool of training prompts (train_size, visited in reshuffled epochs so prompts recur), and measures greedy
held-out accuracy every --eval-every steps (evaluation time not counted). For each target accuracy it prints, per
method, the first evaluation at or above it: steps, rollouts (completions sampled, summed) and training seconds, the final
accuracy, and the rollout saving against dynamic sampling; and the zero-variance share of the rollouts over the run, which
bounds what any pre-rollout filter can save. Wall times are training seconds only and depend heavily on machine load;
rollouts are the machine-independent cost.

The three methods can run in separate processes (same settings, each seeded, so the runs are those of one process) and be
reported together:
    python benchmarks/bench_greso.py --methods plain --out DIR & python benchmarks/bench_greso.py --methods dynamic --out DIR & ...
    python benchmarks/bench_greso.py --report DIR

Usage: python benchmarks/bench_greso.py [--steps 100] [--lr 5e-5] [--train-size 256] [--prompts 32] [--temperature 0.7]
       [--targets 0.45,0.5] [--seed 0] [--eval-every 10] [--methods plain,dynamic,greso] [--out DIR] [--report DIR]
"""
import argparse, time
from pathlib import Path
import pandas as pd
import torch
from rlsub.train.selection import Greso, GresoConfig
from rlsub.experiments.race import race, to_target
from rlsub.train.grpo import GRPOConfig
from rlsub.train.tiny import load_base

# the settings of the notebook's slow comparison (nbs/experiments/53_race.ipynb)
SETTINGS = dict(steps=100, prompts_per_step=32, group_size=8, lr=5e-5, train_size=256, temperature=0.7)
METHODS = ['plain', 'dynamic', 'greso']


def table(tt: pd.DataFrame) -> pd.DataFrame:
    "to_target's result as the report table: steps, rollouts and seconds to the target, final accuracy, rollout saving vs dynamic."
    return pd.DataFrame({'steps to target': tt.step, 'rollouts to target': tt.rollouts, 'seconds to target': tt.seconds.round(1),
                         'final accuracy': tt.final.round(3), 'best accuracy': tt.best.round(3),
                         'rollout saving vs dynamic': tt.rollout_saving.map(lambda x: f'{x:.1%}' if x == x else 'n/a')}).rename_axis('method')


def report(curves: pd.DataFrame, hists: dict, targets, steps: int):
    "Print the learning curves, GRESO's counters, zero-variance shares and one table per target."
    print(curves.pivot(index='step', columns='selection', values='heldout')[[m for m in METHODS if m in hists]].round(3).to_string())
    g, d = hists['greso'], hists['dynamic']
    print('\nGRESO per step (every 10th):')
    print(g[['step', 'rollouts', 'prompts', 'considered', 'skipped_easy', 'skipped_hard', 'rolled_out', 'zero_var_share',
             'p_easy', 'p_hard']].iloc[::10].round(3).to_string(index=False))
    phase = lambda h: h.zero_var_share.groupby((h.step - 1) * 5 // steps).mean().round(2).tolist()
    easy = lambda h: (h.zero_var_easy.sum() / h.rolled_out.sum()) if 'zero_var_easy' in h else float('nan')
    zv = lambda h: (h.zero_var_share * h.rolled_out).sum() / h.rolled_out.sum()
    print(f"\nzero-variance share of all rollouts: dynamic {zv(d):.1%}, greso {zv(g):.1%} (greso's all-correct part {easy(g):.1%}); "
          f"by fifths of the run: dynamic {phase(d)}, greso {phase(g)}")
    print(f"effective batch (mean prompts trained on): plain {hists['plain'].prompts.mean():.1f}, dynamic {d.prompts.mean():.1f}, greso {g.prompts.mean():.1f}")
    print(f"rollouts over the whole run: plain {hists['plain'].rollouts.sum()}, dynamic {d.rollouts.sum()}, greso {g.rollouts.sum()} "
          f"(greso {1 - g.rollouts.sum() / d.rollouts.sum():.1%} fewer than dynamic); training seconds: "
          + ', '.join(f'{k} {h.seconds.sum():.0f}' for k, h in hists.items()))
    for t in targets:
        print(f'\ntarget {t:.0%} (seconds: training only, on a loaded machine):'); print(table(to_target(curves, t)).to_string())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--steps', type=int, default=SETTINGS['steps'])
    ap.add_argument('--lr', type=float, default=SETTINGS['lr'])
    ap.add_argument('--train-size', type=int, default=SETTINGS['train_size'])
    ap.add_argument('--prompts', type=int, default=SETTINGS['prompts_per_step'], help='prompts_per_step: the (effective) batch, in prompts')
    ap.add_argument('--group', type=int, default=SETTINGS['group_size'])
    ap.add_argument('--temperature', type=float, default=SETTINGS['temperature'], help='sampling temperature of the rollouts')
    ap.add_argument('--rounds', type=int, default=8, help='max_fill_rounds')
    ap.add_argument('--targets', default='0.45,0.5')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--eval-every', type=int, default=10)
    ap.add_argument('--n-eval', type=int, default=None, help='held-out examples per evaluation (default: all 500)')
    ap.add_argument('--threads', type=int, default=1, help='torch threads (1 avoids oversubscription on a loaded machine)')
    ap.add_argument('--methods', default=','.join(METHODS), help='which of plain, dynamic, greso to run')
    ap.add_argument('--out', default=None, help='save each method\'s curve and history here (curves_M.csv, history_M.csv)')
    ap.add_argument('--report', default=None, help='only print the report from a folder written by --out runs')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    targets = [float(t) for t in args.targets.split(',')]
    pd.set_option('display.width', 200); pd.set_option('display.max_columns', 20)
    if args.report:
        d = Path(args.report)
        curves = pd.concat([pd.read_csv(d / f'curves_{m}.csv') for m in METHODS])
        hists = {m: pd.read_csv(d / f'history_{m}.csv') for m in METHODS}
        return report(curves, hists, targets, len(hists['plain']))
    cfg = GRPOConfig(steps=args.steps, prompts_per_step=args.prompts, group_size=args.group, lr=args.lr, train_size=args.train_size,
                     max_fill_rounds=args.rounds, temperature=args.temperature, seed=args.seed, device='cpu')
    print(cfg)
    sels = {'plain': None, 'dynamic': 'dynamic', 'greso': Greso(GresoConfig(seed=args.seed))}
    t0 = time.perf_counter()
    curves, hists = race(lambda: load_base('addition'), cfg, {m: sels[m] for m in args.methods.split(',')},
                         eval_every=args.eval_every, n_eval=args.n_eval)
    print(f'{time.perf_counter() - t0:.0f} s in all, evaluation included')
    if args.out:
        out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
        for m, h in hists.items():
            curves[curves.selection == m].to_csv(out / f'curves_{m}.csv', index=False); h.to_csv(out / f'history_{m}.csv', index=False)
    if set(METHODS) <= set(hists): report(curves, hists, targets, args.steps)
    else: print(curves.pivot(index='step', columns='selection', values=['heldout', 'rollouts']).round(3).to_string())


if __name__ == '__main__':
    main()
