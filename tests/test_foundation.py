"""The project's ground rules: the package is what the notebooks export, the README is what index.ipynb makes,
and `pip wheel .` gives a package that imports without nbdev."""
import shutil, subprocess, sys, venv, zipfile
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/'tools'))
from check_sources import project_files

@pytest.fixture
def repo_copy(tmp_path):
    "A git checkout of the current working tree in a scratch folder."
    for f in project_files():
        (tmp_path/f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT/f, tmp_path/f)
    git = lambda *a: subprocess.run(['git', *a], cwd=tmp_path, check=True, capture_output=True)
    git('init', '-q'); git('add', '-A')
    return tmp_path

def check(root):
    return subprocess.run([sys.executable, 'tools/check_sources.py'], cwd=root, capture_output=True, text=True)

def test_sources_in_sync(repo_copy):
    r = check(repo_copy)
    assert r.returncode == 0, r.stdout + r.stderr

def test_hand_edited_module_fails(repo_copy):
    with (repo_copy/'ssl_mae'/'config.py').open('a') as f: f.write('\nHAND_EDIT = 1\n')
    r = check(repo_copy)
    assert r.returncode == 1
    assert 'package differs from what the notebooks export: ssl_mae/config.py' in r.stderr

def test_unclean_notebook_fails(repo_copy):
    nb = repo_copy/'nbs'/'00_config.ipynb'
    nb.write_text(nb.read_text().replace('"metadata": {}', '"metadata": {"collapsed": true}', 1))
    r = check(repo_copy)
    assert r.returncode == 1 and 'not clean: nbs/00_config.ipynb' in r.stderr

def test_stale_readme_fails(repo_copy):
    (repo_copy/'README.md').write_text((repo_copy/'README.md').read_text() + '\nedited by hand\n')
    r = check(repo_copy)
    assert r.returncode == 1 and 'README.md is stale' in r.stderr

def test_ci_runs_make_test():
    assert 'make test' in (ROOT/'.ci'/'run').read_text().split('\n', 3)[-1]

def test_wheel_imports_without_nbdev(tmp_path):
    "`pip wheel .` builds a wheel whose config module imports in a fresh venv that has no nbdev."
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '--no-build-isolation', '-w', tmp_path, ROOT],
                   check=True, capture_output=True)
    whl = next(tmp_path.glob('ssl_mae-*.whl'))
    reqs = [l for l in zipfile.ZipFile(whl).read(f"{whl.name.split('-')[0]}-{whl.name.split('-')[1]}.dist-info/METADATA")
            .decode().splitlines() if l.startswith('Requires-Dist')]
    assert not any('nbdev' in l and 'extra ==' not in l for l in reqs), reqs
    env = tmp_path/'env'
    venv.create(env, with_pip=True)
    py = env/'bin'/'python'
    subprocess.run([py, '-m', 'pip', 'install', '-q', '--no-deps', whl, 'fastcore'], check=True, capture_output=True)
    code = ("import importlib.util as u; assert u.find_spec('nbdev') is None; "
            "from ssl_mae.config import MAEConfig; print(MAEConfig.tiny(seed=0).num_patches)")
    out = subprocess.run([py, '-c', code], check=True, capture_output=True, text=True, cwd=tmp_path).stdout
    assert out.strip() == '64'
