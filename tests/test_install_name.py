"""Every install instruction names the distribution pyproject.toml builds.

The name ``retention`` on the package index belongs to an unrelated project, so an
instruction installing ``retention[...]`` would fetch someone else's code. The wheel built
under the real name and installed by it is tested in test_packaging.py (slow).
"""

from __future__ import annotations

import re
import tomllib

from conftest import ROOT

DIST = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
# The Dockerfile installs the wheel it built by its path: test_the_image_installs_... below.
DOCUMENTS = [
    "README.md",
    *sorted(
        str(p.relative_to(ROOT))
        for p in [*ROOT.glob("docs/*.md"), *ROOT.glob("deploy/**/*")]
        if p.is_file()
    ),
]
# `pip install [options] 'NAME[extras]'`: instructions quote the requirement (the brackets).
INSTALL = re.compile(r"pip install (?: ?\S+ )*?'([^'\[]+)")


def test_the_distribution_is_not_named_like_the_unrelated_project() -> None:
    assert DIST != "retention"
    assert DIST == "retention-enforcer"


def test_the_package_reads_its_version_under_the_distribution_name() -> None:
    source = (ROOT / "retention" / "__init__.py").read_text()
    assert f'version("{DIST}")' in source


def test_every_install_instruction_names_the_distribution() -> None:
    found: list[tuple[str, str]] = []
    for document in DOCUMENTS:
        for name in INSTALL.findall((ROOT / document).read_text()):
            found.append((document, name))
    assert found, "no install instruction found"
    wrong = [(doc, name) for doc, name in found if name not in (DIST, ".")]
    assert wrong == []
    documents = {doc for doc, name in found if name == DIST}
    assert {"README.md", "docs/operations.md", "deploy/systemd/retention.service"} <= documents


def test_the_image_installs_the_wheel_of_that_name() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"/dist/{DIST.replace('-', '_')}-*.whl" in dockerfile
