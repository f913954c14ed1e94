"""The `ssl_mae` command end to end on tiny settings: each subcommand run as the installed console script (or
`python -m ssl_mae.cli`), `--resume`, the cross-style matrix of several detectors, and every user error: exit code 2,
one line on stderr naming the problem, no traceback."""
import json, os, shutil, signal, subprocess, sys, time
from pathlib import Path
import pandas as pd, pytest, torch
from ssl_mae.cli import main
from ssl_mae.synth import SYNTH_STYLES

EXE = Path(sys.executable).parent/'ssl_mae'
TINY = ['img_size=32', 'patch_size=8', 'batch_size=16', 'num_epochs=1', 'seed=0']

def ssl_mae(*words, module=False, quiet=True):
    "Run the command in a new process (warnings silenced when `quiet`); return the CompletedProcess (text output)."
    cmd = [sys.executable, '-m', 'ssl_mae.cli'] if module or not EXE.exists() else [str(EXE)]
    env = {**os.environ, 'PYTHONWARNINGS': 'ignore'} if quiet else os.environ
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
    assert list(p.columns) == ['path', 'score', 'decision', 'error'] and len(p) == len(list(folder.glob('*.png')))
    assert p['error'].isna().all()  # every image read
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
    assert json.loads((run/'state.json').read_text())['epochs_trained'] == 2

def test_finetune_resume_by_a_relative_path_trains_to_the_end_and_exports(work, untouched, detector, monkeypatch, capsys):
    data = untouched
    "`--resume runs/X` from the folder above it: the remaining epoch is trained and export.pkl written in the run."
    run = work/'rel'/'resumed'
    shutil.copytree(detector.parent, run)
    (run/'export.pkl').unlink()
    cfg = json.loads((run/'config.json').read_text())
    (run/'config.json').write_text(json.dumps({**cfg, 'num_epochs': 2}))  # one epoch done of two
    monkeypatch.chdir(work/'rel')
    assert main(['finetune', str(data), '--resume', 'resumed']) == 0
    assert list(pd.read_csv(run/'log.csv')['epoch']) == [0, 1] and (run/'export.pkl').is_file()
    assert not (run/'resumed').exists()
    # a finished run says so, and how to train longer; nothing is overwritten
    before = (run/'export.pkl').stat().st_mtime_ns
    capsys.readouterr()
    assert main(['finetune', str(data), '--resume', 'resumed']) == 2
    err = capsys.readouterr().err
    assert 'the run is finished (2 of 2 epochs' in err and f"--config {run/'config.json'} num_epochs=N" in err
    assert (run/'export.pkl').stat().st_mtime_ns == before

def test_version_config_keys_and_overrides_where_none_are_taken(work, untouched, detector, capsys):
    data = untouched
    "`--version`; `ssl_mae config` lists every key; a key=value word where none is taken says so in one line."
    import ssl_mae
    from dataclasses import fields
    from ssl_mae.config import MAEConfig
    assert main(['--version']) == 0 and capsys.readouterr().out == f"ssl_mae {ssl_mae.__version__}\n"
    assert main(['config', '--preset', 'vit_base']) == 0
    out = capsys.readouterr().out
    rows = {l.split()[0]: l.split() for l in out.splitlines()[1:]}
    assert set(rows) == {f.name for f in fields(MAEConfig)} and rows['embed_dim'][1:3] == ['768', 'int']
    assert main(['evaluate', str(data), 'seed=1', '--model', str(detector)]) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'seed=1: ssl_mae evaluate takes no key=value config overrides' in err

def test_demo_quick(work, data, capsys):
    shutil.copytree(data, work/'demo'/'synth-16x32')  # the set --quick makes: kept, not made again
    assert main(['demo', '--out', str(work/'demo'), '--quick']) == 0
    out, run = capsys.readouterr().out, only(work/'demo', 'demo-*')
    assert '| style | d_eer LMA | d_eer pseudo-blend | d_eer pseudo-morph | d_eer pseudo-blend+pseudo-morph |' in out
    assert 'reconstructions: ' in out
    assert 'Unseen by pseudo-blend+pseudo-morph (LMA, LMA_UBO, MorDiff): D-EER mean' in out
    # the LMA detector, the two specialists and their fusion (not the LMA detector's)
    assert len(list(run.glob('eval-*/*/det.png'))) == 4 and (run/'demo.md').is_file()
    assert json.loads((only(run, 'pretrain-*')/'config.json').read_text())['bonafide_only'] is True
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
    one_line_error(*run_main(capsys, 'predict', data), 'predict', 'required: --model')
    code, err = run_main(capsys, 'fly')
    assert code == 2 and err == "ssl_mae: error: unknown subcommand 'fly': choose one of synth, align, pretrain, finetune, evaluate, predict, demo, config\n"

def test_unreadable_checkpoints(work, data, capsys):
    bad = work/'bad.pth'
    bad.write_text('not a checkpoint')
    res = ssl_mae('finetune', data, '--encoder', bad, *TINY, module=True)
    one_line_error(res.returncode, res.stderr, 'finetune', bad, 'not a readable checkpoint')
    one_line_error(*run_main(capsys, 'evaluate', data, '--model', bad), 'evaluate', bad, 'not a learner saved')
    one_line_error(*run_main(capsys, 'predict', data, '--model', work/'none.pkl'), 'predict', 'none.pkl', 'not found')

def test_encoder_geometry_mismatch(data, pretrained, capsys):
    one_line_error(*run_main(capsys, 'finetune', data, '--encoder', pretrained/'encoder.pth', *TINY, 'embed_dim=48'),
                   'finetune', 'embed_dim=48 contradicts')

def test_output_file_exists(work, data, detector, capsys):
    out = work/'exists.csv'
    out.write_text('keep me')
    one_line_error(*run_main(capsys, 'predict', data, '--model', detector, '--out', out), 'predict', out, 'exists')
    assert out.read_text() == 'keep me'

def test_resume_without_a_run(work, data, capsys):
    one_line_error(*run_main(capsys, 'finetune', data, '--resume', work), 'finetune', 'not a run folder')

def test_no_morph_data_needed(work, data, capsys):
    """`pretrain --bonafide-only` and `finetune --pseudo only` on a copy of the data without its morphs; `evaluate` on
    the full set marks every style unseen for the pseudo-morph detector."""
    bona = work/'bona'/'data'
    shutil.copytree(data/'bonafide', bona/'bonafide')
    before = folder_state(bona)
    assert main(['pretrain', str(bona), '--out', str(work/'bona'), '--bonafide-only', *TINY]) == 0
    pre = only(work/'bona', 'pretrain-*')
    assert json.loads((pre/'config.json').read_text())['bonafide_only'] is True
    assert main(['finetune', str(bona), '--out', str(work/'bona'), '--encoder', str(pre/'encoder.pth'),
                 '--config', str(pre/'config.json'), '--pseudo', 'only']) == 0
    det = only(work/'bona', 'finetune-*')
    assert json.loads((det/'config.json').read_text())['pseudo'] == 'only'
    plain = bona/'bonafide'/'LMA'  # a plain folder of photos (no label folders)
    assert main(['finetune', str(plain), '--out', str(work/'plain'), '--pseudo', 'only', *TINY]) == 0
    assert folder_state(bona) == before
    assert main(['evaluate', str(data), '--model', str(det/'export.pkl'), '--out', str(work/'bona')]) == 0
    out = capsys.readouterr().out
    assert 'Trained on pseudo, unseen styles (LMA, LMA_UBO, MorDiff): D-EER mean' in out
    code, err = run_main(capsys, 'finetune', bona, '--pseudo', 'some', *TINY)
    one_line_error(code, err, 'finetune', "'some'")
    code, err = run_main(capsys, 'evaluate', data, '--model', det/'export.pkl', '--fuse')
    one_line_error(code, err, 'evaluate', 'two or more')

# --- runs people can trust: every failure one line (exit 2, 130 for Ctrl-C), data untouched, no folders left ------

def folder_state(root):
    return sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in Path(root).rglob('*'))

@pytest.fixture
def untouched(data):
    "The data set is the same after the test as before it."
    before = folder_state(data)
    yield data
    assert folder_state(data) == before

@pytest.fixture
def read_only(tmp_path):
    "A folder nobody may write into, root included (`chattr +i`)."
    d = tmp_path/'ro'
    d.mkdir()
    if subprocess.run(['chattr', '+i', str(d)], capture_output=True).returncode: pytest.skip('chattr +i unavailable')
    yield d
    subprocess.run(['chattr', '-i', str(d)])

def test_out_that_is_a_file(work, untouched, capsys):
    f = work/'a-file'
    f.write_text('mine')
    one_line_error(*run_main(capsys, 'pretrain', untouched, '--out', f, *TINY), 'pretrain', f)
    assert f.read_text() == 'mine'

def test_read_only_out(read_only, untouched, detector, capsys):
    one_line_error(*run_main(capsys, 'pretrain', untouched, '--out', read_only/'runs', *TINY), 'pretrain',
                   read_only/'runs')
    one_line_error(*run_main(capsys, 'predict', untouched/'morph'/'LMA'/'P1', '--model', detector,
                             '--out', read_only/'p.csv'), 'predict', read_only)
    assert list(read_only.iterdir()) == []

def test_predict_into_a_missing_folder(work, untouched, detector, capsys):
    out = work/'no'/'such'/'p.csv'
    one_line_error(*run_main(capsys, 'predict', untouched/'morph'/'LMA'/'P1', '--model', detector, '--out', out),
                   'predict', out.parent, 'does not exist')
    assert not (work/'no').exists()

def test_synth_never_deletes(work, capsys):
    "Over a folder it did not make, or a set made with other arguments holding a user's photo: refused, untouched."
    mine = work/'mine'
    mine.mkdir(); (mine/'photo.jpg').write_bytes(b'my photo')
    one_line_error(*run_main(capsys, 'synth', mine, '--n-subjects', 8, '--img-size', 32), 'synth', mine,
                   'did not make it')
    assert [p.name for p in mine.iterdir()] == ['photo.jpg']
    assert main(['synth', str(work/'set'), '--n-subjects', '8', '--img-size', '32']) == 0
    (work/'set'/'bonafide'/'LMA'/'P1'/'photo.jpg').write_bytes(b'my photo')
    before = folder_state(work/'set')
    one_line_error(*run_main(capsys, 'synth', work/'set', '--n-subjects', 10, '--img-size', 32), 'synth',
                   work/'set', 'other parameters (n_subjects=8, not 10)')
    assert folder_state(work/'set') == before

def copy_run(run, dest, num_epochs):
    "A copy of `run` whose config asks for `num_epochs`, so that resuming it has epochs left."
    shutil.copytree(run, dest)
    cfg = json.loads((dest/'config.json').read_text())
    (dest/'config.json').write_text(json.dumps({**cfg, 'num_epochs': num_epochs}))
    return dest

def test_damaged_last_checkpoint(work, untouched, pretrained, capsys):
    run = copy_run(pretrained, work/'damaged', 2)
    (run/'last.pth').write_bytes((run/'last.pth').read_bytes()[:200])  # e.g. a full disk
    one_line_error(*run_main(capsys, 'pretrain', untouched, '--resume', run), 'pretrain', run/'last.pth',
                   'is damaged', 'start it again in a new folder')

def test_resume_a_run_of_the_other_kind(untouched, pretrained, capsys):
    one_line_error(*run_main(capsys, 'finetune', untouched, '--resume', pretrained), 'finetune', pretrained,
                   'is a pretrain run', f'ssl_mae pretrain DATA --resume {pretrained}')

def test_non_finite_loss(work, untouched, capsys):
    out = work/'nan'
    one_line_error(*run_main(capsys, 'pretrain', untouched, '--out', out, *TINY, 'pretrain_base_lr=1e12'),
                   'pretrain', 'the loss became nan', 'Lower the learning rate')
    assert not out.exists()  # failed before an epoch ended: no run folder left, nor the --out folder made for it

def test_failed_finetune_leaves_no_run_folder(work, untouched, pretrained, capsys):
    out = work/'mismatch'
    one_line_error(*run_main(capsys, 'finetune', untouched, '--out', out, '--encoder', pretrained/'encoder.pth',
                             *TINY, 'embed_dim=48'), 'finetune', 'embed_dim=48 contradicts')
    assert not out.exists() or list(out.iterdir()) == []

def test_ctrl_c_says_how_to_resume(work, untouched):
    "SIGINT after the first checkpoint: exit 130, one line naming the checkpoint and the resume command."
    out = work/'sigint'
    cmd = [sys.executable, '-m', 'ssl_mae.cli', 'pretrain', str(untouched), '--out', str(out),
           *TINY[:-2], 'num_epochs=40', 'seed=0']
    default_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # a background job's shell ignores it
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint)
    deadline = time.time() + 240
    while not list(out.glob('*/state.json')) and proc.poll() is None and time.time() < deadline: time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before it could be interrupted: {proc.stderr.read()[-2000:]}"
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    run = only(out, 'pretrain-*')
    assert proc.returncode == 130 and 'Traceback' not in err and err.count('\n') == 1, err
    assert err.startswith('ssl_mae pretrain: error: interrupted after ') and str(run/'last.pth') in err, err
    assert f'ssl_mae pretrain {untouched} --resume {run}' in err

def test_predict_scores_the_readable_images(work, untouched, detector, capsys):
    "Unreadable files are listed (all of them) in the CSV and the summary; the others are scored; exit 0."
    mixed = work/'mixed'
    mixed.mkdir()
    for p in sorted((untouched/'morph'/'LMA'/'P1').glob('*.png'))[:3]: shutil.copy(p, mixed)
    (mixed/'empty.png').write_bytes(b''); (mixed/'text.jpg').write_text('not an image')
    assert main(['predict', str(mixed), '--model', str(detector), '--out', str(work/'mixed.csv')]) == 0
    out = capsys.readouterr().out
    p = pd.read_csv(work/'mixed.csv', keep_default_na=False)
    assert len(p) == 5 and (p['error'] != '').sum() == 2
    assert '3 images scored' in out and '2 images could not be scored' in out
    assert str(mixed/'empty.png') in out and str(mixed/'text.jpg') in out
    only_bad = work/'only-bad'
    only_bad.mkdir(); (only_bad/'a.png').write_bytes(b'')
    one_line_error(*run_main(capsys, 'predict', only_bad, '--model', detector, '--out', work/'bad.csv'), 'predict',
                   'None of the 1 images could be read', only_bad/'a.png')
    assert not (work/'bad.csv').exists()

@pytest.mark.parametrize('content, needle', [(b'', 'is empty'), (bytes(range(256)) * 8, 'is not a CSV text file')])
def test_empty_or_binary_manifest(work, capsys, content, needle):
    csv = work/'manifest.csv'
    csv.write_bytes(content)
    one_line_error(*run_main(capsys, 'finetune', csv, '--out', work/'m', *TINY), 'finetune', csv, needle)

def test_skip_bad_advice_names_the_option(work, data, capsys):
    broken = work/'broken'
    shutil.copytree(data, broken)
    (broken/'bonafide'/'LMA'/'P2'/'00099-1.png').write_bytes(b'')
    one_line_error(*run_main(capsys, 'finetune', broken, '--out', work/'b', *TINY), 'finetune', '--skip-bad')
    assert main(['finetune', str(broken), '--out', str(work/'b'), '--skip-bad', *TINY]) == 0

def test_evaluate_checks_both_classes_first(work, data, detector, capsys):
    one_sided = work/'one-sided'
    shutil.copytree(data, one_sided)
    shutil.rmtree(one_sided/'morph'/'MorDiff'/'P1')
    before = folder_state(one_sided)
    one_line_error(*run_main(capsys, 'evaluate', one_sided, '--model', detector, '--out', work/'e', '--styles',
                             'MorDiff'), 'evaluate', "Test style 'MorDiff' has no morph images")
    assert not (work/'e').exists() or list((work/'e').iterdir()) == []
    # by default such a style is named and left out, and the others are tested
    with pytest.warns(UserWarning, match='Left out of testing, their test images lacking a class: MorDiff'):
        assert main(['evaluate', str(one_sided), '--model', str(detector), '--out', str(work/'e2')]) == 0
    assert set(pd.read_csv(only(work/'e2', 'eval-*')/'scores.csv')['style']) == {'LMA', 'LMA_UBO'}
    assert folder_state(one_sided) == before  # the data set as it was

def test_same_seed_same_numbers(work, untouched):
    """Pretraining, fine-tuning from its encoder and from scratch, each run twice in fresh processes: the same logs
    (losses and metrics) and the same best weights."""
    two_epochs = [*TINY[:-2], 'num_epochs=2', 'seed=0']
    runs = []
    for i in (1, 2):
        out = work/f'repeat{i}'
        ok(ssl_mae('pretrain', untouched, '--out', out, *two_epochs))
        pre = only(out, 'pretrain-*')
        ok(ssl_mae('finetune', untouched, '--out', out/'from-encoder', '--encoder', pre/'encoder.pth',
                   '--config', pre/'config.json'))
        ok(ssl_mae('finetune', untouched, '--out', out/'from-scratch', *two_epochs))
        runs.append([pre, only(out/'from-encoder', 'finetune-*'), only(out/'from-scratch', 'finetune-*')])
    for a, b in zip(*runs):
        log_a, log_b = (pd.read_csv(r/'log.csv').drop(columns='time') for r in (a, b))
        assert len(log_a) == 2
        pd.testing.assert_frame_equal(log_a, log_b)
        wa, wb = (torch.load(r/'best.pth', weights_only=True) for r in (a, b))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)

def test_piped_output_has_no_progress_frames(work, untouched):
    res = ssl_mae('pretrain', untouched, '--out', work/'piped', *TINY[:-2], 'num_epochs=2', 'seed=0', quiet=False)
    assert '\r' not in res.stdout and '\r' not in res.stderr, res.stdout[:500]
    lines = ok(res).splitlines()
    assert lines[0].split()[:3] == ['epoch', 'train_loss', 'valid_loss'] and lines[1].split()[0] == '0'
    assert lines[2].split()[0] == '1' and 'FutureWarning' not in res.stderr
