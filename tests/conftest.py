"Shared fixtures: tiny checkpoint pairs built once per session from transformers configs."
import os, pytest, torch

os.environ.setdefault('HF_HUB_OFFLINE', '1')        # the suite never touches the network
os.environ.setdefault('TRANSFORMERS_VERBOSITY', 'error')
# the real model (rlsub.train.zoo's SmolLM2-135M) is converted once into this folder for the whole run, not into the user's ~/.cache
os.environ.setdefault('RLSUB_CACHE', os.path.join(os.environ.get('TMPDIR', '/tmp'), 'rlsub-test-cache'))


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: minutes of CPU; run with -m slow')
    config.addinivalue_line('markers', 'cuda: runs on a GPU (skipped without CUDA); benchmarks/bench_gpu.py runs them with -m cuda')


@pytest.fixture(scope='module')
def one_thread():
    "Tiny models run as fast on one thread, and it avoids oversubscribing a loaded machine; restored after the module (`pytestmark = pytest.mark.usefixtures('one_thread')`)."
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope='session')
def pairs(tmp_path_factory):
    "Planted pairs in every layout the scan must handle: {(family, dtype, sharded): (folder, planted DataFrame)}."
    from rlsub.examples import make_pair, tiny_config
    root = tmp_path_factory.mktemp('pairs')
    out = {}
    for family, dtype, sharded in [('llama', torch.bfloat16, False), ('llama', torch.bfloat16, True), ('qwen2', torch.float16, True),
                                   ('qwen3', torch.float32, False), ('gpt2', torch.bfloat16, False), ('phi', torch.float32, True)]:
        d = root / f'{family}-{str(dtype)[6:]}-{"sharded" if sharded else "single"}'
        planted = make_pair(d, tiny_config(family, tie_word_embeddings=False), dtype=dtype, density=0.3, max_ulps=64,
                            seed=len(out), shard_size=30_000 if sharded else None)
        out[family, dtype, sharded] = d, planted
    return out
