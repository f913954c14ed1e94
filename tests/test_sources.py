"""Encoder sources by name: Hugging Face Hub ids and timm names resolved offline from a prepared Hugging Face cache,
the one-line error for an uncached id, `pretrain --init` (starting weights, learning rate, resume) and the provenance
a run, its encoder file, a detector fine-tuned from it and the headers of evaluate and predict carry. Nothing is
downloaded: the cache is written here in a temporary HF_HOME and the Hub is switched off (HF_HUB_OFFLINE)."""
import hashlib, json, shutil
from pathlib import Path
import pytest, torch
from fastai.callback.core import Callback, CancelFitException
from huggingface_hub import constants
from safetensors.torch import save_file
from ssl_mae.callbacks import MAEPretrain
from ssl_mae.checkpoints import load_pretrained, locate, provenance, source_cfg
from ssl_mae.config import MAEConfig
from ssl_mae.data import mae_dls, scan_mad
from ssl_mae.learner import load_exported, mae_learner
from ssl_mae.synth import make_dataset
from test_checkpoints import random_hf  # skips this module without transformers
from test_cli import copy_run, one_line_error, only, run_main, ssl_mae
from ssl_mae.cli import main

SHA = '0123456789abcdef0123456789abcdef01234567'  # the commit the prepared repos are cached at
MAE_ID, TIMM_ID = 'facebook/vit-mae-base', 'timm/vit_base_patch16_224.mae'
QUICK = ['batch_size=8', 'num_epochs=1', 'seed=0']

def cache_repo(cache:Path, repo:str, files, rev=SHA, ref='main'):
    "Files put into the Hugging Face cache layout as repo `repo` at commit `rev`, `refs/<ref>` pointing at it."
    root = cache/f"models--{repo.replace('/', '--')}"
    (snap := root/'snapshots'/rev).mkdir(parents=True)
    for f in files: shutil.copy(f, snap/Path(f).name)
    (root/'refs').mkdir(exist_ok=True)
    (root/'refs'/ref).write_text(rev)

def sha256(path): return hashlib.sha256(Path(path).read_bytes()).hexdigest()

@pytest.fixture(scope='module')
def hub(tmp_path_factory):
    "A temporary HF_HOME, the Hub off, holding a tiny ViTMAE as facebook/vit-mae-base and a timm ViT as its MAE name."
    tmp = tmp_path_factory.mktemp('hub')
    random_hf().save_pretrained(tmp/'vit-mae')
    from timm.models.vision_transformer import VisionTransformer
    torch.manual_seed(0)
    vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=192, depth=2, num_heads=3, num_classes=0)
    (tmp/'timm').mkdir()
    save_file(vit.state_dict(), tmp/'timm'/'model.safetensors')
    (tmp/'timm'/'config.json').write_text(json.dumps({'architecture': 'vit_tiny_patch16_224', 'num_classes': 0}))
    with pytest.MonkeyPatch.context() as mp:
        # subprocesses read the environment; this process's huggingface_hub read it at import
        for k, v in dict(HF_HOME=tmp/'home', HF_HUB_CACHE=tmp/'home'/'hub', HF_HUB_OFFLINE='1').items():
            mp.setenv(k, str(v))
            mp.setattr(constants, k, str(v) if k != 'HF_HUB_OFFLINE' else True)
        cache_repo(tmp/'home'/'hub', MAE_ID, (tmp/'vit-mae').iterdir())
        cache_repo(tmp/'home'/'hub', TIMM_ID, (tmp/'timm').iterdir())
        yield tmp

@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp('data')/'set', n_subjects=16, img_size=32, seed=0, progress=False)

def same_weights(a, b): return a.state_dict().keys() == b.state_dict().keys() and all(
    torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())

def test_hub_id_resolves_from_the_cache_as_its_folder(hub):
    assert locate(MAE_ID) == hub/'home'/'hub'/'models--facebook--vit-mae-base'/'snapshots'/SHA
    assert same_weights(load_pretrained(MAE_ID), load_pretrained(hub/'vit-mae'))
    digest = sha256(hub/'vit-mae'/'model.safetensors')
    assert provenance(MAE_ID) == [dict(source=MAE_ID, revision=SHA, sha256=digest)]
    assert provenance(f'{MAE_ID}@{SHA}') == provenance(MAE_ID)  # a commit pinned
    assert provenance(hub/'vit-mae') == [dict(source=str(hub/'vit-mae'), sha256=digest)]  # the same weights, by path

def test_revision_by_branch_name(hub):
    other = 'f' * 40
    cache_repo(hub/'home'/'hub', 'org/pinned', (hub/'vit-mae').iterdir(), rev=other, ref='v2')
    assert provenance('org/pinned@v2')[0]['revision'] == other
    with pytest.raises(FileNotFoundError, match=r'org/pinned is not in the Hugging Face cache .*hf download org/pinned '):
        locate('org/pinned')  # no refs/main

@pytest.mark.parametrize('name', [TIMM_ID, 'vit_base_patch16_224.mae', f'hf-hub:{TIMM_ID}'])
def test_timm_name_resolves_to_its_weights_file(hub, name):
    assert locate(name) == hub/'home'/'hub'/'models--timm--vit_base_patch16_224.mae'/'snapshots'/SHA/'model.safetensors'
    with pytest.warns(UserWarning, match='holds no decoder'): by_name = load_pretrained(name)
    with pytest.warns(UserWarning, match='holds no decoder'): by_file = load_pretrained(hub/'timm'/'model.safetensors')
    assert torch.equal(by_name.blocks[1].attn.qkv.weight, by_file.blocks[1].attn.qkv.weight)
    assert torch.equal(by_name.pos_embed, by_file.pos_embed)

def test_local_path_wins_and_what_is_neither_is_one_error(hub, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(hub/'vit-mae', tmp_path/'facebook'/'vit-mae-base')
    assert locate(MAE_ID) == Path(MAE_ID) and 'revision' not in provenance(MAE_ID)[0]
    for bad in ('./missing.pth', 'a/b/c', 'runs/encoder.pth'):
        with pytest.raises(FileNotFoundError, match=f'Checkpoint {bad} not found: no such file or folder'): locate(bad)

def test_uncached_id_offline_is_one_line_with_exit_2(hub, data, tmp_path, capsys):
    one_line_error(*run_main(capsys, 'pretrain', data, '--init', 'facebook/vit-mae-large', '--out', tmp_path),
                   'pretrain', 'facebook/vit-mae-large is not in the Hugging Face cache',
                   'hf download facebook/vit-mae-large --local-dir DIR')
    # a new process: HF_HOME and HF_HUB_OFFLINE from the environment
    res = ssl_mae('finetune', data, '--encoder', 'org/mae@v1', '--out', tmp_path)
    one_line_error(res.returncode, res.stderr, 'finetune', 'org/mae@v1 is not in the Hugging Face cache',
                   f"({hub/'home'/'hub'})", 'hf download org/mae --revision v1 --local-dir DIR')
    assert list(tmp_path.iterdir()) == []  # no run folder

def test_explicit_geometry_that_contradicts_the_checkpoint(hub, data, capsys):
    one_line_error(*run_main(capsys, 'finetune', data, '--encoder', MAE_ID, 'embed_dim=96'), 'finetune',
                   f'embed_dim=96 contradicts {MAE_ID}, whose embed_dim is 48')
    # a preset named on the command line is explicit too; the default one gives way to the checkpoint
    one_line_error(*run_main(capsys, 'pretrain', data, '--init', MAE_ID, '--preset', 'vit_base'), 'pretrain',
                   f'--preset vit_base (patch_size=16) contradicts {MAE_ID}, whose patch_size is 8: drop --preset')

class FirstLoss(Callback):
    "Stop after the first training batch's loss, computed with fixed masking noise; keep batch, noise and loss."
    order = MAEPretrain.order + 1
    def before_batch(self):
        x = self.xb[0]
        self.batch, self.noise = x, torch.rand(x.shape[0], self.learn.model.patch_embed.num_patches)
        self.learn.xb = (x, None, self.noise)
    def after_loss(self):
        self.first = self.learn.loss.item()
        raise CancelFitException

def test_pretrain_init_starts_from_the_source_weights(hub, data, tmp_path):
    "Step 0's loss is the source model's loss on the same batch and mask; the rate is the continued-pretraining one."
    cfg = source_cfg(MAE_ID, MAEConfig.tiny(batch_size=8, seed=0))
    first = FirstLoss()
    learn = mae_learner(mae_dls(scan_mad(data), cfg), cfg, path=tmp_path/'run', snapshots=False, init=MAE_ID,
                        cbs=[first])
    learn.fit(1)
    source = load_pretrained(hub/'vit-mae')
    with torch.no_grad(): expected = source(first.batch, noise=first.noise)[0].item()
    assert abs(first.first - expected) < 1e-6
    assert learn.lr == pytest.approx(cfg.pretrain_base_lr * cfg.init_lr_scale * 8 / 256)
    assert learn.cfg.provenance == provenance(MAE_ID)

@pytest.fixture(scope='module')
def init_run(hub, data, tmp_path_factory):
    "A `pretrain --init facebook/vit-mae-base` run."
    out = tmp_path_factory.mktemp('runs')
    assert main(['pretrain', str(data), '--init', MAE_ID, '--out', str(out), *QUICK]) == 0
    return only(out, 'pretrain-*')

def test_pretrain_init_records_its_source_and_resumes_from_its_own_checkpoint(hub, data, init_run, tmp_path,
                                                                               monkeypatch, capsys):
    rec = provenance(MAE_ID)
    assert MAEConfig.from_json(init_run/'config.json').provenance == rec
    assert torch.load(init_run/'encoder.pth', weights_only=True)['config']['provenance'] == rec
    run = copy_run(init_run, tmp_path/'resumed', 2)
    (run/'encoder.pth').unlink()
    monkeypatch.setattr(constants, 'HF_HUB_CACHE', str(tmp_path/'empty-cache'))  # the source is gone
    assert main(['pretrain', str(data), '--resume', str(run)]) == 0
    assert json.loads((run/'state.json').read_text())['epochs_trained'] == 2
    assert MAEConfig.from_json(run/'config.json').provenance == rec
    assert torch.load(run/'encoder.pth', weights_only=True)['config']['provenance'] == rec
    one_line_error(*run_main(capsys, 'pretrain', data, '--init', MAE_ID, '--resume', run), 'pretrain', 'drop --init')

def test_provenance_flows_into_the_detector_and_the_headers(hub, data, init_run, tmp_path, capsys):
    "finetune --encoder RUN/encoder.pth records that file, then what it grew from; evaluate and predict print both."
    enc = init_run/'encoder.pth'
    assert main(['finetune', str(data), '--encoder', str(enc), '--out', str(tmp_path), *QUICK]) == 0
    ft = only(tmp_path, 'finetune-*')
    chain = [dict(source=str(enc), sha256=sha256(enc)), *provenance(MAE_ID)]
    assert MAEConfig.from_json(ft/'config.json').provenance == chain
    assert load_exported(ft/'export.pkl').cfg.provenance == chain
    line = f"weights from {enc} (sha256 {sha256(enc)[:12]}) <- {MAE_ID}@{SHA[:12]}"
    assert line in capsys.readouterr().out
    assert main(['evaluate', str(data), '--model', str(ft/'export.pkl'), '--out', str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith(f"detector: {ft/'export.pkl'} (trained on LMA; {line})")
    # a resumed run continues from its own checkpoint, whatever --encoder says
    one_line_error(*run_main(capsys, 'finetune', data, '--encoder', enc, '--resume', ft), 'finetune', 'drop --encoder')
    assert main(['predict', str(data/'morph'/'LMA'/'P1'), '--model', str(ft/'export.pkl'),
                 '--out', str(tmp_path/'p.csv')]) == 0
    assert capsys.readouterr().out.startswith(f"detector: {ft/'export.pkl'} (trained on LMA; {line})")
