"GRPO: the pure pieces by hand, reproducible runs, subnet-only training that leaves the rest bit-identical, bad inputs."
import math
import numpy as np, pytest, torch
from rlsub.core import RlsubError
from rlsub.train.objectives import AGG_MODES, aggregate, approx_kl, clipped_objective, group_advantages, masked_mean
from rlsub.train.grpo import GRPOConfig, train_grpo, TIMINGS
from rlsub.train.selection import DynamicSampling
from rlsub.train.callbacks import Tracker
from rlsub.train.sampling import completion_logprobs, rollout
from rlsub.train.loop import checkpointing_on, save_policy
from rlsub.measure.masks import SubnetMask
from rlsub.train.tiny import Task, addition, char_tokenizer, tiny_policy
from toys import EVEN, as_int, planted_mask

COLUMNS = ['step', 'reward', 'accuracy', 'kl', 'clip_frac', 'tokens', 'rollouts', 'prompts', 'loss', 'seconds', 'generate_s', 'score_s', 'update_s']


@pytest.fixture(scope='module')
def tok():
    return char_tokenizer()




def cfg(**kw):
    return GRPOConfig(**dict(dict(group_size=4, prompts_per_step=4, steps=3, lr=1e-2, device='cpu'), **kw))


def train(*args, **kw):
    return train_grpo(*args, **dict(dict(progress=False), **kw))


def test_group_advantages_by_hand():
    r = torch.tensor([1., 1, 0, 0, 0, 0, 0, 1])
    # group 1: mean 1/2, sample std sqrt(1/3); group 2: mean 1/4, sample std 1/2
    s = math.sqrt(1 / 3)
    want = [0.5 / (s + 1e-4), 0.5 / (s + 1e-4), -0.5 / (s + 1e-4), -0.5 / (s + 1e-4)] + [-0.25 / 0.5001] * 3 + [0.75 / 0.5001]
    torch.testing.assert_close(group_advantages(r, 4), torch.tensor(want))
    torch.testing.assert_close(group_advantages(r, 4, scale=False), torch.tensor([.5, .5, -.5, -.5, -.25, -.25, -.25, .75]))
    torch.testing.assert_close(group_advantages(r, 4, eps=1.0), torch.tensor([0.5 / (s + 1)] * 2 + [-0.5 / (s + 1)] * 2 + [-0.25 / 1.5] * 3 + [0.75 / 1.5]))
    assert group_advantages(torch.ones(8), 8).abs().max() == 0
    assert group_advantages(torch.tensor([0., 1, 2, 3]), 2).tolist() == pytest.approx([-0.5 / (math.sqrt(.5) + 1e-4), 0.5 / (math.sqrt(.5) + 1e-4)] * 2)
    with pytest.raises(RlsubError, match='groups of G=3'): group_advantages(torch.zeros(8), 3)


def test_approx_kl_is_k3_and_nonnegative():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1000, generator=g), torch.randn(1000, generator=g)
    k = approx_kl(a, b)
    assert (k >= 0).all() and approx_kl(a, a).abs().max() == 0
    torch.testing.assert_close(k, torch.exp(b - a) - (b - a) - 1)
    # unbiased: E_p[k3] = KL(p||q); p = (.5, .5), q = (.9, .1) -> KL = .5 ln(.5/.9) + .5 ln(.5/.1)
    lp, lq = torch.log(torch.tensor([.5, .5])), torch.log(torch.tensor([.9, .1]))
    assert (0.5 * approx_kl(lp, lq)).sum().item() == pytest.approx(0.5 * math.log(.5 / .9) + 0.5 * math.log(.5 / .1), rel=1e-5)


def test_clipped_objective_gradient_vanishes_where_clipped():
    old = torch.zeros(1, 4)
    lp = torch.log(torch.tensor([[1.5, 1.1, 0.5, 0.9]])).requires_grad_(True)
    obj = clipped_objective(lp, old, torch.tensor([1.]))
    torch.testing.assert_close(obj.detach(), torch.tensor([[1.2, 1.1, 0.5, 0.9]]))
    obj.sum().backward()
    torch.testing.assert_close(lp.grad, torch.tensor([[0., 1.1, 0.5, 0.9]]))   # d(ρA)/dlogp = ρA, 0 on the clipped token
    torch.testing.assert_close(clipped_objective(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([[1., 2, 3], [4, 5, 6]])),
                               torch.tensor([[1., 2, 3], [4, 5, 6]]))


def test_aggregate_modes_by_hand():
    v = torch.tensor([[2., 4, 0, 0], [1, 1, 1, 1], [8, 0, 0, 0]])
    m = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]).bool()
    assert aggregate(v, m, 'seq').item() == pytest.approx((3 + 1 + 8) / 3)
    assert aggregate(v, m, 'token').item() == pytest.approx(18 / 7)
    assert aggregate(v, m, 'constant').item() == pytest.approx(18 / 12)
    assert aggregate(v, m, 'constant', max_len=6).item() == pytest.approx(18 / 18)
    assert masked_mean(v, torch.zeros_like(m)).item() == 0
    assert masked_mean(v, m, dim=1).tolist() == [3., 1., 8.]


def test_config_refuses_bad_settings():
    for kw, msg in [(dict(loss_agg='sum'), 'unknown loss_agg'), (dict(group_size=1), 'at least 2'), (dict(group_size=0), 'positive integer'),
                    (dict(prompts_per_step=2.5), 'positive integer'), (dict(temperature=0), 'temperature')]:
        with pytest.raises(RlsubError, match=msg): GRPOConfig(**kw)


def test_rollout_masks_after_eos_and_logprobs_ignore_padding(tok):
    pol = tiny_policy(tok, 'tiny', seed=3)
    torch.manual_seed(0)
    ro = rollout(pol, tok, ['1+1=', '123+456=', '9='], G=3, max_new_tokens=6)
    assert ro['ids'].shape[0] == 9 and len(ro['texts']) == 9
    comp = ro['ids'][:, ro['n_prompt']:]
    for row, mk in zip(comp.tolist(), ro['mask'].tolist()):
        last = row.index(tok.eos_token_id) if tok.eos_token_id in row else len(row) - 1
        assert mk == [i <= last for i in range(len(row))]
    lp = completion_logprobs(pol, ro['ids'], ro['attn'], ro['n_prompt'])
    for i, p in [(0, '1+1='), (8, '9=')]:
        alone = tok([p], return_tensors='pt').input_ids
        ids = torch.cat([alone, comp[i:i + 1]], 1)
        one = completion_logprobs(pol, ids, torch.ones_like(ids), alone.shape[1])[0]
        torch.testing.assert_close(one[ro['mask'][i]], lp[i][ro['mask'][i]], atol=1e-5, rtol=1e-5)


def test_history_columns_and_every_aggregation_runs(tok):
    for mode in AGG_MODES:
        rows = []
        h = train(tiny_policy(tok, 'tiny'), tok, addition(1), cfg(steps=2, loss_agg=mode), callbacks=[rows.append])
        assert list(h.columns) == COLUMNS and len(h) == 2 and len(rows) == 2
        assert h.kl.isna().all() and (h.clip_frac == 0).all() and (h.tokens > 0).all()
        assert ((h.accuracy >= 0) & (h.accuracy <= 1)).all() and (h.seconds > 0).all()


def test_seeded_runs_reproduce_exactly(tok):
    def run(seed):
        pol = tiny_policy(tok, 'tiny', seed=0)
        h = train(pol, tok, EVEN, cfg(steps=3, seed=seed, kl_coef=0.05, weight_decay=0.01))
        return h.drop(columns=list(TIMINGS)), pol.state_dict()
    (h1, w1), (h2, w2), (h3, w3) = run(0), run(0), run(1)
    assert h1.equals(h2)
    assert all(torch.equal(w1[n], w2[n]) for n in w1)
    assert not h1.equals(h3) or not all(torch.equal(w1[n], w3[n]) for n in w1)


def test_training_moves_weights_and_kl(tok):
    pol = tiny_policy(tok, 'tiny', seed=0)
    start = {n: p.detach().clone() for n, p in pol.named_parameters()}
    h = train(pol, tok, EVEN, cfg(steps=4, kl_coef=0.1))
    assert 0 < h.reward.iloc[0] < 1
    assert h.kl.iloc[0] == 0 and h.kl.iloc[-1] > 0
    assert any(not torch.equal(p, start[n]) for n, p in pol.named_parameters())


@pytest.mark.parametrize('weight_decay', [0.0, 0.1])
def test_outside_the_mask_stays_bit_identical(tok, weight_decay):
    pol = tiny_policy(tok, 'tiny', seed=1)
    mask = planted_mask(pol, 0.25)
    start = {n: p.detach().clone() for n, p in pol.named_parameters()}
    train(pol, tok, EVEN, cfg(steps=5, weight_decay=weight_decay, kl_coef=0.05), mask=mask)
    moved = 0
    for n, p in pol.named_parameters():
        m = mask.tensor(n)
        assert torch.equal(as_int(p)[~m], as_int(start[n])[~m]), n
        moved += (as_int(p)[m] != as_int(start[n])[m]).sum().item()
    assert moved > 0.5 * mask.count * 0.5   # most masked entries moved (a few may have had zero gradient)


def test_full_and_empty_masks(tok):
    full_pol, plain_pol = tiny_policy(tok, 'tiny', seed=2), tiny_policy(tok, 'tiny', seed=2)
    full = SubnetMask.from_pair(full_pol, {n: t + 1 for n, t in full_pol.state_dict().items()})
    assert full.density == 1
    h1 = train(full_pol, tok, EVEN, cfg(weight_decay=0.1), mask=full)
    h2 = train(plain_pol, tok, EVEN, cfg(weight_decay=0.1))
    assert h1.drop(columns=list(TIMINGS)).equals(h2.drop(columns=list(TIMINGS)))
    assert all(torch.equal(a, b) for a, b in zip(full_pol.state_dict().values(), plain_pol.state_dict().values()))
    pol = tiny_policy(tok, 'tiny', seed=2)
    empty = SubnetMask.from_pair(pol, pol)
    before = {n: t.clone() for n, t in pol.state_dict().items()}
    train(pol, tok, EVEN, cfg(weight_decay=0.1), mask=empty)
    assert all(torch.equal(as_int(t), as_int(before[n])) for n, t in pol.state_dict().items())


def test_a_mask_for_another_model_is_refused(tok):
    pol = tiny_policy(tok, 'tiny')
    small = tiny_policy(tok, 'small')
    with pytest.raises(RlsubError, match=r"model\.embed_tokens\.weight has shape \[19, 64\] but the policy's is \[19, 32\]"):
        train(pol, tok, addition(1), cfg(steps=1), mask=SubnetMask.from_pair(small, small))
    deeper = tiny_policy(tok, 'tiny', num_hidden_layers=3)
    with pytest.raises(RlsubError, match=r"'model\.layers\.2\.[a-z_.]+' is not in the policy"):
        train(pol, tok, addition(1), cfg(steps=1), mask=SubnetMask.from_pair(deeper, deeper))
    shallow = tiny_policy(tok, 'tiny', num_hidden_layers=1)
    with pytest.raises(RlsubError, match=r"no tensor 'model\.layers\.1\.[a-z_.]+', a parameter of the policy"):
        train(pol, tok, addition(1), cfg(steps=1), mask=SubnetMask.from_pair(shallow, shallow))


def test_tokenizer_without_pad_is_refused(tok):
    t2 = char_tokenizer(); t2.pad_token = None
    with pytest.raises(RlsubError, match='no pad token'): train_grpo(tiny_policy(tok, 'tiny'), t2, addition(1), cfg(steps=1))


def test_reward_rises_on_a_learnable_task(tok):
    pol = tiny_policy(tok, 'tiny', seed=0)
    h = train(pol, tok, EVEN, cfg(group_size=8, prompts_per_step=8, steps=25, lr=1e-2))
    assert h.reward.iloc[-5:].mean() > h.reward.iloc[:5].mean() + 0.2, h.reward.tolist()


def test_config_refuses_bad_pool_and_batch_settings():
    for kw, msg in [(dict(train_size=2), 'smaller than prompts_per_step'), (dict(micro_batch=0), 'micro_batch must be'),
                    (dict(updates_per_batch=0), 'updates_per_batch must be'), (dict(steps=0), 'steps must be')]:
        with pytest.raises(RlsubError, match=msg): GRPOConfig(**kw)


def test_callbacks_plain_and_object_and_progress_lines(tok, capsys):
    events, rows = [], []

    class Recorder:
        def on_train_begin(self, state): events.append(('begin', state.step))
        def on_step_end(self, row, state): events.append(('step', state.step)); row['extra'] = state.step * 10
        def on_train_end(self, state): events.append(('end', len(state.rows)))

    h = train_grpo(tiny_policy(tok, 'tiny'), tok, EVEN, cfg(steps=3), callbacks=[Recorder(), rows.append])
    assert events == [('begin', 0), ('step', 1), ('step', 2), ('step', 3), ('end', 3)]
    assert h.extra.tolist() == [10, 20, 30] and len(rows) == 3
    out = capsys.readouterr().out        # outside a notebook: quiet lines
    assert 'step 3/3' in out and out.count('\n') == 3
    train(tiny_policy(tok, 'tiny'), tok, EVEN, cfg(steps=2))
    assert capsys.readouterr().out == ''


def test_a_bf16_policy_trains_in_fp32(tok):
    pol = tiny_policy(tok, 'tiny').to(torch.bfloat16)
    train(pol, tok, EVEN, cfg(steps=1))
    assert {p.dtype for p in pol.parameters()} == {torch.float32}


def test_train_size_pool_recurs_and_dynamic_sampling_keeps_only_signal(tok):
    seen = []

    class Spy:
        def keep(self, prompt): seen.append(prompt); return True
        def observe(self, prompt, rewards): return max(rewards) != min(rewards)
        def end_step(self): return dict(spied=len(seen))

    h = train(tiny_policy(tok, 'tiny'), tok, EVEN, cfg(steps=4, train_size=6, max_fill_rounds=2), selection=Spy())
    assert len(set(seen)) <= 6 and len(seen) > 6            # prompts come back from the pool of 6
    assert (h.prompts <= 4).all() and h.spied.is_monotonic_increasing
    h2 = train(tiny_policy(tok, 'tiny'), tok, EVEN, cfg(steps=3, max_fill_rounds=4), selection=DynamicSampling())
    assert (h2.rollouts == 4 * h2.rolled_out).all() and (h2.prompts <= 4).all()
    with pytest.raises(RlsubError, match="has no keep, observe and end_step"): train(tiny_policy(tok, 'tiny'), tok, EVEN, cfg(steps=1), selection=object())


def test_tracker_and_save_policy_refuse_bad_input(tok, tmp_path):
    with pytest.raises(RlsubError, match='every must be'): Tracker(every=0)
    with pytest.raises(RlsubError, match="unknown storage precision 'fp8'"): Tracker(storage=('fp8',))
    (tmp_path / 'run').mkdir(); (tmp_path / 'run' / 'notes.txt').write_text('mine')
    with pytest.raises(RlsubError, match='is not empty'):
        train(tiny_policy(tok, 'tiny'), tok, EVEN, cfg(steps=1), callbacks=[Tracker(save_dir=tmp_path / 'run')])
    assert [p.name for p in (tmp_path / 'run').iterdir()] == ['notes.txt']
    pol = tiny_policy(tok, 'tiny')
    with pytest.raises(RlsubError, match='is not a folder'): save_policy(pol, tok, tmp_path / 'no' / 'such')
    save_policy(pol, tok, tmp_path / 'a', 'fp16')
    with pytest.raises(RlsubError, match='already exists'): save_policy(pol, tok, tmp_path / 'a')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['a', 'run']


def test_tracker_matches_scan_of_its_checkpoints_in_both_precisions(tok, tmp_path):
    from rlsub.measure.scan import scan_pair
    pol = tiny_policy(tok, 'tiny', seed=0)
    trs = [Tracker(every=2, save_dir=tmp_path / d, save_dtype=d, storage=(d,), rules=(('abs', 1e-5), ('rel', 1e-3))) for d in ('bf16', 'fp32')]
    h = train(pol, tok, EVEN, cfg(steps=3, lr=1e-3), callbacks=trs)
    assert h.sparsity_bf16.notna().tolist() == [False, True, True]
    for tr, d in zip(trs, ('bf16', 'fp32')):
        assert sorted(p.name for p in (tmp_path / d).iterdir()) == ['checkpoint-0', 'checkpoint-2', 'checkpoint-3']
        t = tr.table
        for a, b in [(0, 2), (0, 3), (2, 3)]:
            rep = scan_pair(tmp_path / d / f'checkpoint-{a}', tmp_path / d / f'checkpoint-{b}', progress=False)
            col = 'sparsity' if a == 0 else 'step_sparsity'
            for rule, thr in tr.rules:
                assert t[(t.step == b) & (t.rule == rule)][col].item() == rep.sparsity(rule, thr)


# the sampling distribution and its log-probs: tests/test_rollouts.py, with both KV caches and on CUDA where there is one


def test_every_stop_id_ends_a_rollout_and_is_in_its_mask(tok):
    from rlsub.train.sampling import completion_mask
    assert completion_mask(torch.tensor([[5, 7, 0], [5, 6, 8], [2, 0, 0], [9, 9, 9]]), {2, 7}).tolist() == \
           [[True, True, False], [True, True, True], [True, False, False], [True, True, True]]
    pol = tiny_policy(tok, 'tiny', seed=3)
    stop = tok.convert_tokens_to_ids('5')
    pol.generation_config.eos_token_id = [tok.eos_token_id, stop]
    with torch.no_grad(): pol.lm_head.weight[stop] += 0.5  # (tied: the embedding too) make '5' common
    torch.manual_seed(0)
    ro = rollout(pol, tok, ['1+1=', '9='], G=8, max_new_tokens=6)
    comp, seen = ro['ids'][:, ro['n_prompt']:], 0
    for row, mk in zip(comp.tolist(), ro['mask'].tolist()):
        ends = [i for i, t in enumerate(row) if t in (stop, tok.eos_token_id)]
        last = ends[0] if ends else len(row) - 1
        assert mk == [i <= last for i in range(len(row))]
        assert all(t == tok.pad_token_id for t in row[last + 1:])   # generation stopped there
        seen += bool(ends) and row[ends[0]] == stop
    assert seen > 0


def test_train_grpo_tokenizes_chat_prompts_without_special_tokens(tok):
    from test_tiny import Spy
    chat = Task('chat', addition(1).sample, max_new_tokens=3)
    chat.add_special_tokens = False
    spy = Spy(tok)
    train(tiny_policy(tok, 'tiny'), spy, chat, cfg(steps=1))
    assert spy.calls and not any(spy.calls)
    spy.calls = []
    train(tiny_policy(tok, 'tiny'), spy, addition(1), cfg(steps=1))
    assert spy.calls and all(spy.calls)


@pytest.mark.parametrize('dtype,want', [('bf16', torch.bfloat16), ('fp16', torch.float16), ('fp32', torch.float32)])
def test_save_policy_config_says_the_stored_dtype(tok, tmp_path, dtype, want):
    from transformers import AutoConfig, AutoModelForCausalLM
    pol = tiny_policy(tok, 'tiny')
    before = pol.config.dtype
    out = save_policy(pol, tok, tmp_path / dtype, dtype)
    assert AutoConfig.from_pretrained(out).dtype == want
    back = AutoModelForCausalLM.from_pretrained(out)        # dtype='auto' is the default in transformers 5
    assert {p.dtype for p in back.parameters()} == {want}
    assert str(pol.config.dtype).removeprefix('torch.') == str(before).removeprefix('torch.') and next(pol.parameters()).dtype == torch.float32   # the live policy is untouched


def _mlp_calls(pol):
    "A counter of layer 0's MLP forward calls (a checkpointed layer runs again in the backward pass)."
    n = [0]
    pol.model.layers[0].mlp.register_forward_pre_hook(lambda *a: n.__setitem__(0, n[0] + 1))   # a pre-hook: the replay stops early, before the MLP returns
    return n


@pytest.mark.parametrize('how', ['config', 'policy'])
def test_gradient_checkpointing_really_recomputes_and_gives_the_same_weights(tok, how):
    runs = {}
    for on in (False, True):
        pol = tiny_policy(tok, 'tiny', seed=0)
        if on and how == 'policy': pol.gradient_checkpointing_enable()      # what a user did before GRPOConfig had the field
        calls = _mlp_calls(pol)
        c = cfg(steps=2, micro_batch=8, **(dict(gradient_checkpointing=True) if on and how == 'config' else {}))
        train(pol, tok, EVEN, c)
        runs[on] = calls[0], {n: p.detach().clone() for n, p in pol.named_parameters()}
        assert checkpointing_on(pol) == (on and how == 'policy')       # train_grpo leaves the policy as it came (under either name transformers uses)
    assert runs[True][0] - runs[False][0] == 2 * 2                              # 2 steps x 2 micro-batches, each recomputed once
    for n, p in runs[False][1].items(): torch.testing.assert_close(runs[True][1][n], p, atol=0, rtol=0)


def test_completion_logprobs_match_the_naive_full_vocabulary_version(tok):
    from transformers import AutoModelForCausalLM
    from rlsub.examples import tiny_config
    def naive(model, ids, attn, n, T):
        pos = (attn.long().cumsum(1) - 1).clamp(min=0)
        logits = model(input_ids=ids, attention_mask=attn, position_ids=pos).logits[:, n - 1:-1].float() / T
        return torch.gather(logits.log_softmax(-1), 2, ids[:, n:, None]).squeeze(2)
    torch.manual_seed(0)
    for pol in (tiny_policy(tok, 'tiny', seed=1), AutoModelForCausalLM.from_config(tiny_config('llama', vocab_size=len(tok))).eval()):
        ro = rollout(pol, tok, ['1+1=', '123+456=', '9='], G=2, max_new_tokens=5)
        for T in (1.0, 0.7):
            lp = completion_logprobs(pol, ro['ids'], ro['attn'], ro['n_prompt'], T)
            torch.testing.assert_close(lp, naive(pol, ro['ids'], ro['attn'], ro['n_prompt'], T), atol=1e-5, rtol=1e-5)
        seen = []
        h = pol.lm_head.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[1]))
        completion_logprobs(pol, ro['ids'], ro['attn'], ro['n_prompt']); h.remove()
        assert seen == [ro['ids'].shape[1] - ro['n_prompt'] + 1]               # the lm_head never sees the prompt
