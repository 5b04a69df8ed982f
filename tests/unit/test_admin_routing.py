"""The site's llm-gateway routing (issue 24 item 5): every rule of the document, the API,
the audit records, the access policy that carries it, the history, granting ``auto``, and
the page for admins and auditors."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from appliance.access.policy import AUTO_MODEL
from appliance.admin.services import grants, routing
from appliance.admin.services import identities as identity_service
from appliance.admin.settings import AdminSettings
from appliance.db.models import RoutingConfig
from tests.unit.admin_access_site import BEARER, Site

ROUTING = "/api/v1/routing"
POLICY = "/api/v1/access/policy"
#: The document of the issue, exactly as it is stored and carried in the policy.
DOCUMENT: dict[str, Any] = {
    "allow_explicit_model": False,
    "default_route": "general",
    "routes": [
        {
            "name": "sensitive",
            "model": "tiny",
            "description": "patient data stays on the approved model",
            "keywords": ["patient", "diagnosis"],
            "exclude": [],
            "examples": [],
        },
        {
            "name": "general",
            "model": "big",
            "description": "",
            "keywords": [],
            "exclude": [],
            "examples": [],
        },
    ],
    "semantic": None,
}


def settings(models: list[str] | None = None) -> AdminSettings:
    return AdminSettings(
        profile="test",
        db_url="sqlite://",
        data_dir=Path(),
        gateway_models=["tiny", "big"] if models is None else models,
    )


def doc(**changes: Any) -> dict[str, Any]:
    """DOCUMENT with top-level ``changes``; ``route0``/``route1`` update a route."""
    found = copy.deepcopy(DOCUMENT)
    for index in (0, 1):
        found["routes"][index].update(changes.pop(f"route{index}", {}))
    found.update(changes)
    return found


def refused(document: dict[str, Any], models: list[str] | None = None) -> str:
    with pytest.raises(routing.RoutingError) as caught:
        routing.normalize_routing(document, settings(models))
    return str(caught.value)


def fetch(site: Site) -> tuple[str, dict[str, Any]]:
    answer = site.client.get(POLICY, headers=BEARER)
    assert answer.status_code == 200, answer.text
    return answer.json()["version"], answer.json()["policy"]


def rows(site: Site) -> list[RoutingConfig]:
    with site.db() as db:
        return list(db.scalars(select(RoutingConfig).order_by(RoutingConfig.id)))


def sha(document: object) -> str:
    return hashlib.sha256(
        json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


# --- the document's rules ------------------------------------------------------------


def test_the_issues_document_is_its_own_normal_form() -> None:
    assert routing.normalize_routing(DOCUMENT, settings()) == DOCUMENT


def test_left_out_fields_take_their_defaults() -> None:
    minimal = {"default_route": "only", "routes": [{"name": "only", "model": "tiny"}]}
    assert routing.normalize_routing(minimal, settings()) == {
        "allow_explicit_model": False,
        "default_route": "only",
        "routes": [
            {
                "name": "only",
                "model": "tiny",
                "description": "",
                "keywords": [],
                "exclude": [],
                "examples": [],
            }
        ],
        "semantic": None,
    }


@pytest.mark.parametrize("name", ["", "Upper", "-lead", "_lead", "has space", "a" * 64, "ü"])
def test_a_bad_route_name_is_refused(name: str) -> None:
    message = refused(doc(route0={"name": name}))
    assert "routes.0.name: route name: expected 1 to 63 lowercase letters" in message


@pytest.mark.parametrize("name", ["a", "0", "a-b_c", "a" * 63])
def test_good_route_names_pass(name: str) -> None:
    found = routing.normalize_routing(doc(route0={"name": name}), settings())
    assert found["routes"][0]["name"] == name


def test_route_names_are_unique() -> None:
    message = refused(doc(route0={"name": "general"}))
    assert "each route needs a name of its own; 'general' appears more than once" in message


def test_at_least_one_route() -> None:
    assert "routes: List should have at least 1 item" in refused(doc(routes=[]))


def test_the_default_route_is_required_and_names_a_route() -> None:
    without = doc()
    del without["default_route"]
    assert "default_route: Field required" in refused(without)
    message = refused(doc(default_route="nowhere"))
    assert "default_route: expected the name of one of the routes (sensitive, general)" in message
    assert "most restrictive" in message


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("", "model: expected a model's name, found an empty one"),
        ("x" * 129, "model: expected at most 128 characters, found 129"),
        ("auto", "model: 'auto' asks for routing: name a served model instead"),
        ("AUTO", "model: 'auto' asks for routing"),
        ("gpt-4o", "starts with gpt-, which llm-gateway sends to an outside provider"),
        ("GPT-4o", "outside provider"),
        ("o1-mini", "starts with o1-"),
        ("o3-mini", "starts with o3-"),
        ("Claude-3-opus", "starts with claude-"),
        ("ti\nny", "model: expected no control characters"),
    ],
)
def test_a_bad_model_is_refused_whatever_the_site_serves(model: str, message: str) -> None:
    assert message in refused(doc(route0={"model": model}), models=[])


def test_the_model_must_be_served_when_the_site_lists_its_models() -> None:
    message = refused(doc(route0={"model": "huge"}))
    assert "routes[sensitive].model: the site serves no model named 'huge'" in message
    assert "(it serves tiny, big)" in message
    # A site that lists no models takes any name that is not refused outright.
    found = routing.normalize_routing(doc(route0={"model": "huge"}), settings([]))
    assert found["routes"][0]["model"] == "huge"


@pytest.mark.parametrize("field", ["keywords", "exclude"])
def test_keywords_and_exclusions_are_stripped_and_deduplicated(field: str) -> None:
    terms = ["  Patient ", "patient", "PATIENT", "diagnosis", " c++ ", "Diagnosis"]
    found = routing.normalize_routing(doc(route0={field: terms}), settings())
    assert found["routes"][0][field] == ["Patient", "diagnosis", "c++"]


@pytest.mark.parametrize("field", ["keywords", "exclude"])
@pytest.mark.parametrize(
    ("terms", "message"),
    [
        (["ok", "   "], "[1]: expected 1 to 100 characters (after stripping spaces), found 0"),
        (["k" * 101], "[0]: expected 1 to 100 characters (after stripping spaces), found 101"),
        ([f"k{i}" for i in range(201)], "List should have at most 200 items"),
        ("patient", "Input should be a valid list"),
        ([3], "Input should be a valid string"),
        (["tab\there"], "expected no control characters"),
        (["\ud800"], "expected text, found an unpaired surrogate"),
    ],
)
def test_bad_keywords_and_exclusions_are_refused(field: str, terms: object, message: str) -> None:
    found = refused(doc(route0={field: terms}))
    assert f"routes.0.{field}" in found and message in found


def test_two_hundred_keywords_and_a_hundred_characters_pass() -> None:
    terms = [f"k{i}" for i in range(199)] + ["k" * 100]
    found = routing.normalize_routing(doc(route0={"keywords": terms}), settings())
    assert len(found["routes"][0]["keywords"]) == 200


SEMANTIC = {"model": "big", "threshold": 0.75}


def test_examples_need_semantic_matching_and_semantic_matching_needs_examples() -> None:
    message = refused(doc(route0={"examples": ["what is the diagnosis?"]}))
    assert "semantic: route 'sensitive' has examples, and examples need an embedding model" in (
        message
    )
    message = refused(doc(semantic=SEMANTIC))
    assert "semantic: semantic matching compares requests with the routes' examples" in message
    found = routing.normalize_routing(
        doc(route0={"examples": [" what is the diagnosis? "]}, semantic=SEMANTIC), settings()
    )
    assert found["semantic"] == SEMANTIC
    assert found["routes"][0]["examples"] == ["what is the diagnosis?"]


@pytest.mark.parametrize(
    ("examples", "message"),
    [
        ([f"e{i}" for i in range(51)], "List should have at most 50 items"),
        (["  "], "examples[0]: expected 1 to 2048 characters, found 0"),
        (["e" * 2049], "examples[0]: expected 1 to 2048 characters, found 2049"),
    ],
)
def test_bad_examples_are_refused(examples: list[str], message: str) -> None:
    assert message in refused(doc(route0={"examples": examples}, semantic=SEMANTIC))


def test_fifty_examples_of_2048_characters_and_lines_pass() -> None:
    examples = ["e" * 2048] * 49 + ["two\nlines"]
    found = routing.normalize_routing(
        doc(route0={"examples": examples}, semantic=SEMANTIC), settings()
    )
    assert len(found["routes"][0]["examples"]) == 50


@pytest.mark.parametrize(
    ("semantic", "message"),
    [
        ({"model": "big", "threshold": 0}, "semantic.threshold: Input should be greater than 0"),
        ({"model": "big", "threshold": -0.5}, "greater than 0"),
        ({"model": "big", "threshold": 1.01}, "less than or equal to 1"),
        ({"model": "big", "threshold": "NaN"}, "semantic.threshold"),
        ({"model": "big"}, "semantic.threshold: Field required"),
        ({"model": "auto", "threshold": 0.5}, "semantic.model: model: 'auto' asks for routing"),
        ({"model": "gpt-embed", "threshold": 0.5}, "outside provider"),
        ({"model": "big", "threshold": 0.5, "extra": 1}, "semantic.extra: Extra inputs"),
    ],
)
def test_bad_semantic_matching_is_refused(semantic: dict[str, Any], message: str) -> None:
    assert message in refused(doc(route0={"examples": ["x"]}, semantic=semantic))


def test_a_threshold_of_one_passes() -> None:
    found = routing.normalize_routing(
        doc(route0={"examples": ["x"]}, semantic={"model": "big", "threshold": 1}), settings()
    )
    assert found["semantic"] == {"model": "big", "threshold": 1.0}


def test_the_description_is_at_most_500_characters() -> None:
    assert "description: expected at most 500 characters, found 501" in refused(
        doc(route0={"description": "d" * 501})
    )
    found = routing.normalize_routing(doc(route0={"description": "d" * 500}), settings())
    assert found["routes"][0]["description"] == "d" * 500


def test_allow_explicit_model_is_a_boolean() -> None:
    assert "allow_explicit_model: Input should be a valid boolean" in refused(
        doc(allow_explicit_model="yes")
    )
    found = routing.normalize_routing(doc(allow_explicit_model=True), settings())
    assert found["allow_explicit_model"] is True


def test_unknown_fields_are_refused_not_dropped() -> None:
    assert "default-route: Extra inputs are not permitted" in refused(doc(**{"default-route": "x"}))
    assert "routes.1.keyword: Extra inputs" in refused(doc(route1={"keyword": ["x"]}))


# --- the API -------------------------------------------------------------------------


def test_off_until_set_then_put_get_and_delete(site: Site) -> None:
    empty = site.client.get(ROUTING, headers=site.login("aud"))
    assert empty.status_code == 200
    assert empty.json() == {"routing": None, "changed_at": None, "changed_by": None}

    admin = site.login("admin1")
    put = site.client.put(ROUTING, json=DOCUMENT, headers=admin)
    assert put.status_code == 200, put.text
    body = put.json()
    assert (body["routing"], body["changed_by"], body["changed"]) == (DOCUMENT, "admin1", True)
    assert "routing changed" in body["message"]

    for who in ("admin1", "aud"):
        site.login(who)
        got = site.client.get(ROUTING).json()
        assert (got["routing"], got["changed_by"]) == (DOCUMENT, "admin1")
        assert got["changed_at"] == body["changed_at"]

    admin = site.login("admin2")
    off = site.client.delete(ROUTING, headers=admin)
    assert off.status_code == 200
    assert (off.json()["routing"], off.json()["changed_by"], off.json()["changed"]) == (
        None,
        "admin2",
        True,
    )
    got = site.client.get(ROUTING).json()
    assert (got["routing"], got["changed_by"]) == (None, "admin2")
    again = site.client.delete(ROUTING, headers=admin).json()
    assert again["changed"] is False and "already off" in again["message"]
    assert len(rows(site)) == 2 and len(site.audit("routing.disabled")) == 1


def test_putting_the_document_in_force_again_changes_nothing(site: Site) -> None:
    admin = site.login("admin1")
    first = site.client.put(ROUTING, json=DOCUMENT, headers=admin).json()
    # The same document in another spelling (unstripped, duplicates, defaults left out).
    spelled = doc()
    spelled["routes"][0]["keywords"] = [" patient", "Patient", "diagnosis "]
    del spelled["routes"][1]["exclude"], spelled["semantic"]
    again = site.client.put(ROUTING, json=spelled, headers=site.login("admin2"))
    assert again.status_code == 200
    body = again.json()
    assert body["changed"] is False and "no change" in body["message"]
    assert (body["changed_by"], body["changed_at"]) == ("admin1", first["changed_at"])
    assert len(rows(site)) == 1 and len(site.audit("routing.changed")) == 1


@pytest.mark.parametrize(
    ("document", "code", "message"),
    [
        (doc(default_route="nowhere"), "RoutingError", "default_route: expected the name"),
        (doc(route0={"model": "huge"}), "RoutingError", "the site serves no model named 'huge'"),
        (doc(route0={"model": "gpt-4"}), "ValidationError", "body.routes.0.model"),
        (doc(route0={"name": "Bad"}), "ValidationError", "body.routes.0.name"),
        ({}, "ValidationError", "body.default_route: Field required"),
    ],
)
def test_a_bad_document_is_422_in_the_house_shape(
    site: Site, document: dict[str, Any], code: str, message: str
) -> None:
    answer = site.client.put(ROUTING, json=document, headers=site.login("admin1"))
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == code and message in error["message"]
    assert rows(site) == [] and site.audit("routing.changed") == []


def test_auditors_read_but_cannot_change(site: Site) -> None:
    site.client.put(ROUTING, json=DOCUMENT, headers=site.login("admin1"))
    auditor = site.login("aud")
    assert site.client.get(ROUTING).json()["routing"] == DOCUMENT
    for method in ("PUT", "DELETE"):
        answer = site.client.request(method, ROUTING, json=doc(), headers=auditor)
        assert answer.status_code == 403
        assert answer.json()["error"]["code"] == "ForbiddenError"
    assert len(rows(site)) == 1


def test_changes_need_the_csrf_token(site: Site) -> None:
    site.login("admin1")
    assert site.client.put(ROUTING, json=DOCUMENT).status_code == 403
    assert site.client.delete(ROUTING).status_code == 403
    assert rows(site) == []


# --- audit, policy, history ----------------------------------------------------------


def test_each_change_is_audited_with_the_whole_document_and_the_chain_holds(site: Site) -> None:
    admin = site.login("admin1")
    site.client.put(ROUTING, json=DOCUMENT, headers=admin)
    site.client.delete(ROUTING, headers=admin)
    (changed,) = site.audit("routing.changed")
    assert (changed.actor, changed.target) == ("admin1", "routing")
    assert changed.details == {"document": DOCUMENT, "sha256": sha(DOCUMENT)}
    (disabled,) = site.audit("routing.disabled")
    assert disabled.actor == "admin1" and disabled.details == {"before_sha256": sha(DOCUMENT)}
    check = site.client.post("/api/v1/audit/check", headers=admin)
    assert check.status_code == 200 and check.json()["ok"] is True


def test_the_policy_carries_the_routing_and_its_version_follows(site: Site) -> None:
    admin = site.login("admin1")
    off_version, policy = fetch(site)
    assert policy["routing"] is None
    site.client.put(ROUTING, json=DOCUMENT, headers=admin)
    on_version, policy = fetch(site)
    assert on_version != off_version and policy["routing"] == DOCUMENT
    site.client.put(ROUTING, json=doc(allow_explicit_model=True), headers=admin)
    explicit_version, policy = fetch(site)
    assert explicit_version not in (off_version, on_version)
    assert policy["routing"]["allow_explicit_model"] is True
    site.client.delete(ROUTING, headers=admin)
    assert fetch(site) == (off_version, {**policy, "routing": None})


def test_the_history_is_kept(site: Site) -> None:
    admin = site.login("admin1")
    second = doc(default_route="sensitive")
    site.client.put(ROUTING, json=DOCUMENT, headers=admin)
    site.client.put(ROUTING, json=second, headers=admin)
    site.client.delete(ROUTING, headers=admin)
    site.client.put(ROUTING, json=DOCUMENT, headers=site.login("admin2"))
    found = rows(site)
    assert [(r.document, r.created_by) for r in found] == [
        (DOCUMENT, "admin1"),
        (second, "admin1"),
        (None, "admin1"),
        (DOCUMENT, "admin2"),
    ]
    assert [r.created_at for r in found] == sorted(r.created_at for r in found)
    with site.db() as db:
        off = db.scalars(select(RoutingConfig.id).where(RoutingConfig.document.is_(None)))
        assert off.all() == [found[2].id]  # "off" is SQL NULL, not JSON null
        assert routing.current_routing(db).document == DOCUMENT
        assert [r.id for r in routing.routing_history(db, 2)] == [found[3].id, found[2].id]


def test_granting_auto_is_allowed_where_the_gateway_lists_its_models(site: Site) -> None:
    site.controller.services = ["tiny", "big", "llm-gateway"]
    site.identity("alice")
    gateway = grants.Gateway("llm-gateway", ("tiny", "big"))
    with site.db() as db:
        for model in (AUTO_MODEL, "tiny"):
            grants.grant_model(
                db,
                site.controller,
                subject="@alice",
                model_service=model,
                actor="admin1",
                client="",
                gateway=gateway,
            )
        db.commit()
        with pytest.raises(identity_service.IdentityError, match="'auto' its routing"):
            grants.grant_model(
                db,
                site.controller,
                subject="@alice",
                model_service="huge",
                actor="admin1",
                client="",
                gateway=gateway,
            )
    assert fetch(site)[1]["identities"]["alice"]["models"] == ["auto", "tiny"]


# --- the page ------------------------------------------------------------------------


def current(site: Site) -> dict[str, Any] | None:
    with site.db() as db:
        return routing.current_routing(db).document


def test_the_navigation_links_the_page(site: Site) -> None:
    for who in ("admin1", "aud"):
        site.page_login(who)
        assert 'href="/routing"' in site.client.get("/").text


def test_the_page_for_admins_and_auditors(site: Site) -> None:
    site.page_login("aud")
    off = site.client.get("/routing")
    assert off.status_code == 200
    assert 'data-state="off"' in off.text and "Routing was never set." in off.text
    assert 'id="route-form"' not in off.text

    site.client.put(
        ROUTING,
        json=doc(route0={"examples": ["a", "b"]}, semantic=SEMANTIC),
        headers=site.login("admin1"),
    )
    for who in ("admin1", "aud"):
        site.page_login(who)
        page = site.client.get("/routing")
        assert page.status_code == 200
        text = page.text
        assert 'data-state="on"' in text and "Default route: <strong>general</strong>" in text
        assert "refused (clients must ask for auto)" in text
        assert "big, threshold 0.75" in text
        assert "patient, diagnosis" in text and "patient data stays on the approved model" in text
        assert '<td class="number">2</td>' in text  # the examples' count
        assert "2 routes (sensitive → tiny, general → big); default general" in text
        forms = ('id="route-form"', 'id="routing-settings-form"', 'id="routing-off-form"')
        assert all((form in text) == (who == "admin1") for form in forms)
        assert ('action="/routing/routes/sensitive/delete"' in text) == (who == "admin1")
        assert 'action="/routing/routes/general/delete"' not in text  # the default stays


def test_add_change_delete_and_turn_off_from_the_page(site: Site) -> None:
    csrf = site.page_login("admin1")
    first = site.client.post(
        "/routing/routes",
        data={
            "csrf_token": csrf,
            "name": "general",
            "model": "big",
            "keywords": "",
            "description": "anything else",
        },
    )
    assert first.status_code == 200 and first.url.path == "/routing"  # followed the redirect
    assert current(site) == {
        "allow_explicit_model": False,
        "default_route": "general",  # the first route is the default
        "routes": [
            {
                "name": "general",
                "model": "big",
                "description": "anything else",
                "keywords": [],
                "exclude": [],
                "examples": [],
            }
        ],
        "semantic": None,
    }
    site.client.post(
        "/routing/routes",
        data={
            "csrf_token": csrf,
            "name": "sensitive",
            "model": "tiny",
            "keywords": " patient, diagnosis,,Patient ",
            "exclude": "veterinary",
            "examples": "what is the diagnosis?\n\nshow the patient file\n",
            "description": "patient data",
            "semantic_model": "big",  # the first examples set semantic matching up
            "semantic_threshold": "0.7",
        },
    )
    now = current(site)
    assert now is not None and now["semantic"] == {"model": "big", "threshold": 0.7}
    settings_page = site.client.post(
        "/routing/settings",
        data={
            "csrf_token": csrf,
            "default_route": "sensitive",
            "allow_explicit_model": "on",
            "semantic_model": "big",
            "semantic_threshold": "0.8",
        },
    )
    assert settings_page.status_code == 200 and settings_page.url.path == "/routing"
    now = current(site)
    assert now is not None
    assert (now["default_route"], now["allow_explicit_model"]) == ("sensitive", True)
    assert now["semantic"] == {"model": "big", "threshold": 0.8}
    assert [r["name"] for r in now["routes"]] == ["general", "sensitive"]
    assert now["routes"][1]["keywords"] == ["patient", "diagnosis"]
    assert now["routes"][1]["exclude"] == ["veterinary"]
    assert now["routes"][1]["examples"] == ["what is the diagnosis?", "show the patient file"]

    # A route of a taken name is replaced where it stands.
    site.client.post(
        "/routing/routes",
        data={"csrf_token": csrf, "name": "general", "model": "tiny", "keywords": "hello"},
    )
    now = current(site)
    assert now is not None
    assert [(r["name"], r["model"]) for r in now["routes"]] == [
        ("general", "tiny"),
        ("sensitive", "tiny"),
    ]
    deleted = site.client.post("/routing/routes/general/delete", data={"csrf_token": csrf})
    assert deleted.status_code == 200 and deleted.url.path == "/routing"
    now = current(site)
    assert now is not None and [r["name"] for r in now["routes"]] == ["sensitive"]

    # The last examples gone: semantic matching goes with them, and the page says so.
    idle = site.client.post(
        "/routing/routes", data={"csrf_token": csrf, "name": "sensitive", "model": "tiny"}
    )
    assert idle.status_code == 200
    assert "Semantic matching is off now: no route has examples left." in idle.text
    now = current(site)
    assert now is not None and now["semantic"] is None

    off = site.client.post("/routing/off", data={"csrf_token": csrf})
    assert off.status_code == 200 and 'data-state="off"' in off.text
    assert current(site) is None
    again = site.client.post("/routing/off", data={"csrf_token": csrf})
    assert again.status_code == 200 and "Routing was already off." in again.text
    assert len(site.audit("routing.changed")) == 6 and len(site.audit("routing.disabled")) == 1
    history = site.client.get("/routing").text
    assert history.count("<td>admin1</td>") == 7 and "routing off" in history


def test_the_same_settings_again_say_nothing_changed(site: Site) -> None:
    site.client.put(ROUTING, json=DOCUMENT, headers=site.login("admin1"))
    csrf = site.page_login("admin1")
    page = site.client.post(
        "/routing/settings", data={"csrf_token": csrf, "default_route": "general"}
    )
    assert page.status_code == 200
    assert "Nothing changed: this routing is already in force." in page.text
    assert len(rows(site)) == 1


@pytest.mark.parametrize(
    ("path", "data", "status", "message"),
    [
        (
            "/routing/routes",
            {"name": "Bad Name", "model": "tiny"},
            422,
            "routes.2.name: route name: expected 1 to 63 lowercase letters",
        ),
        (
            "/routing/routes",
            {"name": "x", "model": "huge"},
            422,
            "the site serves no model named &#39;huge&#39;",
        ),
        (
            "/routing/routes",
            {"name": "x", "model": "tiny", "examples": "an example"},
            422,
            "examples need an embedding model",
        ),
        (
            "/routing/settings",
            {"default_route": "general", "semantic_model": "big", "semantic_threshold": "most"},
            422,
            "semantic threshold: expected a number above 0 and at most 1",
        ),
        (
            "/routing/settings",
            {"default_route": "nowhere"},
            422,
            "default_route: expected the name of one of the routes",
        ),
        (
            "/routing/routes/general/delete",
            {},
            422,
            "route &#39;general&#39; is the default route: choose another default route first",
        ),
        ("/routing/routes/nowhere/delete", {}, 404, "no route named &#39;nowhere&#39;"),
    ],
)
def test_bad_input_is_a_message_on_the_page(
    site: Site, path: str, data: dict[str, str], status: int, message: str
) -> None:
    site.client.put(ROUTING, json=DOCUMENT, headers=site.login("admin1"))
    csrf = site.page_login("admin1")
    page = site.client.post(path, data={"csrf_token": csrf, **data})
    assert page.status_code == status
    assert message in page.text and "<h1>Routing</h1>" in page.text
    assert len(rows(site)) == 1


def test_the_only_route_is_not_deleted_and_settings_need_routes(site: Site) -> None:
    csrf = site.page_login("admin1")
    page = site.client.post(
        "/routing/settings", data={"csrf_token": csrf, "default_route": "general"}
    )
    assert page.status_code == 422 and "routing is off: add a route first" in page.text
    site.client.post("/routing/routes", data={"csrf_token": csrf, "name": "only", "model": "tiny"})
    page = site.client.post("/routing/routes/only/delete", data={"csrf_token": csrf})
    assert page.status_code == 422
    assert "route &#39;only&#39; is the only route: turn routing off instead" in page.text
    assert len(rows(site)) == 1


def test_auditors_and_forged_forms_change_nothing(site: Site) -> None:
    site.client.put(ROUTING, json=DOCUMENT, headers=site.login("admin1"))
    csrf = site.page_login("aud")
    posts = [
        ("/routing/routes", {"name": "x", "model": "tiny"}),
        ("/routing/settings", {"default_route": "sensitive"}),
        ("/routing/routes/sensitive/delete", {}),
        ("/routing/off", {}),
    ]
    for path, data in posts:
        assert site.client.post(path, data={"csrf_token": csrf, **data}).status_code == 403
    site.page_login("admin1")
    for path, data in posts:
        assert site.client.post(path, data={"csrf_token": "forged", **data}).status_code == 403
    assert len(rows(site)) == 1
