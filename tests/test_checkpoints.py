"""Checkpoint import and equivalence: HF ViTMAEForPreTraining (transformers is a test-only dependency),
facebookresearch/mae `.pth` files, timm state dicts, ssl_mae encoder files, and the errors for checkpoints that do
not fit."""
import argparse, json
import pytest, torch
from safetensors.torch import load_file, save_file
from ssl_mae.config import MAEConfig
from ssl_mae.model import MaskedAutoencoder
from ssl_mae.checkpoints import checkpoint_cfg, interpolate_pos_embed, load_pretrained

transformers = pytest.importorskip('transformers')

HF_GEOMETRY = dict(image_size=32, patch_size=8, hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
                   intermediate_size=192, decoder_hidden_size=32, decoder_num_hidden_layers=2,
                   decoder_num_attention_heads=4, decoder_intermediate_size=128)

def random_hf(norm_pix_loss=False, **kw):
    "A small HF ViTMAEForPreTraining with every tensor perturbed (HF starts position embeddings and mask token at 0)."
    torch.manual_seed(0)
    hf = transformers.ViTMAEForPreTraining(transformers.ViTMAEConfig(**{**HF_GEOMETRY, **kw}, norm_pix_loss=norm_pix_loss))
    with torch.no_grad():
        for p in hf.parameters(): p.add_(torch.randn_like(p) * 0.05)
    return hf.eval()

def max_diff(a, b): return (a - b).abs().max().item()

def check_same_as_hf(hf, ours, n=3):
    x, noise = torch.randn(n, 3, 32, 32), torch.rand(n, 16)
    with torch.no_grad(): out, (loss, pred, mask) = hf(pixel_values=x, noise=noise), ours(x, noise=noise)
    assert max_diff(out.mask, mask) == 0
    assert max_diff(out.logits, pred) < 1e-5
    assert abs(out.loss.item() - loss.item()) < 1e-5

@pytest.mark.parametrize('norm_pix_loss', [False, True])
def test_hf_equivalence(tmp_path, norm_pix_loss):
    hf = random_hf(norm_pix_loss)
    hf.save_pretrained(tmp_path)
    ours = load_pretrained(tmp_path).eval()
    assert ours.norm_pix_loss == norm_pix_loss and ours.patch_embed.img_size == (32, 32) and len(ours.blocks) == 2
    assert ours.norm.eps == hf.config.layer_norm_eps
    check_same_as_hf(hf, ours)

@pytest.mark.parametrize('names', ['in_memory', 'hub'])
def test_hf_bin_key_names(tmp_path, names):
    "pytorch_model.bin with transformers 5's in-memory names and with the names of checkpoints on the hub (4.x)."
    hf = random_hf()
    hf.config.save_pretrained(tmp_path)
    hf.save_pretrained(tmp_path/'st')
    sd = hf.state_dict() if names == 'in_memory' else {
        k.replace('decoder.decoder_encoder.layer.', 'decoder.decoder_layers.'): v for k, v in load_file(tmp_path/'st'/'model.safetensors').items()}
    assert any('decoder_layers' in k for k in sd) or names == 'in_memory'
    torch.save(sd, tmp_path/'pytorch_model.bin')
    check_same_as_hf(hf, load_pretrained(tmp_path).eval())

def test_hf_folder_interpolates_to_cfg(tmp_path):
    random_hf().save_pretrained(tmp_path)
    cfg = MAEConfig(img_size=(48, 32), patch_size=8, embed_dim=48, depth=2, num_heads=3, decoder_embed_dim=32,
                    decoder_depth=2, decoder_num_heads=4, seed=0)
    ours = load_pretrained(tmp_path, cfg)
    assert ours.pos_embed.shape == (1, 1 + 6 * 4, 48) and ours.decoder_pos_embed.shape == (1, 25, 32)
    loss, pred, mask = ours(torch.randn(2, 3, 48, 32))
    assert pred.shape == (2, 24, 192)

def test_hf_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='not found'): load_pretrained(tmp_path/'nope')
    with pytest.raises(FileNotFoundError, match='no config.json'): load_pretrained(tmp_path)
    (tmp_path/'config.json').write_text(json.dumps({'model_type': 'vit_mae'}))
    with pytest.raises(FileNotFoundError, match='neither model.safetensors nor pytorch_model.bin'): load_pretrained(tmp_path)
    (tmp_path/'config.json').write_text(json.dumps({'model_type': 'bert'}))
    with pytest.raises(ValueError, match="model_type='bert', expected 'vit_mae'"): load_pretrained(tmp_path)
    (tmp_path/'config.json').write_text(json.dumps({'model_type': 'vit_mae', 'hidden_act': 'relu', 'qkv_bias': False}))
    with pytest.raises(ValueError, match="cannot represent hidden_act='relu', qkv_bias=False"): load_pretrained(tmp_path)

def test_hf_wrong_cfg_lists_keys(tmp_path):
    random_hf().save_pretrained(tmp_path)
    cfg = MAEConfig(img_size=32, patch_size=8, embed_dim=48, depth=3, num_heads=3, decoder_embed_dim=32,
                    decoder_depth=2, decoder_num_heads=4, seed=0)
    with pytest.raises(ValueError, match=r'missing keys: blocks\.2\.'): load_pretrained(tmp_path, cfg)
    with pytest.raises(ValueError, match=r"shapes \(checkpoint vs model\): blocks\.0\.attn\.proj\.bias \(48,\) vs \(96,\)"):
        load_pretrained(tmp_path, MAEConfig.tiny(img_size=32, seed=0))

def small_cfg(**kw):
    return MAEConfig(**{**dict(img_size=32, patch_size=8, embed_dim=192, depth=2, num_heads=3, decoder_embed_dim=512,
                               decoder_depth=1, decoder_num_heads=16, seed=0), **kw})

def test_facebookresearch_pth(tmp_path):
    "A training checkpoint as main_pretrain.py saves it: model, args, epoch; geometry and heads read from it."
    mae = MaskedAutoencoder.from_cfg(small_cfg()).eval()
    torch.save({'model': mae.state_dict(), 'args': argparse.Namespace(model='mae_vit_tiny'), 'epoch': 3}, tmp_path/'ck.pth')
    back = load_pretrained(tmp_path/'ck.pth').eval()
    geometry = (back.cls_token.shape[-1], back.blocks[0].attn.num_heads, back.decoder_blocks[0].attn.num_heads)
    assert geometry == (192, 3, 16) and len(back.blocks) == 2
    x, noise = torch.randn(2, 3, 32, 32), torch.rand(2, 16)
    with torch.no_grad(): assert torch.equal(back(x, noise=noise)[1], mae(x, noise=noise)[1])

def test_unknown_heads_need_cfg(tmp_path):
    cfg = MAEConfig.tiny(seed=0)
    torch.save({'model': MaskedAutoencoder.from_cfg(cfg).state_dict()}, tmp_path/'ck.pth')
    with pytest.raises(ValueError, match='cannot tell the number of attention heads.*pass cfg'): load_pretrained(tmp_path/'ck.pth')
    with pytest.raises(ValueError, match='cannot tell the number of attention heads'): checkpoint_cfg(tmp_path/'ck.pth')
    assert load_pretrained(tmp_path/'ck.pth', cfg).blocks[0].attn.num_heads == cfg.num_heads

@pytest.mark.parametrize('suffix', ['.pth', '.safetensors'])
def test_timm_state_dict(tmp_path, suffix):
    "A timm ViT (encoder only) loads into the encoder, warns about the decoder, and encodes exactly as timm does."
    from timm.models.vision_transformer import VisionTransformer
    torch.manual_seed(0)
    vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=192, depth=2, num_heads=3, num_classes=0).eval()
    sd = vit.state_dict()
    torch.save(sd, tmp_path/'vit.pth') if suffix == '.pth' else save_file(sd, tmp_path/'vit.safetensors')
    with pytest.warns(UserWarning, match='holds no decoder'): ours = load_pretrained(tmp_path/f'vit{suffix}').eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad(): assert max_diff(ours.forward_encoder(x, mask_ratio=0.)[0], vit.forward_features(x)) < 1e-5

def test_bad_checkpoints(tmp_path):
    cfg = small_cfg()
    sd = MaskedAutoencoder.from_cfg(cfg).state_dict()
    torch.save({'fc.weight': torch.zeros(2), 'fc.bias': torch.zeros(2)}, tmp_path/'foreign.pth')
    with pytest.raises(ValueError, match='is not an MAE checkpoint'): load_pretrained(tmp_path/'foreign.pth')
    with pytest.raises(ValueError, match=r'missing keys: .*blocks\.0\.attn.*\(\d+ in all\)\n  unexpected keys: fc\.bias, fc\.weight'):
        load_pretrained(tmp_path/'foreign.pth', cfg)
    torch.save({k: v for k, v in sd.items() if k != 'decoder_norm.weight'}, tmp_path/'partial.pth')
    with pytest.raises(ValueError, match='missing keys: decoder_norm.weight'): load_pretrained(tmp_path/'partial.pth', cfg)
    torch.save({**sd, 'head.weight': torch.zeros(2, 192)}, tmp_path/'finetuned.pth')
    with pytest.raises(ValueError, match='unexpected keys: head.weight'): load_pretrained(tmp_path/'finetuned.pth', cfg)
    torch.save(torch.zeros(3), tmp_path/'tensor.pth')
    with pytest.raises(ValueError, match='holds no state dict'): load_pretrained(tmp_path/'tensor.pth', cfg)
    with pytest.raises(ValueError, match='does not fit'): load_pretrained(tmp_path/'partial.pth', small_cfg(use_separate_pos_embed=False))

def test_pos_embed_interpolation_round_trip(tmp_path):
    "32 px -> 64 px -> 32 px through checkpoints gives back nearly the original embeddings."
    mae = MaskedAutoencoder.from_cfg(small_cfg())
    with torch.no_grad(): mae.pos_embed.add_(torch.randn_like(mae.pos_embed) * 0.01)
    torch.save({'model': mae.state_dict()}, tmp_path/'a.pth')
    big = load_pretrained(tmp_path/'a.pth', small_cfg(img_size=64))
    assert torch.equal(big.pos_embed, interpolate_pos_embed(mae.pos_embed, (8, 8)))
    torch.save({'model': big.state_dict()}, tmp_path/'b.pth')
    back = load_pretrained(tmp_path/'b.pth', small_cfg())
    assert max_diff(back.pos_embed, mae.pos_embed) < 0.05
    assert torch.equal(back.blocks[1].mlp.fc2.weight, mae.blocks[1].mlp.fc2.weight)

@pytest.mark.parametrize('name,content', [('enc.pth', b'not a torch file'), ('enc.safetensors', b'\x00\x01junk'),
                                          ('empty.pth', b'')])
def test_corrupt_checkpoint_file_is_one_clear_error(tmp_path, name, content):
    (tmp_path/name).write_bytes(content)
    with pytest.raises(ValueError, match=f"{name} is not a readable checkpoint"):
        load_pretrained(tmp_path/name, MAEConfig.tiny(seed=0))

def test_training_checkpoint_with_optimiser_state_names_the_files_to_use(tmp_path):
    from fastai.learner import save_model
    from fastai.optimizer import Adam
    mae = MaskedAutoencoder.from_cfg(MAEConfig.tiny(seed=0))
    save_model(tmp_path/'last.pth', mae, Adam(mae.parameters(), lr=1e-3), with_opt=True)  # as RunCheckpoint does
    with pytest.raises(ValueError, match=r"last\.pth is a training checkpoint .*best\.pth, or encoder\.pth"):
        load_pretrained(tmp_path/'last.pth', MAEConfig.tiny(seed=0))
    save_model(tmp_path/'best.pth', mae, None, with_opt=False)
    assert torch.equal(load_pretrained(tmp_path/'best.pth', MAEConfig.tiny(seed=0)).pos_embed, mae.pos_embed)

def test_ssl_mae_encoder_file_brings_its_geometry(tmp_path):
    "A save_encoder file ({'model', 'config'}) loads without cfg, non-square grid included; old config keys are ignored."
    cfg = MAEConfig.tiny(img_size=(48, 64), seed=0)
    mae = MaskedAutoencoder.from_cfg(cfg)
    sd = {k: v for k, v in mae.state_dict().items() if not k.startswith(('decoder', 'mask_token'))}
    torch.save({'model': sd, 'config': {**json.loads(cfg.to_json()), 'learned_pos_embed': False}}, tmp_path/'enc.pth')
    assert checkpoint_cfg(tmp_path/'enc.pth', proj_dim=16).img_hw == (48, 64)
    with pytest.warns(UserWarning, match='holds no decoder'): back = load_pretrained(tmp_path/'enc.pth')
    assert torch.equal(back.pos_embed, mae.pos_embed) and back.patch_embed.grid_size == (6, 8)
    x = torch.randn(2, 3, 48, 64)
    with torch.no_grad(): assert torch.equal(back.forward_encoder(x, 0.)[0], mae.forward_encoder(x, 0.)[0])
