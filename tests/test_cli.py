"""The `ssl_mae` command end to end on tiny settings: each subcommand run as the installed console script (or
`python -m ssl_mae.cli`), `--resume`, the cross-style matrix of several detectors, and every user error: exit code 2,
one line on stderr naming the problem, no traceback."""
import json, os, shutil, subprocess, sys
from pathlib import Path
import pandas as pd, pytest
from ssl_mae.cli import main
from ssl_mae.synth import SYNTH_STYLES

EXE = Path(sys.executable).parent/'ssl_mae'
TINY = ['img_size=32', 'patch_size=8', 'batch_size=16', 'num_epochs=1', 'seed=0']

def ssl_mae(*words, module=False):
    "Run the command in a new process; return the CompletedProcess (text output)."
    cmd = [sys.executable, '-m', 'ssl_mae.cli'] if module or not EXE.exists() else [str(EXE)]
    env = {**os.environ, 'PYTHONWARNINGS': 'ignore'}
    return subprocess.run([*cmd, *map(str, words)], capture_output=True, text=True, env=env, timeout=300)

def ok(res):
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout

def only(folder, pattern):
    "The one path under `folder` matching `pattern`."
    found = sorted(Path(folder).glob(pattern))
    assert len(found) == 1, found
    return found[0]

@pytest.fixture(scope='session')
def work(tmp_path_factory): return tmp_path_factory.mktemp('cli')

@pytest.fixture(scope='session')
def data(work):
    out = ok(ssl_mae('synth', work/'data', '--n-subjects', 16, '--img-size', 32))
    assert f"data: {work/'data'}" in out
    return work/'data'

@pytest.fixture(scope='session')
def pretrained(work, data):
    out = ok(ssl_mae('pretrain', data, '--out', work/'runs', *TINY))
    run = only(work/'runs', 'pretrain-*')
    assert f"encoder: {run/'encoder.pth'}" in out and (run/'recon_epoch000.png').is_file()
    return run

@pytest.fixture(scope='session')
def detector(work, data, pretrained):
    out = ok(ssl_mae('finetune', data, '--out', work/'runs', '--encoder', pretrained/'encoder.pth',
                     '--config', pretrained/'config.json', '--train-style', 'LMA'))
    run = only(work/'runs', 'finetune-*')
    assert f"detector: {run/'export.pkl'}" in out and 'd_eer' in out  # fastai's progress table
    assert json.loads((run/'config.json').read_text())['train_dataset'] == 'LMA'
    return run/'export.pkl'

def run_main(capsys, *words):
    "(exit code, stderr) of `main(words)` in this process."
    code = main(list(map(str, words)))
    return code, capsys.readouterr().err

def one_line_error(code, err, sub, *needles):
    assert code == 2 and 'Traceback' not in err, err
    assert err.count('\n') == 1 and err.startswith(f'ssl_mae {sub}: error: '), err
    for n in needles: assert str(n) in err, err

# --- each subcommand end to end ------------------------------------------------------------------------------------

def test_synth_writes_the_seed_layout(data):
    assert sorted(p.name for p in (data/'morph').iterdir()) == sorted(SYNTH_STYLES)
    assert {p.name for p in (data/'bonafide'/'LMA').iterdir()} == {'P1', 'P2'}

def test_pretrain_run_folder(pretrained, data):
    assert {'config.json', 'log.csv', 'encoder.pth', 'last.pth'} <= {p.name for p in pretrained.iterdir()}
    assert json.loads((pretrained/'config.json').read_text())['img_size'] == 32
    assert not list(data.rglob('*.pth'))  # nothing written inside the data set

def test_finetune_exports_a_detector(detector):
    log = pd.read_csv(detector.parent/'log.csv')
    assert list(log['epoch']) == [0] and set(log['seed']) == {0}

def test_evaluate_two_detectors(work, data, detector, capsys):
    "One detector per train style: per-model folders with scores and PNGs, the combined scores and the matrices."
    assert main(['finetune', str(data), '--out', str(work/'runs2'), '--train-style', 'MorDiff', *TINY]) == 0
    other = only(work/'runs2', 'finetune-*')/'export.pkl'
    out = ok(ssl_mae('evaluate', data, '--model', detector, '--model', other, '--out', work/'eval'))
    run = only(work/'eval', 'eval-*')
    assert 'D-EER (%), train style (rows) × test style (columns)' in out and 'BPCER at APCER = 10 %' in out
    assert f'outputs: {run}' in out
    assert {'LMA', 'MorDiff', 'scores.csv', 'metrics.json', 'metrics.md'} <= {p.name for p in run.iterdir()}
    for style in ('LMA', 'MorDiff'):
        assert {'scores.csv', 'metrics.json', 'metrics.md', 'det.png', 'roc.png', 'scores.png'} <= {
            p.name for p in (run/style).iterdir()}
    scores = pd.read_csv(run/'scores.csv')
    assert set(scores['train_style']) == {'LMA', 'MorDiff'} and set(scores['style']) == set(SYNTH_STYLES)
    assert ((scores['score'] >= 0) & (scores['score'] <= 1)).all()
    metrics = pd.read_json(run/'metrics.json')
    assert len(metrics) == 2 * (len(SYNTH_STYLES) + 1)  # per train style: each test style and the pooled set

def test_evaluate_on_another_data_set(work, detector, capsys):
    "A detector trained on LMA tested on a data set without LMA (cross-data-set testing): P1 of each of its styles."
    other = work/'other'
    assert main(['synth', str(other), '--n-subjects', '8', '--img-size', '32', '--styles', 'MorDiff']) == 0
    assert main(['evaluate', str(other), '--model', str(detector), '--out', str(work/'eval-other')]) == 0
    scores = pd.read_csv(only(work/'eval-other', 'eval-*')/'scores.csv')
    assert set(scores['style']) == {'MorDiff'} and scores['path'].str.contains('/P1/').all()

def test_predict_folder_and_files(work, data, detector):
    folder = data/'morph'/'LMA'/'P1'
    ok(ssl_mae('predict', folder, '--model', detector, '--threshold', 0.3, '--out', work/'p.csv', module=True))
    p = pd.read_csv(work/'p.csv')
    assert list(p.columns) == ['path', 'score', 'decision'] and len(p) == len(list(folder.glob('*.png')))
    assert (p['decision'] == (p['score'] >= 0.3)).all()
    files = sorted(folder.glob('*.png'))[:3]
    assert main(['predict', *map(str, files), '--model', str(detector), '--out', str(work/'p3.csv')]) == 0
    assert list(pd.read_csv(work/'p3.csv')['path']) == list(map(str, files))

def test_finetune_resume_continues_the_run(work, data, detector, capsys):
    run = work/'resumed'
    shutil.copytree(detector.parent, run)
    cfg = json.loads((run/'config.json').read_text())
    (run/'config.json').write_text(json.dumps({**cfg, 'num_epochs': 2}))  # one epoch done of two
    assert main(['finetune', str(data), '--resume', str(run)]) == 0
    assert list(pd.read_csv(run/'log.csv')['epoch']) == [0, 1]
    assert json.loads((run/'state.json').read_text())['epochs_done'] == 2

def test_demo_quick(work, data, capsys):
    shutil.copytree(data, work/'demo'/'synth-16x32')  # the set --quick makes: kept, not made again
    assert main(['demo', '--out', str(work/'demo'), '--quick']) == 0
    out, run = capsys.readouterr().out, only(work/'demo', 'demo-*')
    assert '| style | d_eer pretrained | d_eer scratch |' in out and 'reconstructions: ' in out
    assert len(list(run.glob('eval-*/det.png'))) == 2 and (run/'demo.md').is_file()
    assert f"data: {work/'demo'/'synth-16x32'}" in out

def test_help_lists_subcommands(capsys):
    assert main(['--help']) == 0
    out = capsys.readouterr().out
    assert all(f'  {s} ' in out for s in ('synth', 'pretrain', 'finetune', 'evaluate', 'predict', 'demo'))
    assert main(['evaluate', '--help']) == 0 and '--model PKL' in capsys.readouterr().out

# --- user errors: exit code 2, one line, no traceback -------------------------------------------------------------

@pytest.mark.parametrize('sub', ['pretrain', 'finetune', 'evaluate'])
def test_missing_data_root(work, detector, capsys, sub):
    extra = ['--model', str(detector)] if sub == 'evaluate' else []
    one_line_error(*run_main(capsys, sub, work/'nowhere', *extra), sub, 'Data folder', work/'nowhere', 'not found')

@pytest.mark.parametrize('override, needle', [('mask_ratoi=0.6', 'did you mean mask_ratio'),
                                              ('mask_ratio', 'must look like key=value'),
                                              ('mask_ratio=many', 'expected float'),
                                              ('mask_ratio=1.5', 'mask_ratio=1.5: must be a number in [0, 1)')])
def test_bad_override(work, data, capsys, override, needle):
    one_line_error(*run_main(capsys, 'pretrain', data, '--out', work/'bad', override), 'pretrain', needle)
    assert not (work/'bad').exists()  # nothing made

def test_bad_option_and_unknown_subcommand(data, capsys):
    one_line_error(*run_main(capsys, 'pretrain', data, '--preset', 'huge'), 'pretrain', "invalid choice: 'huge'")
    one_line_error(*run_main(capsys, 'predict', data), 'predict', '--model is required')
    code, err = run_main(capsys, 'fly')
    assert code == 2 and err == "ssl_mae: error: unknown subcommand 'fly': choose one of synth, align, pretrain, finetune, evaluate, predict, demo\n"

def test_unreadable_checkpoints(work, data, capsys):
    bad = work/'bad.pth'
    bad.write_text('not a checkpoint')
    res = ssl_mae('finetune', data, '--encoder', bad, *TINY, module=True)
    one_line_error(res.returncode, res.stderr, 'finetune', bad, 'not a readable checkpoint')
    one_line_error(*run_main(capsys, 'evaluate', data, '--model', bad), 'evaluate', bad, 'not a learner saved')
    one_line_error(*run_main(capsys, 'predict', data, '--model', work/'none.pkl'), 'predict', 'none.pkl', 'not found')

def test_encoder_geometry_mismatch(data, pretrained, capsys):
    one_line_error(*run_main(capsys, 'finetune', data, '--encoder', pretrained/'encoder.pth', *TINY, 'embed_dim=48'),
                   'finetune', 'does not fit')

def test_output_file_exists(work, data, detector, capsys):
    out = work/'exists.csv'
    out.write_text('keep me')
    one_line_error(*run_main(capsys, 'predict', data, '--model', detector, '--out', out), 'predict', out, 'exists')
    assert out.read_text() == 'keep me'

def test_resume_without_a_run(work, data, capsys):
    one_line_error(*run_main(capsys, 'finetune', data, '--resume', work), 'finetune', 'not a run folder')
