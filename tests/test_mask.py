"""Masking personal data on the way into a file (``rewrite.Mask``,
``download --mask``): masked values read back, nothing asked for stays in
the clear."""
import datetime
import json
import os

import pytest
from google.appengine.api import datastore
from google.appengine.ext import db

from lovely_gae.exceptions import LovelyGaeError, MaskUnmatched
from lovely_gae.snapshot.transfer.rewrite import Mask
from tests.conftest import run_cli


class Person(db.Model):
    email = db.StringProperty()
    born = db.DateTimeProperty()
    site = db.LinkProperty()


def _masked(gae_testbed, names):
    person = Person(email='a@example.com', born=datetime.datetime(2000, 1, 1),
                    site='https://example.com/me')
    pb = db.model_to_protobuf(person)
    return Mask(names)(pb)


def test_a_masked_date_reads_back_as_null(gae_testbed):
    pb = _masked(gae_testbed, ['born'])
    entity = datastore.Entity.FromPb(pb)  # a null that still said 'date'
    assert entity['born'] is None  # would not read back
    assert entity['email'] == 'a@example.com'  # not asked for


def test_a_masked_link_reads_back(gae_testbed):
    pb = _masked(gae_testbed, ['site'])
    assert datastore.Entity.FromPb(pb)['site'] is None  # no URL to fake


def _ndb_entity_with_a_contact():
    from google.appengine.ext import ndb

    class Contact(ndb.Model):
        email = ndb.StringProperty()

    class Customer(ndb.Model):
        contact = ndb.StructuredProperty(Contact)

    customer = Customer(id=1, contact=Contact(email='secret@example.com'))
    return customer._to_pb()


def test_masking_the_email_of_a_structured_property_masks_it(gae_testbed):
    # ndb stores StructuredProperty values as properties named
    # 'contact.email': naming it, or naming the field, masks it.
    for names in (['contact.email'], ['email'], ['Customer.contact.email']):
        pb = _ndb_entity_with_a_contact()
        assert b'secret@example.com' in pb.SerializeToString()
        mask = Mask(names)
        masked = mask(pb)
        assert b'secret@example.com' not in masked.SerializeToString()
        assert mask.unmatched() == []
    mask = Mask(['emial', 'email'])
    mask(_ndb_entity_with_a_contact())
    assert mask.unmatched() == ['emial']



def test_a_mask_that_matched_nothing_fails_its_check(gae_testbed):
    mask = Mask(['emial', 'Persn.born', 'site', 'zzz'])
    mask(db.model_to_protobuf(Person(email='a@example.com')))
    with pytest.raises(MaskUnmatched) as info:
        mask.check()
    error = info.value
    assert isinstance(error, LovelyGaeError)
    assert error.unmatched_masks == ['Persn.born', 'emial', 'zzz']
    assert error.suggestions == {'Persn.born': 'Person.born',
                                 'emial': 'email'}
    assert error.properties == ['born', 'email', 'site']
    assert str(error) == (
        'masks Persn.born, emial, zzz matched no property, so nothing was '
        'written (did you mean Person.born for Persn.born, email for '
        'emial?)')
    assert str(MaskUnmatched(['zzz'], {}, ['a', 'b'])) == (
        'mask zzz matched no property, so nothing was written (properties '
        'written: a, b)')
    Mask(['emial'], allow_unmatched=True).check()  # said, not refused


# The CLI, on a datastore file and over --url: a misspelt mask writes
# nothing, says so in one line and exits 1.

ERROR = ('lovely-gae: error: mask emial matched no property, so nothing '
         'was written (did you mean email?)\n')


def _put_users():
    users = [datastore.Entity('User', name=str(i)) for i in range(3)]
    for user in users:
        user['email'] = 'secret@example.com'
    datastore.Put(users)


def _snapshot_of_users(store):
    from lovely_gae import local
    with local.local_datastore(store):
        _put_users()
    assert run_cli(store, 'create', 'User') == 0


def test_a_misspelt_mask_writes_nothing_locally(store, capsys, tmp_path):
    _snapshot_of_users(store)
    capsys.readouterr()
    out = tmp_path / 'm'
    assert run_cli(store, 'download', str(out), '--mask', 'emial') == 1
    assert capsys.readouterr().err == ERROR
    assert os.listdir(out) == []  # no file, no temporary file
    assert run_cli(store, '--json', 'download', str(out),
                   '--mask', 'emial') == 1
    error = json.loads(capsys.readouterr().err)
    assert error == {'error': ERROR[len('lovely-gae: error: '):-1],
                     'type': 'MaskUnmatched', 'exit': 1,
                     'unmatched_masks': ['emial']}
    assert os.listdir(out) == []


def test_allow_unmatched_mask_writes_the_file_and_says_so(store, capsys,
                                                          tmp_path):
    _snapshot_of_users(store)
    capsys.readouterr()
    out = tmp_path / 'm'
    assert run_cli(store, 'download', str(out), '--mask', 'email',
                   '--mask', 'Order.phone', '--allow-unmatched-mask') == 0
    assert capsys.readouterr().err.splitlines()[0] == (
        'lovely-gae: warning: --mask Order.phone matched no property')
    [path] = out.iterdir()
    assert b'secret@example.com' not in path.read_bytes()


def test_a_misspelt_mask_writes_nothing_over_url(snapshot_server,
                                                 finished_snapshot, capsys,
                                                 tmp_path, monkeypatch):
    from lovely_gae import cli
    _put_users()
    finished_snapshot(['User'])
    monkeypatch.setenv('LOVELY_GAE_TOKEN', snapshot_server.token)
    out = tmp_path / 'm'
    assert cli.main(['--url', snapshot_server.url, 'download', str(out),
                     '--mask', 'emial']) == 1
    assert capsys.readouterr().err == ERROR
    # Nor the hidden folder a resume reads: it held the ranges unmasked.
    assert os.listdir(out) == []
    assert cli.main(['--url', snapshot_server.url, 'download', str(out),
                     '--mask', 'email']) == 0
    [path] = out.iterdir()
    assert b'secret@example.com' not in path.read_bytes()


# Uploads check their mask as downloads do: a misspelt one sends nothing.

def _user_emails():
    return sorted(user['email'] for user in datastore.Query('User').Run())


def test_a_misspelt_mask_uploads_nothing(snapshot_server, finished_snapshot,
                                         tmp_path):
    from lovely_gae.snapshot import client
    _put_users()
    snap = finished_snapshot(['User'])
    path = client.download_snapshot(str(tmp_path), snap.id,
                                    progress=lambda event, **info: None)
    datastore.Delete(datastore.Query('User', keys_only=True).Run())
    for url in (None, snapshot_server.url):  # this datastore, an app's
        with pytest.raises(MaskUnmatched, match='did you mean email'):
            client.upload_snapshot(path, url=url,
                                   token=snapshot_server.token,
                                   scrub=Mask(['emial']))
        assert _user_emails() == []  # nothing put, nothing sent
    mask = Mask(['email', 'emial'], allow_unmatched=True)
    assert client.upload_snapshot(path, url=snapshot_server.url,
                                  token=snapshot_server.token,
                                  scrub=mask) == 3
    assert mask.unmatched() == ['emial']
    emails = _user_emails()
    assert len(set(emails)) == 1 and emails[0].startswith('masked-')


def test_upload_mask_on_the_command_line(store, capsys, tmp_path):
    from lovely_gae import local
    _snapshot_of_users(store)
    out = tmp_path / 'm'
    assert run_cli(store, 'download', str(out)) == 0
    [path] = out.iterdir()
    other = str(tmp_path / 'other.datastore')
    capsys.readouterr()
    assert run_cli(other, 'upload', '--yes', str(path),
                   '--mask', 'emial') == 1
    assert capsys.readouterr().err == ERROR
    with local.local_datastore(other):
        assert _user_emails() == []
    assert run_cli(other, '--json', 'upload', '--yes', str(path), '--mask',
                   'email', '--mask', 'Order.phone',
                   '--allow-unmatched-mask') == 0
    assert json.loads(capsys.readouterr().out)['unmatched_masks'] == [
        'Order.phone']
    with local.local_datastore(other):
        emails = _user_emails()
    assert len(emails) == 3 and all(e.startswith('masked-') for e in emails)
