"""Regenerates the table of docs/reliability.md: each bad input through `ppeval run`, its exit status and message.

Run from the repository root: `python docs/reliability_table.py` (prints the table's rows, then a count of the
cases by exit status). A case passes when it exits with the status in its row and leaves no run directory and no
hidden staging directory behind.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from tiny import make_adapter, make_base

root = Path("/tmp/ppeval-reliability")
shutil.rmtree(root, ignore_errors=True)
root.mkdir(parents=True)
base = make_base(root / "base")
adapter = make_adapter(base, root / "adapter")
other = make_base(root / "other", hidden=48, seed=5)
other_ad = make_adapter(other, root / "other-ad")
good = f'[model]\nbase = "{base}"\nprompt_format = "plain"\n[run]\ncache_dir = "{root}/cache"\n'
cases = []


def case(label, toml, files=None, prep=None, args=(), expect=2):
    d = root / f"c{len(cases)}"
    d.mkdir()
    for name, content in (files or {}).items():
        (d / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    if prep:
        prep(d)
    (d / "run.toml").write_text(toml.replace("@D", str(d)))
    cases.append((label, d, [a.replace("@D", str(d)) for a in args], expect))


case("TOML syntax error", "[model\nbase = 1\n")
case("unknown key", good + "[data]\ntrainng = 'x'\n")
case("wrong type", good.replace("[run]\n", "[run]\nseed = 'zero'\n"))
case("missing required key", "[model]\ndtype = 'auto'\n")
case("path that does not exist", good + "[data]\ntraining = '/nope/train.jsonl'\n")
case("directory where a file is expected", good + "[data]\ntraining = '@D'\n")
case("adapter directory missing", good + '[[subjects]]\nname = "a"\nadapter = "/nope"\n')
case("adapter made for another base", good + f'[[subjects]]\nname = "a"\nadapter = "{other_ad}"\n')
case(
    "adapter for another architecture (name overridden)",
    good + f'[[subjects]]\nname = "a"\nadapter = "{other_ad}"\nignore_base_name = true\n',
)


def trunc(d):
    shutil.copytree(adapter, d / "ad")
    w = d / "ad" / "adapter_model.safetensors"
    w.write_bytes(w.read_bytes()[:-64])


case("truncated safetensors", good + '[[subjects]]\nname = "a"\nadapter = "@D/ad"\n', prep=trunc)


def corrupt(d):
    shutil.copytree(adapter, d / "ad")
    w = d / "ad" / "adapter_model.safetensors"
    w.write_bytes(b"\xff" * 64)


case("corrupt safetensors header", good + '[[subjects]]\nname = "a"\nadapter = "@D/ad"\n', prep=corrupt)


def pickle_only(d):
    shutil.copytree(base, d / "b")
    (d / "b" / "model.safetensors").rename(d / "b" / "pytorch_model.bin")


case("pickle-only checkpoint without allow_pickle", '[model]\nbase = "@D/b"\n', prep=pickle_only)


def noweights(d):
    shutil.copytree(base, d / "b")
    (d / "b" / "model.safetensors").unlink()


case("base directory without weights", '[model]\nbase = "@D/b"\n', prep=noweights)


def remote(d):
    shutil.copytree(base, d / "b")
    c = json.loads((d / "b" / "config.json").read_text())
    c["auto_map"] = {"AutoModelForCausalLM": "m.X"}
    (d / "b" / "config.json").write_text(json.dumps(c))


case("trust_remote_code required but off", '[model]\nbase = "@D/b"\n', prep=remote)
data_cases = [
    ("empty data file", b""),
    ("line that is not JSON", b'{"text": "a"}\n{oops}\n'),
    ("missing field", b'{"txt": "a"}\n'),
    ("non-UTF-8 bytes", b'{"text": "caf\xe9"}\n'),
    ("mixed text/messages records", b'{"text": "a"}\n{"messages": [{"role": "user", "content": "b"}]}\n'),
]
for label, content in data_cases:
    case(f"data: {label}", good + '[data]\nholdout = "@D/h.jsonl"\n[suites.perplexity]\n', files={"h.jsonl": content})
ppx = good + "[suites.perplexity]\nmax_items = 4\n"
case("data: a broken training file no selected suite reads", ppx + '[data]\ntraining = "@D/t.jsonl"\n',
     files={"t.jsonl": b'{"text": "a"}\n{oops}\n'}, args=["--suites", "perplexity"])
lines = [json.dumps({"text": f"record {i}"}).encode() for i in range(1, 600)]
lines[499] = b'{"text": "caf\xe9"}'
case("data: non-UTF-8 byte on line 500", ppx + '[data]\nholdout = "@D/h.jsonl"\n', files={"h.jsonl": b"\n".join(lines)})
case("data: every text empty", ppx + '[data]\nholdout = "@D/h.jsonl"\n',
     files={"h.jsonl": b'{"text": ""}\n{"text": " "}\n'})
case("canaries: empty file", ppx + '[data]\ncanaries = "@D/c.jsonl"\n', files={"c.jsonl": b"\n"})


def header(edit):
    def prep(d):
        shutil.copytree(adapter, d / "ad")
        w = d / "ad" / "adapter_model.safetensors"
        raw = w.read_bytes()
        n = int.from_bytes(raw[:8], "little")
        h = edit(json.loads(raw[8:8 + n]))
        new = json.dumps(h).encode()
        w.write_bytes(len(new).to_bytes(8, "little") + new + raw[8 + n:])
    return prep


def first(h):
    return next(k for k in h if k != "__metadata__")


sub = ppx + '[[subjects]]\nname = "a"\nadapter = "@D/ad"\n'
case("adapter: safetensors header that is a list", sub, prep=header(lambda h: [h]))
case("adapter: header entry without dtype", sub,
     prep=header(lambda h: {**h, first(h): {k: v for k, v in h[first(h)].items() if k != "dtype"}}))
case("adapter: data_offsets too short for the shape", sub,
     prep=header(lambda h: {**h, first(h): {**h[first(h)], "data_offsets": [0, 4]}}))


def targets(d):
    shutil.copytree(adapter, d / "ad")
    c = json.loads((d / "ad" / "adapter_config.json").read_text())
    c["target_modules"] = ["q_proj", "attn_qkv"]
    (d / "ad" / "adapter_config.json").write_text(json.dumps(c))


case("adapter: target_modules the base lacks", sub, prep=targets)
case("--limit 0", ppx, args=["--limit", "0"])
case("--limit -1", ppx, args=["--limit", "-1"])
case('device = "cuda" on a machine without CUDA',
     ppx.replace('prompt_format = "plain"\n', 'prompt_format = "plain"\ndevice = "cuda"\n'))
case("--summary at a directory", ppx, args=["--summary", "@D"])
case("--junit under a missing directory", ppx, args=["--junit", "@D/no/such/dir/junit.xml"])
case("misspelt [suites.perplexty], with --suites", good + "[suites.perplexty]\n", args=["--suites", "perplexity"])
case("suite option typo", good + "[suites.perplexity]\nmax_itms = 4\n")
case("gate on a suite --suites leaves out", ppx + '[[policy.gate]]\nmetric = "memorization.mia_auc"\nmax = 0.6\n',
     args=["--suites", "perplexity"])
case("gate on a misspelt metric", ppx + '[[policy.gate]]\nmetric = "perplexity.mean_nl"\nmax = 9\n')


def corrupt_cache(d):
    (d / "cache").mkdir()
    (d / "cache" / "results.sqlite").write_bytes(b"not a database " * 100)


case("corrupt result cache", ppx.replace(f'cache_dir = "{root}/cache"', 'cache_dir = "@D/cache"'), prep=corrupt_cache,
     expect=3)


def other_files(d):
    (d / "out").mkdir()
    (d / "out" / "notes.txt").write_text("keep me")


case("--out at an existing directory that is not a run", ppx, prep=other_files)
case("--out .", ppx, args=["--out", "."])


def symlink(d):
    (d / "target").mkdir()
    (d / "out").symlink_to(d / "target")


case("--out at a symbolic link", ppx, prep=symlink)
outcomes = {}
for label, d, args, expect in cases:
    out = [] if "--out" in args else ["--out", str(d / "out")]
    existed = (d / "out").exists() or (d / "out").is_symlink()
    p = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(d / "run.toml"), *out, *args],
        capture_output=True,
        text=True,
        cwd=str(d),
    )
    stderr = p.stderr.split("\nppeval run: ", 1)[-1] if p.stderr.startswith("usage:") else p.stderr  # argparse
    msg = " ".join(stderr.split()).replace(str(root), "…").replace("|", "\\|")
    left = [x.name for x in d.iterdir() if x.name.startswith(".")]
    if left:
        written = f"STAGING LEFT: {left}"
    elif (d / "out").exists() and not existed:
        written = "RUN DIR WRITTEN"
    elif existed:
        written = "untouched" if not (d / "out" / "scorecard.json").exists() else "RUN DIR WRITTEN"
    else:
        written = "nothing"
    ok = p.returncode == expect and written in ("nothing", "untouched") and "Traceback" not in p.stderr
    outcomes.setdefault((p.returncode, ok), []).append(label)
    print(f"| {label} | {p.returncode} | {msg[:300]} | {written} |")
print()
for (code, ok), labels in sorted(outcomes.items()):
    print(f"exit {code}: {len(labels)} case(s){'' if ok else ' NOT AS EXPECTED: ' + '; '.join(labels)}")
print(f"{len(cases)} cases")
