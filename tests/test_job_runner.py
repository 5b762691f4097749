"""Tests for utils/run.py: local back-end, and Slurm back-end with fake sbatch/srun."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "utils" / "run.py"
FAKE_SLURM = ROOT / "tests" / "fake_slurm"


def run(args, cwd, env=None, timeout=60):
    return subprocess.run([str(RUN)] + [str(a) for a in args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def slurm_env(tmp_path):
    """Environment with the fake Slurm tools first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{FAKE_SLURM}{os.pathsep}{env['PATH']}"
    env["FAKE_SLURM_LOG"] = str(tmp_path / "slurm_calls.txt")
    env["SSLSPK_STATUS_GRACE"] = "0"
    return env


def slurm_calls(tmp_path):
    return (tmp_path / "slurm_calls.txt").read_text().splitlines()


# ---------------------------------------------------------------- local

def test_help_and_executable():
    assert os.access(RUN, os.X_OK)
    res = run(["--help"], cwd=ROOT)
    assert res.returncode == 0
    assert "JOB=a:b" in res.stdout and "--backend" in res.stdout


@pytest.mark.parametrize("args, message", [
    (["--bogus", "1", "log", "true"], "unknown option --bogus"),
    (["--mem"], "--mem needs a value"),
    (["log.txt"], "expected [JOB=a:b] LOGFILE COMMAND"),
    (["--backend", "pbs", "log", "true"], "--backend must be one of"),
    (["--max-jobs-run", "0", "log", "true"], "--max-jobs-run"),
    (["JOB=3:1", "log", "true"], "empty job range"),
])
def test_usage_errors(tmp_path, args, message):
    res = run(args, cwd=tmp_path)
    assert res.returncode == 1
    assert message in res.stderr


def test_jobs_run_in_parallel(tmp_path):
    # Each job waits (up to 10 s) until all 4 have started: passes only if
    # they run concurrently, and quickly so.
    cmd = ("touch started.JOB; for i in $(seq 100); do "
           "[ $(ls started.* | wc -l) -ge 4 ] && exit 0; sleep 0.1; done; exit 1")
    start = time.time()
    res = run(["--max-jobs-run", 4, "JOB=1:4", "log/wait.JOB.log", cmd], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert time.time() - start < 8


def test_max_jobs_run_limits_concurrency(tmp_path):
    # A job's marker file exists only while it runs, so the count it sees
    # is never above the real number of concurrent jobs.
    cmd = ("touch run.JOB; ls run.* | wc -l > count.JOB; sleep 0.3; rm run.JOB")
    res = run(["--max-jobs-run", 2, "JOB=1:6", "log/c.JOB.log", cmd], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    counts = [int((tmp_path / f"count.{i}").read_text()) for i in range(1, 7)]
    assert 1 <= max(counts) <= 2


def test_job_substitution_and_log_format(tmp_path):
    res = run(["JOB=2:4", "exp/log/part.JOB.log", "echo", "index=JOB",
               "file=data/split.JOB.scp"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    for i in (2, 3, 4):
        lines = (tmp_path / f"exp/log/part.{i}.log").read_text().splitlines()
        assert lines[0] == f"# echo index={i} file=data/split.{i}.scp"
        assert lines[1].startswith("# Started at")
        assert f"index={i} file=data/split.{i}.scp" in lines
        assert re.match(r"# Accounting: time=\d+ threads=1$", lines[-2])
        assert lines[-1].startswith("# Ended (code 0) at")
    assert not (tmp_path / "exp/log/part.1.log").exists()


def test_other_variable_name(tmp_path):
    res = run(["TASK=1:2", "log/t.TASK.log", "echo TASK JOB"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "\n2 JOB\n" in (tmp_path / "log/t.2.log").read_text()


def test_single_job_without_range(tmp_path):
    res = run(["one.log", "echo", "JOB"], cwd=tmp_path)
    assert res.returncode == 0
    assert "\nJOB\n" in (tmp_path / "one.log").read_text()


def test_pipes_redirections_and_quoting(tmp_path):
    # One quoted argument is a shell script; with several arguments, those
    # without whitespace go to the shell raw (so `|`, `>` and quotes work),
    # those with whitespace stay single words.
    res = run(["JOB=1:2", "p.JOB.log", "echo job JOB | tr a-z A-Z > out.JOB"],
              cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "out.2").read_text() == "JOB 2\n"
    res = run(["q.log", "printf", "'%s\\n'", "a  b", "c", "|", "sort", "-r",
               ">", "sorted.txt", "2>&1"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "sorted.txt").read_text() == "c\na  b\n"


def test_failure_reporting(tmp_path):
    res = run(["JOB=1:4", "log/f.JOB.log", "echo JOB; [ JOB -lt 3 ]"], cwd=tmp_path)
    assert res.returncode == 1
    assert "run.py: 2 / 4 failed, log is in log/f.3.log" in res.stderr
    assert "# Ended (code 1)" in (tmp_path / "log/f.3.log").read_text()
    assert "# Ended (code 0)" in (tmp_path / "log/f.2.log").read_text()


def test_num_threads_and_ignored_slurm_options(tmp_path):
    res = run(["--num-threads", 3, "--gpu", 1, "--mem", "4G", "--partition=gpu",
               "--time", "1:00:00", "t.log", "echo threads=$OMP_NUM_THREADS"],
              cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "threads=3" in (tmp_path / "t.log").read_text().splitlines()


def test_config_file(tmp_path):
    (tmp_path / "run.conf").write_text("# defaults\nnum-threads 2\nmax_jobs_run=1\n")
    res = run(["--config", "run.conf", "--num-threads", 5, "c.log",
               "echo $OMP_NUM_THREADS"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "\n5\n" in (tmp_path / "c.log").read_text()
    (tmp_path / "bad.conf").write_text("colour blue\n")
    res = run(["--config", "bad.conf", "c.log", "true"], cwd=tmp_path)
    assert res.returncode == 1 and "bad line" in res.stderr


def test_sigterm_kills_running_jobs(tmp_path):
    proc = subprocess.Popen([str(RUN), "JOB=1:2", "log/s.JOB.log",
                             "echo $$ > pid.JOB; exec sleep 60"], cwd=tmp_path,
                            stderr=subprocess.PIPE, text=True)
    pid_files = [tmp_path / "pid.1", tmp_path / "pid.2"]
    deadline = time.time() + 10
    while not all(p.exists() and p.read_text().strip() for p in pid_files):
        assert time.time() < deadline, "jobs did not start"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 128 + signal.SIGTERM
    for p in pid_files:
        with pytest.raises(ProcessLookupError):
            os.kill(int(p.read_text()), 0)
    assert "# Ended (code 143)" in (tmp_path / "log/s.1.log").read_text()



def test_jobs_start_with_no_blocked_signal(tmp_path):
    """run.py blocks SIGINT/SIGTERM while it starts a job (so none lands before the job is tracked); the
    job itself must not inherit that mask, or SIGTERM would not reach it."""
    res = run(["log/m.log", "grep SigBlk /proc/$$/status"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    blocked = int((tmp_path / "log/m.log").read_text().split("SigBlk:")[1].split()[0], 16)
    assert not blocked & ((1 << (signal.SIGINT - 1)) | (1 << (signal.SIGTERM - 1)))

# ---------------------------------------------------------------- slurm

def test_slurm_array_runs_all_tasks(tmp_path, slurm_env):
    res = run(["--backend", "slurm", "JOB=1:3", "exp/log/emb.JOB.log",
               "echo", "task", "JOB"], cwd=tmp_path, env=slurm_env)
    assert res.returncode == 0, res.stderr
    for i in (1, 2, 3):
        text = (tmp_path / f"exp/log/emb.{i}.log").read_text()
        assert text.startswith(f"# echo task {i}\n")
        assert f"\ntask {i}\n" in text and "# Ended (code 0)" in text
        assert (tmp_path / f"exp/log/q/emb.{i}.exitcode").read_text() == "0\n"
    assert (tmp_path / "exp/log/q/emb.sh").exists()
    [call] = slurm_calls(tmp_path)
    assert call.startswith("sbatch ")
    assert all(f in call.split() for f in (
        "--parsable", "--wait", "--array=1-3", "--job-name=emb"))
    assert "--output=exp/log/q/slurm-%A_%a.out" in call


def test_slurm_resource_flags(tmp_path, slurm_env):
    res = run(["--backend", "slurm", "--mem", "4G", "--gpu", 1, "--num-threads", 4,
               "--partition", "gpu", "--time=02:00:00", "--max-jobs-run", 2,
               "JOB=1:4", "log/r.JOB.log", "echo $OMP_NUM_THREADS"],
              cwd=tmp_path, env=slurm_env)
    assert res.returncode == 0, res.stderr
    flags = slurm_calls(tmp_path)[0].split()
    for flag in ("--array=1-4%2", "--mem=4G", "--gres=gpu:1", "--cpus-per-task=4",
                 "--partition=gpu", "--time=02:00:00"):
        assert flag in flags
    assert "\n4\n" in (tmp_path / "log/r.1.log").read_text()


def test_slurm_no_gpu_flag_by_default(tmp_path, slurm_env):
    res = run(["--backend", "slurm", "JOB=1:1", "log/n.JOB.log", "true"],
              cwd=tmp_path, env=slurm_env)
    assert res.returncode == 0, res.stderr
    call = slurm_calls(tmp_path)[0]
    assert "--gres" not in call and "--mem" not in call and "%" not in call.split()[3]


def test_slurm_failing_task(tmp_path, slurm_env):
    res = run(["--backend", "slurm", "JOB=1:3", "log/x.JOB.log", "exit $((JOB == 2 ? 7 : 0))"],
              cwd=tmp_path, env=slurm_env)
    assert res.returncode == 1
    assert "run.py: 1 / 3 failed, log is in log/x.2.log" in res.stderr
    assert "# Ended (code 7)" in (tmp_path / "log/x.2.log").read_text()


def test_slurm_missing_status_file(tmp_path, slurm_env):
    # Task 3 kills its batch script (like the OOM killer would), so no status
    # file is written.
    res = run(["--backend", "slurm", "JOB=1:3", "log/k.JOB.log",
               "[ JOB = 3 ] && kill -9 $PPID; true"], cwd=tmp_path, env=slurm_env)
    assert res.returncode == 1
    assert not (tmp_path / "log/q/k.3.exitcode").exists()
    assert re.search(r"task 3 of Slurm job \d+ left no exit status", res.stderr)
    assert "run.py: 1 / 3 failed, log is in log/k.3.log" in res.stderr


def test_slurm_stale_status_files_are_removed(tmp_path, slurm_env):
    qdir = tmp_path / "log/q"
    qdir.mkdir(parents=True)
    (qdir / "z.1.exitcode").write_text("0\n")
    res = run(["--backend", "slurm", "JOB=1:1", "log/z.JOB.log", "kill -9 $PPID"],
              cwd=tmp_path, env=slurm_env)
    assert res.returncode == 1


def test_slurm_single_job_uses_srun(tmp_path, slurm_env):
    res = run(["--backend", "slurm", "--mem=2G", "--gpu", 2, "log/one.log",
               "echo hello | tr a-z A-Z"], cwd=tmp_path, env=slurm_env)
    assert res.returncode == 0, res.stderr
    text = (tmp_path / "log/one.log").read_text()
    assert "\nHELLO\n" in text and "# Ended (code 0)" in text
    [call] = slurm_calls(tmp_path)
    assert call.startswith("srun ")
    assert "--mem=2G" in call and "--gres=gpu:2" in call and "--job-name=one" in call

    res = run(["--backend", "slurm", "log/two.log", "exit 3"], cwd=tmp_path, env=slurm_env)
    assert res.returncode == 1
    assert "run.py: 1 / 1 failed, log is in log/two.log" in res.stderr
    assert "# Ended (code 3)" in (tmp_path / "log/two.log").read_text()


def test_slurm_tools_missing(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path / "empty"))
    res = subprocess.run([sys.executable, str(RUN), "--backend", "slurm",
                          "JOB=1:2", "l.JOB.log", "true"],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode == 1
    assert "'sbatch' not found on PATH" in res.stderr
