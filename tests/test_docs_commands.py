"""Every command the README, BUILD_NOTES.md and docs/ show parses as written.

tests/test_scenarios.py runs the README's user commands end to end; the other commands (benchmarks, experiments,
the pack and stats tools, the tables' "command" column) take minutes or a GPU. Here each is checked the way its
program reads it, without running it: a `python -m jaxcnn.MODULE ...` or `python experiments/....py ...` command
goes through its program's own flag parser (absl flags, `--config=NAME` and every `--config.FIELD=VALUE`, or
argparse) in a subprocess that stops once parsing is done; a `bash SCRIPT ...` command names a script that exists and
parses (`bash -n`). A flag renamed, a config field gone or a script moved fails here, naming the document and line.

Words in capitals (W, DIR, WORKDIR) and `<...>` stand for the user's own paths and values; they are left as
written (a path is not opened while parsing). A command whose placeholder stands where a parser checks the value
(a config name, a number) is written with a real one in the documents.
"""

import json
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

from jaxcnn import configs

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCUMENTS = ("README.md", "BUILD_NOTES.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md")))
PROGRAMS = ("python -m jaxcnn.", "python experiments/", "bash launch/", "bash experiments/")

# Parses sys.argv as the program named by argv[1] would, then exits: absl's app.run calls the program's flag parser
# (its flags_parser, or FLAGS) and reads every flag's value (a config flag loads the config and applies its
# overrides then); argparse stops after parse_args. Exit 0: parsed; otherwise the parser's own message.
PARSE_ONLY = r"""
import argparse, runpy, sys
from absl import app, flags

class Parsed(Exception):
  pass

def run(main, argv=None, flags_parser=None, **unused):
  argv = sys.argv if argv is None else argv
  rest = (flags_parser or flags.FLAGS)(argv)
  if len(rest) > 1:  # main() would refuse them (app.UsageError) or take them for something else
    raise SystemExit(f"unexpected arguments: {rest[1:]}")
  for name in list(flags.FLAGS):
    flags.FLAGS[name].value  # a config flag's overrides are applied when it is read
  raise Parsed

def parse_known_args(self, args=None, namespace=None):  # parse_args calls it too
  parse_known_args.original(self, args, namespace)
  raise Parsed

parse_known_args.original = argparse.ArgumentParser.parse_known_args
argparse.ArgumentParser.parse_known_args = parse_known_args
app.run = run
kind, target, *arguments = sys.argv[1:]
sys.argv = [target, *arguments]
try:
  if kind == "module":
    runpy.run_module(target, run_name="__main__", alter_sys=True)
  else:
    sys.path.insert(0, str(__import__("pathlib").Path(target).parent))
    runpy.run_path(target, run_name="__main__")
except Parsed:
  sys.exit(0)
sys.exit("the program ended without parsing its arguments")
"""


def _commands_in(text: str) -> list[tuple[int, str]]:
  """(line number, command) of every command in fenced blocks (continuation lines joined) and in inline code spans
  (which may run over a line break), trailing comments and environment assignments dropped, `for V in A B; do CMD;
  done` expanded."""
  found = []
  for block in re.finditer(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M):
    first_line = text.count("\n", 0, block.start(1)) + 1
    for offset, line in _joined_lines(block.group(1)):
      found += [(first_line + offset, command) for command in _expand(line)]
  prose = re.sub(r"^```.*?^```", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S | re.M)
  for span in re.finditer(r"`([^`]+)`", prose):
    found += [(prose.count("\n", 0, span.start()) + 1, c) for c in _expand(" ".join(span.group(1).split()))]
  return sorted((n, c) for n, c in found if c.startswith(PROGRAMS) and c not in PROGRAMS)


def _joined_lines(block: str) -> list[tuple[int, str]]:
  """(offset of its first line, line) with backslash continuations joined."""
  joined, pending, start = [], "", 0
  for offset, line in enumerate(block.splitlines()):
    if not pending:
      start = offset
    pending = f"{pending} {line.strip()}" if pending else line.strip()
    if pending.endswith("\\"):
      pending = pending[:-1].rstrip()
      continue
    joined.append((start, pending))
    pending = ""
  return joined


def _expand(line: str) -> list[str]:
  line = re.sub(r"\s+#.*$", "", line.strip())
  line = re.sub(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)+", "", line)  # VAR=value prefixes: the environment, not the program
  line = line.replace(".venv/bin/python ", "python ").replace("python3 ", "python ")
  loop = re.fullmatch(r"for (\w+) in ([^;]+); do (.+?); done", line)
  if loop:
    name, values, body = loop.groups()
    return [_expand(re.sub(rf"\$\{{?{name}\}}?", value, body))[0] for value in values.split()]
  return [line]


# Placeholders where a parser checks the value, and what they stand for: every value a user may put there.
PLACEHOLDERS = {
  "--config=NAME --workdir=workdirs/NAME": [f"--config={n} --workdir=workdirs/{n}" for n in configs.names()],
  "--config=fashion_mnist_<model>": [f"--config={n}" for n in configs.names() if n.startswith("fashion_mnist_")],
}
# Commands shown for what they are, not to be typed: the bench's own call of its PyTorch worker (SPEC is the JSON
# the controller writes).
NOT_TYPED = ("python -m jaxcnn.bench.torch_models SPEC",)


def documented_commands() -> list[tuple[str, str]]:
  """(where, command) of every command in DOCUMENTS, each distinct command once (its first place), placeholders
  expanded."""
  seen = {}
  for document in DOCUMENTS:
    for number, command in _commands_in((REPO / document).read_text()):
      if command in NOT_TYPED:
        continue
      expanded = [command]
      for placeholder, values in PLACEHOLDERS.items():
        if placeholder in command:
          expanded = [command.replace(placeholder, value) for value in values]
      for one in expanded:
        seen.setdefault(one, f"{document}:{number}")
  return [(where, command) for command, where in seen.items()]


def _parse(command: str) -> subprocess.CompletedProcess:
  words = shlex.split(command)
  if words[0] == "bash":
    script = REPO / words[1]
    if not script.is_file():
      return subprocess.CompletedProcess(words, 1, "", f"no script {words[1]}")
    return subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
  if words[1] == "-m":
    kind, target, arguments = "module", words[2], words[3:]
  else:
    kind, target, arguments = "path", str(REPO / words[1]), words[2:]
    if not pathlib.Path(target).is_file():
      return subprocess.CompletedProcess(words, 1, "", f"no file {words[1]}")
    source = pathlib.Path(target).read_text()
    if "argparse" not in source and "app.run" not in source:  # reads no arguments: it would just run
      if arguments:
        return subprocess.CompletedProcess(words, 1, "", f"{words[1]} reads no arguments: {arguments}")
      compile(source, target, "exec")
      return subprocess.CompletedProcess(words, 0, "", "")
  return subprocess.run(
    [sys.executable, "-c", PARSE_ONLY, kind, target, *arguments],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )


COMMANDS = documented_commands()


def test_the_documents_show_commands():
  """The extraction finds the commands it is meant to check (a broken parser of the documents checks nothing)."""
  commands = [command for _, command in COMMANDS]
  assert "python -m jaxcnn.main --config=lenet5 --workdir=/tmp/lenet5" in commands
  assert "bash launch/test.sh" in commands
  assert any(c.startswith("python -m jaxcnn.bench ") for c in commands)
  assert len(commands) >= 30, json.dumps(commands, indent=1)


@pytest.mark.parametrize("where, command", COMMANDS, ids=[where for where, _ in COMMANDS])
def test_a_documented_command_parses_as_written(where, command):
  result = _parse(command)
  assert result.returncode == 0, f"{where}: {command}\n{(result.stdout + result.stderr)[-2000:]}"
