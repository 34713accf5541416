"""``lovely-gae demo``: the whole product on sample data, step by step.

It works in a namespace of its own in the local datastore file, so it never
touches other data there: fill, snapshot, damage, dry run, restore, check
that every entity is back byte for byte, then serve the app on loopback
with a one-time token and download the snapshot over HTTP, each range
checked by its sha256, to a file a development datastore loads.
"""
import datetime
import os
import random
import secrets

from google.appengine.api import datastore_types
from google.appengine.ext import db

from . import entities
from .local import drain
from .webserver import ThreadedServer
from .snapshot import api, client, getApp
from .snapshot.transfer import devfile

NAMESPACE = 'lovely-gae-demo'
KINDS = ['Customer', 'Order']
OUT_DIR = 'lovely-gae-demo'


class Customer(db.Expando):
    pass


class Order(db.Expando):
    pass


def _fill(rng):
    customers = []
    for i in range(250):
        customer = Customer(key_name='customer-%04d' % i,
                            _app=(None, NAMESPACE))
        customer.name = 'Kundin %d' % i
        customer.email = db.Email('c%d@example.com' % i)
        customer.joined = datetime.datetime(2020, 1, 1) + datetime.timedelta(
            hours=i)
        customer.vip = i % 7 == 0
        customers.append(customer)
    keys = db.put(customers)
    orders = []
    for i in range(600):
        order = Order(parent=rng.choice(keys))
        order.total = round(rng.uniform(1, 500), 2)
        order.items = [rng.randint(1, 99) for _ in range(rng.randint(1, 5))]
        order.note = db.Text('Lieferung %d' % i)
        orders.append(order)
    db.put(orders)


def _all_bytes():
    return sorted(e.SerializeToString() for kind in KINDS
                  for e in entities.iter_range(kind, NAMESPACE))


def _clear():
    for kind in KINDS:
        entities.delete(list(entities.iter_range_keys(kind, NAMESPACE)))


def _count(kind):
    return sum(1 for _ in entities.iter_range_keys(kind, NAMESPACE))


def run():
    """Walk through it all: ``(every entity back?, steps, lines)``.

    ``steps`` holds the data of each step, ``lines`` says it in words; the
    caller prints either once the datastore file is saved.
    """
    rng = random.Random(442)
    steps, lines = [], []

    def say(step, text, **data):
        steps.append(dict(step=step, **data))
        lines.append('%-9s %s' % (step + ':', text))

    _clear()
    _fill(rng)
    say('fill', '%d customers and %d orders in namespace %r' % (
        _count('Customer'), _count('Order'), NAMESPACE),
        customers=_count('Customer'), orders=_count('Order'))
    before = _all_bytes()

    snap = api.create_snapshot(KINDS, namespace=NAMESPACE)
    tasks = drain()
    snap = api.get_snapshot(snap.id)
    progress = snap.progress()
    say('snapshot', 'snapshot %d %s: %d ranges, %d entities, %d bytes '
        'stored, %d tasks' % (snap.id, snap.status, progress['ranges_done'],
                              progress['entities'], progress['bytes'], tasks),
        id=snap.id, tasks=tasks, **progress)

    victims = Customer.all(keys_only=True, namespace=NAMESPACE).fetch(10)
    db.delete(victims)
    changed = Order.all(namespace=NAMESPACE).fetch(5)
    for order in changed:
        order.total += 1
    db.put(changed)
    extra = [Order(total=float(i), _app=(None, NAMESPACE)) for i in range(7)]
    db.put(extra)
    say('damage', 'deleted %d customers, changed %d orders, added %d '
        'orders' % (len(victims), len(changed), len(extra)))

    snap.restore(dry_run=True)
    drain()
    plan = api.get_snapshot(snap.id).plan_progress()['plan']
    say('dry run', ', '.join('%s: %d created, %d changed, %d deleted' % (
        kind, c['created'], c['changed'], c['deleted'])
        for kind, c in sorted(plan.items())), plan=plan)

    snap.restore()
    tasks = drain()
    after = _all_bytes()
    same = after == before
    say('restore', '%d tasks; %d entities back, byte for byte: %s' % (
        tasks, len(after), 'yes' if same else 'NO'), tasks=tasks,
        identical=same)

    os.makedirs(OUT_DIR, exist_ok=True)
    token = secrets.token_urlsafe(24)
    ranges = []
    with ThreadedServer(getApp(token=token, app_engine_headers=False)) \
            as server:
        path = client.download_snapshot(
            OUT_DIR, snap.id, url=server.url, token=token,
            progress=lambda event, **info: ranges.append(info.get('name'))
            if event == 'range_done' else None)
    counts = devfile.count_kinds(path)
    app = datastore_types.ResolveAppId(None)  # the keys': see docs/cli.rst
    say('download', 'over HTTP from %s, %d ranges checked by sha256: %s '
        'holds %d entities (%s); its keys are of app %r: load it with '
        "DatastoreFileStub(%r, %r, None)" % (
            server.url, len(ranges), path, sum(counts.values()), ', '.join(
                '%s: %d' % kv for kv in sorted(counts.items())), app, app,
            path),
        path=path, kinds=counts, url=server.url, ranges=len(ranges))
    return same, steps, lines
