"""docs/security.rst's table of attacks names tests that exist."""
import importlib
import os
import re

DOC = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'docs',
                   'security.rst')

TEST = re.compile(r'tests/(test_\w+)\.py::(test_\w+)')


def table_rows():
    """The rows of the table of attacks, each as its text."""
    with open(DOC, encoding='utf-8') as fileobj:
        text = fileobj.read()
    section = text.split('\nAttacks and defences\n', 1)[1]
    rows = re.split(r'\n   \* - ', section)[1:]
    assert rows, 'no table of attacks in %s' % DOC
    return rows[1:]  # the first is the header row


def test_every_test_the_table_names_exists():
    named = 0
    for row in table_rows():
        found = TEST.findall(row)
        attack = row.split('\n     - ')[0]
        assert found and 'PLACEHOLDER' not in row, (
            'no test for %r' % ' '.join(attack.split()))
        for module, name in found:
            test = getattr(importlib.import_module('tests.' + module),
                           name, None)
            assert callable(test), 'tests/%s.py has no %s' % (module, name)
            named += 1
    assert named >= 20


def test_the_table_has_a_row_for_each_attack_it_was_made_for():
    attacks = [' '.join(row.split('\n     - ')[0].split()).lower()
               for row in table_rows()]
    for words in ['foreign code', 'unpickles', 'decompression bomb',
                  'manifest', 'incomplete snapshots', 'flipped bytes',
                  'overlapping restores', 'cache', 'foreign app',
                  'gae_env', 'loopback', 'head', 'x-appengine_queuename',
                  'huge bodies', 'stalled connections', 'range',
                  'datastore file at once', 'saved before']:
        assert any(words in attack for attack in attacks), words
