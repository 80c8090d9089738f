"""The AWS app page in sections: a table of contents, then what says whether the app
works (validations, sync runs, sync issues, events), then its settings, then the
documents to paste into AWS, each folded until opened. No script is needed for any of it."""

from __future__ import annotations

import re

import pytest

from access.tests.test_admin import change_url
from aws_integration import services, setup_policies
from aws_integration.tests.test_admin_app import make_aws_app

SECTIONS = [
    "validations",
    "sync-runs",
    "sync-issues",
    "unknown-events",
    "app-settings",
    "setup-documents",
    "external-id",
]


@pytest.fixture
def admin_client(client, personas):
    client.force_login(personas.admin)
    return client


def test_the_app_page_starts_with_contents_then_validations_and_sync_state(admin_client):
    app = make_aws_app()
    page = admin_client.get(change_url(app)).content.decode()
    contents = page[page.index('<nav class="portcullis-toc"') :]
    contents = contents[: contents.index("</nav>")]
    assert re.findall(r'<a href="#([\w-]+)">', contents) == SECTIONS
    # Every anchor leads somewhere, in the order of the contents, and the settings form
    # comes after what says whether the app works.
    positions = [page.index(f'id="{section}"') for section in SECTIONS]
    assert positions == sorted(positions)
    assert positions[0] < page.index('<form method="post" id="awsapp_form"')
    assert page.index('id="app-settings"') < page.index('id="id_name"') < positions[-2]


def test_the_documents_are_folded_each_with_its_copy_button(admin_client):
    app = make_aws_app()
    page = admin_client.get(change_url(app)).content.decode()
    for document in setup_policies.documents(app, services.get_aws_settings()):
        key = document["key"]
        folded = page[page.index(f'<details class="portcullis-document" id="document-{key}">') :]
        folded = folded[: folded.index("</details>")]
        summary = folded[: folded.index("</summary>")]
        assert f"<h3>{document['title']}</h3>" in summary
        assert f'data-copy="{key}-text"' in summary
        assert f'<pre id="{key}-text">' in folded
    assert '<details class="portcullis-document" id="unscoped-permissions">' in page
