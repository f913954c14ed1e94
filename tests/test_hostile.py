"""A careless user and a hostile machine: Ctrl-C always stops training, one process writes a run folder or an output
file, a failed checkpoint write is one line naming what is intact, symbolic links are followed safely (the data
folder left as it was)."""
import os, signal, subprocess, sys, textwrap
from pathlib import Path
import pytest, torch
from torch import nn
from fastai.callback.core import Callback
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.learner import Learner
from ssl_mae.runs import CtrlC, writer_lock
from ssl_mae.cli import one_line

def linear(cbs):
    items = [(torch.randn(4), torch.randn(1)) for _ in range(64)]
    dls = DataLoaders(DataLoader(items, bs=8, shuffle=True), DataLoader(items[:16], bs=8))
    return Learner(dls, nn.Linear(4, 1), loss_func=nn.MSELoss(), cbs=cbs)

class CtrlCAt(Callback):
    "Press Ctrl-C (SIGINT to this process) in training batch 1 of epoch 1; keep every batch that ended."
    def __init__(self): self.ran = []
    def after_pred(self):
        if self.training and self.epoch == 1 and self.iter == 1: os.kill(os.getpid(), signal.SIGINT)
    def after_step(self): self.ran.append((self.epoch, self.iter, self.training))  # the step of a batch was taken

def test_ctrl_c_stops_training_at_the_end_of_the_batch():
    before, at = signal.getsignal(signal.SIGINT), CtrlCAt()
    learn = linear([CtrlC(), at])
    with learn.no_bar(), learn.no_logging(), pytest.raises(KeyboardInterrupt): learn.fit(3, 0.1)
    assert at.ran[-1] == (1, 1, True)  # the batch it was pressed in was trained; no later one started
    assert signal.getsignal(signal.SIGINT) is before  # Python's handler is back
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 0.1)  # and the learner trains again

def test_a_second_writer_is_refused_and_a_dead_ones_lock_is_free(tmp_path):
    held = tmp_path/'run'; held.mkdir()
    holder = subprocess.Popen([sys.executable, '-c', textwrap.dedent(f'''
        import time
        from ssl_mae.runs import writer_lock
        with writer_lock({str(held)!r}): print('locked', flush=True); time.sleep(120)''')],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        with pytest.raises(FileExistsError, match=rf'{held} is being written by another process \(pid {holder.pid}\): '
                                                  'continue it'):
            with writer_lock(held, 'continue it when that one has ended'): pass
    finally: holder.kill(); holder.wait()
    with writer_lock(held): pass  # killed: its lock went with it

def test_a_failed_checkpoint_write_is_one_line_naming_what_is_intact(tmp_path, monkeypatch):
    "A full disk as torch reports it (a RuntimeError) while saving epoch 1: one OSError naming the file, the free space and the intact checkpoints."
    import ssl_mae.runs as runs
    from ssl_mae.runs import RunCheckpoint, start_run
    from ssl_mae.config import MAEConfig
    real = runs.save_model
    def full_disk(file, model, opt, with_opt=True):
        if learn.epoch == 1: raise RuntimeError('[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file data/0: file write failed')
        return real(file, model, opt, with_opt=with_opt)
    monkeypatch.setattr(runs, 'save_model', full_disk)
    run = start_run(tmp_path/'run', MAEConfig.tiny(seed=0))
    learn = linear([RunCheckpoint(kind='demo')])
    learn.path, learn.model_dir = run, '.'
    with learn.no_bar(), learn.no_logging(), pytest.raises(OSError) as e: learn.fit(3, 0.1)
    msg = one_line(e.value)  # as the command line prints it (without fastai's note of the callback)
    assert len(msg.splitlines()) == 1 and (f"Writing {run/'best.pth'} failed" in msg or f"Writing {run/'last.pth'} failed" in msg)
    assert 'file write failed' in msg and 'MiB free on its disk' in msg
    assert 'the checkpoints written before are intact (last.pth: 1 epochs, best.pth: epoch 0)' in msg
    assert not list(run.glob('.*.tmp'))  # nothing half-written under any name
    torch.load(run/'last.pth', weights_only=False)  # the intact checkpoint loads

def folder_sum(root) -> dict:
    "{relative path: (size, mtime)} of every entry under `root` (links as links)."
    return {str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in sorted(Path(root).rglob('*'))}

@pytest.fixture
def tiny_set(tmp_path):
    from ssl_mae.synth import make_dataset
    return make_dataset(tmp_path/'data', n_subjects=6, img_size=32, styles=['LMA'], progress=False)

def test_symbolic_links_a_cycle_a_way_out_and_one_image_in_two_splits(tiny_set, tmp_path, capsys):
    "A link cycle and a link to outside the set are not followed; one image linked into another split is refused."
    from ssl_mae.cli import main
    from ssl_mae.data import scan_mad
    n = len(scan_mad(tiny_set))
    (tiny_set/'bonafide'/'LMA'/'P2'/'loop').symlink_to(tiny_set)  # a cycle through the root
    (tmp_path/'outside').mkdir(); (tiny_set/'morph'/'LMA'/'P2'/'out').symlink_to(tmp_path/'outside')
    assert len(scan_mad(tiny_set)) == n  # each image once, nothing from outside
    one = sorted((tiny_set/'bonafide'/'LMA'/'P1').glob('*.png'))[0]
    (tiny_set/'bonafide'/'LMA'/'P2'/one.name).symlink_to(one)  # a test image pulled into training
    before = folder_sum(tiny_set)
    with pytest.raises(ValueError, match=r'are one image \(a symbolic link\).*remove the link'): scan_mad(tiny_set)
    assert main(['finetune', str(tiny_set), '--out', str(tmp_path/'runs'), 'img_size=32', 'num_epochs=1']) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'are one image (a symbolic link)' in err
    assert folder_sum(tiny_set) == before and not (tmp_path/'runs').exists()

# --- the command line: exit code 2, one line naming the problem, the data folder as it was ---------------------------

TINY = ['img_size=32', 'patch_size=8', 'batch_size=16', 'num_epochs=1', 'seed=0']

def refused(capsys, words, sub, *needles):
    "Run `ssl_mae words`: exit 2 and one line on stderr holding every needle."
    from ssl_mae.cli import main
    code, err = main(list(map(str, words))), capsys.readouterr().err
    assert code == 2 and err.count('\n') == 1 and err.startswith(f'ssl_mae {sub}: error: '), (code, err)
    for n in needles: assert str(n) in err, err

def test_command_line_matrix(tiny_set, tmp_path, capsys):
    "A second writer on a run, absurd config values, divergence, predict's inputs and output: refused, data untouched."
    from ssl_mae.cli import main
    before, runs = folder_sum(tiny_set), tmp_path/'runs'
    assert main(['finetune', tiny_set, '--out', runs, *TINY]) == 0  # a run to continue
    run = next(runs.glob('finetune-*'))
    cfg = __import__('json').loads((run/'config.json').read_text())
    (run/'config.json').write_text(__import__('json').dumps({**cfg, 'num_epochs': 2}))
    capsys.readouterr()
    holder = subprocess.Popen([sys.executable, '-c', textwrap.dedent(f'''
        import time
        from ssl_mae.runs import writer_lock
        with writer_lock({str(run)!r}): print('locked', flush=True); time.sleep(120)''')], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        refused(capsys, ['finetune', tiny_set, '--resume', run], 'finetune', 'is being written by another process',
                f'pid {holder.pid}', f'--resume {run}')
    finally: holder.kill(); holder.wait()
    refused(capsys, ['finetune', tiny_set, '--out', runs, *TINY, 'learning_rate=inf'], 'finetune',
            'learning_rate=inf: must be a positive finite number')
    refused(capsys, ['finetune', tiny_set, '--out', tmp_path/'diverged', *TINY, 'learning_rate=1e9', 'num_epochs=2'],
            'finetune', 'Training diverged', 'learning rate', 'Lower the learning rate')
    pkl = run/'export.pkl'
    refused(capsys, ['predict', tiny_set, '--model', pkl, '--out', tiny_set/'bonafide'/'p.csv'], 'predict', 'is inside')
    refused(capsys, ['predict', tiny_set/'nowhere.png', '--model', pkl, '--out', tmp_path/'p.csv'], 'predict',
            'nowhere.png: no such image file or folder')
    assert not (tmp_path/'p.csv').exists() and not list(tmp_path.glob('.p.csv*'))
    assert folder_sum(tiny_set) == before

def test_a_full_disk_at_export_says_how_to_get_the_detector(tiny_set, tmp_path, capsys, monkeypatch):
    "The disk fills while export.pkl is written: one line naming it and the resume command, which then writes it."
    import errno
    from fastai.learner import Learner
    from ssl_mae.cli import main
    real = Learner.export
    def full(self, fname='export.pkl', **kw): raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(Learner, 'export', full)
    before, runs = folder_sum(tiny_set), tmp_path/'runs'
    refused(capsys, ['finetune', tiny_set, '--out', runs, *TINY], 'finetune', 'export.pkl failed (No space left on device)',
            'the trained run is intact', '--resume')
    run = next(runs.glob('finetune-*'))
    assert not (run/'export.pkl').exists() and not list(run.glob('.export.pkl*'))  # nothing half-written
    monkeypatch.setattr(Learner, 'export', real)
    assert main(['finetune', str(tiny_set), '--resume', str(run)]) == 0 and (run/'export.pkl').is_file()
    assert folder_sum(tiny_set) == before
