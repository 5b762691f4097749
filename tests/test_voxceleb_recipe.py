"""egs/voxceleb/v1 end to end on a fake miniature VoxCeleb tree (stages 0-6), offline.

The tree mimics the official archives: VoxCeleb1 wav/<spk>/<video>/<n>.wav with the Vox1-O/E/H
lists in their official format, VoxCeleb2 dev/aac/... as m4a (wav when ffmpeg is missing; the m4a
conversion itself: test_prepare_voxceleb.py), MUSAN
and RIRS_NOISES. The recipe runs with ``--tiny true``: its conf/tiny configs (the paper-scale ones
shrunk) and a tiny randomly initialised WavLM written with ``save_pretrained``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, copy_recipe, recipe_runner, write_wav

RECIPE = REPO / "egs" / "voxceleb" / "v1"
HAVE_FFMPEG = shutil.which("ffmpeg") is not None
VOX1 = {f"id1000{i}": 150.0 + 50 * i for i in range(1, 6)}   # speaker -> tone; id10002-5 = Vox1-O test
VOX2 = {f"id0001{i}": 170.0 + 70 * i for i in range(1, 4)}


def _utts(spks: dict[str, float]) -> list[tuple[str, float]]:
    return [(f"{s}/vid{v}{s[-1]}/0000{n}", f) for s, f in spks.items() for v in (1, 2) for n in (1, 2)]


def make_fake_voxceleb(raw: Path) -> dict[str, list[str]]:
    """Write the miniature tree below ``raw``; returns the trial lines written per list."""
    for i, (u, f) in enumerate(_utts(VOX1)):
        write_wav(raw / "voxceleb1" / "wav" / f"{u}.wav", 2.5, freq=f, seed=i)
    aac = raw / "voxceleb2" / "dev" / "aac"
    vox2 = _utts(VOX2) + [("id00011/short/00001", 300.0)]  # 1 s: removed by --min-dur
    for i, (u, f) in enumerate(vox2):
        wav = write_wav(aac / f"{u}.wav", 1.0 if "short" in u else 2.5, freq=f, seed=100 + i)
        if HAVE_FFMPEG:
            subprocess.run(["ffmpeg", "-v", "8", "-y", "-i", str(wav), "-c:a", "aac", str(wav.with_suffix(".m4a"))],
                           check=True)
            wav.unlink()
    u1 = [u for u, _ in _utts(VOX1)]
    test = [u for u in u1 if u.split("/")[0] != "id10001"]

    def line(a: str, b: str) -> str:
        return f"{int(a.split('/')[0] == b.split('/')[0])} {a}.wav {b}.wav"
    lists = {"veri_test2.txt": [line(a, b) for i, a in enumerate(test) for b in test[i + 1::3]],
             "list_test_all2.txt": [line(a, b) for a in u1[::3] for b in u1[1::3]],
             "list_test_hard2.txt": [line(u1[0], u1[1]), line(u1[0], u1[5]), line(u1[8], u1[9]), line(u1[2], u1[12])]}
    for name, lines in lists.items():
        (raw / "voxceleb1" / name).write_text("\n".join(lines) + "\n")
    rng = np.random.default_rng(0)
    import soundfile as sf
    for part in ("noise", "music", "speech"):
        write_wav(raw / "musan" / part / "src" / f"{part}-0000.wav", 3.0, freq=500.0, seed=7)
    rir = np.zeros(1600, dtype=np.float32)
    rir[10] = 1.0
    rir[11:] = 0.1 * rng.standard_normal(1589) * np.exp(-np.arange(1589) / 300)
    p = raw / "RIRS_NOISES" / "simulated_rirs" / "smallroom" / "Room001" / "Room001-00001.wav"
    p.parent.mkdir(parents=True)
    sf.write(p, rir, 16000)
    return lists


@pytest.fixture
def recipe(tmp_path, recipe_env):
    return recipe_runner("voxceleb", tmp_path, recipe_env)


def read_kv(p: Path) -> dict[str, str]:
    return dict(line.split(maxsplit=1) for line in p.read_text().splitlines())


@pytest.mark.slow
def test_voxceleb_recipe_all_stages(recipe, tmp_path, monkeypatch):
    if not HAVE_FFMPEG:
        print("ffmpeg not found: VoxCeleb2 is faked as wav, the m4a pipe path is NOT tested "
              "(apt-get install ffmpeg to test it)")
    d = recipe.dir
    monkeypatch.chdir(d)
    raw = tmp_path / "raw"
    lists = make_fake_voxceleb(raw)
    opts = ("--raw-dir", str(raw), "--nj", "1", "--tiny", "true")
    r = recipe(*opts, "--stop-stage", "1")

    # Stage 0: data dirs with VoxCeleb ids, m4a converted to FLAC files, converted trials.
    data = d / "data"
    vox2 = read_kv(data / "vox2_dev" / "wav.scp")
    assert len(vox2) == 13 and "id00011/vid11/00001" in vox2
    if HAVE_FFMPEG:
        assert all(v == str(raw / "voxceleb2_flac" / f"{u}.flac") for u, v in vox2.items())
    assert read_kv(data / "vox2_dev" / "utt2spk")["id00012/vid12/00002"] == "id00012"
    assert len(read_kv(data / "vox1_all" / "wav.scp")) == 20
    assert set(read_kv(data / "vox1_test" / "utt2spk").values()) == {"id10002", "id10003", "id10004", "id10005"}
    for name, path in (("veri_test2.txt", data / "vox1_test" / "trials" / "vox1_O"),
                       ("list_test_all2.txt", data / "vox1_all" / "trials" / "vox1_E"),
                       ("list_test_hard2.txt", data / "vox1_all" / "trials" / "vox1_H")):
        got = [line.split() for line in path.read_text().splitlines()]
        want = [line.split() for line in lists[name]]
        assert [(e, t) for e, t, _ in got] == [(a[:-4], b[:-4]) for _, a, b in want]
        assert [lab for *_, lab in got] == ["target" if w[0] == "1" else "nontarget" for w in want]
        assert {"target", "nontarget"} <= {lab for *_, lab in got}
    for part in ("noise", "music", "babble", "rirs"):   # MUSAN (speech as babble) and RIRS_NOISES
        assert all(k == v for k, v in read_kv(data / "augment" / part / "utt2spk").items())
    # Stage 0 also removes (and reports) the 1 s utterance; stage 1 finds everything valid.
    assert "1 of 13 utterances of data/vox2_dev are shorter than 2.0 s: removed" in r.stdout
    train = read_kv(data / "vox2_dev_train" / "utt2spk")
    assert len(train) == 12 and "id00011/short/00001" not in train
    assert r.stdout.count(": OK (") >= 6

    # Stages 2-6.
    recipe(*opts, "--stage", "2", "--num-iters", "2")
    exp = d / "exp" / "voxceleb"
    import kaldiio

    # Stage 6 normalises with a seeded subset of the training data (--cohort-size, 8 with --tiny).
    assert len(read_kv(data / "voxceleb" / "cohort" / "utt2spk")) == 8

    for sys_dir in ("ssl", "pl_iter1", "pl_iter2", "lmft"):   # lmft: stage 5's large-margin fine-tuning
        res = json.loads((exp / sys_dir / "results.json").read_text())
        assert {"test", "test_asnorm", "test_asnorm_eval_cal", "vox1_E", "vox1_E_asnorm", "vox1_H",
                "vox1_H_asnorm", "test_seg", "vox1_E_seg", "vox1_H_seg"} <= set(res), (sys_dir, sorted(res))
        assert res["vox1_H"]["num_target"] + res["vox1_H"]["num_nontarget"] == 4
        emb = kaldiio.load_scp(str(exp / sys_dir / "embeddings" / "vox1_all" / "embeddings.scp"))
        assert len(emb) == 20
    assert (exp / "pl_iter1" / "data" / "utt2spk").exists() and (exp / "pl_iter2" / "data" / "utt2spk").exists()
    assert json.loads((exp / "pl_iter1" / "clusters" / "clusters.json").read_text())["num_clusters"] <= 3
    lmft = yaml.safe_load((exp / "lmft" / "config.yaml").read_text())
    assert lmft["init"] == "exp/voxceleb/pl_iter2" and lmft["loss"]["margin"] == 0.5
    assert "| exp/voxceleb/lmft |" in (exp / "results.md").read_text()
    model = yaml.safe_load((exp / "pl_iter1" / "config.yaml").read_text())["model"]
    assert model["type"] == "wavlm" and model["pretrained"] == "data/tiny_wavlm"
    assert (d / "data" / "tiny_wavlm" / "config.json").exists()
    for name in ("test", "vox1_E", "vox1_H"):
        assert (exp / f"det_{name}.png").stat().st_size > 1000
    table = (exp / "results.md").read_text()
    assert all(f"| {n} |" in table for n in ("test_asnorm", "vox1_E", "vox1_H_asnorm", "vox1_H_seg")), table
    assert "| 2 | pl_iter2 |" in (exp / "iterations.md").read_text()

    # The Slurm example of cmd.sh (uncommented) under the fake sbatch/srun: extraction as an array job.
    cmd_sh = (d / "cmd.sh").read_text()
    assert "# export cmd=\"utils/run.py --backend slurm" in cmd_sh
    (d / "cmd.sh").write_text(cmd_sh.replace("# export cmd=\"utils/run.py --backend slurm",
                                             "export cmd=\"utils/run.py --backend slurm"))
    shutil.rmtree(exp / "ssl" / "embeddings" / "vox1_all")
    log = tmp_path / "sbatch.log"
    fake = {"PATH": f"{REPO / 'tests' / 'fake_slurm'}{os.pathsep}{recipe.env['PATH']}",
            "FAKE_SLURM_LOG": str(log), "SSLSPK_STATUS_GRACE": "0"}
    r = recipe(*opts, "--stage", "6", "--nj", "2", "--eval-systems", "exp/voxceleb/ssl", extra_env=fake)
    assert "--array=1-2" in log.read_text()
    assert len(kaldiio.load_scp(str(exp / "ssl" / "embeddings" / "vox1_all" / "embeddings.scp"))) == 20


def _recipe_logging_steps(tmp_path: Path, env: dict) -> tuple[Path, Path]:
    """A copy of the voxceleb recipe whose steps/{train,extract_embeddings,cluster}.sh only log their command
    lines (to the returned log file) and write the outputs the next steps look for; stages.sh is the real one."""
    d = copy_recipe(RECIPE, tmp_path / "voxceleb")
    (d / "steps").unlink()
    (d / "steps").mkdir()
    for f in (REPO / "steps").iterdir():
        (d / "steps" / f.name).symlink_to(f)
    log = tmp_path / "steps.log"
    fakes = {"extract_embeddings.sh": "", "cluster.sh": 'out=${@: -1}; mkdir -p $out; touch $out/utt2spk',
             "train.sh": 'exp=$(echo "$@" | sed "s/.*--exp-dir \\([^ ]*\\).*/\\1/"); mkdir -p $exp; '
                         'touch $exp/model.pt'}
    for name, body in fakes.items():
        (d / "steps" / name).unlink()
        (d / "steps" / name).write_text(f'#!/usr/bin/env bash\necho "{name} $*" >> {log}\n{body}\n')
        (d / "steps" / name).chmod(0o755)
    return d, log


def _trainings(log: Path) -> list[list[str]]:
    """The train_pseudo.py command lines logged, as option lists."""
    return [line.split()[2:] for line in log.read_text().splitlines() if line.startswith("train.sh train_pseudo.py")]


def test_iterations_restart_from_pretrained_then_lmft(tmp_path, recipe_env):
    """Stages 4-5 of egs/voxceleb/v1 (steps logged, not run): every iteration trains from the config's
    pretrained model (no --init: retrain_from=initial with init_from_ssl=false), each on its own pseudo-labels;
    then the large-margin fine-tuning starts from the last iteration's model on its pseudo-labels -> exp/lmft.
    --retrain-from previous still chains the iterations; --lmft-conf '' drops the last step."""
    d, log = _recipe_logging_steps(tmp_path, recipe_env)
    env = dict(recipe_env, SSLSPK_ROOT=str(REPO))

    def run(*args: str) -> list[list[str]]:
        log.unlink(missing_ok=True)
        r = subprocess.run(["./run.sh", "--tiny", "true", "--stage", "4", "--stop-stage", "5", *args], cwd=d, env=env,
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        return _trainings(log)

    def opt(cmd: list[str], name: str) -> str | None:
        return cmd[cmd.index(name) + 1] if name in cmd else None

    got = run("--num-iters", "3")
    assert len(got) == 4, got
    for it, cmd in enumerate(got[:3], 1):
        assert opt(cmd, "--config") == "conf/tiny/pseudo_wavlm.yaml" and opt(cmd, "--init") is None
        assert (opt(cmd, "--data"), opt(cmd, "--exp-dir")) == (f"exp/voxceleb/pl_iter{it}/data",
                                                               f"exp/voxceleb/pl_iter{it}")
    lmft = got[3]
    assert (opt(lmft, "--config"), opt(lmft, "--data"), opt(lmft, "--exp-dir"), opt(lmft, "--init")) == (
        "conf/tiny/pseudo_wavlm_lmft.yaml", "exp/voxceleb/pl_iter3/data", "exp/voxceleb/lmft", "exp/voxceleb/pl_iter3")
    got = run("--num-iters", "2", "--retrain-from", "previous", "--lmft-conf", "")
    assert [opt(c, "--init") for c in got] == [None, "exp/voxceleb/pl_iter1"], got
    r = subprocess.run(["./run.sh", "--stage", "5", "--retrain-from", "last"], cwd=d, env=env, capture_output=True,
                       text=True)
    assert r.returncode == 1 and "--retrain-from must be previous or initial" in r.stderr


def test_lmft_config_is_the_iteration_config_but_the_authors_lmft_values():
    """conf/pseudo_wavlm_base_plus_lmft.yaml differs from conf/pseudo_wavlm_base_plus.yaml only where
    theolepage/wavlm_ssl_sv:configs/wavlm_mhfa_dlg_lc_lmft.yaml differs (and the carried classes, DLG-LC epochs),
    has no model block (inherited from --init) and parses as a pseudo-label config."""
    from sslspk.experiment import check_config

    conf = RECIPE / "conf"
    it, lmft = (yaml.safe_load((conf / n).read_text()) for n in ("pseudo_wavlm_base_plus.yaml",
                                                                 "pseudo_wavlm_base_plus_lmft.yaml"))
    assert "model" not in lmft
    assert lmft["data"]["augment"] == it["data"]["augment"]
    assert {k: v for k, v in lmft["finetune"].items() if k != "classifier_from_init"} == it["finetune"]
    assert lmft["finetune"]["classifier_from_init"] is True
    diff = {k for k in it["train"] if lmft["train"].get(k) != it["train"][k]}
    assert diff == {"epochs", "batch_size"} and (lmft["train"]["epochs"], lmft["train"]["batch_size"]) == (5, 50)
    assert lmft["loss"] == {"margin": 0.5, "scale": 30} and lmft["data"]["views"] == [{"seconds": 6.015, "count": 1}]
    for c, name in ((lmft, "lmft"), (it, "iteration")):
        parsed = check_config(c, "pseudo", name)
        assert parsed["train"].schedule == "step" and parsed["finetune"].l2_to_init == 0.01


def test_help_lists_stages_and_options(recipe):
    r = recipe("--help")
    assert all(f"  {i}  " in r.stdout for i in range(7)), r.stdout
    for opt in ("--stop-stage", "--raw-dir", "--ssl-conf", "--pseudo-conf", "--num-clusters", "--ahc-clusters",
                "--min-dur", "--eval-systems", "--tiny"):
        assert opt in r.stdout
    r = subprocess.run([str(REPO / "local" / "download_voxceleb.sh"), "--help"], cwd=recipe.dir, env=recipe.env,
                       capture_output=True, text=True)
    assert r.returncode == 0 and "VOXCELEB_URL" in r.stdout and "--parts" in r.stdout


def test_download_needs_url(recipe, tmp_path):
    """Without URLs the download stops with the explanation, before fetching anything."""
    env = {k: v for k, v in recipe.env.items() if not k.startswith("VOXCELEB_")}
    r = subprocess.run([str(REPO / "local" / "download_voxceleb.sh"), "--parts", "vox1", str(tmp_path / "dl")],
                       cwd=recipe.dir, env=env, capture_output=True, text=True)
    assert r.returncode == 1 and "VGG site" in r.stderr and "VOXCELEB_URL" in r.stderr


def test_prepare_rejects_bad_trials(tmp_path):
    """A trial label contradicting the speakers is reported with file and line."""
    raw = tmp_path / "raw"
    for u in ("id10001/a/00001", "id10002/b/00001"):
        write_wav(raw / "voxceleb1" / "wav" / f"{u}.wav", 0.5)
    (raw / "voxceleb1" / "veri_test2.txt").write_text(
        "0 id10001/a/00001.wav id10002/b/00001.wav\n1 id10001/a/00001.wav id10002/b/00001.wav\n")
    r = subprocess.run([sys.executable, str(REPO / "local" / "prepare_voxceleb.py"), "--vox1-dir",
                        str(raw / "voxceleb1"), str(tmp_path / "data")], capture_output=True, text=True)
    assert r.returncode != 0 and "veri_test2.txt:2: label 1 contradicts" in r.stderr


def test_template_recipe_stage0_explains(tmp_path, recipe_env):
    """egs/TEMPLATE lists its options and stops at stage 0 with a pointer to docs/adapting.md."""
    d = REPO / "egs" / "TEMPLATE" / "v1"
    env = dict(recipe_env, SSLSPK_ROOT=str(REPO))
    r = subprocess.run(["./run.sh", "--help"], cwd=d, env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "--num-clusters" in r.stdout and "Stages" in r.stdout
    r = subprocess.run(["./run.sh", "--stop-stage", "0"], cwd=d, env=env, capture_output=True, text=True)
    assert r.returncode == 1 and "docs/adapting.md" in r.stderr


def test_tiny_configs_have_the_paper_scale_keys():
    """conf/tiny/* shrink the sizes only: the same keys (and method) as the configs they stand for."""
    def keys(d: dict, prefix: str = "") -> set[str]:
        return set().union(*({prefix + k} | (keys(v, f"{prefix}{k}.") if isinstance(v, dict) else set())
                             for k, v in d.items()))
    conf = RECIPE / "conf"
    for tiny, full in (("ssl_dino_ecapa.yaml", "ssl_dino_ecapa1024.yaml"),
                       ("pseudo_wavlm.yaml", "pseudo_wavlm_base_plus.yaml"),
                       ("pseudo_wavlm_lmft.yaml", "pseudo_wavlm_base_plus_lmft.yaml")):
        t, f = (yaml.safe_load((p).read_text()) for p in (conf / "tiny" / tiny, conf / full))
        assert keys(t) == keys(f), (tiny, keys(t) ^ keys(f))
        assert t.get("model", {}).get("type") == f.get("model", {}).get("type")
        assert t.get("ssl", {}).get("method") == f.get("ssl", {}).get("method")


@pytest.fixture
def http_dir(tmp_path):
    """A local HTTP server over tmp_path/www (the download script is tested offline against it)."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    www = tmp_path / "www"
    www.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(www)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_checks_concatenates_and_resumes(http_dir, tmp_path, recipe_env):
    """VoxCeleb1 as split archives: every part and the concatenated zip checked, unpacked once;
    a second run downloads nothing; a wrong checksum stops with the file's name."""
    import hashlib
    import zipfile

    www, url = http_dir
    for name, n in (("vox1_dev_wav.zip", 3), ("vox1_test_wav.zip", 1)):
        with zipfile.ZipFile(tmp_path / name, "w") as z:
            for i in range(n):
                z.write(write_wav(tmp_path / f"{name}{i}.wav", 0.2, seed=i), f"wav/id1000{i}/vid/0000{i}.wav")
    blob = (tmp_path / "vox1_dev_wav.zip").read_bytes()
    q = len(blob) // 4 + 1
    parts = {f"vox1_dev_wav_part{p}": blob[i * q:(i + 1) * q] for i, p in enumerate(("aa", "ab", "ac", "ad"))}
    parts["vox1_test_wav.zip"] = (tmp_path / "vox1_test_wav.zip").read_bytes()
    for name, data in parts.items():
        (www / name).write_bytes(data)
    (www / "meta").mkdir()
    for t in ("veri_test2.txt", "list_test_all2.txt", "list_test_hard2.txt"):
        (www / "meta" / t).write_text("1 id10000/vid/00000.wav id10000/vid/00000.wav\n")
    sums = {name: hashlib.md5(data).hexdigest() for name, data in parts.items()}
    sums["vox1_dev_wav.zip"] = hashlib.md5(blob).hexdigest()
    table = tmp_path / "sums.txt"
    table.write_text("".join(f"{k} md5 {v}\n" for k, v in sums.items()))

    def download(out: Path, checksums: Path) -> subprocess.CompletedProcess:
        return subprocess.run([str(REPO / "local" / "download_voxceleb.sh"), "--parts", "vox1", "--vox-url", url,
                               "--meta-url", f"{url}/meta", "--checksums", str(checksums), str(out)],
                              cwd=tmp_path, env=recipe_env, capture_output=True, text=True, timeout=120)

    r = download(tmp_path / "raw", table)
    assert r.returncode == 0, r.stderr
    assert "vox1_dev_wav.zip: md5 OK" in r.stdout and r.stdout.count(": md5 OK") == 6
    for i in range(3):
        assert (tmp_path / "raw" / "voxceleb1" / "wav" / f"id1000{i}" / "vid" / f"0000{i}.wav").exists()
    assert (tmp_path / "raw" / "voxceleb1" / "veri_test2.txt").exists()
    r = download(tmp_path / "raw", table)
    assert r.returncode == 0 and ": md5 OK" not in r.stdout and "already unpacked" in r.stdout, r.stdout

    table.write_text(table.read_text().replace(sums["vox1_dev_wav_partab"], "0" * 32))
    r = download(tmp_path / "raw2", table)
    assert r.returncode != 0 and "vox1_dev_wav_partab: md5" in r.stderr and "expected 000" in r.stderr, r.stderr
    assert not (tmp_path / "raw2" / "voxceleb1").exists()
