"""What ``pip install .`` asks for."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def install_floors():
    with open(os.path.join(ROOT, 'setup.py'), encoding='utf-8') as f:
        text = f.read()
    requires = text.split('install_requires=[', 1)[1].split(']', 1)[0]
    return {name.lower(): tuple(map(int, version.split('.')))
            for name, version in re.findall(r"'([\w-]+)>=([\d.]+)'",
                                            requires)}


def test_dependency_floors_are_past_known_advisories():
    floors = install_floors()
    assert floors['waitress'] >= (3, 0, 1)
    assert floors['requests'] >= (2, 32, 4)
    assert floors['webob'] >= (1, 8, 8)
