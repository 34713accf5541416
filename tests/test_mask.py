"""Masking personal data on the way into a file (``rewrite.Mask``,
``download --mask``): masked values read back, nothing asked for stays in
the clear."""
import datetime

from google.appengine.api import datastore
from google.appengine.ext import db

from lovely_gae.snapshot.transfer.rewrite import Mask


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

