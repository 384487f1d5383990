"""The Django example of docs/django.md, run as written: a real Django app (its own process and
HTTP server) enqueues after commit, receives the worker's signed webhook once, and renders the
stems into <audio> tags; a real worker and the emulator do the rest."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vidgo_stems.devstack.redis_server import free_port

pytestmark = pytest.mark.integration

DOCS = Path(__file__).resolve().parents[2] / "docs" / "django.md"
SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def example(name: str) -> str:
    """The code block that follows ``<!-- example: name -->`` in the Django page."""
    found = re.search(rf"<!-- example: {name} -->\n```\w+\n(.*?)```", DOCS.read_text(), flags=re.S)
    assert found, f"docs/django.md has no example {name}"
    return found.group(1)


RUNNER = textwrap.dedent(
    """
    import json, os, sys, threading, time
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="test-only",
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=["django.contrib.contenttypes", "uploads"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}},
        ROOT_URLCONF="uploads.urls",
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates",
                    "APP_DIRS": True}],
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        USE_TZ=True,
    )
    django.setup()
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application
    from django.test import Client

    call_command("migrate", run_syncdb=True, verbosity=0)
    from uploads.models import Upload, WebhookMessage

    deliveries = []
    app = get_wsgi_application()

    def recording(environ, start_response):
        if environ["PATH_INFO"] == "/stems-ready":
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items()
                       if k.startswith("HTTP_")}
            deliveries.append((body, headers))
            import io
            environ["wsgi.input"] = io.BytesIO(body)
        return app(environ, start_response)

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = make_server("127.0.0.1", int(os.environ["PORT"]), recording, handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    client = Client()
    answer = client.post("/uploads", {"audio_url": os.environ["AUDIO_URL"]})
    pk = answer.json()["upload"]
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and Upload.objects.get(pk=pk).state == "QUEUED":
        time.sleep(0.2)
    track = Upload.objects.get(pk=pk)
    body, headers = deliveries[0]
    extra = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()}
    replay = client.post("/stems-ready", body, content_type="application/json", **extra)
    forged = client.post("/stems-ready", body, content_type="application/json",
                         **{**extra, "HTTP_WEBHOOK_SIGNATURE": "v1,AAAA"})
    page = client.get(f"/uploads/{pk}").content.decode()
    print(json.dumps({
        "enqueue_status": answer.status_code,
        "job_id": track.job_id,
        "subscription_id": track.subscription_id,
        "state": track.state,
        "stems": track.stems,
        "deliveries": len(deliveries),
        "messages": WebhookMessage.objects.count(),
        "replay_status": replay.status_code,
        "forged_status": forged.status_code,
        "page": page,
    }))
    server.shutdown()
    """
)


@pytest.fixture
def stack(make_stack):
    return make_stack(
        worker="django",
        VIDGO_STEMS_WEBHOOK_SECRET=SECRET,
        VIDGO_STEMS_ALLOW_PRIVATE_WEBHOOK_HOSTS="true",
    )


def _project(folder: Path) -> Path:
    app = folder / "uploads"
    (app / "templates").mkdir(parents=True)
    (app / "__init__.py").write_text("")
    (app / "models.py").write_text(example("django-models"))
    (app / "views.py").write_text(example("django-views"))
    (app / "urls.py").write_text(example("django-urls"))
    (app / "templates" / "player.html").write_text(example("django-template"))
    (folder / "run.py").write_text(RUNNER)
    return folder


def test_the_django_example_enqueues_on_commit_takes_each_webhook_once_and_plays_stems(
    stack, tmp_path
):
    project = _project(tmp_path / "site")
    port = free_port()
    env = {
        **stack.env,
        "PATH": os.environ["PATH"],
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "PORT": str(port),
        "AUDIO_URL": stack.track_url(),
    }
    done = subprocess.run(
        [sys.executable, "run.py"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["enqueue_status"] == 202 and seen["job_id"] and seen["subscription_id"]
    assert seen["state"] == "DONE" and set(seen["stems"]) == {
        "bass",
        "drums",
        "piano",
        "guitar",
        "vocals",
        "other",
    }
    assert seen["deliveries"] == 1 and seen["messages"] == 1
    assert seen["replay_status"] == 204  # a repeated delivery is accepted and changes nothing
    assert seen["forged_status"] == 400
    view = stack.job(seen["job_id"])
    audio = re.findall(r'<audio controls preload="metadata" src="([^"]+)"', seen["page"])
    assert len(audio) == 6
    for name, stem in view.stems.items():
        assert stem.url.replace("&", "&amp;") in audio, name
