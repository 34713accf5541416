"""The page in a real browser: headless Chromium driven through selenium.

It needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs
them); without them, or without selenium, it is skipped and says why, unless
``$LOVELY_GAE_BROWSER_TEST`` is ``required`` (``.ci/run`` sets it where it
could install them): then it fails.
"""
import os
import shutil
import struct
import zlib

import pytest
from google.appengine.ext import db

from lovely_gae.snapshot.models import Snapshot
from tests.conftest import Dummy

CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
CHROMEDRIVER = shutil.which('chromedriver')

REQUIRED = os.environ.get('LOVELY_GAE_BROWSER_TEST') == 'required'

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER) and not REQUIRED,
    reason='needs chromium and chromedriver on PATH '
           '(apt-get install chromium chromium-driver; .ci/run does)')

if REQUIRED:
    from selenium import webdriver
else:
    webdriver = pytest.importorskip(
        'selenium.webdriver', reason='needs selenium (the test extra)')
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.common.exceptions import (  # noqa: E402
    NoSuchElementException, StaleElementReferenceException)
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

#: Seconds the browser may take to show what the page should come to.
PATIENCE = 60


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ('--headless=new', '--no-sandbox', '--disable-gpu',
                     '--disable-dev-shm-usage', '--window-size=1200,900'):
        options.add_argument(argument)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def png_pixel_bytes(png):
    """The decompressed image data (IDAT) of a PNG: no PIL needed."""
    assert png[:8] == b'\x89PNG\r\n\x1a\n', 'not a PNG'
    data, at = b'', 8
    while at < len(png):
        length, kind = struct.unpack('>I4s', png[at:at + 8])
        if kind == b'IDAT':
            data += png[at + 8:at + 8 + length]
        at += 12 + length
    return zlib.decompress(data)


def patient(driver):
    """A wait that bears the page reloading itself under its feet (an
    element found just before a reload is stale after it)."""
    return WebDriverWait(driver, PATIENCE, ignored_exceptions=(
        StaleElementReferenceException, NoSuchElementException))


def click(driver, label):
    def clicked(d):
        d.find_element(By.XPATH, '//button[text()="%s"]' % label).click()
        return True
    patient(driver).until(clicked, message='no button %r' % label)


def wait_for(driver, text):
    """Wait until the page (refreshing itself) shows ``text``."""
    patient(driver).until(
        lambda d: text in d.find_element(By.TAG_NAME, 'body').text,
        message='the page never showed %r' % text)


def test_log_in_create_watch_plan_restore_delete(browser, snapshot_server,
                                                 run_tasks, make_entities,
                                                 tmp_path):
    keys = make_entities(Dummy, 30)
    browser.get(snapshot_server.url + '/lovely.gae/')
    assert 'Dummy' not in browser.page_source
    browser.find_element(By.NAME, 'token').send_keys(snapshot_server.token)
    click(browser, 'Log in')
    wait_for(browser, 'New snapshot')

    browser.find_element(By.NAME, 'kinds').send_keys('Dummy')
    click(browser, 'Create snapshot')
    wait_for(browser, 'Status: started')
    run_tasks(recursive=True)  # the worker; the page refreshes itself
    wait_for(browser, 'Status: finished; namespace: (default); 30 entities')

    db.delete(keys[:4])
    click(browser, 'Dry run of a restore')
    wait_for(browser, 'Dry run\n')  # the click has reached the server
    run_tasks(recursive=True)
    cells = patient(browser).until(lambda d: [
        td.text for td in d.find_elements(By.CSS_SELECTOR, '#plan td')])
    assert cells == ['Dummy', '4', '0', '0']

    click(browser, 'Restore as planned')
    wait_for(browser, 'Restore\n')
    run_tasks(recursive=True)
    wait_for(browser, 'Restore\nfinished')
    assert Dummy.all().count() == 30

    png = browser.get_screenshot_as_png()
    shot = tmp_path / 'lovely-gae-page.png'
    shot.write_bytes(png)
    print('screenshot:', shot)
    pixels = png_pixel_bytes(png)
    assert len(png) > 5000 and len(set(pixels)) > 16, 'a blank screenshot'

    click(browser, 'Delete snapshot')
    wait_for(browser, 'New snapshot')
    run_tasks(recursive=True)
    assert Snapshot.all().count() == 0
    browser.refresh()
    assert not browser.find_elements(By.CSS_SELECTOR, '#snapshots td')
