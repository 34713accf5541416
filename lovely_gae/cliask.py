"""Asking before ``lovely-gae`` deletes, as gcloud, gh and kubectl ask.

A command that deletes or replaces data (``restore``, ``delete``,
``prune``, ``queue --drop``, ``upload``) says what it will change and asks on the terminal; ``--yes``
answers for it. Without a terminal on stdin and without ``--yes`` nobody
can answer: the command refuses (``Refused``, exit status 2) rather than
guess. An answer other than yes changes nothing (exit status 1); with
``--json`` it says so as ``{"error": "nothing changed", "type":
"Declined", "exit": 1}``.
"""
import json
import sys

from . import clitext

__all__ = ['Refused', 'DECLINED', 'confirm', 'can_ask']

#: What a command returns when the answer was no: ``(status, data, text)``.
DECLINED = (1, None, None)


class Refused(Exception):
    """A question nobody can answer: a usage error (exit status 2)."""


def can_ask(args, does='deletes'):
    """Raise ``Refused`` unless ``--yes`` or a terminal can answer."""
    if not (args.yes or sys.stdin.isatty()):
        raise Refused('asks before it %s; pass --yes to run it '
                      'without a terminal' % does)


def confirm(args, what, question, does='deletes'):
    """Whether to go on: ``--yes``, or yes typed on the terminal after
    ``what`` (lines) and ``question`` were shown on stderr."""
    can_ask(args, does)
    if args.yes:
        return True
    print(clitext.printable(what), file=sys.stderr)
    print('%s [y/N] ' % question, end='', file=sys.stderr, flush=True)
    answer = sys.stdin.readline().strip().lower()
    if answer in ('y', 'yes'):
        return True
    print(json.dumps({'error': 'nothing changed', 'type': 'Declined',
                      'exit': DECLINED[0]}, sort_keys=True) if args.json
          else 'lovely-gae: nothing changed', file=sys.stderr)
    return False
