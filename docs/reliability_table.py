"""Regenerates the table of docs/reliability.md: each bad input through `ppeval run`, its exit status and message.

Run from the repository root: `python docs/reliability_table.py`.
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


def case(label, toml, files=None, prep=None):
    d = root / f"c{len(cases)}"
    d.mkdir()
    for name, content in (files or {}).items():
        (d / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    if prep:
        prep(d)
    (d / "run.toml").write_text(toml.replace("@D", str(d)))
    cases.append((label, d))


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
for label, d in cases:
    p = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(d / "run.toml"), "--out", str(d / "out")],
        capture_output=True,
        text=True,
        cwd=str(Path(__file__).resolve().parents[1]),
    )
    msg = " ".join(p.stderr.split()).replace(str(root), "…").replace("|", "\\|")
    written = "nothing" if not (d / "out").exists() else "RUN DIR WRITTEN"
    print(f"| {label} | {p.returncode} | {msg[:300]} | {written} |")
