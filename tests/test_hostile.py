"""A careless user and a hostile machine: Ctrl-C always stops training, one process writes a run folder or an output
file, a diverging run is named as such."""
import os, signal, subprocess, sys, textwrap
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
