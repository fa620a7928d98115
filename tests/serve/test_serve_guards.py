"""Who may talk to the app: the API key on every route, the Host header, /openapi.json (in process, a tiny model)."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route

from diffutron.lm import Diffutron
from diffutron.serve.app import STATIC, ServeOptions, create_app

KEY = "guard-key"
WITH_KEY = {"Authorization": f"Bearer {KEY}"}
# served without the key: the page, its files, health and metrics; every other route needs it
OPEN_ROUTES = {"/", "/static", "/health", "/metrics"}


def client(tiny_model, tiny_tokenizer, **options) -> TestClient:
    app = create_app(Diffutron(tiny_model, tiny_tokenizer), ServeOptions(model_id="tiny", batch_wait_ms=0, **options))
    return TestClient(app, base_url="http://127.0.0.1")


def probes(app) -> list[tuple[str, str, str]]:
    """(route, method, a URL of it) for every route of the app, enumerated from the app itself
    (through its included routers)."""
    found = []
    for route in (context.original_route for context in iter_route_contexts(app.routes)):
        if isinstance(route, Mount):
            found.append((route.path, "GET", f"{route.path}/app.js"))
        elif isinstance(route, (APIRoute, Route)):
            url = re.sub(r"\{[^}]+\}", "tiny", route.path)
            found += [(route.path, method, url) for method in sorted(route.methods) if method != "HEAD"]
    return found


def test_every_route_needs_the_key_except_the_open_ones(tiny_model, tiny_tokenizer):
    with client(tiny_model, tiny_tokenizer, api_key=KEY, openapi=True) as http:
        routes = probes(http.app)
        assert {path for path, _, _ in routes} == OPEN_ROUTES | {
            "/openapi.json",
            "/v1/models",
            "/v1/models/{model:path}",
            "/v1/chat/completions",
            "/v1/completions",
            "/v1/infill",
            "/v1/embeddings",
            "/tokenize",
            "/detokenize",
            "/settings",
        }
        for path, method, url in routes:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
                refused = http.request(method, url, headers=headers, json={})
                expected = 200 if path in OPEN_ROUTES else 401
                assert refused.status_code == expected, (method, url, headers, refused.text)
            answered = http.request(method, url, headers=WITH_KEY, json={})
            # with the key every route answers: 200, or 400 for the empty body of a POST
            assert answered.status_code == (400 if method == "POST" else 200), (method, url, answered.text)
        assert http.get("/no/such/route").status_code == 401  # unknown paths are not told apart without the key
        assert http.get("/no/such/route", headers=WITH_KEY).status_code == 404


def test_docs_are_not_served_and_the_schema_only_when_asked(tiny_model, tiny_tokenizer):
    with client(tiny_model, tiny_tokenizer, api_key=KEY) as http:
        for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
            assert http.get(path, headers=WITH_KEY).status_code == 404, path
    with client(tiny_model, tiny_tokenizer, api_key=KEY, openapi=True) as http:
        assert http.get("/openapi.json").status_code == 401
        schema = http.get("/openapi.json", headers=WITH_KEY).json()
        assert "/v1/chat/completions" in schema["paths"] and "/docs" not in schema["paths"]
        for path in ("/docs", "/redoc"):
            assert http.get(path, headers=WITH_KEY).status_code == 404, path


def test_the_page_loads_nothing_from_elsewhere():
    for page in ("index.html", "app.js", "style.css"):
        text = (STATIC / page).read_text()
        assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", text), page
        assert "import(" not in text and "@import" not in text, page


HOSTS = [
    # (Host header, allowed_hosts, served)
    ("127.0.0.1:8000", (), True),
    ("127.0.0.1", (), True),
    ("[::1]:8000", (), True),
    ("10.1.2.3:80", (), True),  # an IP address cannot be a rebinding name
    ("localhost:8000", (), True),
    ("LOCALHOST.:8000", (), True),
    ("evil.example:8000", (), False),
    ("localhost.evil.example", (), False),
    ("127.0.0.1.evil.example", (), False),
    ("my.lan:8000", ("my.lan",), True),
    ("My.Lan", ("my.lan",), True),
    ("other.lan", ("my.lan",), False),
    ("anything.example", ("*",), True),
]


@pytest.mark.parametrize("host, allowed, served", HOSTS, ids=[f"{row[0]}-{','.join(row[1])}" for row in HOSTS])
def test_the_host_header_must_name_the_server(tiny_model, tiny_tokenizer, host, allowed, served):
    with client(tiny_model, tiny_tokenizer, allowed_hosts=allowed) as http:
        for path in ("/health", "/", "/v1/models"):
            response = http.get(path, headers={"Host": host})
            if served:
                assert response.status_code == 200, (path, response.text)
            else:
                assert response.status_code == 400, (path, response.text)
                error = response.json()["error"]
                assert error["code"] == "invalid_host"
                assert f"host name {host.split(':')[0].lower()!r}" in error["message"]
                assert "--allowed-host" in error["message"]
