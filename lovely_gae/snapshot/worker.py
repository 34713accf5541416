"""The worker endpoint: a deployed app drains its own task queue.

App Engine cron (GET) or a push queue (POST) calls it; each call runs the
due tasks, and the tasks they queue, for at most ``seconds``, through the
same ``async_.run_tasks`` the tests and the CLI use. What is left waits
for the next call.
"""
from .. import async_
from .web import allow, float_param, json_response

__all__ = ['run', 'queued', 'DEFAULT_SECONDS', 'MAX_SECONDS']

#: Seconds a call works by default: well inside a frontend request's 60.
DEFAULT_SECONDS = 20.0

#: Longest a call may ask for: cron and task requests end after 10 minutes.
MAX_SECONDS = 540.0


@allow('GET', 'POST', writes=True)
def run(request):
    """Run due tasks for ``seconds``; answer how many ran and how many wait."""
    seconds = float_param(request, 'seconds', DEFAULT_SECONDS, MAX_SECONDS)
    ran = async_.run_tasks(recursive=True, deadline=seconds)
    return json_response({'ran': ran, 'queued': queued()})


def queued():
    """How many tasks wait, counted up to 1000."""
    return async_.count_tasks(limit=1000)
