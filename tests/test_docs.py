"""The documentation site: it builds with ``mkdocs build --strict`` (a broken link or anchor is an error), its
generated reference pages list every spec key and every command and flag, and the committed copies of those pages
are what the code generates today."""

from __future__ import annotations

import argparse
import html
import importlib.util
import os
import re
import subprocess
import sys
import typing

import pytest

from tests.conftest import REPO
from tests.spec_fields import spec_fields

DOCS = REPO / "docs"


@pytest.fixture(scope="module")
def gen():
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_site_builds_strict(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"), "-d", str(site)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    spec_page = (site / "reference" / "spec" / "index.html").read_text()
    assert "promotion.gate.min_lift_over_baseline" in spec_page and "hpo promote" in (site / "reference" / "cli" / "index.html").read_text()
    assert (site / "search" / "search_index.json").is_file()  # search is built in, no network
    assert not (site / "gen_reference.py").exists()  # the generator is not published as a page asset


def test_the_spec_reference_lists_every_key_with_its_type_default_and_description(gen):
    text = gen.spec_reference()
    rows: dict[str, list[list[str]]] = {}
    for line in text.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in line.split("|")[1:-1]]
            rows.setdefault(cells[0], []).append(cells)
    fields = spec_fields()
    assert len(fields) > 80  # the walk reaches the nested models
    for path, field in fields:
        # the members of a union (search_space.NAME) share a path: one of its rows must be this field's
        found = [
            (key, kind, default, description)
            for key, kind, default, description in rows.get(f"`{path}`", [])
            if description == html.escape(field.description, quote=False).replace("|", "\\|")
        ]
        assert found, f"{path} is missing from the spec reference, or its description differs"
        _, kind, default, _ = found[0]
        assert (default == "required") == field.is_required(), path
        for allowed in _literal_values(field.annotation):
            assert f"`{allowed}`" in kind, (path, allowed)


def _literal_values(annotation: object) -> list[object]:
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    if typing.get_origin(annotation) in (list, dict):
        return []
    return [v for arg in typing.get_args(annotation) for v in _literal_values(arg)]


def test_the_spec_reference_shows_bounds(gen):
    text = gen.spec_reference()
    row = next(line for line in text.splitlines() if line.startswith("| `data.validation_fraction`"))
    assert "> 0.0" in row and "< 0.5" in row and "`0.2`" in row
    row = next(line for line in text.splitlines() if line.startswith("| `budget.num_trials`"))
    assert "≥ 1" in row
    assert "Values are taken as written" in text  # strict for every key, said once


def test_the_cli_reference_lists_every_command_and_flag(gen):
    from hpo.cli import _parser

    text = gen.cli_reference()
    parser = _parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"sweep", "submit", "resume", "status", "promote", "dashboard"} <= set(commands)
    sections = re.split(r"^## ", text, flags=re.M)
    for name, sub in commands.items():
        section = next((s for s in sections if s.startswith(f"hpo {name}\n")), None)
        assert section is not None, f"hpo {name} is missing from the CLI reference"
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            for flag in action.option_strings or [action.metavar or action.dest.upper()]:
                assert f"`{flag}`" in section, (name, flag)
            assert action.help and action.help in section, (name, action.dest)
    assert "`--debug`" in sections[0]


def test_the_committed_reference_pages_are_what_the_code_generates(gen):
    for page, content in gen.render().items():
        committed = (DOCS / page).read_text()
        assert committed == content, f"docs/{page} is stale: run .venv/bin/python docs/gen_reference.py"


def test_the_readme_is_a_front_door_whose_links_resolve():
    """At most 150 lines, and every relative link (to docs/*.md, as GitHub shows them) names a file and a heading
    that exist."""
    from markdown.extensions.toc import slugify

    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    assert sum(link.startswith("docs/") for link in links) >= 10
    for link in links:
        if "://" in link:
            continue
        path, _, anchor = link.partition("#")
        target = REPO / path
        assert target.is_file(), link
        if anchor:
            headings = re.findall(r"^#+ (.+)$", target.read_text(), flags=re.M)
            assert anchor in {slugify(h, "-") for h in headings}, link
