"""The mutation score of the numerical core: mutmut over losses/, ops/, metrics.py,
data/partial_labels.py and the methods' loss and state functions.

  pip install -e ".[mutation]"
  python scripts/mutation_score.py                       # runs (resumes) mutmut, writes the report
  python scripts/mutation_score.py --rerun_survivors     # after adding tests: the survivors (and
                                                         # the mutants no test called) again
  python scripts/mutation_score.py --report_only         # the report of the results so far

mutmut (pyproject.toml `[tool.mutmut]`) copies the package into `mutants/`, mutates one operator,
constant, string or call argument at a time, and runs, per mutant, only the tests that call the
mutated function (it records them once from the core's fast test files), fastest first, until one
fails. This script says which functions are in scope (`scope`): every function of `losses/`,
`ops/`, `metrics.py` and `data/partial_labels.py`; in `methods/`, every function but the config
plumbing (`PLUMBING`: default configs, validation, model construction, parameter groups,
sharding, weight loading).

Results are kept in the repository, not only in mutmut's working directory (which a new machine
does not have): every verdict goes to `--results` (docs/results/mutation_results.json, committed)
as it arrives (every `--save_every` seconds and at the end), per function with the hash mutmut
gives its source. A verdict counts while the function's source keeps that hash (mutmut's own rule
for keeping a result), so a run resumes on any machine from a clean clone: the mutants without a
verdict, or whose function's source changed, are the ones run. `--rerun_survivors` runs the survivors again
(after tests were added; a killed mutant stays killed). Run it on an otherwise idle machine:
mutmut's time limit per mutant is wall-clock time (30 times its tests' duration), so a mutant
starved of CPU times out, which counts as killed; the report counts timeouts apart and
`--rerun_timeouts` runs them again.

The report (`--out`, default docs/results/mutation.md) is built from `--results` and the current
source alone (mutmut's generator names the mutants and gives their diffs; `--report_only` needs no
earlier run on this machine): per group and per module the mutants,
killed (a test failed or timed out), survived, equivalent (a survivor triaged as equivalent in
`--equivalent`, docs/results/mutation_equivalent.json: the function, the line before and after,
and the reason), and the kill rate killed / (mutants - equivalent); then every untriaged survivor
with its diff. Not run by CI (hours on 2 cores).
"""

import argparse
import ast
import datetime
import difflib
import fnmatch
import glob
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from typing import NamedTuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from mlrpl_jax import cli, errors
from mlrpl_jax.paths import atomic_write, atomic_write_json

# Groups of the report: (name, module glob). The first four carry the 90 % target.
GROUPS = (
    ("losses", "mlrpl_jax.losses.*"),
    ("ops", "mlrpl_jax.ops.*"),
    ("metrics", "mlrpl_jax.metrics"),
    ("partial_labels", "mlrpl_jax.data.partial_labels"),
    ("methods", "mlrpl_jax.methods.*"),
)
TARGET_GROUPS = ("losses", "ops", "metrics", "partial_labels")
# methods/: functions that build configs, models and shardings rather than compute losses or state.
PLUMBING = (
    "default_config", "*_default_config", "*_config", "make_model", "validate", "*_validate",
    "_validate_*", "check", "check_*", "_fail", "param_groups", "state_sharding", "_method",
    "blend_keys", "kmeans_keys", "loss_name", "resolved_*", "__init__", "__post_init__", "get",
    "load_*", "backbone_groups", "no_validation", "frozen_towers", "_get", "_put",
)  # fmt: skip
MUTANTS = os.path.join(ROOT, "mutants")
MANGLED = re.compile(r"^(?P<module>[\w.]+)\.x(?:ǁ(?P<cls>\w+)ǁ|_)(?P<fn>\w+?)__mutmut_(?P<n>\d+)$")


def parse_name(name: str) -> tuple[str, str]:
    """('mlrpl_jax.losses.partial_bce', 'partial_bce') of 'mlrpl_jax.losses.partial_bce.x_partial_bce__mutmut_3'
    (a method: 'Class.method')."""
    m = MANGLED.match(name)
    if m is None:
        raise ValueError(f"not a mutmut mutant name: {name!r}")
    fn = f"{m['cls']}.{m['fn']}" if m["cls"] else m["fn"]
    return m["module"], fn


def group_of(module: str) -> str | None:
    for group, pattern in GROUPS:
        if fnmatch.fnmatchcase(module, pattern):
            return group
    return None


def in_scope(name: str) -> bool:
    module, fn = parse_name(name)
    group = group_of(module)
    if group is None:
        return False
    if group == "methods":
        return not any(fnmatch.fnmatchcase(fn.split(".")[-1], p) for p in PLUMBING)
    return True


STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped",
          36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout",
          37: "caught by type check", None: "not checked"}  # fmt: skip
RESULTS = os.path.join(ROOT, "docs", "results", "mutation_results.json")


class Mutant(NamedTuple):
    function: str  # mutmut's qualified function key: 'mlrpl_jax.metrics.x_average_precision'
    number: str  # the mutant's number within the function
    hash: str  # mutmut's hash of the function's source
    path: str  # the source file, relative to the root


def scope_files() -> list[str]:
    """The source files mutmut mutates, relative paths (e.g. mlrpl_jax/losses/partial_bce.py):
    every .py under `[tool.mutmut] source_paths` that mutmut's own `should_mutate` accepts
    (`only_mutate`, `do_not_mutate`). Call with the root as the working directory and mutmut's
    configuration freshly loaded, as `generate` does."""
    from mutmut import configuration

    config = configuration.config()
    out = []
    for source in config.source_paths:
        files = [source] if source.is_file() else source.rglob("*.py")
        out.extend(str(p) for p in files if config.should_mutate(p))
    return sorted(out)


def generate(root: str = ROOT) -> tuple[dict[str, Mutant], dict[str, str]]:
    """({mutant name: Mutant} of every in-scope mutant, {path: mutated module source}) of the
    source under `root`, from mutmut's own generator with `root`'s `[tool.mutmut]` settings: the
    names `mutmut run` gives the same source, and the per-function hashes by which mutmut keeps a
    function's verdicts until its source changes."""
    from mutmut import configuration
    from mutmut.mutation.file_mutation import mutate_file_contents

    here = os.getcwd()
    os.chdir(root)  # mutmut reads ./pyproject.toml
    configuration.reset_config()
    try:
        mutants, code = {}, {}
        for path in scope_files():
            with open(path) as f:
                mutated = mutate_file_contents(path, f.read())
            module = path[: -len(".py")].replace("/", ".")
            code[path] = mutated.code
            for mangled in mutated.mutant_names:
                name = f"{module}.{mangled}".replace(".__init__.", ".")
                fn, _, number = mangled.rpartition("__mutmut_")
                if in_scope(name):
                    mutants[name] = Mutant(name.rpartition("__mutmut_")[0], number,
                                           mutated.hash_by_function_name[fn], path)  # fmt: skip
    finally:
        configuration.reset_config()
        os.chdir(here)
    return mutants, code


def load_store(path: str) -> dict:
    """The committed verdicts: {'functions': {function key: {'hash', 'commit', 'exit_codes':
    {number: mutmut's exit code}}}}; empty when `path` does not exist yet."""
    if not os.path.exists(path):
        return {"functions": {}}
    try:
        with open(path) as f:
            store = json.load(f)
        for key, entry in store["functions"].items():
            if not {"hash", "commit", "exit_codes"} <= set(entry):
                raise KeyError(key)
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise errors.InputError(
            f"{path}: not a mutation results file ({type(e).__name__}: {e}); restore it with "
            f"`git checkout -- {os.path.relpath(path, ROOT)}` or pass another --results."
        ) from None
    return store


def harvest(store: dict, mutants: dict[str, Mutant], mutants_dir: str, commit: str) -> int:
    """Copy into `store` each verdict mutmut recorded under `mutants_dir` (its .meta files) for a
    mutant of `mutants` whose function's source still has the hash mutmut recorded; a function
    whose hash changed loses its old verdicts. Returns the number of verdicts copied."""
    copied = 0
    for meta in glob.glob(
        os.path.join(mutants_dir, "mlrpl_jax", "**", "*.py.meta"), recursive=True
    ):
        with open(meta) as f:
            data = json.load(f)
        hashes = data.get("hash_by_function_name", {})
        for name, code in data["exit_code_by_key"].items():
            m = mutants.get(name)
            if code is None or m is None or hashes.get(m.function.rpartition(".")[2]) != m.hash:
                continue
            entry = store["functions"].get(m.function)
            if entry is None or entry["hash"] != m.hash:
                entry = store["functions"][m.function] = {"hash": m.hash, "exit_codes": {}}
            if entry["exit_codes"].get(m.number, "none") != code:
                entry["exit_codes"][m.number] = code
                entry["commit"] = commit
                copied += 1
    return copied


def save_store(store: dict, path: str) -> None:
    """Writes `store` to `path` atomically: functions by key, each one's verdicts by number."""
    functions = {k: {**dict(sorted(v.items())),  # commit, exit_codes, hash
                     "exit_codes": dict(sorted(v["exit_codes"].items(), key=lambda x: int(x[0])))}
                 for k, v in sorted(store["functions"].items())}  # fmt: skip
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, json.dumps({"functions": functions}, indent=2) + "\n")


def verdicts(store: dict, mutants: dict[str, Mutant]) -> dict[str, str]:
    """{mutant name: status} of every mutant of `mutants`: its verdict in `store` if its
    function's hash is the stored one, else 'not checked'."""
    out = {}
    for name, m in mutants.items():
        entry = store["functions"].get(m.function)
        code = entry["exit_codes"].get(m.number) if entry and entry["hash"] == m.hash else None
        out[name] = STATUS.get(code, "suspicious")
    return out


def run_names(names: list[str], mutants: dict[str, Mutant]) -> list[str]:
    """`names` for mutmut's command line: a function's pattern where every one of its mutants is
    wanted (mutmut matches each name against each mutant: thousands of names are slow)."""
    wanted, by_function = set(names), {}
    for name, m in mutants.items():
        by_function.setdefault(m.function, []).append(name)
    out = []
    for function, all_names in sorted(by_function.items()):
        mine = [n for n in all_names if n in wanted]
        if len(mine) == len(all_names):
            out.append(f"{function}__mutmut_*")
        else:
            out.extend(sorted(mine))
    return out


def _functions(source: str) -> dict[str, str]:
    """{name: source} of every function in Python source, methods included (dedented)."""
    lines = source.splitlines()
    out = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out[node.name] = textwrap.dedent("\n".join(lines[node.lineno - 1 : node.end_lineno]))
    return out


def diffs_of(names: list[str], mutants: dict[str, Mutant], code: dict[str, str]) -> dict[str, str]:
    """{name: the mutant's unified diff} (what `mutmut show` prints): mutmut's mutated module
    holds each function's original as `<mangled>__mutmut_orig` beside its mutants
    `<mangled>__mutmut_<n>`; the diff is theirs."""
    functions, out = {}, {}
    for name in names:
        path = mutants[name].path
        if path not in functions:
            functions[path] = _functions(code[path])
        mangled = name.rpartition(".")[2]
        orig = mangled.rpartition("__mutmut_")[0] + "__mutmut_orig"
        fn = parse_name(name)[1].split(".")[-1]
        before = functions[path][orig].replace(f"def {orig}(", f"def {fn}(", 1)
        after = functions[path][mangled].replace(f"def {mangled}(", f"def {fn}(", 1)
        out[name] = "\n".join(difflib.unified_diff(
            before.splitlines(), after.splitlines(), path, path, lineterm=""))  # fmt: skip
    return out


def _removed_and_added(diff: str) -> tuple[list[str], list[str]]:
    """The lines a unified diff removes and adds (without their -/+ marks)."""
    lines = diff.splitlines()
    return ([ln[1:] for ln in lines if ln.startswith("-") and not ln.startswith("---")],
            [ln[1:] for ln in lines if ln.startswith("+") and not ln.startswith("+++")])  # fmt: skip


def changed_lines(diff: str) -> tuple[str, str]:
    """(the line before, the line after) of a one-line mutant's diff, stripped."""
    minus, plus = _removed_and_added(diff)
    return " / ".join(ln.strip() for ln in minus), " / ".join(ln.strip() for ln in plus)


def load_equivalent(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        entries = json.load(f)
    for i, e in enumerate(entries):
        missing = {"function", "from", "to", "reason"} - set(e)
        if missing or not e["reason"].strip():
            raise errors.InputError(f"{path}: entry {i} needs function, from, to and a reason.")
    return entries


def triage(name: str, diff: str, equivalent: list[dict]) -> dict | None:
    module, fn = parse_name(name)
    before, after = changed_lines(diff)
    for e in equivalent:
        if e["function"] == f"{module}.{fn}" and e["from"] == before and e["to"] == after:
            return e
    return None


def run_mutmut(names: list[str], max_children: int, log: str, save, every: float) -> None:
    """`mutmut run` of `names` (patterns or mutant names), its output appended to `log`; `save()`
    every `every` seconds while it runs and once at the end, also when stopped (Ctrl-C, SIGTERM:
    mutmut is interrupted first, so that it records what it finished)."""
    env = dict(os.environ)
    env["MLRPL_JAX_TEST_CACHE_DIR"] = os.path.join(MUTANTS, ".jax_cache")
    env.pop("XLA_FLAGS", None)
    os.makedirs(env["MLRPL_JAX_TEST_CACHE_DIR"], exist_ok=True)
    with open(log, "a") as f:
        f.write(f"\n# {datetime.datetime.now().isoformat(timespec='seconds')}: mutmut run "
                f"--max-children {max_children} ({len(names)} names or patterns)\n")  # fmt: skip
        f.flush()
        proc = subprocess.Popen(["mutmut", "run", "--max-children", str(max_children), *names],
                                cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            while True:
                try:
                    proc.wait(timeout=every)
                    break
                except subprocess.TimeoutExpired:
                    save()
        except BaseException:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
        finally:
            save()
    if proc.returncode != 0:
        raise RuntimeError(f"mutmut run exited with {proc.returncode}; its output: {log}")


def tests_fingerprint(root: str = ROOT) -> str:
    """A hash of what decides which tests mutmut runs and what they do: pyproject.toml's
    `[tool.mutmut]`, the test files it selects and the test directory's other modules (conftest,
    helpers)."""
    import tomllib

    with open(os.path.join(root, "pyproject.toml"), "rb") as f:
        settings = tomllib.load(f).get("tool", {}).get("mutmut", {})
    selected = {a for a in settings.get("pytest_add_cli_args_test_selection", [])
                if a.startswith("tests/") and "::" not in a}  # fmt: skip
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path in sorted(glob.glob(os.path.join(root, "tests", "*.py"))):
        name = os.path.basename(path)
        if name.startswith("test_") and f"tests/{name}" not in selected:
            continue
        with open(path, "rb") as f:
            digest.update(name.encode() + b"\0" + f.read())
    return digest.hexdigest()[:16]


def forget_stale_test_map(mutants_dir: str, root: str = ROOT) -> bool:
    """Delete mutmut's map of which tests call which function (`mutmut-stats.json`) when the tests
    changed since it was made: mutmut maps again only tests with new names, so a changed test
    would keep its old entry and never run against the functions it now calls. Returns whether
    it deleted it."""
    stats = os.path.join(mutants_dir, "mutmut-stats.json")
    mark = os.path.join(mutants_dir, "tests_fingerprint.txt")
    now = tests_fingerprint(root)
    old = None
    if os.path.exists(mark):
        with open(mark) as f:
            old = f.read().strip()
    stale = os.path.exists(stats) and old != now
    if stale:
        os.remove(stats)
    with open(mark, "w") as f:
        f.write(now + "\n")
    return stale


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def counts(statuses: list[str], equivalent: int) -> dict:
    killed = sum(s in ("killed", "timeout") for s in statuses)
    total = len(statuses)
    scored = total - equivalent - statuses.count("not checked")
    return {
        "mutants": total,
        "killed": killed,
        "timeout": statuses.count("timeout"),
        "equivalent": equivalent,
        "survived": statuses.count("survived") - equivalent,
        "no_tests": statuses.count("no tests"),
        "not_checked": statuses.count("not checked"),
        "other": total - killed - statuses.count("survived") - statuses.count("no tests")
        - statuses.count("not checked"),
        "kill_rate": round(100.0 * killed / scored, 1) if scored else None,
    }  # fmt: skip


def report(
    results: dict[str, str], equivalent_path: str, mutants: dict[str, Mutant], code: dict[str, str]
):
    """(markdown, summary) of `results` ({mutant name: status}); the survivors' diffs from
    `code`, the mutated modules `generate` made."""
    equivalent = load_equivalent(equivalent_path)
    survivors = sorted(n for n, s in results.items() if s == "survived")
    diffs = diffs_of(survivors, mutants, code)
    triaged, untriaged = {}, []
    for name in survivors:
        diff = diffs[name]
        entry = triage(name, diff, equivalent)
        if entry is None:
            untriaged.append((name, diff))
        else:
            triaged[name] = entry
    by_group, by_module = {}, {}
    for name in results:
        module, _ = parse_name(name)
        by_group.setdefault(group_of(module), []).append(name)
        by_module.setdefault(module, []).append(name)

    def row(label, names):
        c = counts([results[n] for n in names], sum(n in triaged for n in names))
        rate = "-" if c["kill_rate"] is None else f"{c['kill_rate']:.1f} %"
        return c, (f"| {label} | {c['mutants']} | {c['killed']} | {c['timeout']} | {c['equivalent']} | {c['survived']} "
                   f"| {c['no_tests']} | {c['not_checked'] + c['other']} | {rate} |")  # fmt: skip

    head = ("| | mutants | killed | of which timed out | equivalent | survived | no test calls it "
            "| not run / other | kill rate |\n|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    summary = {"groups": {}, "modules": {}}
    lines = ["## Per group", "", head]
    for group, _ in GROUPS:
        if group in by_group:
            c, text = row(
                group + (" (target 90 %)" if group in TARGET_GROUPS else ""), by_group[group]
            )
            summary["groups"][group] = c
            lines.append(text)
    lines += ["", "## Per module", "", head]
    for module in sorted(by_module):
        c, text = row(f"`{module}`", by_module[module])
        summary["modules"][module] = c
        lines.append(text)
    lines += ["", f"## Survivors not triaged ({len(untriaged)})", ""]
    for name, diff in untriaged:
        before, after = changed_lines(diff)
        lines += [f"`{name}`", "", "```diff", f"- {before}", f"+ {after}", "```", ""]
    lines += [f"## Survivors triaged as equivalent ({len(triaged)})", "",
              "| mutant | change | why it is equivalent |", "|---|---|---|"]  # fmt: skip
    for name, e in sorted(triaged.items()):
        lines.append(f"| `{name}` | `{e['from']}` → `{e['to']}` | {e['reason']} |")
    summary["untriaged_survivors"] = [n for n, _ in untriaged]
    return "\n".join(lines) + "\n", summary


# What the mutants and the tests that judge them are made from: a change elsewhere (the report
# this script writes, notes) does not make the results describe another code.
SOURCES = ("mlrpl_jax", "tests", "configs", "pyproject.toml", "scripts/mutation_preload.txt")


def git_commit(root: str = ROOT) -> str:
    """HEAD's short hash, with ' (with uncommitted changes)' if `SOURCES` differ from it."""
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *SOURCES],
                           cwd=root, capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    if done.returncode != 0:
        return "unknown (not a git checkout)"
    return done.stdout.strip() + (" (with uncommitted changes)" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max_children", type=int, default=os.cpu_count() or 1,
                        help="mutants run at once (default: one per core)")  # fmt: skip
    parser.add_argument("--rerun_survivors", action="store_true",
                        help="run the survivors and the mutants no test called again (after adding tests)")  # fmt: skip
    parser.add_argument("--rerun_timeouts", action="store_true",
                        help="run the mutants that timed out again (mutmut's limit is wall-clock "
                        "time: on a busy machine a starved mutant times out and counts as killed)")  # fmt: skip
    parser.add_argument("--report_only", action="store_true", help="write the report; run nothing")
    parser.add_argument("--only", nargs="*", default=None, metavar="PATTERN",
                        help="mutant name patterns to run (fnmatch), within the scope")  # fmt: skip
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "results", "mutation.md"))
    parser.add_argument("--root", default=ROOT,
                        help="the source tree whose mutants are scored (default: this checkout; "
                        "another only with --report_only)")  # fmt: skip
    parser.add_argument("--mutants_dir", default=None,
                        help="mutmut's working directory, whose verdicts are copied into --results "
                        "(default ROOT/mutants, where mutmut runs; --report_only may read another)")  # fmt: skip
    parser.add_argument(
        "--results",
        default=RESULTS,
        help="the verdicts so far, per function and its source's hash (committed)",
    )
    parser.add_argument(
        "--save_every",
        type=float,
        default=120.0,
        help="seconds between copies of mutmut's verdicts into --results",
    )
    parser.add_argument("--equivalent",
                        default=os.path.join(ROOT, "docs", "results", "mutation_equivalent.json"))  # fmt: skip
    args = parser.parse_args()
    with cli.user_errors():
        if args.max_children < 1:
            raise errors.InputError(f"--max_children={args.max_children}: must be 1 or more.")
        if args.save_every <= 0:
            raise errors.InputError(f"--save_every={args.save_every}: must be positive.")
        load_equivalent(args.equivalent)  # a malformed triage file fails before hours of work
        store = load_store(args.results)
        root = os.path.abspath(args.root)
        if not os.path.isfile(os.path.join(root, "pyproject.toml")):
            raise errors.InputError(f"--root={args.root}: no pyproject.toml there.")
        if args.mutants_dir is None:
            args.mutants_dir = os.path.join(root, "mutants")
        if not args.report_only and root != ROOT:
            raise errors.InputError(
                f"--root: mutmut runs in this checkout ({ROOT}); only --report_only reads another "
                "tree."
            )
        if not args.report_only and os.path.abspath(args.mutants_dir) != MUTANTS:
            raise errors.InputError(
                f"--mutants_dir: mutmut runs in {MUTANTS}; only --report_only reads another "
                "directory."
            )
        if not args.report_only:
            try:
                import mutmut  # noqa: F401
            except ImportError:
                raise errors.InputError(
                    "mutmut is not installed: pip install -e '.[mutation]'."
                ) from None
        elif not store["functions"] and not os.path.isdir(args.mutants_dir):
            raise errors.RunDirError(
                f"no results yet: {args.results} does not exist and {args.mutants_dir} is not a "
                "mutmut directory (run without --report_only)."
            )
        mutants, code = generate(root)

        def save() -> None:
            source = os.path.join(args.mutants_dir, "source_commit.txt")
            commit = git_commit(root)
            if os.path.exists(source):
                with open(source) as f:
                    commit = f.read().strip()
            if os.path.isdir(args.mutants_dir) and harvest(
                store, mutants, args.mutants_dir, commit
            ):
                save_store(store, args.results)

        save()  # a run on this machine that stopped before its last save
        if not args.report_only:
            signal.signal(signal.SIGTERM, _interrupt)
            log = os.path.join(MUTANTS, "mutation_log.txt")
            os.makedirs(MUTANTS, exist_ok=True)
            forget_stale_test_map(MUTANTS)
            start = time.time()
            results = verdicts(store, mutants)
            wanted = ("not checked",)
            if args.rerun_survivors or args.rerun_timeouts:
                wanted = (("survived", "no tests") if args.rerun_survivors else ()) + (
                    ("timeout",) if args.rerun_timeouts else ()
                )
            names = [n for n, s in sorted(results.items()) if s in wanted
                     and (args.only is None or any(fnmatch.fnmatchcase(n, p) for p in args.only))]  # fmt: skip
            with open(os.path.join(MUTANTS, "source_commit.txt"), "w") as f:
                f.write(git_commit() + "\n")  # what the mutants are made from (the report says)
            if names:
                print(f"mutmut run: {len(names)} mutants; log: {log}", flush=True)
                try:
                    run_mutmut(run_names(names, mutants), args.max_children, log, save,
                               args.save_every)  # fmt: skip
                except KeyboardInterrupt:
                    done = sum(s != "not checked" for s in verdicts(store, mutants).values())
                    print(f"stopped; {done} of {len(mutants)} mutants have a verdict in "
                          f"{args.results} (the same command resumes)", file=sys.stderr)  # fmt: skip
                    sys.exit(130)
            print(f"mutmut took {time.time() - start:.0f} s", flush=True)
        results = verdicts(store, mutants)
        body, summary = report(results, args.equivalent, mutants, code)
        commits = {}
        for name, status in results.items():
            if status != "not checked":
                c = store["functions"][mutants[name].function].get("commit", "unknown")
                commits[c] = commits.get(c, 0) + 1
        runs = ", ".join(f"{c} ({n})" for c, n in sorted(commits.items(), key=lambda x: -x[1]))
        header = (
            "# Mutation score of the numerical core\n\n"
            f"Produced by `python scripts/mutation_score.py` (mutmut, configured in pyproject.toml "
            f"`[tool.mutmut]`) from `{os.path.relpath(args.results, ROOT)}`, "
            f"{datetime.date.today().isoformat()}: the mutants of the code at {git_commit(root)}, "
            f"their verdicts from runs at {runs or 'none yet'} (commit, verdicts; a verdict "
            "counts while its function's source is unchanged). Each mutant changes one operator, "
            "constant, string or argument of one function and is run against the fast tests that "
            "call that function (mutmut's per-test statistics over the core's test files), "
            "fastest first; 'killed' means one of them failed (or ran past mutmut's time limit). "
            "Equivalent mutants (no test can tell them apart; the reasons are below) leave the "
            "denominator. Lines that hold only message text are not mutated (pyproject.toml "
            "`do_not_mutate_patterns`: such a mutant rewords an error; the tests match what an "
            "error must name, and the mutants of the `raise` line itself stay).\n\n"
        )
        pending = sum(c["not_checked"] for c in summary["groups"].values())
        total = sum(c["mutants"] for c in summary["groups"].values())
        if pending:
            header += (f"**Partial:** {pending} of the {total} mutants in scope have not "
                       "run yet (`python scripts/mutation_score.py` resumes).\n\n")  # fmt: skip
        if any(c.split()[0] != git_commit(root).split()[0] for c in commits):
            header += ("**Tests may have changed since** a verdict's run: a survivor below may be "
                       "killed by a newer test; `python scripts/mutation_score.py "
                       "--rerun_survivors` runs them again.\n\n")  # fmt: skip
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out + ".tmp", "w") as f:
            f.write(header + body)
        os.replace(args.out + ".tmp", args.out)
        atomic_write_json(os.path.splitext(args.out)[0] + ".json", summary)
        for group, c in summary["groups"].items():
            print(f"{group}: {c['killed']}/{c['mutants'] - c['equivalent']} killed "
                  f"({c['kill_rate']} %), {c['survived']} survived, {c['no_tests']} without tests")  # fmt: skip
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
