"""What ``pip install .`` asks for, as the installed package says."""
import re
from importlib.metadata import requires


def install_floors():
    floors = {}
    for requirement in requires('lovely_gae'):
        if 'extra ==' in requirement:
            continue
        found = re.match(r'([\w-]+)\s*>=\s*([\d.]+)', requirement)
        if found:
            floors[found[1].lower()] = tuple(map(int, found[2].split('.')))
    return floors


def test_dependency_floors_are_past_known_advisories():
    floors = install_floors()
    assert floors['waitress'] >= (3, 0, 1)
    assert floors['requests'] >= (2, 32, 4)
    assert floors['webob'] >= (1, 8, 8)
