"The tiny zoo: tokenizer round trips, reward parsing, reproducible SFT, the fixed evaluation set, the shipped base."
import random
import pytest, torch
from transformers import AutoTokenizer
from rlsub.core import RlsubError
from rlsub.train.tiny import CHARS, Task, addition, char_tokenizer, load_base, multiplication, parse_completion, sft, sft_batch, tiny_policy
from rlsub.train.sampling import evaluate, generate


@pytest.fixture(scope='module')
def tok():
    return char_tokenizer()


@pytest.mark.parametrize('side', ['left', 'right'])
def test_tokenizer_round_trip(tok, tmp_path, side):
    tok.save_pretrained(tmp_path)
    tok2 = AutoTokenizer.from_pretrained(tmp_path)
    texts = ['123+456=', '7*8=', '0 - 9 = 1', '']
    a = tok(texts, padding=True, padding_side=side)
    b = tok2(texts, padding=True, padding_side=side)
    assert a.input_ids == b.input_ids and a.attention_mask == b.attention_mask
    assert [tok2.decode(x, skip_special_tokens=True) for x in b.input_ids] == texts
    pads = [x[0] if side == 'left' else x[-1] for x in b.input_ids]
    assert pads[-1] == tok.pad_token_id and pads[1] == tok.pad_token_id
    assert (tok2.pad_token_id, tok2.bos_token_id, tok2.eos_token_id) == (0, 1, 2)
    assert tok2.convert_ids_to_tokens(tok2('9').input_ids) == ['<bos>', '9']


def test_tokenizer_every_char_is_one_token(tok):
    ids = tok(CHARS, add_special_tokens=False).input_ids
    assert ids == list(range(4, 4 + len(CHARS)))
    assert tok.decode(ids) == CHARS


def test_tokenizer_custom_chars_and_bad_chars():
    t = char_tokenizer('ab')
    assert len(t) == 6 and t('abc', add_special_tokens=False).input_ids == [4, 5, 3]
    with pytest.raises(RlsubError, match='repeat'): char_tokenizer('aa')


@pytest.mark.parametrize('completion,answer,reward', [
    ('975', '975', 1.0), ('975 ', '975', 1.0), ('  975', '975', 1.0), ('975 123', '975', 1.0), ('975\n', '975', 1.0),
    ('', '975', 0.0), ('   ', '975', 0.0), ('97', '975', 0.0), ('9750', '975', 0.0), ('0975', '975', 0.0),
    ('579', '975', 0.0), ('97 5', '975', 0.0), ('975=', '975', 0.0), ('+975', '975', 0.0)])
def test_reward_parsing(completion, answer, reward):
    for task in (addition(3), multiplication(2)):
        r = task.reward(completion, answer)
        assert r == reward and type(r) is float


def test_parse_completion():
    assert parse_completion(' 12 34') == '12' and parse_completion('') == ''


@pytest.mark.parametrize('make', [addition, multiplication])
def test_eval_set_fixed_and_correct(make):
    task = make()
    a, b = task.eval_set(), make().eval_set()
    assert a == b and len(a) == task.n_eval
    assert task.eval_set(10) == a[:10]
    assert len(set(p for p, _ in a)) > 0.6 * len(a)         # mostly distinct (2x1-digit has only 1,000 problems)
    random.seed(123); torch.manual_seed(123)        # global seeds do not move it
    assert make().eval_set() == a
    op = '+' if make is addition else '*'
    for p, ans in a:
        x, y = p[:-1].split(op)
        assert p.endswith('=') and ans == str(int(x) + int(y) if op == '+' else int(x) * int(y))[::-1]
    with pytest.raises(RlsubError, match='held-out'): task.eval_set(task.n_eval + 1)


def test_custom_task_is_plain_python(tok):
    t = Task('echo', lambda rng: (f'{rng.randrange(10)}=', '1'), max_new_tokens=2, n_eval=5)
    assert len(t.eval_set()) == 5 and t.reward('1', '1') == 1.0
    pol = tiny_policy(tok, 'tiny')
    assert 0.0 <= evaluate(pol, tok, t) <= 1.0


def test_sft_batch_masks_prompt(tok):
    b = sft_batch(tok, [('12+34=', '64'), ('1+1=', '2')])
    lab, ids = b['labels'], b['input_ids']
    assert (lab[0, :7] == -100).all() and lab[0, 7:].tolist() == ids[0, 7:].tolist()
    assert lab[1].tolist()[-5:-3] == [tok.convert_tokens_to_ids('2'), tok.eos_token_id] and (lab[1, -3:] == -100).all()
    assert (ids[1, -3:] == tok.pad_token_id).all() and b['attention_mask'][1].tolist() == [1] * 7 + [0] * 3


def test_sft_reproducible(tok):
    def run(seed):
        pol = tiny_policy(tok, 'tiny', seed=0)
        h = sft(pol, tok, addition(2), steps=12, batch_size=16, seed=seed, eval_every=6, eval_n=20)
        return h, pol.state_dict()
    (h1, s1), (h2, s2), (h3, _) = run(0), run(0), run(1)
    assert h1.equals(h2) and all(torch.equal(s1[k], s2[k]) for k in s1)
    assert not h1.loss.equals(h3.loss)
    assert list(h1.columns) == ['step', 'loss', 'accuracy'] and h1.accuracy.notna().sum() == 2


def test_sft_stop_at(tok):
    pol = tiny_policy(tok, 'tiny')
    h = sft(pol, tok, addition(1), steps=50, batch_size=8, eval_every=5, eval_n=10, stop_at=0.0)
    assert len(h) == 5


def test_generate_left_padding_matches_single(tok):
    pol = tiny_policy(tok, 'small', seed=1)
    prompts = ['1+2=', '123+456=', '99*9=']
    batch = generate(pol, tok, prompts, 5)
    assert batch == [generate(pol, tok, [p], 5)[0] for p in prompts]


def test_tiny_policy_sizes(tok):
    n = {s: sum(p.numel() for p in tiny_policy(tok, s).parameters()) for s in ('tiny', 'small', 'demo')}
    assert 10_000 < n['tiny'] < n['small'] < n['demo'] < 2_000_000 and n['demo'] > 500_000


def test_load_base():
    policy, tok, task = load_base('addition')
    assert task.name == 'addition-3' and 0.3 <= evaluate(policy, tok, task, n=200) <= 0.7
    with pytest.raises(RlsubError, match='no shipped base'): load_base('nope')


def test_base_tokenizer_is_the_char_tokenizer():
    _, tok, _ = load_base('addition')
    x = [CHARS, '12+34=', '']
    ref = char_tokenizer()
    assert tok(x, padding=True).input_ids == ref(x, padding=True).input_ids and tok.padding_side == 'left'
    assert tok.decode(tok(CHARS).input_ids, skip_special_tokens=True) == CHARS


def test_sft_callback(tok):
    rows = []
    sft(tiny_policy(tok, 'tiny'), tok, addition(1), steps=3, batch_size=4, eval_every=10, eval_n=5, callback=rows.append)
    assert [r['step'] for r in rows] == [1, 2, 3]


def leaky(tok, seed=3, **kw):
    "A tiny policy whose generation_config asks for everything a checkpoint may ship: penalties, truncation, suppressed tokens."
    pol = tiny_policy(tok, 'tiny', seed=seed)
    gc = pol.generation_config
    gc.repetition_penalty, gc.min_p, gc.top_k, gc.top_p, gc.no_repeat_ngram_size, gc.temperature = 1.3, 0.7, 3, 0.5, 1, 0.3
    gc.suppress_tokens, gc.do_sample, gc.max_new_tokens, gc.min_new_tokens = [tok.convert_tokens_to_ids('7')], True, 2, 1
    for k, v in kw.items(): setattr(gc, k, v)
    return pol


def greedy_by_hand(pol, tok, prompt, n):
    "Greedy completion by repeated argmax of the raw logits, stopping at <eos>."
    ids = tok([prompt], return_tensors='pt').input_ids
    out = []
    with torch.no_grad():
        for _ in range(n):
            nxt = pol(input_ids=ids).logits[0, -1].argmax().item()
            if nxt == tok.eos_token_id: break
            out.append(nxt); ids = torch.cat([ids, torch.tensor([[nxt]])], 1)
    return tok.decode(out, skip_special_tokens=True)


def test_greedy_generation_ignores_the_models_generation_config(tok):
    prompts = ['1+2=', '123+456=', '9=', '0*0=']
    clean, dirty = tiny_policy(tok, 'tiny', seed=3), leaky(tok, seed=3)
    want = [greedy_by_hand(clean, tok, p, 6) for p in prompts]
    assert generate(clean, tok, prompts, 6) == want
    assert generate(dirty, tok, prompts, 6) == want


def test_every_stop_id_ends_a_greedy_completion(tok):
    pol = tiny_policy(tok, 'tiny', seed=3)
    prompts = ['1+2=', '123+456=', '9=', '0*0=']
    plain = generate(pol, tok, prompts, 6)
    first = plain[0][0]                                   # make the first character it writes a stop id of the model
    pol.generation_config.eos_token_id = [tok.eos_token_id, tok.convert_tokens_to_ids(first)]
    assert generate(pol, tok, prompts, 6) == [c[:c.index(first)] if first in c else c for c in plain]


class Spy:
    "A tokenizer that records the add_special_tokens of each encoding call."
    def __init__(self, tok): self.tok, self.calls = tok, []
    def __call__(self, *a, **kw): self.calls.append(kw.get('add_special_tokens', True)); return self.tok(*a, **kw)
    def __getattr__(self, k): return getattr(self.tok, k)


def test_add_special_tokens_is_threaded_through_generate_and_evaluate(tok):
    pol = tiny_policy(tok, 'tiny', seed=3)
    assert generate(pol, tok, ['<bos>1+1=', '<bos>12+3='], 4, add_special_tokens=False) == generate(pol, tok, ['1+1=', '12+3='], 4)
    chat = Task('chat', addition(1).sample, max_new_tokens=3)
    chat.add_special_tokens = False                      # what a chat task whose prompts are rendered templates says
    spy = Spy(tok)
    evaluate(pol, spy, chat, n=4)
    assert spy.calls == [False]
    spy.calls = []
    evaluate(pol, spy, addition(1), n=4)                  # tiny tasks keep today's behaviour
    assert spy.calls == [True]
