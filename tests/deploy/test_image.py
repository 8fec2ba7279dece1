"""The Docker image and docker-compose.yml, checked without Docker (the tests may run where no engine is).

The image: the build context is the repository filtered by .dockerignore (Docker's matching rules, the part
of them the file uses); the Dockerfile's instructions are interpreted into a directory standing for the
image's root (FROM, ENV, WORKDIR, COPY, USER, EXPOSE, CMD), and its RUN commands run or are emulated:
`pip install` into a fresh virtualenv, non-editable and without network (the dependencies, and the build
backend, come from the project's .venv through a plain path line in a .pth file, which does not activate
the .venv's editable finder: the checks below assert that the installed copy is what gets imported),
`python manage.py ...` as it is, `rm`, `mkdir`, `chown` and `useradd` inside the image root. Then the
image's commands run there with the environment docker-compose.yml gives its services: `check --deploy`,
gunicorn's `--check-config` with the CMD, the Celery app of worker and beat, and every module imported
from the installed copy. Any instruction or command the interpreter does not know fails the test.

docker-compose.yml: every variable of the README's configuration table and of the code's environment reads
reaches the services that need it, the image is built once, beat's schedule is writable, and web's
healthcheck passes Django's host and HTTPS checks.
"""

from __future__ import annotations

import ast
import glob
import json
import os
import posixpath
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import sysconfig
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMMAND_TIMEOUT = 180  # seconds, for each command run in the image

# Top-level packages of the repository that are not the service (and must not be in the image).
DEV_ONLY_PACKAGES = {"tests"}

# What an operator puts in the .env beside docker-compose.yml for a production `docker compose up`.
OPERATOR_ENV = {
    "SECRET_KEY": secrets.token_urlsafe(50),
    "POSTGRES_PASSWORD": secrets.token_urlsafe(16),
    "ALLOWED_HOSTS": "billing.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://billing.example.com",
    "BEHIND_TLS_PROXY": "true",
    "STRIPE_SECRET_KEY": "sk_test_deploycheck",
    "STRIPE_WEBHOOK_SECRET": "whsec_deploycheck",
    "CHECKOUT_ALLOWED_ORIGINS": "https://app.example.com",
    "CREEM_API_KEY": "creem_test_deploycheck",
    "CREEM_WEBHOOK_SECRET": "whsec_creem_deploycheck",
}

# `manage.py check --deploy` warnings accepted with OPERATOR_ENV, each with why; any other one fails.
ACCEPTED_DEPLOY_WARNINGS = {
    "security.W004": "SECURE_HSTS_SECONDS: HSTS is the TLS proxy's header, it serves the whole domain",
    "security.W005": "SECURE_HSTS_INCLUDE_SUBDOMAINS: the operator's call for their domain (README, production checklist)",
    "security.W021": "SECURE_HSTS_PRELOAD: the operator's call for their domain (README, production checklist)",
}

# Variables (README table or read by the code) that no docker-compose service gets, each with why.
NOT_FOR_COMPOSE = {
    "PORT": "make run's port; compose publishes web on the host port ${PORT} instead (checked)",
    "EMBEDDED_PGDATA": "the embedded PostgreSQL of make run and the tests; compose always sets DATABASE_URL",
    "TEST_DATABASE_NAME": "the database the test suite creates",
    "BENCH_ENDPOINTS": "benchmark-only routes (bench/), off in every deployment",
}
# Only the HTTP server needs these: web gets them, the Celery worker and beat need not.
WEB_ONLY = {"ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "BEHIND_TLS_PROXY", "WEB_CONCURRENCY", "WEB_THREADS",
            "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD"}
# Set by docker-compose.yml to its own services (the value's start), not taken from the operator.
SET_BY_COMPOSE = {"DATABASE_URL": "postgres://", "CELERY_BROKER_URL": "redis://", "DEBUG": "false"}
APP_SERVICES = ("web", "worker", "beat")


# --- .dockerignore: Docker's rules (moby/patternmatcher), the part .dockerignore uses ---


@dataclass(frozen=True)
class IgnorePattern:
    text: str
    regex: re.Pattern[str]
    exclusion: bool  # a `!` line: re-includes what earlier lines excluded


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A pattern matches a whole path from the context root: `*` and `?` within one name, `**` any number of
    directories (`**/` also none), `[...]` a character class."""
    out, i = ["^"], 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
            out.append(".*" if i == len(pattern) else "(?:.*/)?")
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.find("]", i + 2)
            assert end != -1, f".dockerignore: unclosed [ in {pattern!r}"
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body[0] in "!^" else body) + "]")
            i = end + 1
            continue
        elif char == "\\":
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(char))
        i += 1
    out.append("$")
    return re.compile("".join(out))


def dockerignore_patterns(text: str) -> list[IgnorePattern]:
    patterns = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclusion = line.startswith("!")
        if exclusion:
            line = line[1:].strip()
        line = posixpath.normpath(line)  # Docker cleans the pattern, and a leading / is the context root
        if len(line) > 1:
            line = line.lstrip("/")
        patterns.append(IgnorePattern(line, _glob_regex(line), exclusion))
    return patterns


def is_ignored(path: str, patterns: list[IgnorePattern]) -> bool:
    """Whether `path` (relative, with /) stays out of the context: the last pattern matching it, or one of
    its parent directories, decides."""
    parts = path.split("/")
    parents = ["/".join(parts[: i + 1]) for i in range(len(parts) - 1)]
    matched = False
    for pattern in patterns:
        if pattern.exclusion != matched:
            continue
        if pattern.regex.match(path) or any(pattern.regex.match(parent) for parent in parents):
            matched = not pattern.exclusion
    return matched


def build_context(source: Path, target: Path, patterns: list[IgnorePattern]) -> None:
    """Copies `source` less what `patterns` ignore. An ignored directory is not walked when no `!` pattern
    could re-include something in it (as Docker does)."""
    exceptions = [p.text for p in patterns if p.exclusion]
    for dirpath, dirnames, filenames in os.walk(source):
        rel_dir = Path(dirpath).relative_to(source).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        kept = []
        for name in sorted(dirnames):
            rel = rel_dir + name
            if is_ignored(rel, patterns) and not any(e.startswith(rel + "/") or "*" in e for e in exceptions):
                continue
            kept.append(name)
            if not is_ignored(rel, patterns):
                (target / rel).mkdir(parents=True, exist_ok=True)
        dirnames[:] = kept
        for name in filenames:
            rel = rel_dir + name
            if not is_ignored(rel, patterns):
                (target / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(dirpath) / name, target / rel, follow_symlinks=False)


# --- Dockerfile: the instructions and RUN commands ours uses ---


class Unsupported(AssertionError):
    """The Dockerfile uses something this interpreter does not know: teach it (here) rather than skip it."""


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


def dockerfile_instructions(text: str) -> list[Instruction]:
    instructions, buffer, start = [], "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # comments, also inside a continued instruction (Docker drops them there too)
        start = start or number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        keyword, _, args = (buffer + stripped).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        buffer, start = "", 0
    assert not buffer, "the Dockerfile ends in a line continuation"
    return instructions


def shell_commands(script: str) -> list[list[str]]:
    """`a && b && c` as argument lists; any other shell operator is Unsupported."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token == "&&":
            commands.append([])
        elif token and set(token) <= set("();<>|&"):
            raise Unsupported(f"shell operator {token!r} in {script!r}")
        else:
            commands[-1].append(token)
    assert all(commands), f"empty command in {script!r}"
    return commands


def split_assignments(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """`A=1 B=2 cmd args` → ({A: 1, B: 2}, [cmd, args])."""
    env = {}
    while argv and re.fullmatch(r"[A-Za-z_]\w*=.*", argv[0]):
        name, _, value = argv[0].partition("=")
        env[name] = value
        argv = argv[1:]
    return env, argv


@dataclass
class Image:
    """The image being built: `root` stands for its /, its Python is the fresh virtualenv `venv`."""

    root: Path
    context: Path
    venv: Path
    home: Path
    base: str = ""
    workdir: str = "/"
    env: dict[str, str] = field(default_factory=dict)
    user: str = "root"
    users: dict[str, int | None] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)  # image path → the user a chown gave it to
    exposed: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def path(self, *image_path: str) -> Path:
        """The host path of an image path (relative ones from WORKDIR); never outside the root."""
        absolute = posixpath.normpath(posixpath.join(self.workdir, *image_path))
        host = self.root / absolute.lstrip("/")
        assert host == self.root or self.root in host.parents, f"{image_path!r} leaves the image"
        return host

    def process_env(self, extra: Mapping[str, str] = {}) -> dict[str, str]:
        """A clean environment (nothing of this test process: no DJANGO_SETTINGS_MODULE, no DATABASE_URL),
        the Dockerfile's ENV, then `extra`."""
        base = {"PATH": f"{self.venv / 'bin'}:/usr/bin:/bin", "HOME": str(self.home), "LANG": "C.UTF-8"}
        return {**base, **self.env, **extra}

    def run(
        self, argv: list[str], env: Mapping[str, str] = {}, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Runs in the image (cwd: WORKDIR); fails the test, with the output, on a non-zero exit."""
        process = subprocess.run(
            argv,
            cwd=cwd or self.path("."),
            env=self.process_env(env),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        output = process.stdout + process.stderr
        if process.returncode:
            pytest.fail(f"`{shlex.join(argv)}` exited with {process.returncode} in the image:\n{output}")
        return process

    # -- instructions --

    def build(self, instructions: list[Instruction]) -> None:
        for instruction in instructions:
            handler = getattr(self, f"_{instruction.keyword.lower()}", None)
            if handler is None:
                raise Unsupported(f"Dockerfile line {instruction.line}: {instruction.keyword}")
            if "$" in instruction.args and instruction.keyword not in {"RUN", "CMD"}:
                raise Unsupported(f"Dockerfile line {instruction.line}: variable substitution")
            handler(instruction)

    def _from(self, instruction: Instruction) -> None:
        self.base = instruction.args

    def _env(self, instruction: Instruction) -> None:
        tokens = shlex.split(instruction.args)
        if "=" not in tokens[0]:  # the legacy `ENV NAME value`
            self.env[tokens[0]] = instruction.args.split(None, 1)[1]
            return
        for token in tokens:
            name, _, value = token.partition("=")
            self.env[name] = value

    def _workdir(self, instruction: Instruction) -> None:
        self.workdir = posixpath.normpath(posixpath.join(self.workdir, instruction.args))
        self.path(".").mkdir(parents=True, exist_ok=True)

    def _copy(self, instruction: Instruction) -> None:
        args = instruction.args
        tokens = json.loads(args) if args.startswith("[") else shlex.split(args)
        if any(token.startswith("--") for token in tokens):
            raise Unsupported(f"Dockerfile line {instruction.line}: COPY flags")
        *sources, dest = tokens
        into_directory = dest.endswith("/") or len(sources) > 1 or dest in {".", "./"}
        for source in sources:
            matches = sorted(glob.glob(source, root_dir=self.context)) or [source]
            for match in matches:
                src = (self.context / match).resolve()
                assert src == self.context or self.context in src.parents, f"COPY {source} leaves the context"
                assert src.exists(), (
                    f"Dockerfile line {instruction.line}: COPY {match}: not in the build context"
                )
                if src.is_dir():  # a directory's content, not the directory
                    shutil.copytree(src, self.path(dest), symlinks=True, dirs_exist_ok=True)
                else:
                    target = (
                        self.path(dest) / src.name if into_directory or len(matches) > 1 else self.path(dest)
                    )
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, target, follow_symlinks=False)

    def _run(self, instruction: Instruction) -> None:
        if instruction.args.startswith("["):
            raise Unsupported(f"Dockerfile line {instruction.line}: RUN in exec form")
        for argv in shell_commands(instruction.args):
            env, argv = split_assignments(argv)
            command = getattr(self, f"_cmd_{argv[0].replace('-', '_')}", None)
            if command is None:
                raise Unsupported(f"Dockerfile line {instruction.line}: RUN {shlex.join(argv)}")
            command(argv[1:], env)

    def _user(self, instruction: Instruction) -> None:
        self.user = instruction.args.split(":")[0]

    def _expose(self, instruction: Instruction) -> None:
        self.exposed += instruction.args.split()

    def _cmd(self, instruction: Instruction) -> None:
        args = instruction.args
        self.cmd = json.loads(args) if args.startswith("[") else ["/bin/sh", "-c", args]

    # -- RUN commands --

    def _cmd_pip(self, argv: list[str], env: dict[str, str]) -> None:
        assert argv and argv[0] == "install", f"RUN pip {shlex.join(argv)}: only pip install is known"
        assert not {"-e", "--editable"} & set(argv), "the image must install the project, not link it (-e)"
        # No network: the dependencies and the build backend are the .venv's (the .pth line).
        self.run(
            [
                str(self.python),
                "-m",
                "pip",
                "install",
                "--no-deps",
                "--no-build-isolation",
                "--no-index",
                *argv[1:],
            ],
            env,
        )

    def _cmd_python(self, argv: list[str], env: dict[str, str]) -> None:
        if argv[:2] == ["-m", "pip"]:
            self._cmd_pip(argv[2:], env)
        else:
            self.run([str(self.python), *argv], env)

    def _cmd_rm(self, argv: list[str], env: dict[str, str]) -> None:
        options = [a for a in argv if a.startswith("-")]
        assert set("".join(options)) <= set("-rf"), f"rm {options}"
        for pattern in (a for a in argv if not a.startswith("-")):
            for match in glob.glob(pattern, root_dir=self.path(".")):
                target = self.path(match)
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                else:
                    target.unlink()

    def _cmd_mkdir(self, argv: list[str], env: dict[str, str]) -> None:
        for directory in (a for a in argv if not a.startswith("-")):
            self.path(directory).mkdir(parents="-p" in argv, exist_ok="-p" in argv)

    def _cmd_useradd(self, argv: list[str], env: dict[str, str]) -> None:
        uid = None
        for i, arg in enumerate(argv):
            if arg in {"-u", "--uid"}:
                uid = int(argv[i + 1])
            elif arg.startswith("--uid="):
                uid = int(arg.split("=", 1)[1])
        self.users[argv[-1]] = uid

    def _cmd_chown(self, argv: list[str], env: dict[str, str]) -> None:
        owner, *paths = (a for a in argv if not a.startswith("-"))
        owner = owner.split(":")[0]
        assert owner in self.users, f"chown to {owner}, a user no RUN useradd created"
        for path in paths:
            assert self.path(path).exists(), f"chown {path}: not in the image"
            self.owners[posixpath.normpath(posixpath.join(self.workdir, path))] = owner


def purelib(python: Path | str) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    ).stdout
    return Path(out.strip())


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    """The image built from the Dockerfile (all its RUN steps: pip install, collectstatic...)."""
    tmp = tmp_path_factory.mktemp("image").resolve()
    context = tmp / "context"
    context.mkdir()
    build_context(REPO, context, dockerignore_patterns((REPO / ".dockerignore").read_text()))

    # A fresh virtualenv of the same Python; the .venv's site-packages is appended to its path by a plain
    # line in a .pth file: its own .pth files (the editable install's finder) are not processed.
    deps = Path(sysconfig.get_paths()["purelib"])
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (purelib(venv / "bin" / "python") / "_deps_from_dotvenv.pth").write_text(f"{deps}\n")
    backend = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import pip, setuptools; print(setuptools.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    if backend.returncode:
        pytest.fail(
            "pip install . needs pip and the build backend (setuptools>=69, pyproject.toml [build-system]) "
            f"in {deps} to build offline; add setuptools to the test extra:\n{backend.stderr}"
        )

    home = tmp / "home"
    home.mkdir()
    built = Image(root=tmp / "root", context=context, venv=venv, home=home)
    built.root.mkdir()
    built.build(dockerfile_instructions((REPO / "Dockerfile").read_text()))
    return built


# --- docker-compose.yml: the environment each service gets ---

_INTERPOLATION = re.compile(r"\$(?:(\$)|\{(\w+)(?:(:?[-?+])([^}]*))?\}|(\w+))")


class MissingRequired(Exception):
    pass


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, ${VAR:+alt}, $$."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(1):
            return "$"
        name, operator, argument = match.group(2) or match.group(5), match.group(3), match.group(4)
        value = env.get(name)
        absent = value is None or (operator is not None and operator.startswith(":") and value == "")
        if operator is None:
            return value or ""
        if operator.endswith("-"):
            return argument if absent else value
        if operator.endswith("+"):
            return "" if absent else argument
        if absent:
            raise MissingRequired(f"{name}: {argument}")
        return value

    return _INTERPOLATION.sub(substitute, value)


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def raw_environment(service: str) -> dict[str, str | None]:
    environment = compose()["services"][service].get("environment") or {}
    if isinstance(environment, list):
        environment = dict((item.split("=", 1) + [None])[:2] for item in environment)  # type: ignore[misc]
    for name, value in environment.items():
        assert value is None or isinstance(value, str), f"{service}: {name}: quote the value ({value!r})"
    return environment


def service_env(service: str, operator_env: Mapping[str, str] = OPERATOR_ENV) -> dict[str, str]:
    """What the service's container gets: a variable without a value is the operator's, or none."""
    resolved = {}
    for name, value in raw_environment(service).items():
        if value is None:
            if name in operator_env:
                resolved[name] = operator_env[name]
        else:
            resolved[name] = interpolate(value, operator_env)
    return resolved


# --- the image ---


def test_dockerignore_rules() -> None:
    patterns = dockerignore_patterns(
        "tests\n**/__pycache__\n*.egg-info\n**/*.py[cod]\n*.md\n!README.md\n/var\n"
    )
    assert is_ignored("tests/deploy/test_image.py", patterns)
    assert is_ignored("credits/api/__pycache__/views.cpython-312.pyc", patterns)
    assert is_ignored("__pycache__", patterns)
    assert is_ignored("billing_service.egg-info/PKG-INFO", patterns)
    assert is_ignored("credits/models.pyc", patterns)
    assert is_ignored("NOTES.md", patterns)
    assert is_ignored("var/pgdata/PG_VERSION", patterns)
    assert not is_ignored("README.md", patterns)
    assert not is_ignored("credits/tests.py", patterns)  # `tests` matches from the root only
    assert not is_ignored("credits/models.py", patterns)
    assert not is_ignored("docs/NOTES.md", patterns)  # `*` does not cross a /


def test_build_context_has_the_service_and_no_development_files(image: Image) -> None:
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")}
    in_context = {p.parent.name for p in image.context.glob("*/__init__.py")}
    assert in_context == packages - DEV_ONLY_PACKAGES
    for kept in ("manage.py", "pyproject.toml", "README.md"):
        assert (image.context / kept).is_file(), kept
    for left_out in (".git", ".venv", "var", "tests", "bench", "staticfiles", ".env"):
        assert not (image.context / left_out).exists(), left_out
    assert not list(image.context.rglob("__pycache__"))
    assert not list(image.context.glob("*.egg-info"))


def test_image_base_user_and_port(image: Image) -> None:
    python_version = re.fullmatch(r"python:(\d+)\.(\d+)[-.\w]*", image.base)
    assert python_version, f"FROM {image.base}: expected an official python image"
    assert tuple(map(int, python_version.groups())) >= (3, 12)  # pyproject.toml requires-python
    assert image.user not in {"root", "0", ""}, "the service must not run as root"
    assert image.users.get(image.user) not in {None, 0}, f"USER {image.user}: no useradd with a non-zero uid"
    assert image.exposed == ["8000"]


def test_image_installs_every_package_not_editable(image: Image, tmp_path: Path) -> None:
    """Imported from outside the image's WORKDIR, every module of the service is the installed copy (the
    wheel has every package and its data files), Django sets up, and the embedded PostgreSQL never starts."""
    site = purelib(image.python).resolve()
    packages = sorted(p.parent.name for p in image.path(".").glob("*/__init__.py"))
    script = """
import importlib, json, pkgutil, sys
import django
django.setup()
from django.apps import apps
from django.conf import settings
report = {
    "embedded_db": "billing_service.embedded_db" in sys.modules,
    "debug": settings.DEBUG,
    "eager": settings.CELERY_TASK_ALWAYS_EAGER,
    "apps": {config.name: config.path for config in apps.get_app_configs()},
    "editable_finders": [repr(f) for f in sys.meta_path if "editable" in repr(f).lower()],
    "modules": {},
}
def fail(name):
    raise  # the import error of a package pkgutil walks into
for name in json.loads(sys.argv[1]):
    package = importlib.import_module(name)
    report["modules"][name] = package.__file__
    for info in pkgutil.walk_packages(package.__path__, name + ".", onerror=fail):
        report["modules"][info.name] = importlib.import_module(info.name).__file__
print(json.dumps(report))
"""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**service_env("web"), "DJANGO_SETTINGS_MODULE": "billing_service.settings"}
    report = json.loads(
        image.run([str(image.python), "-c", script, json.dumps(packages)], env, cwd=elsewhere).stdout
    )

    assert not report["editable_finders"], "the .venv's editable install is active in the image's Python"
    assert not report["embedded_db"], "settings started (imported) the embedded PostgreSQL"
    assert report["debug"] is False
    assert report["eager"] is False, "web runs Celery tasks in-process: no CELERY_BROKER_URL"
    for name, path in report["modules"].items():
        assert site in Path(path).resolve().parents, f"{name} imported from {path}, not the installed copy"
    apps = {package for package in packages if image.path(package, "apps.py").is_file()}
    assert apps <= report["apps"].keys(), f"not in INSTALLED_APPS: {apps - report['apps'].keys()}"
    for name in apps:
        assert site in Path(report["apps"][name]).resolve().parents, f"app {name}: {report['apps'][name]}"

    # Package data: each package's files (templates...) are all installed.
    def files(directory: Path) -> set[Path]:
        return {
            p.relative_to(directory)
            for p in directory.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }

    for package in packages:
        source, installed = files(image.path(package)), files(site / package)
        assert source == installed, (
            f"{package}: missing from the wheel: {sorted(map(str, source - installed))}"
        )


def test_image_collected_static_files(image: Image) -> None:
    static = image.path("staticfiles")
    assert (static / "admin" / "css" / "base.css").is_file()
    assert (static / "admin" / "css" / "base.css.gz").is_file(), "not compressed (whitenoise storage)"
    assert list(static.glob("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js*")), (
        "API docs assets"
    )


def test_image_check_deploy_with_compose_web_env(image: Image) -> None:
    process = image.run([str(image.python), "manage.py", "check", "--deploy"], service_env("web"))
    output = process.stdout + process.stderr
    warnings = set(re.findall(r"\(([\w.]+\.W\d+)\)", output))
    unexpected = warnings - set(ACCEPTED_DEPLOY_WARNINGS)
    assert not unexpected, f"check --deploy warns: {sorted(unexpected)}\n{output}"


def test_image_cmd_runs(image: Image) -> None:
    """Each command of the CMD, without a database: manage.py's exists, gunicorn loads the application."""
    assert image.cmd[:2] == ["sh", "-c"], f"CMD {image.cmd}: expected the sh -c form"
    commands = shell_commands(image.cmd[2])
    assert commands[-1][0] == "exec", "the server must replace the shell (signals reach it: docker stop)"
    seen = []
    for argv in commands:
        argv = argv[1:] if argv[0] == "exec" else argv
        if argv[:2] == ["python", "manage.py"]:
            image.run([str(image.python), "manage.py", "help", argv[2]], service_env("web"))
        elif argv[0] == "gunicorn":
            # ${WEB_CONCURRENCY:-3} as sh expands it; python -m: the venv has no console scripts (its
            # dependencies are the .venv's).
            env = service_env("web")
            args = [interpolate(arg, {**image.env, **env}) for arg in argv[1:]]
            image.run([str(image.python), "-m", "gunicorn", "--check-config", *args], env)
        else:
            raise Unsupported(f"CMD: {shlex.join(argv)}")
        seen.append(argv[2] if argv[0] == "python" else argv[0])
    assert seen == ["migrate", "gunicorn"]


@pytest.mark.parametrize("service", ["worker", "beat"])
def test_image_runs_the_celery_app(image: Image, service: str) -> None:
    """The worker and beat commands of docker-compose.yml find the Celery app (from WORKDIR, as `celery -A`
    does) and every task the beat schedule sends; beat's schedule directory is the app user's."""
    argv = compose()["services"][service]["command"]
    assert argv[:4] == ["celery", "-A", "billing_service", service], argv
    script = """
import json, sys
from celery.app.utils import find_app
app = find_app(sys.argv[1])
import django
django.setup()
app.loader.import_default_modules()
scheduled = {entry["task"] for entry in app.conf.beat_schedule.values()}
print(json.dumps({"missing": sorted(scheduled - set(app.tasks)), "scheduled": len(scheduled),
                  "broker": app.conf.broker_url, "eager": app.conf.task_always_eager}))
"""
    report = json.loads(image.run([str(image.python), "-c", script, argv[2]], service_env(service)).stdout)
    assert report["scheduled"] and not report["missing"], report
    assert report["broker"].startswith("redis://redis:") and report["eager"] is False
    if service == "beat":
        schedule = next(a.split("=", 1)[1] for a in argv if a.startswith("--schedule="))
        assert image.owners.get(posixpath.dirname(schedule)) == image.user, (
            f"{schedule}: not writable by the app"
        )


# --- docker-compose.yml ---


def readme_variables() -> set[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Configuration (environment variables)", 1)[1].split("\n## ", 1)[0]
    names = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names |= set(re.findall(r"`([A-Z][A-Z0-9_]*)`", line.split("|")[1]))
    assert len(names) > 10, "the README's configuration table was not found"
    return names


def code_variables() -> set[str]:
    """The environment variables the service's code reads (os.environ.get / [], os.getenv, env_bool...)."""
    names = set()
    for package in (p.parent for p in REPO.glob("*/__init__.py") if p.parent.name not in DEV_ONLY_PACKAGES):
        for path in package.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                    func = ast.unparse(node.func)
                    if func in {"os.environ.get", "os.getenv", "env_bool", "env_list"}:
                        names.add(node.args[0].value)
                elif (
                    isinstance(node, ast.Subscript)
                    and ast.unparse(node.value) == "os.environ"
                    and isinstance(node.slice, ast.Constant)
                ):
                    names.add(node.slice.value)
    assert {"SECRET_KEY", "DATABASE_URL"} <= names
    return names


def needed_by_web() -> set[str]:
    return (readme_variables() | code_variables()) - set(NOT_FOR_COMPOSE)


def test_compose_exemptions_are_current() -> None:
    stale = set(NOT_FOR_COMPOSE) - readme_variables() - code_variables()
    assert not stale, f"NOT_FOR_COMPOSE names variables nothing reads: {stale}"
    for service in compose()["services"]:
        leaked = set(NOT_FOR_COMPOSE) & set(raw_environment(service))
        assert not leaked, f"{service} gets {leaked}"
    assert any("${PORT" in port for port in compose()["services"]["web"]["ports"]), (
        "web is not published on PORT"
    )


def test_compose_web_gets_every_configuration_variable() -> None:
    missing = needed_by_web() - set(raw_environment("web"))
    assert not missing, f"web does not get {sorted(missing)}"


@pytest.mark.parametrize("service", ["worker", "beat"])
def test_compose_celery_services_get_what_the_tasks_need(service: str) -> None:
    """Celery runs the same settings and tasks (Stripe charges, Stripe and Creem webhook reprocessing...)."""
    missing = needed_by_web() - WEB_ONLY - set(raw_environment(service))
    assert not missing, f"{service} does not get {sorted(missing)}"


@pytest.mark.parametrize("service", APP_SERVICES)
def test_compose_operator_values_reach_the_service(service: str) -> None:
    raw = raw_environment(service)
    env = service_env(service)
    for name, value in raw.items():
        if name in SET_BY_COMPOSE:
            assert env[name].startswith(SET_BY_COMPOSE[name]), f"{service}: {name}={env[name]}"
        else:  # passed through: no value, or one made of the same variable
            assert value is None or "${" + name in value, (
                f"{service}: {name}: {value!r} ignores the operator's"
            )
    for name in raw.keys() & OPERATOR_ENV.keys():
        assert env[name] == OPERATOR_ENV[name], f"{service}: {name}"
    assert f":{OPERATOR_ENV['POSTGRES_PASSWORD']}@db:" in env["DATABASE_URL"]
    with pytest.raises(MissingRequired):  # no default secret key in a container
        service_env(service, {k: v for k, v in OPERATOR_ENV.items() if k != "SECRET_KEY"})


def test_compose_builds_the_image_once() -> None:
    services = compose()["services"]
    web = services["web"]
    assert web.get("build") in (".", {"context": "."}), "web builds the Dockerfile"
    assert web.get("image"), "web names the image it builds, for worker and beat"
    for name in ("worker", "beat"):
        assert "build" not in services[name], f"{name} builds the image again"
        assert services[name].get("image") == web["image"], f"{name} does not run web's image"


def test_compose_beat_schedule_is_on_a_volume() -> None:
    beat = compose()["services"]["beat"]
    schedule = next(a.split("=", 1)[1] for a in beat["command"] if a.startswith("--schedule="))
    mounts = {volume.split(":")[1] for volume in beat.get("volumes", [])}
    assert posixpath.dirname(schedule) in mounts, f"{schedule}: not on a volume (lost with the container)"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "allowed_hosts", ["billing.example.com", ".example.com,billing.example.com", "*", None]
)
def test_compose_web_healthcheck_passes_host_and_https_checks(
    allowed_hosts: str | None, settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Web's healthcheck asks /healthz with a Host Django allows and as HTTPS (SECURE_SSL_REDIRECT on):
    else web stays unhealthy, and worker, which waits for it, never starts."""
    from django.test import Client

    test = compose()["services"]["web"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], test
    operator_env = {name: value for name, value in OPERATOR_ENV.items() if name != "ALLOWED_HOSTS"}
    if allowed_hosts is not None:
        operator_env["ALLOWED_HOSTS"] = allowed_hosts
    env = service_env("web", operator_env)  # unset: docker-compose.yml's default
    settings.ALLOWED_HOSTS = [h.strip() for h in env["ALLOWED_HOSTS"].split(",") if h.strip()]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_SSL_REDIRECT = True
    monkeypatch.setenv("ALLOWED_HOSTS", env["ALLOWED_HOSTS"])
    requests: list[urllib.request.Request] = []
    monkeypatch.setattr(urllib.request, "urlopen", lambda request, timeout=None: requests.append(request))
    exec(compile(interpolate(test[3], env), "healthcheck", "exec"), {})  # noqa: S102 (compose interpolates it)

    [request] = requests
    url = urlsplit(request.full_url)
    assert (url.hostname, url.port) == ("127.0.0.1", 8000)
    response = Client().get(
        url.path,
        HTTP_HOST=request.get_header("Host"),
        HTTP_X_FORWARDED_PROTO=request.get_header("X-forwarded-proto", ""),
    )
    assert response.status_code == 200, response.content
