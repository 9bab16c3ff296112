"""The supported versions matrix: the SQLite test suite on each Python x Django pair.

    nox                          # every pair (./run matrix)
    nox -s "tests(python='3.13', django='6.0')" -- -k import   # one pair, pytest arguments after --
    nox --list                   # the pairs

Each pair gets its own virtualenv under .nox/ with requirements-dev.txt and that Django
release. Interpreters are looked up as ``python3.11``, ``python3.12`` and ``python3.13`` on
PATH (with pyenv: ``PYENV_VERSION=3.11.7:3.12.1:3.13.0``, which ``./run matrix`` sets).
"""

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

PYTHONS = ["3.11", "3.12", "3.13"]
DJANGOS = ["5.2", "6.0"]
# Django 6.0 requires Python >= 3.12.
MATRIX = [(py, dj) for py in PYTHONS for dj in DJANGOS if not (dj == "6.0" and py == "3.11")]


@nox.session
@nox.parametrize(("python", "django"), MATRIX)
def tests(session: nox.Session, django: str) -> None:
    """The test suite; on SQLite unless DATABASE_URL is set (service tests skip without REQUIRE_SERVICES=1)."""
    session.install("-r", "requirements-dev.txt", f"Django=={django}.*")
    session.run("python", "-m", "django", "--version")
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *session.posargs)
