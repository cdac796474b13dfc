"GRESO: the skip probability against its formula, the rate adaptation's direction and bounds, seeded reproducibility, and selection off = plain GRPO."
import math, random
import pytest, torch
from rlsub.core import RlsubError
from rlsub.train.selection import DynamicSampling, Greso, GresoConfig, selector, keep_probability, nudge, skip_probability, zero_variance_kind
from rlsub.train.grpo import GRPOConfig, train_grpo, TIMINGS
from rlsub.train.tiny import addition, char_tokenizer, tiny_policy

pytestmark = pytest.mark.usefixtures('one_thread')   # tests/conftest.py



@pytest.fixture(scope='module')
def tok():
    return char_tokenizer()


def feed(sel, prompt, kinds):
    "Record one rolled-out epoch per kind for `prompt` ('easy', 'hard' or 'mixed')."
    groups = {'easy': [1, 1, 1, 1], 'hard': [0, 0, 0, 0], 'mixed': [1, 0, 0, 1]}
    for k in kinds: sel.observe(prompt, groups[k])


@pytest.mark.parametrize('k', [0, 1, 2, 3, 5, 8, 20])
@pytest.mark.parametrize('p', [0.05, 0.3, 0.5, 0.9, 0.95])
@pytest.mark.parametrize('p_min', [0.0, 0.01, 0.2])
def test_skip_probability_formula(k, p, p_min):
    expected = 0.0 if k == 0 else 1 - max(p ** k, p_min)
    assert skip_probability(k, p, p_min) == pytest.approx(expected, abs=1e-15)
    assert keep_probability(k, p, p_min) + skip_probability(k, p, p_min) == pytest.approx(1.0)


def test_streak_counts_consecutive_zero_variance_epochs_and_takes_the_latest_kind():
    sel = Greso(p_easy=0.6, p_hard=0.3, p_min=0.01)
    feed(sel, 'q', ['hard', 'hard', 'mixed', 'hard', 'easy', 'easy'])
    assert sel.streak('q') == (3, 'easy')
    assert sel.keep_probability('q') == pytest.approx(max(0.6 ** 3, 0.01))
    feed(sel, 'q', ['hard'])
    assert sel.streak('q') == (4, 'hard') and sel.keep_probability('q') == pytest.approx(max(0.3 ** 4, 0.01))
    feed(sel, 'q', ['mixed'])
    assert sel.streak('q') == (0, None) and sel.keep_probability('q') == 1.0
    assert sel.streak('never seen') == (0, None) and sel.keep_probability('never seen') == 1.0
    feed(sel, 'r', ['hard'] * 12)   # 0.3**12 is far below the floor
    assert sel.keep_probability('r') == pytest.approx(0.01)


@pytest.mark.parametrize('kinds, kind, p', [(['hard', 'hard'], 'hard', 0.25), (['easy'], 'easy', 0.7), (['hard'] * 9, 'hard', 0.01)])
def test_keep_draws_match_the_probability(kinds, kind, p):
    sel = Greso(p_easy=0.7, p_hard=0.5, seed=3)
    feed(sel, 'q', kinds)
    n = 20_000
    kept = sum(sel.keep('q') for _ in range(n))
    assert kept / n == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / n) + 1e-9)
    assert sel.counts['considered'] == n and sel.counts[f'skipped_{kind}'] == n - kept


def test_never_seen_and_mixed_prompts_are_always_kept():
    sel = Greso(seed=0)
    feed(sel, 'm', ['hard', 'mixed'])
    assert all(sel.keep('new') for _ in range(500)) and all(sel.keep('m') for _ in range(500))
    assert sel.counts['skipped_easy'] == sel.counts['skipped_hard'] == 0


def test_observe_accepts_only_groups_with_spread():
    sel = Greso()
    assert [sel.observe('a', [1, 1]), sel.observe('b', [0, 0]), sel.observe('c', [0, 1])] == [False, False, True]
    row = sel.end_step()
    assert (row['rolled_out'], row['zero_var_easy'], row['zero_var_hard']) == (3, 1, 1)
    assert row['zero_var_share'] == pytest.approx(2 / 3)
    assert sel.history == {'a': ['easy'], 'b': ['hard'], 'c': ['mixed']}
    assert sel.end_step()['rolled_out'] == 0    # counters reset every step


def test_zero_variance_kind():
    assert zero_variance_kind([1.0] * 8) == 'easy' and zero_variance_kind([0.0] * 8) == 'hard'
    assert zero_variance_kind([0.0] * 7 + [1.0]) is None
    assert zero_variance_kind([2, 2], easy_reward=2) == 'easy' and zero_variance_kind([1.9, 1.9], easy_reward=2) == 'hard'


def test_nudge_direction_and_bounds():
    assert nudge(0.5, 0.4, 0.25) == pytest.approx(0.49)       # above target: explore less, skip more
    assert nudge(0.5, 0.25, 0.25) == pytest.approx(0.49)      # at target counts as above (the authors' >=)
    assert nudge(0.5, 0.1, 0.25) == pytest.approx(0.51)       # below: explore more
    assert nudge(0.055, 1.0, 0.25) == 0.05 and nudge(0.945, 0.0, 0.25) == 0.95
    assert nudge(0.5, 0.4, 0.25, delta=0.1, lo=0.45) == 0.45


def run_steps(sel, easy, hard, mixed, steps):
    "`steps` steps each rolling out `easy` all-correct, `hard` all-wrong and `mixed` groups (fresh prompts); the rows."
    rows = []
    for s in range(steps):
        for i in range(easy): sel.observe(f'e{s}.{i}', [1, 1])
        for i in range(hard): sel.observe(f'h{s}.{i}', [0, 0])
        for i in range(mixed): sel.observe(f'm{s}.{i}', [0, 1])
        rows.append(sel.end_step())
    return rows


def test_adaptation_moves_p_toward_the_target():
    # too many easy (50 % vs 1/12) and too few hard (0 vs 1/6): explore easy less, hard more, 0.01 a step
    sel = Greso()
    rows = run_steps(sel, easy=8, hard=0, mixed=8, steps=10)
    assert [r['p_easy'] for r in rows] == pytest.approx([0.5 - 0.01 * i for i in range(10)])
    assert [r['p_hard'] for r in rows] == pytest.approx([0.5 + 0.01 * i for i in range(10)])
    assert (sel.p_easy, sel.p_hard) == pytest.approx((0.4, 0.6))
    # the reverse, with custom targets, and the bounds hold for long runs
    sel = Greso(GresoConfig(target_zero_var=0.6, easy_fraction=0.5, delta=0.05))
    run_steps(sel, easy=1, hard=9, mixed=6, steps=40)   # easy 1/16 < 0.3, hard 9/16 >= 0.3
    assert (sel.p_easy, sel.p_hard) == pytest.approx((0.95, 0.05))
    # nothing rolled out: nothing measured, the rates stay
    p = (sel.p_easy, sel.p_hard)
    row = sel.end_step()
    assert (sel.p_easy, sel.p_hard) == p and math.isnan(row['zero_var_share'])


def test_adaptation_brings_the_rollout_share_down_to_the_target():
    "A population that is 70 % zero-variance for ever: GRESO's share of zero-variance rollouts falls from ~70 % toward 25 %."
    sel, rng = Greso(seed=1), random.Random(0)
    kinds = ['hard'] * 150 + ['easy'] * 60 + ['mixed'] * 90
    groups = {'hard': [0] * 4, 'easy': [1] * 4, 'mixed': [1, 0, 0, 0]}
    order, shares = [], []
    for _ in range(80):
        got = 0
        while got < 16:
            if not order: order = rng.sample(range(300), 300)
            i = order.pop()
            if sel.keep(f'q{i}'): got += sel.observe(f'q{i}', groups[kinds[i]])
        shares.append(sel.end_step()['zero_var_share'])
    assert sum(shares[:5]) / 5 > 0.6
    assert sum(shares[-30:]) / 30 < 0.4


def test_config_and_constructor_errors():
    with pytest.raises(RlsubError, match='p_hard is a probability'): GresoConfig(p_hard=-0.1)
    with pytest.raises(RlsubError, match='p_lo'): GresoConfig(p_lo=0.9, p_hi=0.1)
    with pytest.raises(RlsubError, match='not both'): Greso(GresoConfig(), p_min=0.1)
    with pytest.raises(RlsubError, match='cannot be negative'): skip_probability(-1, 0.5)
    with pytest.raises(RlsubError, match='no rewards'): Greso().observe('q', [])
    assert Greso(p_min=0.05).config.p_min == 0.05 and Greso(GresoConfig(p_min=0.05)).config.p_min == 0.05
    assert 'p_easy=0.50' in repr(Greso())


def cfg(**kw):
    return GRPOConfig(**dict(dict(group_size=4, prompts_per_step=4, steps=3, lr=3e-3, train_size=8, max_fill_rounds=2, device='cpu'), **kw))


def train(tok, selection, **kw):
    pol = tiny_policy(tok, 'tiny', seed=0)
    h = train_grpo(pol, tok, addition(1), cfg(**kw), selection=selection, progress=False)
    return pol, h


def same_params(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def test_seeded_greso_run_is_reproducible(tok):
    (p1, h1), (p2, h2) = train(tok, Greso(seed=7)), train(tok, Greso(seed=7))
    assert h1.drop(columns=list(TIMINGS)).equals(h2.drop(columns=list(TIMINGS))) and same_params(p1, p2)
    assert h1.skipped_hard.sum() + h1.skipped_easy.sum() > 0     # the skips were exercised
    _, h3 = train(tok, selector('greso'), steps=1)               # the name builds the defaults
    assert 'p_easy' in h3 and h3.p_easy.iloc[0] == 0.5


class PassThrough:
    "A selection that is off: keeps every prompt, accepts every group."
    def keep(self, prompt): return True
    def observe(self, prompt, rewards): return True
    def end_step(self): return {}


def test_selection_is_an_object(tok):
    "train_grpo imports no strategy: a name is refused with the object to pass instead."
    with pytest.raises(RlsubError, match=r"selection='greso' is a name; pass an object: rlsub.train.selection.selector\('greso'\)"): train(tok, 'greso', steps=1)


def test_selection_off_is_plain_grpo(tok):
    p0, h0 = train(tok, None)
    p1, h1 = train(tok, PassThrough())
    assert h0.drop(columns=list(TIMINGS)).equals(h1.drop(columns=list(TIMINGS))) and same_params(p0, p1)


def test_greso_without_skipping_is_dynamic_sampling(tok):
    "p_min = 1 keeps every prompt: GRESO's only remaining effect is dropping zero-variance groups, exactly dynamic sampling."
    p0, h0 = train(tok, DynamicSampling())
    p1, h1 = train(tok, Greso(p_min=1.0))
    cols = ['step', 'reward', 'accuracy', 'tokens', 'rollouts', 'prompts', 'loss', 'rolled_out', 'zero_var_share']
    assert h0[cols].equals(h1[cols]) and same_params(p0, p1)
    assert (h1.skipped_easy + h1.skipped_hard).sum() == 0
