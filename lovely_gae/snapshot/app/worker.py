"""The worker endpoint: a deployed app runs its own task queue.

A push (POST from App Engine's task queue, see ``push``) names the task to
run: ``task=<key name>`` runs it (``async_.run_task``); several names, from
the one push of a transaction, are pushed again each on its own. Without
a name (cron's GET, or a POST) it sweeps: it runs the due tasks, and the
tasks they queue, for at most ``seconds``, through the same
``async_.run_tasks`` the tests and the CLI use; while pushes hand out the
tasks, it takes only those a push has missed (``defaults.SWEEP_GRACE``)
and those of leases that expired. What is left waits for the next call.
"""
from ... import async_, push
from .. import calls
from .web import allow, float_param, json_response

__all__ = ['run']

#: Seconds a call works by default: well inside a frontend request's 60.
DEFAULT_SECONDS = 20.0

#: Longest a call may ask for: cron and task requests end after 10 minutes.
MAX_SECONDS = 540.0


@allow('GET', 'POST', writes=True)
def run(request):
    """Run the pushed task, or due tasks for ``seconds``; answer how many
    ran (and, sweeping, how many wait)."""
    names = request.params.getall(push.PARAM)
    if len(names) == 1:
        return json_response({'ran': int(async_.run_task(names[0]))})
    if names:
        async_.push_again(names)
        return json_response({'ran': 0})
    seconds = float_param(request, 'seconds', DEFAULT_SECONDS, MAX_SECONDS)
    ran = async_.run_tasks(recursive=True, deadline=seconds)
    return json_response(calls.worker_ran(ran))

