# Job runner for the parallel steps (extraction, clustering): `$cmd JOB=1:$nj log.JOB.log command ...`.
# Local (default) runs the jobs on this machine.
export cmd="utils/run.py --backend local"
# On a Slurm cluster, uncomment (and adapt the partition/memory; with --gpu 1 every job gets a GPU, which
# extraction's --device auto then uses: stages 3, 5 and 6 run on it):
# export cmd="utils/run.py --backend slurm --partition cpu --mem 8G"   # slurm
#
# Training (stages 2, 4, 5) runs steps/train.sh (torchrun) directly. To train on N Slurm nodes with
# G GPUs each, run the recipe's stage inside an allocation and launch one steps/train.sh per node,
# the first node being the rendezvous, e.g. a batch script train_ssl.sbatch:
#   #!/usr/bin/env bash
#   #SBATCH --nodes=4 --ntasks-per-node=1 --gpus-per-node=8 --cpus-per-task=64 --time=72:00:00
#   . ./path.sh
#   head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
#   srun steps/train.sh --nnodes "$SLURM_NNODES" --nproc-per-node 8 --rdzv-endpoint "$head:29400" \
#     --rdzv-id "$SLURM_JOB_ID" train_ssl.py --config conf/ssl_dino_ecapa1024.yaml \
#     --data data/vox2_dev_train --exp-dir exp/ssl
# submitted with `sbatch train_ssl.sbatch`, then `./run.sh --stage 3` once it has finished
# (a finished exp dir is not trained again).
