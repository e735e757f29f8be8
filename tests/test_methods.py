"""The method registry: each method is one file defining METHOD, and nothing outside methods/
branches on a method's name."""

import re
from pathlib import Path

import pytest

from wdsp_cli.errors import InputError
from wdsp_cli.methods import METHODS, method

PACKAGE = Path(__file__).resolve().parents[1] / "wdsp_cli"


@pytest.mark.parametrize("name", METHODS)
def test_each_registered_method_is_its_own_file(name):
    assert method(name).name == name and (PACKAGE / "methods" / f"{name}.py").is_file()


def test_an_unknown_method_names_the_registered_ones():
    with pytest.raises(InputError, match="memit, pmet, alphaedit"):
        method("rome")


def test_no_module_outside_methods_compares_method_names():
    names = "|".join(METHODS)
    pattern = re.compile(rf"""(==|!=)\s*["']({names})["']|["']({names})["']\s*(==|!=)"""
                         rf"""|\b(if|elif)\b.*\bin\s*[(\[{{]\s*["']({names})["']""")
    offenders = [f"{path.relative_to(PACKAGE)}:{n}" for path in PACKAGE.rglob("*.py")
                 if path.parent.name != "methods"
                 for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []


def test_importing_the_registry_and_the_config_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, wdsp_cli.config, wdsp_cli.methods; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
