"""The masked autoencoder's token options (the SSL_MAE design's knobs) and fixed position embeddings through a
training step and a checkpoint round trip; the detector trains without touching the autoencoder it was given."""
import copy
import pytest, torch
from ssl_mae.config import MAEConfig
from ssl_mae.model import MaskedAutoencoder
from ssl_mae.detector import MADClassifier, vit_splitter
from ssl_mae.checkpoints import load_pretrained

def sgd_step(model, loss, lr=0.1):
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None: p -= lr * p.grad

@pytest.mark.parametrize('learned_token,separate_pos', [(True, True), (False, True), (True, False), (False, False)])
def test_token_options_train_and_round_trip(tmp_path, learned_token, separate_pos):
    cfg = MAEConfig.tiny(seed=0, use_learned_mask_token=learned_token, use_separate_pos_embed=separate_pos)
    torch.manual_seed(0)
    mae = MaskedAutoencoder.from_cfg(cfg)
    fixed = {k: v.clone() for k, v in mae.named_buffers()}
    x, noise = torch.randn(2, 3, 64, 64), torch.rand(2, 64)
    sgd_step(mae, mae(x)[0])
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in mae.parameters())
    assert all(torch.equal(v, fixed[k]) for k, v in mae.named_buffers())   # sin-cos embeddings, a zero mask token
    assert ('mask_token' in dict(mae.named_parameters())) == learned_token
    assert ('decoder_pos_embed' in mae.state_dict()) == separate_pos
    assert ('decoder_pos_proj.weight' in mae.state_dict()) != separate_pos
    torch.save({'model': mae.state_dict()}, tmp_path/'ck.pth')
    back = load_pretrained(tmp_path/'ck.pth', cfg).eval()
    with torch.no_grad(): assert torch.equal(back(x, noise=noise)[1], mae.eval()(x, noise=noise)[1])
    with pytest.raises(ValueError, match='does not fit'):   # the other decoder position option has other keys
        load_pretrained(tmp_path/'ck.pth', MAEConfig.tiny(seed=0, use_separate_pos_embed=not separate_pos))

def test_mad_classifier_joint_gradients():
    "Classification and reconstruction losses both reach the encoder; drop path is set from cfg."
    cfg = MAEConfig.tiny(seed=0, drop_path=0.2, loss='ce')
    clf = MADClassifier.from_cfg(MaskedAutoencoder.from_cfg(cfg), cfg)
    x = torch.randn(2, 3, 64, 64)
    (clf(x).logsumexp(1).sum() + clf.recon_loss(x)).backward()
    assert all(p.grad is not None for p in clf.parameters())
    assert clf.encoder.blocks[-1].drop_path1.drop_prob == pytest.approx(0.2)
    assert sum(map(len, vit_splitter(clf))) == len(list(clf.parameters()))

def test_mad_classifier_leaves_its_encoder_alone():
    "Building and training a detector changes neither the blocks nor the weights of the autoencoder passed in."
    cfg = MAEConfig.tiny(seed=0, drop_path=0.3)
    mae = MaskedAutoencoder.from_cfg(cfg)
    blocks, state = copy.deepcopy(mae.blocks), {k: v.clone() for k, v in mae.state_dict().items()}
    clf = MADClassifier.from_cfg(mae, cfg)
    x = torch.randn(4, 3, 64, 64)
    logits, recon = clf(x, recon=True)
    sgd_step(clf, logits.sum() + recon)
    assert [repr(b) for b in mae.blocks] == [repr(b) for b in blocks]   # no DropPath put into the caller's blocks
    assert all(torch.equal(v, state[k]) for k, v in mae.state_dict().items())
    assert not torch.equal(clf.encoder.blocks[0].attn.qkv.weight, mae.blocks[0].attn.qkv.weight)
