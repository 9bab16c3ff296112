"""The package as published: what the wheel and the sdist hold, the declared versions, and
the install hint when the ``deep`` extra is missing."""

import ast
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "recommender"
# Never copied into the build tree: environments, caches and earlier build output.
NOT_SOURCE = shutil.ignore_patterns(".venv", ".nox", ".git", "var", "__pycache__", "*.pyc", ".ruff_cache",
                                    "build", "dist", "*.egg-info", ".pytest_cache")
BUILD = ("import sys\nfrom setuptools import build_meta as backend\n"
         "backend.build_wheel(sys.argv[1]) if sys.argv[2] == 'wheel' else backend.build_sdist(sys.argv[1])\n")


def _build(tree, kind, out):
    """Build a wheel or an sdist of ``tree`` into ``out`` with the declared backend; return its path."""
    result = subprocess.run([sys.executable, "-c", BUILD, str(out), kind], cwd=tree, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return next(out.glob("*.whl" if kind == "wheel" else "*.tar.gz"))


def _wheel_names(wheel):
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A wheel and an sdist built from a copy of the working tree (the tree itself stays clean)."""
    base = tmp_path_factory.mktemp("packaging")
    tree = base / "tree"
    shutil.copytree(ROOT, tree, ignore=NOT_SOURCE)
    out = base / "dist"
    return _build(tree, "wheel", out), _build(tree, "sdist", out)


def _tree_files(folder, pattern="*"):
    return {p.relative_to(ROOT).as_posix() for p in folder.rglob(pattern)
            if p.is_file() and "__pycache__" not in p.parts}


def test_wheel_holds_the_package_data_and_nothing_else(built):
    names = _wheel_names(built[0])
    assert "recommender/py.typed" in names
    for folder, pattern in ((PACKAGE / "templates", "*"), (PACKAGE / "static", "*"),
                            (PACKAGE / "locale", "*.mo"), (PACKAGE / "migrations", "*.py")):
        wanted = _tree_files(folder, pattern)
        assert wanted, folder
        assert wanted <= names, sorted(wanted - names)
    tops = {name.split("/")[0] for name in names}
    assert tops == {"recommender", built[0].name.split("-py3")[0] + ".dist-info"}, tops


def test_sdist_holds_the_package_and_its_docs_but_no_test_suite(built):
    sdist = built[1]
    with tarfile.open(sdist) as tf:
        names = {m.name.split("/", 1)[1] for m in tf.getmembers() if "/" in m.name}
    tops = {name.split("/")[0] for name in names}
    assert tops == {"recommender", "docs", "django_shop_recommender.egg-info", "PKG-INFO", "pyproject.toml",
                    "setup.cfg", "README.md", "LICENSE", "CHANGELOG.md", "MANIFEST.in"}, tops
    assert "recommender/py.typed" in names
    assert "docs/install.md" in names
    assert _tree_files(PACKAGE / "locale", "*.mo") <= names
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)


def test_wheel_built_from_the_sdist_equals_the_wheel_built_from_the_tree(built, tmp_path):
    with tarfile.open(built[1]) as tf:
        tf.extractall(tmp_path, filter="data")
    tree = next(p for p in tmp_path.iterdir() if p.is_dir())
    assert _wheel_names(_build(tree, "wheel", tmp_path / "dist")) == _wheel_names(built[0])


def _matrix():
    """PYTHONS and DJANGOS as written in noxfile.py (read, not imported: nox need not be installed)."""
    found = {}
    for node in ast.parse((ROOT / "noxfile.py").read_text()).body:
        target = node.targets[0] if isinstance(node, ast.Assign) else None
        if isinstance(target, ast.Name) and target.id in ("PYTHONS", "DJANGOS"):
            found[node.targets[0].id] = ast.literal_eval(node.value)
    return found["PYTHONS"], found["DJANGOS"]


def test_metadata_declares_the_versions_the_matrix_tests(built):
    pythons, djangos = _matrix()
    with zipfile.ZipFile(built[0]) as zf:
        meta = Parser().parsestr(next(zf.read(n).decode() for n in zf.namelist() if n.endswith("/METADATA")))
    classifiers = meta.get_all("Classifier")
    declared_pythons = [c.rsplit(" :: ", 1)[1] for c in classifiers
                        if c.startswith("Programming Language :: Python :: 3.")]
    declared_djangos = [c.rsplit(" :: ", 1)[1] for c in classifiers if c.startswith("Framework :: Django :: ")]
    assert declared_pythons == pythons
    assert declared_djangos == djangos
    assert meta["Requires-Python"] == f">={pythons[0]}"
    django = next(Requirement(r) for r in meta.get_all("Requires-Dist") if r.lower().startswith("django"))
    for version in djangos:
        assert django.specifier.contains(f"{version}.0") and django.specifier.contains(f"{version}.99")
    major, minor = map(int, djangos[-1].split("."))
    assert not django.specifier.contains(f"{major}.{minor + 1}.0"), "an untested Django release is allowed"
    # The demo and test requirements allow the same Django releases as the package.
    pinned = next(Requirement(line) for line in (ROOT / "requirements.txt").read_text().splitlines()
                  if line.lower().startswith("django>") or line.lower().startswith("django="))
    assert pinned.specifier == django.specifier
    assert meta["License-Expression"] == "MIT"
    assert "deep" in meta.get_all("Provides-Extra")


def test_missing_tensorflow_error_names_the_deep_extra():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(Requirement(r).name == "tensorflow" for r in extras["deep"])
    script = (
        "import sys\n"
        "class NoTensorFlow:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('tensorflow', 'keras'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, NoTensorFlow())\n"
        "import scipy.sparse as sp\n"
        "from recommender.engine.deep import TwoTower\n"
        "X = sp.random(20, 10, density=0.3, format='csr', random_state=0)\n"
        "try:\n"
        "    TwoTower(epochs=1).fit(X)\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc.name, exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ImportError keras "), result.stdout
    assert "pip install 'django-shop-recommender[deep]'" in result.stdout


def test_typed_settings_attributes_are_the_settings():
    from recommender.conf import DEFAULTS, RecommenderSettings

    typed = set(RecommenderSettings.__annotations__)
    assert typed == set(DEFAULTS), f"untyped: {sorted(set(DEFAULTS) - typed)}; unknown: {sorted(typed - set(DEFAULTS))}"
