"""The Store contract for deployment-wide settings, run against every implementation; and the
service that holds a deployment's processes to one ``PIXELFLOW_AUTH`` over a real store."""

from __future__ import annotations

import asyncio

import pytest

from pixelflow.adapters.store.protocol import Store
from pixelflow.core.errors import Conflict
from pixelflow.services.deployment import DeploymentSettings
from tests.contract.store.helpers import at


async def test_the_first_value_claimed_is_kept_even_between_concurrent_callers(
    store: Store,
) -> None:
    assert await store.deployment_setting("auth_mode") is None
    claimed = await asyncio.gather(
        *(
            store.claim_deployment_setting("auth_mode", mode, now=at(n))
            for n, mode in enumerate(["header", "api_key", "none", "api_key", "header"])
        )
    )
    assert len(set(claimed)) == 1
    assert await store.deployment_setting("auth_mode") == claimed[0]
    assert await store.claim_deployment_setting("auth_mode", "other", now=at(9)) == claimed[0]
    # Another name is a setting of its own.
    assert await store.claim_deployment_setting("colour", "blue", now=at(1)) == "blue"
    assert await store.deployment_setting("auth_mode") == claimed[0]


async def test_setting_a_value_replaces_the_recorded_one(store: Store) -> None:
    await store.set_deployment_setting("auth_mode", "header", now=at(0))  # nothing recorded yet
    assert await store.deployment_setting("auth_mode") == "header"
    await store.set_deployment_setting("auth_mode", "api_key", now=at(1))
    assert await store.deployment_setting("auth_mode") == "api_key"
    assert await store.claim_deployment_setting("auth_mode", "header", now=at(2)) == "api_key"


async def test_processes_agree_on_the_first_mode_until_an_operator_changes_it(
    store: Store,
) -> None:
    deployment = DeploymentSettings(store, clock=lambda: at(0))
    assert await deployment.auth_mode() is None
    await deployment.agree_on_auth_mode("header")  # the first process records its mode
    await deployment.agree_on_auth_mode("header")  # the next ones with the same mode start
    with pytest.raises(Conflict) as refused:
        await deployment.agree_on_auth_mode("api_key")
    assert refused.value.code == "auth_mode_mismatch"
    assert "PIXELFLOW_AUTH=api_key" in refused.value.message
    assert "runs with PIXELFLOW_AUTH=header" in refused.value.message
    assert await deployment.auth_mode() == "header"  # the refused process changed nothing

    await deployment.set_auth_mode("api_key")
    await deployment.agree_on_auth_mode("api_key")
    with pytest.raises(Conflict):
        await deployment.agree_on_auth_mode("header")
