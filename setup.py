import os

from setuptools import find_packages, setup

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, 'README.rst'), encoding='utf-8') as f:
    long_description = f.read()

setup(
    name='lovely_gae',
    version='0.1.0',
    description='Snapshots of Google App Engine datastore data for Python 3',
    long_description=long_description,
    long_description_content_type='text/x-rst',
    license='Apache-2.0',
    packages=find_packages(include=['lovely_gae', 'lovely_gae.*']),
    python_requires='>=3.9',
    install_requires=[
        'appengine-python-standard>=1.1',
        # Floors past known advisories of each.
        'WebOb>=1.8.8',
        'tqdm>=4.60',
        'requests>=2.32.4',
        'waitress>=3.0.1',
    ],
    extras_require={
        'test': [
            'pytest>=7',
            'WebTest>=3',
            'hypothesis>=6',
            # tests/test_browser.py drives a real browser (Chromium). Below
            # 4.33: later ones want urllib3 2, which the SDK's stack does not
            # take, and pip tried some twenty of them (10 MB each) first.
            'selenium>=4.10,<4.33',
            # The suite on every core (tox.ini's -n auto): 204 s -> 134 s
            # on two.
            'pytest-xdist>=3',
        ],
    },
    entry_points={
        'console_scripts': [
            'lovely-gae = lovely_gae.cli:main',
            'download_snapshot = lovely_gae.cli:download_snapshot',
        ],
        'pytest11': ['lovely_gae = lovely_gae.testing'],
    },
    classifiers=[
        'Programming Language :: Python :: 3',
        'Framework :: Pytest',
    ],
)
