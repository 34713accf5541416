"""The pages render without a warning box where GitHub shows them: a
title's overline and underline are at least as long as the title (what
docutils warns of as "Title overline too short"), and no Sphinx-only
role is used, as plain docutils knows none of them."""
import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = sorted(glob.glob(os.path.join(ROOT, 'docs', '*.rst'))) + [
    os.path.join(ROOT, 'README.rst')]
_RULE = re.compile(r'([=\-~^"*#+`:.\'_])\1{2,}\Z')


def short_titles(lines):
    """``(line number, title)`` of each title whose lines are shorter."""
    found = []
    for number, line in enumerate(lines[1:], 1):
        above = lines[number - 1]
        if not _RULE.match(line) or not above.strip() or _RULE.match(above):
            continue
        overline = lines[number - 2] if number >= 2 else ''
        if len(line) < len(above) or (
                _RULE.match(overline) and len(overline) < len(above)):
            found.append((number, above))
    return found


@pytest.mark.parametrize('page', PAGES, ids=os.path.basename)
def test_titles_are_ruled_at_least_their_length(page):
    with open(page, encoding='utf-8') as f:
        lines = f.read().split('\n')
    assert short_titles(lines) == []


@pytest.mark.parametrize('page', PAGES, ids=os.path.basename)
def test_no_sphinx_only_role(page):
    with open(page, encoding='utf-8') as f:
        assert not re.findall(r':(?:doc|ref|class|func|meth|mod):`',
                              f.read())


def test_a_short_overline_is_found():
    assert short_titles(['====', 'Title', '=====']) == [(2, 'Title')]
    assert short_titles(['Title', '====']) == [(1, 'Title')]
    assert short_titles(['=====', 'Title', '=====', '', 'Text']) == []
