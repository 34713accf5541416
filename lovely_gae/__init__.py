"""lovely_gae: snapshots of App Engine datastore data for Python 3."""

__version__ = '0.1.0'
