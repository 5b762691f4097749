# Job runner for parallel steps (extraction, scoring): `$cmd JOB=1:$nj log.JOB.log command ...`.
# Local (default) runs the jobs on this machine; on a Slurm cluster use e.g.
#   export cmd="utils/run.py --backend slurm --partition cpu --mem 4G"
# and for GPU jobs add --gpu 1.
export cmd="utils/run.py --backend local"
