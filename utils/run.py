#!/usr/bin/env python3
"""Run a command, or an array of jobs, locally or on Slurm (Kaldi run.pl style).

Usage:
  utils/run.py [options] [JOB=a:b] LOGFILE COMMAND [ARGS...]

  With JOB=a:b (any variable name, e.g. TASK=1:4), jobs a..b are run and the
  literal string JOB is replaced by the job index in LOGFILE and in every
  argument of the command. Each job runs `bash -c` over the command; its
  stdout and stderr go to its log file (directories are created), framed by
  a header (the command, start time) and a footer (time used, exit code).

  The command is joined into one shell script: a single argument is used
  verbatim (so "a | b > c" works as one quoted argument); with several
  arguments, those containing whitespace are quoted and the others are
  passed raw (so an escaped \\| or 2>&1 acts as a pipe or redirection).

  Exit status is 0 if every job succeeded; otherwise 1, after printing
  "run.py: N / M failed, log is in <log of the first failed job>".

Options:
  --backend local|slurm  where to run (default: local)
  --max-jobs-run K       at most K jobs at once (local default: number of
                         CPUs; slurm: the array's %K throttle, unset = none)
  --num-threads N        local: sets OMP_NUM_THREADS; slurm: also
                         --cpus-per-task=N
  --mem SIZE             slurm --mem (e.g. 4G); ignored locally
  --gpu N                slurm --gres=gpu:N; ignored locally
  --time T               slurm --time (e.g. 04:00:00); ignored locally
  --partition P          slurm --partition; ignored locally
  --config FILE          defaults for the options above, one per line as
                         `name value` or `name=value` (`#` comments);
                         options on the command line take precedence
  -h, --help             show this message

Slurm back-end: a job array is submitted with `sbatch --wait` from a script
written to <logdir>/q/, each task records its exit code in
<logdir>/q/<name>.<index>.exitcode (a missing file counts as a failure);
a single job (no JOB=) runs through `srun`. sbatch, srun and scancel are
taken from PATH.

Example:
  utils/run.py --backend local JOB=1:4 exp/log/extract.JOB.log \\
      python3 bin/extract_embeddings.py --part JOB --nparts 4
"""

from __future__ import annotations

import datetime
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

PROG = "run.py"
BACKENDS = ("local", "slurm")
OPTION_NAMES = ("backend", "mem", "num-threads", "gpu", "time", "partition",
                "max-jobs-run", "config")
# Seconds to wait for Slurm status files that have not appeared yet (NFS).
STATUS_GRACE = float(os.environ.get("SSLSPK_STATUS_GRACE", "5"))


class UsageError(Exception):
    """Bad command line or option value."""


class Interrupted(Exception):
    """Raised from the SIGINT/SIGTERM handler."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


# ---------------------------------------------------------------- options

def read_config(path: str) -> dict:
    """Read `name value` / `name=value` lines into a dict."""
    opts = {}
    try:
        with open(path) as fh:
            lines = fh.readlines()
    except OSError as err:
        raise UsageError(f"cannot read config {path}: {err.strerror}")
    for lineno, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = re.split(r"\s*=\s*|\s+", line, maxsplit=1)
        name = parts[0].lstrip("-").replace("_", "-")
        if len(parts) != 2 or name not in OPTION_NAMES or name == "config":
            raise UsageError(f"{path}:{lineno}: bad line: {line!r}")
        opts[name] = parts[1]
    return opts


def validate(opts: dict) -> dict:
    """Check option values; return them with ints converted."""
    out = dict(opts)
    if out.get("backend", "local") not in BACKENDS:
        raise UsageError(f"--backend must be one of {', '.join(BACKENDS)}")
    for name, minimum in (("num-threads", 1), ("max-jobs-run", 1), ("gpu", 0)):
        if name in out:
            try:
                out[name] = int(out[name])
            except ValueError:
                out[name] = -1
            if out[name] < minimum:
                raise UsageError(f"--{name} needs an integer >= {minimum}, "
                                 f"got {opts[name]!r}")
    if "mem" in out and not re.fullmatch(r"\d+[KMGTkmgt]?", out["mem"]):
        raise UsageError(f"--mem: expected e.g. 4G or 500M, got {out['mem']!r}")
    if "time" in out and not re.fullmatch(r"(\d+-)?\d+(:\d+){0,2}", out["time"]):
        raise UsageError(f"--time: expected e.g. 04:00:00 or 1-00:00:00, "
                         f"got {out['time']!r}")
    if "partition" in out and not out["partition"]:
        raise UsageError("--partition: empty value")
    return out


def parse_args(argv: list):
    """Return (options, job_var, first, last, logfile, command_args)."""
    opts = {}
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        arg = argv[i]
        if arg in ("-h", "--help"):
            print(__doc__.strip())
            sys.exit(0)
        if arg == "--":
            i += 1
            break
        if not arg.startswith("--"):
            raise UsageError(f"unknown option {arg}")
        name, eq, value = arg[2:].partition("=")
        name = name.replace("_", "-")
        if name not in OPTION_NAMES:
            raise UsageError(f"unknown option --{name}")
        if not eq:
            if i + 1 >= len(argv):
                raise UsageError(f"option --{name} needs a value")
            value = argv[i + 1]
            i += 1
        opts[name] = value
        i += 1
    if "config" in opts:
        for name, value in read_config(opts["config"]).items():
            opts.setdefault(name, value)
    opts = validate(opts)

    rest = argv[i:]
    var, first, last = None, 1, 1
    if rest:
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=(\d+)(?::(\d+))?", rest[0])
        if m:
            var, first = m.group(1), int(m.group(2))
            last = int(m.group(3)) if m.group(3) is not None else first
            if first > last:
                raise UsageError(f"empty job range {rest[0]}")
            rest = rest[1:]
    if len(rest) < 2:
        raise UsageError("expected [JOB=a:b] LOGFILE COMMAND [ARGS...]")
    return opts, var, first, last, rest[0], rest[1:]


# ---------------------------------------------------------------- helpers

def join_command(args: list) -> str:
    """Join the command arguments into one bash script (see usage)."""
    if len(args) == 1:
        return args[0]
    return " ".join(a if a and not re.search(r"\s", a) else shlex.quote(a)
                    for a in args)


def substitute(text: str, var, index: int) -> str:
    return text.replace(var, str(index)) if var else text


def now() -> str:
    return datetime.datetime.now().strftime("%a %b %d %H:%M:%S %Y")


def header(command: str) -> str:
    return f"# {command}\n# Started at {now()} on {socket.gethostname()}\n#\n"


def footer(seconds: float, threads: int, code: int) -> str:
    return (f"# Accounting: time={int(round(seconds))} threads={threads}\n"
            f"# Ended (code {code}) at {now()}, elapsed time {int(round(seconds))} seconds\n")


def make_parent(path: str) -> None:
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)


def child_env(opts: dict) -> dict:
    env = dict(os.environ)
    if "num-threads" in opts:
        env["OMP_NUM_THREADS"] = str(opts["num-threads"])
    return env


def exit_code(returncode: int) -> int:
    """Shell-style exit code (128 + signal for killed processes)."""
    return 128 - returncode if returncode < 0 else returncode


def on_signal(signum, _frame):
    raise Interrupted(signum)


INTERRUPT_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def unblock_interrupts() -> None:
    """In a job's child, before exec: SIGINT/SIGTERM delivered again (the parent blocks them while it
    starts the job, and a child inherits the signal mask)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, INTERRUPT_SIGNALS)


def report(failed: list, total: int, logs: dict) -> int:
    """Print the failure summary; return the process exit status."""
    if not failed:
        return 0
    print(f"{PROG}: {len(failed)} / {total} failed, log is in {logs[failed[0]]}",
          file=sys.stderr)
    return 1


# ---------------------------------------------------------------- local

def run_local(jobs: list, opts: dict) -> list:
    """Run (index, log, command) jobs in parallel; return failed indices."""
    max_jobs = opts.get("max-jobs-run") or os.cpu_count() or 1
    threads = opts.get("num-threads", 1)
    env = child_env(opts)
    pending = list(jobs)
    running = {}  # index -> (Popen, log handle, start time)
    failed = []

    def finish(index, code):
        proc, fh, start = running.pop(index)
        fh.write(footer(time.time() - start, threads, code))
        fh.close()
        if code != 0:
            failed.append(index)

    try:
        while pending or running:
            while pending and len(running) < max_jobs:
                index, log, command = pending.pop(0)
                # a signal waits until the job is in `running`: one caught between its start and that
                # would leave it running after run.py has killed the others and exited
                signal.pthread_sigmask(signal.SIG_BLOCK, INTERRUPT_SIGNALS)
                try:
                    make_parent(log)
                    fh = open(log, "w")
                    fh.write(header(command))
                    fh.flush()
                    proc = subprocess.Popen(
                        ["bash", "-c", command], stdin=subprocess.DEVNULL,
                        stdout=fh, stderr=subprocess.STDOUT, env=env,
                        start_new_session=True, preexec_fn=unblock_interrupts)
                    running[index] = (proc, fh, time.time())
                finally:
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, INTERRUPT_SIGNALS)
            done = [(i, p.returncode) for i, (p, _, _) in running.items()
                    if p.poll() is not None]
            for index, returncode in done:
                finish(index, exit_code(returncode))
            if not done:
                time.sleep(0.02)
    except Interrupted as intr:
        print(f"{PROG}: caught signal {intr.signum}, killing "
              f"{len(running)} running job(s)", file=sys.stderr)
        kill_groups([p for p, _, _ in running.values()])
        for index in list(running):
            finish(index, exit_code(running[index][0].returncode))
        raise
    return sorted(failed)


def kill_groups(procs: list, grace: float = 3.0) -> None:
    """SIGTERM the processes' groups, then SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for proc in procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.time() + grace
        while time.time() < deadline and any(p.poll() is None for p in procs):
            time.sleep(0.05)
    for proc in procs:
        proc.wait()


# ---------------------------------------------------------------- slurm

def slurm_flags(opts: dict) -> list:
    flags = []
    if "mem" in opts:
        flags.append(f"--mem={opts['mem']}")
    if "num-threads" in opts:
        flags.append(f"--cpus-per-task={opts['num-threads']}")
    if opts.get("gpu"):
        flags.append(f"--gres=gpu:{opts['gpu']}")
    if "time" in opts:
        flags.append(f"--time={opts['time']}")
    if "partition" in opts:
        flags.append(f"--partition={opts['partition']}")
    return flags


def find_tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        raise UsageError(f"--backend slurm: '{name}' not found on PATH")
    return path


def job_name(log_template: str, var) -> str:
    """A short name from the log file name: exp/log/extract.JOB.log -> extract."""
    name = os.path.basename(log_template)
    if name.endswith(".log"):
        name = name[:-4]
    if var:
        name = re.sub(r"\.?" + re.escape(var) + r"\.?", ".", name).strip(".")
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return name or "job"


BATCH_SCRIPT = """#!/bin/bash
# Written by utils/run.py: runs one task of a Slurm job array.
cd {cwd} || exit 1
{env}task=${{SLURM_ARRAY_TASK_ID:?not run as a Slurm array task}}
command_tpl={command}
log_tpl={log}
command=${{command_tpl//{var}/$task}}
log=${{log_tpl//{var}/$task}}
status={status_prefix}.$task.exitcode
mkdir -p "$(dirname "$log")"
rm -f "$status"
start=$(date +%s)
{{ echo "# $command"; echo "# Started at $(date '+%a %b %d %H:%M:%S %Y') on $(hostname) (Slurm job ${{SLURM_ARRAY_JOB_ID:-?}}_$task)"; echo "#"; }} > "$log"
bash -c "$command" < /dev/null >> "$log" 2>&1
code=$?
elapsed=$(( $(date +%s) - start ))
{{ echo "# Accounting: time=$elapsed threads={threads}"; echo "# Ended (code $code) at $(date '+%a %b %d %H:%M:%S %Y'), elapsed time $elapsed seconds"; }} >> "$log"
echo "$code" > "$status.tmp" && mv "$status.tmp" "$status"
exit "$code"
"""


def run_slurm_array(var, first, last, log_template, command_template,
                    opts) -> int:
    """Submit a job array with `sbatch --wait`; return the exit status."""
    sbatch = find_tool("sbatch")
    logdir = os.path.dirname(log_template)
    while var in logdir:  # JOB inside a directory name: go above it
        logdir = os.path.dirname(logdir)
    qdir = os.path.join(logdir or ".", "q")
    os.makedirs(qdir, exist_ok=True)
    name = job_name(log_template, var)
    status_prefix = os.path.join(qdir, name)
    indices = range(first, last + 1)
    for i in indices:
        try:
            os.remove(f"{status_prefix}.{i}.exitcode")
        except FileNotFoundError:
            pass

    env = ""
    if "num-threads" in opts:
        env = f"export OMP_NUM_THREADS={opts['num-threads']}\n"
    script = os.path.join(qdir, f"{name}.sh")
    with open(script, "w") as fh:
        fh.write(BATCH_SCRIPT.format(
            cwd=shlex.quote(os.getcwd()), env=env, var=var,
            command=shlex.quote(command_template),
            log=shlex.quote(log_template),
            status_prefix=shlex.quote(os.path.abspath(status_prefix)),
            threads=opts.get("num-threads", 1)))
    os.chmod(script, 0o755)

    array = f"--array={first}-{last}"
    if "max-jobs-run" in opts:
        array += f"%{opts['max-jobs-run']}"
    out_pattern = os.path.join(qdir, "slurm-%A_%a.out")
    cmd = [sbatch, "--parsable", "--wait", array, f"--job-name={name}",
           f"--output={out_pattern}"] + slurm_flags(opts) + [script]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                            start_new_session=True, env=child_env(opts))
    job_id = None
    try:
        line = proc.stdout.readline().strip()
        job_id = line.split(";")[0] or None
        proc.stdout.read()
        proc.wait()
    except Interrupted as intr:
        print(f"{PROG}: caught signal {intr.signum}, cancelling Slurm job "
              f"{job_id or '(not yet submitted)'}", file=sys.stderr)
        scancel = shutil.which("scancel")
        if job_id and scancel:
            subprocess.call([scancel, job_id])
        kill_groups([proc])
        raise
    if job_id is None:
        print(f"{PROG}: sbatch failed (exit code {proc.returncode}): "
              f"{shlex.join(cmd)}", file=sys.stderr)
        return 1

    codes = read_status_files(status_prefix, indices)
    logs = {i: substitute(log_template, var, i) for i in indices}
    for i in indices:
        if codes[i] is None:
            out = out_pattern.replace("%A", job_id).replace("%a", str(i))
            print(f"{PROG}: task {i} of Slurm job {job_id} left no exit status "
                  f"(killed, out of time/memory, or never started?); see {out}",
                  file=sys.stderr)
    failed = [i for i in indices if codes[i] != 0]
    return report(failed, len(indices), logs)


def read_status_files(status_prefix: str, indices) -> dict:
    """Exit code per task, None where the status file is missing/invalid."""
    codes = {}
    deadline = time.time() + STATUS_GRACE
    while True:
        for i in indices:
            if codes.get(i) is not None:
                continue
            try:
                with open(f"{status_prefix}.{i}.exitcode") as fh:
                    codes[i] = int(fh.read().strip())
            except (OSError, ValueError):
                codes[i] = None
        if all(c is not None for c in codes.values()) or time.time() >= deadline:
            return codes
        time.sleep(0.5)


def run_srun(log: str, command: str, opts: dict) -> int:
    """Run a single job with srun; return its exit code."""
    srun = find_tool("srun")
    make_parent(log)
    name = job_name(log, None)
    cmd = ([srun, "--ntasks=1", f"--job-name={name}"] + slurm_flags(opts)
           + ["bash", "-c", command])
    start = time.time()
    with open(log, "w") as fh:
        fh.write(header(command))
        fh.flush()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fh,
                                stderr=subprocess.STDOUT, env=child_env(opts),
                                start_new_session=True)
        try:
            proc.wait()
        except Interrupted:
            kill_groups([proc])
            fh.write(footer(time.time() - start, opts.get("num-threads", 1),
                            exit_code(proc.returncode)))
            raise
        code = exit_code(proc.returncode)
        fh.write(footer(time.time() - start, opts.get("num-threads", 1), code))
    return code


# ---------------------------------------------------------------- main

def main(argv=None) -> int:
    try:
        opts, var, first, last, log, args = parse_args(
            sys.argv[1:] if argv is None else argv)
    except UsageError as err:
        print(f"{PROG}: {err}\n{PROG}: see {PROG} --help", file=sys.stderr)
        return 1
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        if opts.get("backend", "local") == "local":
            jobs = [(i, substitute(log, var, i),
                     join_command([substitute(a, var, i) for a in args]))
                    for i in range(first, last + 1)]
            failed = run_local(jobs, opts)
            return report(failed, len(jobs), {j[0]: j[1] for j in jobs})
        if var is None:
            code = run_srun(log, join_command(args), opts)
            return report([1] if code else [], 1, {1: log})
        return run_slurm_array(var, first, last, log, join_command(args), opts)
    except UsageError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 1
    except Interrupted as intr:
        return 128 + intr.signum


if __name__ == "__main__":
    sys.exit(main())
