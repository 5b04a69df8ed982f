"""Model grants: which identity (or attribute) may use which model, as a Dial policy.

A grant is a Dial policy on the controller (on the model's own service, or on the site's
llm-gateway when it has one) and a row here; the controller acts first, the row and its
audit record are committed after, and if that commit fails the policy is deleted again.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from appliance.access.policy import AUTO_MODEL, METRICS_GRANT
from appliance.admin.services.controller_steps import controller_step
from appliance.admin.services.identities import ROLE_ATTRIBUTE, IdentityError
from appliance.admin.settings import AdminSettings
from appliance.audit.record import record_event
from appliance.db.models import Identity, ModelGrant
from appliance.ziti.errors import NotFoundError
from appliance.ziti.interfaces import IdentityController

__all__ = ["Gateway", "grant_model", "revoke_grant", "site_gateway"]


@dataclass(frozen=True)
class Gateway:
    """The site's llm-gateway: grants let their subject dial it and use the model there."""

    service: str
    models: tuple[str, ...]


def grant_model(
    db: Session,
    controller: IdentityController,
    *,
    subject: str,
    model_service: str,
    actor: str,
    client: str,
    gateway: Gateway | None = None,
) -> ModelGrant:
    """Let an identity (``@name``) or attribute (``#team``) use a model.

    Without a gateway the Dial policy is on the model's own service; with one it is on
    the gateway's service and the model must be one the gateway serves, ``metrics`` (its
    counters) or ``auto`` (its routing: the routed-to models need grants of their own).
    Keys are not made here: they belong to an identity
    (:mod:`appliance.admin.services.api_keys`), and the grant puts the model in the access
    policy of every key its subject holds.
    """
    if subject.startswith("@"):
        row = db.scalar(select(Identity).where(Identity.name == subject[1:]))
        if row is None or row.ziti_id is None:
            raise IdentityError(f"no identity named {subject[1:]!r}")
        identity_role = f"@{row.ziti_id}"
    elif subject.startswith("#") and ROLE_ATTRIBUTE.match(subject[1:]):
        identity_role = subject
    else:
        raise IdentityError(f"subject {subject!r}: expected @identity-name or #attribute")
    granted = db.scalar(
        select(ModelGrant).where(
            ModelGrant.subject == subject, ModelGrant.model_service == model_service
        )
    )
    if granted is not None:
        raise IdentityError(
            f"{subject} is already granted {model_service!r} (grant {granted.id}): it already "
            "exists"
        )
    if (
        gateway is not None
        and gateway.models
        and model_service not in gateway.models
        and model_service != METRICS_GRANT  # the access proxy's metrics, on the same service
        and model_service != AUTO_MODEL  # routing: the site's routes pick the model
    ):
        raise IdentityError(
            f"the llm-gateway serves no model named {model_service!r} "
            f"(it serves {', '.join(gateway.models)}; {METRICS_GRANT!r} grants its metrics, "
            f"{AUTO_MODEL!r} its routing)"
        )
    dialled = gateway.service if gateway is not None else model_service
    services = controller_step(
        db,
        actor,
        client,
        "grant.create",
        subject,
        lambda: controller.list_services(f'name="{dialled}"'),
    )
    if len(services) != 1:
        what = "llm-gateway service" if gateway is not None else "model service"
        raise IdentityError(f"the controller has no {what} named {dialled!r}")
    policy_name = f"appliance-grant-{subject[1:]}-{model_service}"
    policy_id = controller_step(
        db,
        actor,
        client,
        "grant.create",
        subject,
        lambda: controller.create_service_policy(
            policy_name,
            type="Dial",
            identity_roles=[identity_role],
            service_roles=[f"@{services[0].id}"],
        ),
    )
    try:
        grant = ModelGrant(
            subject=subject, model_service=model_service, ziti_policy_id=policy_id, created_by=actor
        )
        db.add(grant)
        record_event(
            db,
            actor=actor,
            action="grant.create",
            target=subject,
            client=client,
            details={"model_service": model_service, "policy": policy_name},
        )
        db.commit()
    except SQLAlchemyError:
        db.rollback()
        controller.delete_service_policy(policy_id)
        raise
    return grant


def revoke_grant(
    db: Session, controller: IdentityController, grant: ModelGrant, *, actor: str, client: str
) -> None:
    """Remove the Dial policy; the model leaves the access policy of the subject's keys."""
    if grant.ziti_policy_id:

        def delete() -> None:
            with contextlib.suppress(NotFoundError):
                controller.delete_service_policy(grant.ziti_policy_id or "")

        controller_step(db, actor, client, "grant.revoke", grant.subject, delete)
    record_event(
        db,
        actor=actor,
        action="grant.revoke",
        target=grant.subject,
        client=client,
        details={"model_service": grant.model_service},
    )
    db.delete(grant)


def site_gateway(settings: AdminSettings) -> Gateway | None:
    """The site's llm-gateway as the settings describe it, or None without one."""
    if settings.gateway_service is None:
        return None
    return Gateway(settings.gateway_service, tuple(settings.gateway_models))
