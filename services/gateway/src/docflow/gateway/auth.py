"""API keys → tenants. Every /v1 route depends on `current_tenant`.

Keys are compared in constant time against *every* configured key, so neither the
comparison nor the loop's length reveals how much of a guessed key was right. Keys
are never logged; only the tenant is bound to the log context.
"""

import hmac
from typing import Annotated

import structlog
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

bearer_scheme = HTTPBearer(auto_error=False, description="An API key issued for one tenant")


class ApiKeys:
    def __init__(self, tenants_by_key: dict[str, str]) -> None:
        self._keys = [(key.encode(), tenant) for key, tenant in tenants_by_key.items()]

    @property
    def configured(self) -> bool:
        return bool(self._keys)

    def tenant_for(self, presented: str) -> str | None:
        presented_bytes = presented.encode()
        tenant = None
        for key, key_tenant in self._keys:
            if hmac.compare_digest(presented_bytes, key):
                tenant = key_tenant  # no early exit: every request compares every key
        return tenant


def _unauthorized(reason: str) -> HTTPException:
    return HTTPException(status_code=status.HTTP_401_UNAUTHORIZED, detail=reason,
                         headers={"WWW-Authenticate": "Bearer"})


# async although it does no I/O: FastAPI runs sync dependencies in a worker thread,
# where the tenant bound to the log context would not reach the endpoint.
async def current_tenant(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> str:
    if credentials is None:
        raise _unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    api_keys: ApiKeys = request.app.state.services.api_keys
    tenant = api_keys.tenant_for(credentials.credentials)
    if tenant is None:
        raise _unauthorized("invalid API key")
    structlog.contextvars.bind_contextvars(tenant=tenant)
    return tenant


Tenant = Annotated[str, Depends(current_tenant)]


async def require_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> None:
    """Operators only: a key from DOCFLOW_ADMIN_API_KEYS (tenant keys get 403)."""
    if credentials is None:
        raise _unauthorized("missing API key: send 'Authorization: Bearer <admin key>'")
    presented = credentials.credentials.encode()
    admin_keys = request.app.state.services.settings.admin_keys
    is_admin = False
    for key in admin_keys:
        if hmac.compare_digest(presented, key.encode()):
            is_admin = True  # no early exit, as above
    if is_admin:
        return
    if request.app.state.services.api_keys.tenant_for(credentials.credentials) is not None:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="admin key required")
    raise _unauthorized("invalid API key")


AdminKey = Depends(require_admin)
