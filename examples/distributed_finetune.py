"""Fine-tune a morph detector in several processes (GPUs or CPUs) with Hugging Face accelerate and fastai.

    accelerate launch --multi_gpu --num_processes 4 examples/distributed_finetune.py DATA RUN_DIR \
        [--encoder encoder.pth] [--epochs N] [key=value ...]
    (or: torchrun --nproc_per_node 4 examples/distributed_finetune.py ...)

Every process builds the same learner; `ddp_ctx` (fastai's `distrib_ctx`) wraps the model in DistributedDataParallel
and shards the batches (the global batch is `batch_size × processes`), and only rank 0 writes the log, checkpoints and
`export.pkl` into RUN_DIR. Joint training stays correct under DDP because `MADClassifier(x, recon=True)` returns the
logits and the reconstruction loss from one forward call. The same code runs single-process with plain `python`.
Each process prints its rank, the world size, the backend and the training batches it ran.

Without GPUs the processes train on the CPU with the gloo backend (`ddp_ctx` broadcasts fastai's shuffle order on
the CPU): `OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node 2 examples/distributed_finetune.py DATA RUN_DIR`
(OMP_NUM_THREADS: the cores per process). `accelerate launch --cpu` starts a single process (several only through
mpirun, with `--mpirun_hostfile`); `accelerate launch --multi_gpu --num_processes 2` starts them through torchrun and
trains on CPUs with gloo too. `tests/test_distributed.py` runs two CPU processes. Manual check on a 2-GPU machine:
`python -c "from ssl_mae.synth import make_dataset; make_dataset('/tmp/synth', n_subjects=40, img_size=64)"`, then
`accelerate launch --multi_gpu --num_processes 2 examples/distributed_finetune.py /tmp/synth /tmp/ddp_run --epochs 2`:
`/tmp/ddp_run/log.csv` must hold epochs 0 and 1 once each, and `export.pkl` must exist.
On GPUs add the speed switches as overrides: `precision=bf16 compile=True` (mixed precision and a compiled model in
every process) and `num_workers=N` (loader processes per process; by default chosen from the visible cores).
"""
import argparse, torch, torch.distributed as dist
from pathlib import Path
from fastai.torch_core import rank_distrib, num_distrib
from ssl_mae.config import MAEConfig
from ssl_mae.data import scan_mad, mad_dls, train_table
from ssl_mae.learner import mad_learner
from ssl_mae.distributed import ddp_ctx

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('data', help='data root (seed layout, STYLE/{train,test} layout or CSV manifest)')
    p.add_argument('run', help='run folder, the same for every process')
    p.add_argument('--encoder', default=None, help='pretrained encoder (save_encoder file or MAE checkpoint)')
    p.add_argument('--epochs', type=int, default=None, help='epochs (default: the config\'s num_epochs)')
    p.add_argument('overrides', nargs='*', help='MAEConfig key=value overrides on the tiny preset')
    a = p.parse_intermixed_args()
    cfg = MAEConfig.tiny(seed=0).override(a.overrides)
    train = train_table(scan_mad(a.data), cfg.train_dataset, cfg)
    learn = mad_learner(mad_dls(train, cfg=cfg), cfg, encoder=a.encoder, path=Path(a.run))
    with ddp_ctx(learn, cpu=not torch.cuda.is_available()): learn.fit_one_cycle(a.epochs or cfg.num_epochs)
    backend = dist.get_backend() if dist.is_initialized() else 'none'
    print(f"rank {rank_distrib()} of {max(num_distrib(), 1)} ({backend}): {learn.train_iter} training batches", flush=True)
    if rank_distrib() == 0:
        learn.export('export.pkl')
        print(f"run folder {learn.path}")
    if dist.is_initialized():  # end together, the process group closed (else its threads can abort the exit)
        dist.barrier(); dist.destroy_process_group()

if __name__ == '__main__': main()
