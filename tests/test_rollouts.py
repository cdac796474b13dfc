"Rollouts and steps at GPU speed (issue 23): one generate call per rollout batch and per evaluation batch, host reads that do not grow with the batch, the static KV cache with its exact fallback, bf16 autocast that keeps masked entries bit-identical; on CUDA as well where there is one."
import warnings
import pytest, torch
from rlsub.core import RlsubError
from rlsub.train.grpo import GRPOConfig, train_grpo
from rlsub.train.profile import HostReads, cuda_syncs, generate_calls, profile_grpo
from rlsub.train.sampling import completion_logprobs, evaluate, generate, generate_ids, generation_config, rollout
from rlsub.train.tiny import addition, char_tokenizer, load_base, tiny_policy
from toys import planted_mask

pytestmark = pytest.mark.usefixtures('one_thread')
CUDA = pytest.param('cuda', marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')])
DEVICES = ['cpu', CUDA]


@pytest.fixture(scope='module')
def tok():
    return char_tokenizer()


def cfg(**kw):
    return GRPOConfig(**dict(dict(group_size=4, prompts_per_step=4, steps=2, lr=1e-2, device='cpu'), **kw))


@pytest.mark.parametrize('micro_batch', [None, 4])
def test_one_generate_call_per_rollout_batch_whatever_the_micro_batch(tok, micro_batch):
    pol = tiny_policy(tok, 'tiny', seed=0)
    with generate_calls(pol) as calls:
        train_grpo(pol, tok, addition(1), cfg(micro_batch=micro_batch), progress=False)
    assert calls == [16, 16]                   # 2 steps, each one call of 4 prompts x 4


def test_gen_batch_caps_rows_per_call_in_whole_groups(tok):
    pol = tiny_policy(tok, 'tiny', seed=0)
    with generate_calls(pol) as calls:
        train_grpo(pol, tok, addition(1), cfg(steps=1, gen_batch=9), progress=False)
    assert calls == [8, 8]                     # 9 rounds down to 2 groups of 4
    with generate_calls(pol) as calls:
        train_grpo(pol, tok, addition(1), cfg(steps=1, gen_batch=1), progress=False)
    assert calls == [4] * 4                    # at least one group a call
    with pytest.raises(RlsubError, match='gen_batch must be a positive integer'): cfg(gen_batch=0)


def test_one_generate_call_per_evaluation_batch(tok):
    pol = tiny_policy(tok, 'tiny', seed=0)
    with generate_calls(pol) as calls: evaluate(pol, tok, addition(1), n=25, batch_size=10)
    assert calls == [10, 10, 5]
    with generate_calls(pol) as calls: evaluate(pol, tok, addition(1), n=25)
    assert calls == [25]


def test_host_reads_outside_generation_do_not_grow_with_the_batch():
    def counts(**kw):
        pol, t, task = load_base('addition')
        with HostReads() as hr: train_grpo(pol, t, task, GRPOConfig(steps=1, lr=5e-5, device='cpu', **kw), progress=False)
        return hr.reads
    small, big = counts(prompts_per_step=2, group_size=4), counts(prompts_per_step=8, group_size=8)
    micro = counts(prompts_per_step=8, group_size=8, micro_batch=16, updates_per_batch=2)
    assert small['collect'] == big['collect'] == micro['collect'] == 1       # the cut of the rollouts into sequences: one read
    # the update: one read of its numbers, and up to two of each forward pass's attention mask (transformers' check for a mask it can skip)
    assert small['update'] <= 3 and big['update'] <= 3, (small, big)
    assert micro['update'] <= 1 + 2 * (4 + 4 + 4), micro    # two updates over four micro-batches, plus the old log-probs' four passes
    assert small['optimizer'] == big['optimizer'] and micro['optimizer'] == 2 * big['optimizer']   # host-side step counters, a step each
    assert set(big) <= {'generate', 'collect', 'update', 'optimizer'}, big
    assert big['generate'] <= 3 * (addition(3).max_new_tokens + 2)      # a few a new token: generate's own stopping checks, and the texts


def test_host_reads_and_copies_counts_by_hand():
    x = torch.arange(6.)
    with HostReads() as hr:
        x.sum().item(); x.tolist(); bool(x[0] > 1); x[x > 2]; x.to(torch.float64); x.to('cpu')
    assert hr.reads == {'other': 4} and hr.copies == {}            # nothing crosses devices on the CPU


def test_generate_calls_restores_the_policy_and_counts_inside_errors(tok):
    pol = tiny_policy(tok, 'tiny', seed=0)
    with pytest.raises(ValueError), generate_calls(pol) as calls:
        generate(pol, tok, ['1+1='], 2); raise ValueError
    assert calls == [1] and 'generate' not in pol.__dict__


@pytest.mark.parametrize('device', DEVICES)
def test_static_cache_greedy_completions_equal_the_dynamic_ones(tok, device):
    pol = tiny_policy(tok, 'tiny', seed=2, device=device)
    prompts = ['1+1=', '123+456=', '9=', '77+8=']
    assert generate(pol, tok, prompts, 6, cache='static') == generate(pol, tok, prompts, 6)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('cache', ['dynamic', 'static'])
def test_rollout_samples_softmax_of_logits_over_t_whatever_the_generation_config_with_either_cache(tok, device, cache):
    from test_tiny import leaky
    pol, T, N = leaky(tok, seed=3).to(device), 0.7, 4000
    enc = tok(['1+1='], return_tensors='pt').to(device)
    with torch.no_grad(): p = (pol(**enc).logits[0, -1].float() / T).softmax(-1)
    torch.manual_seed(0)
    ro = rollout(pol, tok, ['1+1='], G=N, max_new_tokens=1, temperature=T, cache=cache)
    freq = torch.bincount(ro['ids'][:, -1], minlength=len(p)).float() / N
    assert (freq - p).abs().sum().item() / 2 < 0.05      # total variation; with the checkpoint's config leaking in it is about 0.8


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('cache', ['dynamic', 'static'])
def test_rollout_logprobs_are_the_sampling_distribution_with_either_cache(tok, device, cache):
    from test_tiny import leaky
    pol, T = leaky(tok, seed=3).to(device), 0.7
    enc = tok(['1+1=', '123+456='] * 4, return_tensors='pt', padding=True).to(device)
    gc = generation_config(pol, tok, 5, do_sample=True, temperature=T, cache=cache)
    gc.output_scores = gc.return_dict_in_generate = True
    torch.manual_seed(0)
    out = generate_ids(pol, enc, gc)
    n = enc.input_ids.shape[1]
    scores = torch.stack(out.scores, 1).log_softmax(-1)    # what generate sampled from, after every processor
    comp = out.sequences[:, n:]
    want = torch.gather(scores, 2, comp[:, :, None]).squeeze(2)
    attn = torch.cat([enc.attention_mask, torch.ones_like(comp)], 1)
    got = completion_logprobs(pol, out.sequences, attn, n, T)
    m = want > -float('inf')
    tol = 1e-5 if device == 'cpu' else 1e-4      # a GPU's kernels differ between the cached decode and the full forward
    torch.testing.assert_close(got[m], want[m], atol=tol, rtol=tol)


def test_a_failing_static_cache_warns_once_and_falls_back_to_the_exact_eager_path(tok):
    pol = tiny_policy(tok, 'tiny', seed=2)
    own = pol.generate
    def refuse_static(*a, generation_config=None, **kw):
        if generation_config.cache_implementation == 'static': raise RuntimeError('no static cache here\nsecond line')
        return own(*a, generation_config=generation_config, **kw)
    pol.generate = refuse_static
    want = generate(pol, tok, ['1+1=', '45+6='], 5)
    with pytest.warns(UserWarning, match=r'static KV cache failed on Qwen2ForCausalLM \(RuntimeError: no static cache here\); generating with the dynamic cache') as rec:
        assert generate(pol, tok, ['1+1=', '45+6='], 5, cache='static') == want
    with warnings.catch_warnings():
        warnings.simplefilter('error')         # once: the policy remembers
        assert generate(pol, tok, ['1+1=', '45+6='], 5, cache='static') == want
    with pytest.raises(RlsubError, match="unknown cache 'paged'"): generation_config(pol, tok, cache='paged')
    with pytest.raises(RlsubError, match="unknown cache 'paged'"): GRPOConfig(cache='paged')


@pytest.mark.parametrize('device', DEVICES)
def test_static_cache_trains_like_the_dynamic_one(tok, device):
    def run(cache):
        pol = tiny_policy(tok, 'tiny', seed=0, device=device)
        h = train_grpo(pol, tok, addition(1), cfg(device=device, cache=cache, steps=2, lr=1e-3), progress=False)
        return h, pol
    (hd, _), (hs, ps) = run('dynamic'), run('static')
    assert (hs.rollouts == 16).all() and hs.tokens.gt(0).all()
    assert all(torch.isfinite(p).all() for p in ps.parameters())
    if device == 'cpu':     # same seed, same logits (no compiler on a CPU): the first step samples the same completions
        assert hs.tokens[0] == hd.tokens[0] and hs.reward[0] == hd.reward[0]


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('optimizer', ['adamw', 'sparse'])
def test_autocast_keeps_masked_entries_bit_identical_and_weights_in_their_dtype(tok, device, optimizer):
    pol = tiny_policy(tok, 'tiny', seed=1)
    mask = planted_mask(pol, 0.25, seed=0)
    pol.to(device)
    start = {n: p.detach().clone() for n, p in pol.named_parameters()}
    h = train_grpo(pol, tok, addition(1), cfg(device=device, autocast=True, optimizer=optimizer, weight_decay=0.1), mask=mask, progress=False)
    moved = 0
    for n, p in pol.named_parameters():
        m = mask.tensor(n).to(p.device)
        assert p.dtype == torch.float32
        assert torch.equal(p.detach()[~m], start[n][~m]), n
        moved += int((p.detach()[m] != start[n][m]).sum())
    assert moved > 0 and h.tokens.gt(0).all()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_syncs_outside_generation_do_not_grow_with_the_batch():
    def syncs(**kw):
        pol, t, task = load_base('addition', device='cuda')
        prof = profile_grpo(pol, t, task, GRPOConfig(steps=1, lr=5e-5, device='cuda', **kw), warmup=1, cprofile=False)
        return prof.cuda_syncs, prof.host.reads.drop('generate', errors='ignore').sum()
    (s_small, r_small), (s_big, r_big) = syncs(prompts_per_step=2, group_size=4), syncs(prompts_per_step=16, group_size=8)
    assert r_small == r_big
    assert s_big <= s_small + 4, (s_small, s_big)   # CUDA's own count: generation's per-token checks, not one per sequence


def test_a_step_whose_selection_skips_every_prompt_records_nan_not_an_error(tok):
    class SkipAll:
        def keep(self, prompt): return False
        def observe(self, prompt, rewards): return True
        def end_step(self): return {}
    pol = tiny_policy(tok, 'tiny', seed=0)
    with generate_calls(pol) as calls:
        h = train_grpo(pol, tok, addition(1), cfg(steps=1, max_fill_rounds=2), selection=SkipAll(), progress=False)
    assert calls == [] and h.rollouts[0] == 0 and h.prompts[0] == 0
    assert h.reward.isna()[0] and h.accuracy.isna()[0] and h.loss.isna()[0]


def test_the_demo_takes_the_static_cache_and_refuses_an_unknown_one(tmp_path):
    from rlsub.experiments.demo import run_demo
    res = run_demo('test', device='cpu', out=None, log=None, cache='static', workdir=tmp_path / 'work')
    assert len(res.table) == 13 and (tmp_path / 'work' / 'full-bf16').is_dir()
    with pytest.raises(RlsubError, match="unknown cache 'paged'; use one of dynamic, static"):
        run_demo('test', device='cpu', out=None, log=None, cache='paged')
