"Every notebook in nbs/ runs top to bottom under nbdev's test runner (cells flagged slow or gpu skipped, as nbdev_test does)."
from pathlib import Path
import pytest
from nbdev.config import get_config
from nbdev.test import test_nb as _run_nb   # renamed so pytest does not collect it

NBS = Path(__file__).parents[1] / 'nbs'
NOTEBOOKS = sorted(p for p in NBS.rglob('*.ipynb') if '.ipynb_checkpoints' not in p.parts and not p.name.startswith('_'))


@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: str(p.relative_to(NBS)))
def test_notebook(nb):
    ok, _ = _run_nb(nb, skip_flags=get_config().tst_flags.split())
    assert ok, f'{nb.name} failed (the cell and traceback are printed above)'
