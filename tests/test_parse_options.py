"""Tests for utils/parse_options.sh, via small bash scripts that source it."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARSE_OPTIONS = ROOT / "utils" / "parse_options.sh"

SCRIPT = """#!/usr/bin/env bash
# Toy recipe for the tests.
#   Usage: {name} [options] <data-dir> <exp-dir>
set -euo pipefail
stage=0          # first stage to run
stop_stage=100
nj=8             # number of parallel jobs
corpus_dir=/corpora/vox
use_gpu=false
extra=
{extra}
. {parse_options}
echo "stage=$stage stop_stage=$stop_stage nj=$nj corpus_dir=$corpus_dir use_gpu=$use_gpu extra=$extra"
echo "nargs=$#"
for a in "$@"; do echo "arg=$a"; done
"""


@pytest.fixture
def script(tmp_path):
    """Write the toy script; return a function that runs it with arguments."""
    def make(extra=""):
        path = tmp_path / "toy.sh"
        path.write_text(SCRIPT.format(name="toy.sh", extra=extra,
                                      parse_options=PARSE_OPTIONS))

        def call(*args):
            return subprocess.run(["bash", str(path), *args], capture_output=True,
                                  text=True, timeout=30, cwd=tmp_path)
        return call
    return make


def test_defaults(script):
    res = script()()
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == (
        "stage=0 stop_stage=100 nj=8 corpus_dir=/corpora/vox use_gpu=false extra=")
    assert "nargs=0" in res.stdout


def test_options_set_variables(script):
    res = script()("--stage", "3", "--stop-stage", "5", "--nj", "16",
                   "--corpus-dir", "/x y", "--use-gpu", "true")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == (
        "stage=3 stop_stage=5 nj=16 corpus_dir=/x y use_gpu=true extra=")


def test_equals_form_and_empty_values(script):
    res = script()("--stop-stage=7", "--extra=--foo 1 --bar=2", "--corpus_dir=")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == (
        "stage=0 stop_stage=7 nj=8 corpus_dir= use_gpu=false extra=--foo 1 --bar=2")


def test_positional_arguments_remain(script):
    res = script()("--nj", "2", "data/train", "exp/a b", "--not-an-option")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[1:] == [
        "nargs=3", "arg=data/train", "arg=exp/a b", "arg=--not-an-option"]


def test_double_dash_ends_options(script):
    res = script()("--stage", "1", "--", "--nj", "4")
    assert res.returncode == 0, res.stderr
    assert "nj=8" in res.stdout
    assert res.stdout.splitlines()[1:] == ["nargs=2", "arg=--nj", "arg=4"]


def test_unknown_option(script):
    res = script()("--stage", "1", "--num-epochs", "3")
    assert res.returncode == 1
    assert "unknown option: --num-epochs" in res.stderr
    assert res.stdout == ""


def test_missing_value(script):
    res = script()("--stage")
    assert res.returncode == 1
    assert "option --stage needs a value" in res.stderr


def test_boolean_needs_true_or_false(script):
    res = script()("--use-gpu", "yes")
    assert res.returncode == 1
    assert "--use-gpu" in res.stderr and "true or false" in res.stderr


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_prints_header_and_defaults(script, flag):
    res = script()("--nj", "4", flag)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert out.startswith("Toy recipe for the tests.\n  Usage: toy.sh [options]")
    assert "set -euo" not in out and "#!/usr" not in out
    lines = [line.split() for line in out.splitlines() if line.startswith("  --")]
    options = {parts[0]: parts[1:] for parts in lines}
    assert options["--stage"] == ["0", "#", "first", "stage", "to", "run"]
    assert options["--stop-stage"] == ["100"]
    assert options["--nj"][0] == "4"          # current value
    assert options["--corpus-dir"] == ["/corpora/vox"]
    assert options["--use-gpu"] == ["false"]
    assert options["--extra"] == ["''"]


def test_help_message_variable(script):
    res = script('help_message="Usage: toy.sh <dir>"')("--help")
    assert res.returncode == 0
    assert res.stdout.startswith("Usage: toy.sh <dir>\n")
    assert "Toy recipe" not in res.stdout
    assert "--help-message" not in res.stdout and "--nj" in res.stdout


@pytest.mark.parametrize("args", [("--stage", "abc"), ("--nj=4x",), ("--stop-stage", ""), ("--nj", "1.5")])
def test_integer_needs_an_integer(script, args):
    res = script()(*args)
    assert res.returncode == 1 and res.stdout == ""
    assert f"option {args[0].split('=')[0]} is an integer: expected a whole number" in res.stderr


def test_integer_accepts_negative_and_leaves_other_options_free(script):
    res = script()("--stage", "-1", "--corpus-dir", "42", "--extra", "7")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0].startswith("stage=-1 ") and "corpus_dir=42" in res.stdout
