"""The test suite's own rules: helpers from one place, two tiers, services that leave the machine
as it was, and nothing skipped silently where CI requires it (tests/helpers/, tests/conftest.py)."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.helpers import ROOT
from tests.helpers import services
from tests.helpers.services import REQUIRE_SERVICES_ENV, START_SERVICES_ENV, unavailable


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def test_no_test_imports_another_test_file_or_conftest():
    offenders = [(path.name, module) for path in sorted((ROOT / "tests").rglob("*.py"))
                 for module in _imports(path)
                 if module == "tests.conftest" or module.split(".")[-1].startswith("test_")
                 or (module.startswith("tests.") and not module.startswith(("tests.helpers", "tests.fixtures")))]
    assert offenders == []


def test_benchmarks_find_the_repo_through_one_helper_not_sys_path_insert():
    scripts = sorted((ROOT / "benchmarks").glob("*.py"))
    inserting = [p.name for p in scripts if "sys.path.insert" in p.read_text() and p.name != "_repo.py"]
    assert inserting == []
    # Each script that imports the project runs from a clone as `python benchmarks/<name>.py`.
    needs_repo = [p for p in scripts if any(m.startswith(("rnnexp", "benchmarks")) for m in _imports(p))
                  and p.name not in ("_repo.py",)]
    helper = {"_repo", "benchmarks._repo"}  # a script imports _repo; mnist_common, imported after it, benchmarks._repo
    assert needs_repo and all(helper & set(_imports(p)) for p in needs_repo), [
        p.name for p in needs_repo if not helper & set(_imports(p))]


def test_a_benchmark_starts_from_a_clone_with_nothing_installed(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "tweets_padding.py"), "--help"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_default_run_is_the_fast_tier():
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "-m 'not slow'" in options["addopts"]
    assert any(m.startswith("slow:") for m in options["markers"])


def test_a_service_test_is_a_slow_test(request):
    conftest = next(p for p in request.config.pluginmanager.get_plugins()
                    if str(getattr(p, "__file__", "")).endswith(os.path.join("tests", "conftest.py")))

    class Item(SimpleNamespace):
        def get_closest_marker(self, name):
            return next((m for m in self.marks if m.name == name), None)

        def add_marker(self, mark):
            self.marks.append(mark.mark)

    items = [Item(marks=[pytest.mark.postgres.mark]), Item(marks=[pytest.mark.slurm.mark]), Item(marks=[])]
    conftest.pytest_collection_modifyitems(None, items)
    assert [bool(i.get_closest_marker("slow")) for i in items] == [True, True, False]


def test_a_missing_service_skips_and_fails_when_services_are_required(monkeypatch):
    monkeypatch.delenv(REQUIRE_SERVICES_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match=REQUIRE_SERVICES_ENV):
        unavailable("no such service")
    monkeypatch.setenv(REQUIRE_SERVICES_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="no such service"):
        unavailable("no such service")


def test_pytest_never_starts_slurm_unless_asked(monkeypatch):
    started = []
    monkeypatch.setattr(services, "_start", lambda script: started.append(script) or (True, "local"))
    monkeypatch.delenv("RNNEXP_SLURM_PARTITION", raising=False)
    monkeypatch.delenv(START_SERVICES_ENV, raising=False)
    monkeypatch.delenv(REQUIRE_SERVICES_ENV, raising=False)
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    with pytest.raises(pytest.skip.Exception, match=f"{START_SERVICES_ENV}=1 starts a local one"):
        services.slurm_partition()
    assert started == []
    monkeypatch.setenv(START_SERVICES_ENV, "1")
    assert services.slurm_partition() == "local" and started == ["start_slurm.sh"]


def _system_postgres():
    """What the machine's own PostgreSQL looks like: its clusters, its config tree, its servers."""
    clusters = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True).stdout \
        if shutil.which("pg_lsclusters") else ""
    config = sorted(str(p) for p in Path("/etc/postgresql").rglob("*")) if Path("/etc/postgresql").exists() else []
    # The system's servers (other users' own servers on a shared machine come and go: not compared).
    servers = subprocess.run(["pgrep", "-a", "postgres"], capture_output=True, text=True).stdout.splitlines()
    return clusters, config, sorted(line for line in servers if "/var/lib/postgresql" in line or "/etc/postgresql" in line)


def _processes_in(folder: Path):
    return [line for line in subprocess.run(["pgrep", "-a", "postgres"], capture_output=True, text=True).stdout.splitlines()
            if str(folder) in line]


@pytest.mark.postgres
def test_the_throwaway_server_lives_in_its_own_folder_and_leaves_nothing(tmp_path):
    import optuna

    bindir = services.postgres_bindir()
    if bindir is None:
        unavailable("no PostgreSQL server binaries: apt-get install -y postgresql")
    before = _system_postgres()
    server = services.ThrowawayPostgres(bindir)
    try:
        url = server.start()
        assert f"host={server.base}" in url and "localhost" not in url  # a Unix socket in its folder only
        study = optuna.create_study(study_name="s", storage=url)
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
        assert len(optuna.load_study(study_name="s", storage=url).trials) == 2
    finally:
        server.stop()
    assert not server.base.exists() and _processes_in(server.base) == []
    assert _system_postgres() == before


@pytest.mark.postgres
def test_start_postgres_gives_a_server_of_its_own_with_a_generated_password(tmp_path):
    if services.postgres_bindir() is None:
        unavailable("no PostgreSQL server binaries: apt-get install -y postgresql")
    before = _system_postgres()
    folder = Path(tempfile.mkdtemp(prefix="rnnexp-pg-script-"))  # reachable by the postgres user
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    env = {**os.environ, "RNNEXP_PG_DIR": str(folder / "server"), "RNNEXP_PG_PORT": str(services._free_port())}
    script = ROOT / "scripts" / "start_postgres.sh"
    try:
        first = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=120)
        assert first.returncode == 0, first.stderr
        url = first.stdout.strip()
        password = (folder / "server" / "password").read_text()
        assert url == f"postgresql://rnnexp:{password}@localhost:{env['RNNEXP_PG_PORT']}/optuna"
        assert len(password) == 24 and password.isalnum() and password != "rnnexp"
        again = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=120)
        assert again.stdout.strip() == url  # idempotent: the running server, the same password
        import optuna

        optuna.create_study(study_name="s", storage=url)
        assert optuna.get_all_study_names(storage=url) == ["s"]
    finally:
        subprocess.run(["bash", str(script), "--stop"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)
    assert _processes_in(folder) == []
    assert _system_postgres() == before


def test_the_readme_names_the_tiers_and_options_that_exist():
    import re

    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    for command in ("pytest -n auto\n", "pytest -n auto -m slow\n"):
        assert command in ci  # CI runs both tiers
    assert "pytest -n auto              # fast tier" in readme and "pytest -n auto -m slow      # slow tier" in readme
    assert all(f"export {name}=1" in ci or f" {name}=1" in ci
               for name in ("RNNEXP_REQUIRE_DATA", "RNNEXP_REQUIRE_SERVICES", "RNNEXP_START_SERVICES"))
    conf = ROOT / "conf"
    commands = "\n".join(line for line in readme.splitlines() if not line.startswith(("$ ", "error:")))  # not the bad-input examples
    for group, option in re.findall(r"(?<![\w.+])(cell|data|model|experiment|debug|logger|trainer|hparams_search)=(\w+)\b(?!\()", commands):
        assert (conf / group / f"{option}.yaml").is_file(), f"{group}={option}"
    for link in re.findall(r"\]\(((?:docs/)?[\w./-]+\.md)", readme):
        assert (ROOT / link).is_file(), link
    assert "trainer.max_steps=N" in readme  # how to make a run short
    assert len(readme.splitlines()) <= 240
