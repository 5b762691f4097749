# Job runner for parallel steps (extraction, scoring): `$cmd JOB=1:$nj log.JOB.log command ...`.
# Local (default) runs the jobs on this machine; on a Slurm cluster use e.g.
#   export cmd="utils/run.py --backend slurm --partition cpu --mem 4G"
# and for extraction on GPUs add --gpu 1 (extraction's --device auto then uses the job's GPU).
export cmd="utils/run.py --backend local"
