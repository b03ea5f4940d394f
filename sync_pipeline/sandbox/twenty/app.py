"""Starlette ASGI app imitating Twenty's REST API (§1-§5, §8, §9) plus the ``/_standin/`` admin routes.

Section numbers (§) refer to the Twenty API contract in docs/twenty-api.md.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import copy
import hmac
import random
import secrets
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .config import StandinConfig
from .errors import ApiError, bad_request, not_found
from .query import (
    compile_filter, decode_cursor, encode_cursor, is_true, mentions_deleted_at, parse_depth, parse_fields,
    parse_filter, parse_limit, parse_order_by,
)
from .ratelimit import WorkspaceRateLimiter, rate_limit_error
from .records import Change, RecordStore
from .schema import OBJECTS, OBJECTS_BY_SINGULAR, ObjectDef, is_uuid
from .seed import seed
from .webhooks import WebhookDispatcher, WebhookStats

QUERY_MAX_RECORDS_FROM_RELATION = 60  # §4.5
SERVER_ERROR_NAMES = {
    500: "InternalServerErrorException",
    502: "BadGatewayException",
    503: "ServiceUnavailableException",
    504: "GatewayTimeoutException",
}
WEBHOOK_KEYS = ("targetUrl", "operations", "description", "secret")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type="application/json")


def error_response(error: ApiError) -> Response:
    return json_response(error.body(), error.status, error.headers)


async def read_json(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as problem:
        raise bad_request(f"Invalid JSON body: {problem}") from None


def resolve_object(name: str) -> ObjectDef:
    if name in OBJECTS:
        return OBJECTS[name]
    if name in OBJECTS_BY_SINGULAR:
        raise bad_request(f"object '{name}' not found. Did you mean '{OBJECTS_BY_SINGULAR[name].plural}'?")
    raise bad_request(f"object '{name}' not found. eg: companies")


def require_uuid(value: str) -> str:
    if not is_uuid(value):
        raise bad_request(f"'{value}' is not a valid UUID")
    return value.lower()


class Standin:
    """Workspace state plus the request handlers."""

    def __init__(self, config: StandinConfig) -> None:
        self.config = config
        self.faults = config.faults
        self.initial_faults = copy.deepcopy(config.faults)
        self.store = RecordStore(config.state_file)
        self.seed_counts = seed(
            self.store, config.seed_companies, config.seed_people, config.seed_opportunities
        )
        self.api_key_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"twenty-standin:{config.api_key}"))
        self.actor: dict[str, Any] = {"source": "API", "workspaceMemberId": None, "name": config.api_key_name,
                                      "context": {}}
        self.limiter = self._new_limiter()
        self.dispatcher = WebhookDispatcher(
            self.faults, config.workspace_id, self.api_key_id, config.webhook_allow_any_host
        )
        self.counters: Counter[str] = Counter()

    def _new_limiter(self) -> WorkspaceRateLimiter:
        return WorkspaceRateLimiter(self.faults.rate_limit_per_second, self.faults.rate_limit_per_minute)

    # --- cross-cutting -------------------------------------------------------------------------------

    def authenticate(self, request: Request) -> None:
        """§1: missing token vs bad token, in the configured release's shape."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        missing = scheme.lower() != "bearer" or not token
        if not missing and hmac.compare_digest(token.encode(), self.config.api_key.encode()):
            return
        if self.faults.auth_style == "2026":
            raise ApiError(403, "ForbiddenException", "Forbidden resource")
        if missing:
            raise ApiError(403, "FORBIDDEN_EXCEPTION", "missing authentication token")
        raise ApiError(401, "UNAUTHENTICATED", "Token invalid.")

    async def inject_faults(self) -> None:
        """Faults that hit before anything is read or written."""
        if self.faults.latency_seconds:
            self.counters["held_by_latency"] += 1  # a test can tell that a request is being held
            await asyncio.sleep(self.faults.latency_seconds)
        if self.faults.fail_next > 0:
            self.faults.fail_next -= 1
            raise self._server_error(self.faults.fail_status)
        if self.faults.throttle_next > 0:
            self.faults.throttle_next -= 1
            style = self.faults.rate_limit_style
            raise rate_limit_error(style, self.limiter.long, self.api_key_id, 1.0, forced=True)
        if self.faults.error_rate and random.random() < self.faults.error_rate:
            raise self._server_error(500)

    def _server_error(self, status: int) -> ApiError:
        self.counters["faults_injected"] += 1
        error_name = SERVER_ERROR_NAMES.get(status, "HttpException")
        return ApiError(status, error_name, "Injected failure (stand-in fault knob)")

    def after_write(self, changes: list[Change]) -> None:
        """Deliver webhooks, then maybe fail although the write is committed (§5.2: re-read before retry)."""
        self.dispatcher.emit(list(self.store.webhooks.values()), changes)
        if self.faults.fail_after_write_next > 0:
            self.faults.fail_after_write_next -= 1
            raise self._server_error(500)

    def count_response(self, response: Response) -> Response:
        self.counters[f"status_{response.status_code}"] += 1
        if response.status_code == 429 or (
            response.status_code == 400 and b'"Limit reached' in bytes(response.body)
        ):
            self.counters["rate_limited"] += 1
        return response

    # --- /rest ---------------------------------------------------------------------------------------

    async def rest(self, request: Request) -> Response:
        self.counters["requests"] += 1
        try:
            self.authenticate(request)
            await self.inject_faults()
            response = await self.dispatch(request)
        except ApiError as error:
            response = error_response(error)
        return self.count_response(response)

    async def dispatch(self, request: Request) -> Response:
        """Path parsing after parse-core-path (§3): at most two segments, three for ``…/{id}/restore``."""
        path = request.path_params["path"]
        segments = [segment for segment in path.split("/") if segment]
        method = request.method
        if segments[:2] == ["metadata", "webhooks"] and len(segments) <= 3:
            return await self.webhook_route(request, segments[2] if len(segments) == 3 else None)
        if segments[:1] == ["webhooks"] and len(segments) <= 2:  # deprecated alias (§9.1)
            return await self.webhook_route(request, segments[1] if len(segments) == 2 else None)
        invalid = bad_request(
            f"Query path '/rest/{path}' invalid. Valid examples: /rest/companies/id or /rest/companies "
            "or /rest/batch/companies"
        )
        if not segments or len(segments) > 3:
            raise invalid
        if segments[0] == "batch":
            if len(segments) != 2:
                raise invalid
            obj = self.begin(segments[1], method, allowed=("POST",))
            return await self.create(request, obj, batch=True)
        if segments[0] == "restore":  # late-2025 form PATCH /rest/restore/{plural}/{id} (§3)
            if len(segments) != 3:
                raise invalid
            obj = self.begin(segments[1], method, allowed=("PATCH",))
            return self.restore_one(obj, require_uuid(segments[2]))
        if len(segments) == 3:
            if segments[2] != "restore":
                raise invalid
            obj = self.begin(segments[0], method, allowed=("PATCH",))
            return self.restore_one(obj, require_uuid(segments[1]))
        if len(segments) == 2 and segments[1] == "restore":
            obj = self.begin(segments[0], method, allowed=("PATCH",))
            return self.restore_many(request, obj)
        if len(segments) == 1:
            obj = self.begin(segments[0], method, allowed=("GET", "POST", "PATCH", "DELETE"))
            if method == "GET":
                return self.list(request, obj)
            if method == "POST":
                return await self.create(request, obj, batch=False)
            if method == "PATCH":
                return await self.update_many(request, obj)
            return self.delete_many(request, obj)
        obj = resolve_object(segments[0])
        record_id = require_uuid(segments[1])
        self.begin(segments[0], method, allowed=("GET", "PATCH", "PUT", "DELETE"))
        if method == "GET":
            return self.get_one(request, obj, record_id)
        if method in ("PATCH", "PUT"):  # PUT: undocumented legacy alias of PATCH (§3)
            return await self.update_one(request, obj, record_id)
        return self.delete_one(request, obj, record_id)

    def begin(self, object_name: str, method: str, allowed: tuple[str, ...]) -> ObjectDef:
        """Resolve the object, check the method, then charge one rate-limit token (§8.1)."""
        obj = resolve_object(object_name)
        if method not in allowed:
            raise ApiError(404, "NotFoundException", f"Cannot {method} this route")
        self.limiter.check(self.faults.rate_limit_style, self.api_key_id)
        return obj

    # --- reads ---------------------------------------------------------------------------------------

    def shape(
        self, obj: ObjectDef, row: dict[str, Any], depth: int = 0, fields: list[str] | None = None
    ) -> dict[str, Any]:
        """REST record at ``depth`` 0/1 with the optional 2026 ``fields`` selection (§4.5)."""
        wanted = set(fields) if fields is not None else None
        if wanted is None:
            out = dict(row)
        else:
            out = {"id": row["id"]}
            for name in fields or ():
                if name in obj.fields:
                    out[name] = row[name]
                elif name in obj.many_to_one:
                    out[obj.many_to_one[name]] = row[obj.many_to_one[name]]
        if depth == 0:
            return out
        for relation, column in obj.many_to_one.items():
            if wanted is None or relation in wanted:
                target = OBJECTS[obj.fields[column].target or ""]
                related = self.store.get(target, row[column]) if row[column] else None
                out[relation] = dict(related) if related else None
        for relation, (plural, column) in obj.one_to_many.items():
            if wanted is None or relation in wanted:
                children = sorted(
                    (
                        child
                        for child in self.store.tables[plural].values()
                        if child[column] == row["id"] and child["deletedAt"] is None
                    ),
                    key=lambda child: child["id"],
                )
                out[relation] = [dict(child) for child in children[:QUERY_MAX_RECORDS_FROM_RELATION]]
        return out

    def list(self, request: Request, obj: ObjectDef) -> Response:
        params = request.query_params
        limit = parse_limit(params.get("limit"), self.config.page_size_max)
        depth = parse_depth(params.get("depth"))
        fields = parse_fields(obj, params.get("fields"))
        order = parse_order_by(obj, params.get("order_by"))
        filter_text = params.get("filter")
        node = parse_filter(filter_text) if filter_text and filter_text.strip() else None
        predicate = compile_filter(obj, node) if node is not None else None
        starting_after, ending_before = params.get("starting_after"), params.get("ending_before")
        if starting_after and ending_before:
            raise bad_request("Cannot provide both before and after")
        page = self.store.page(
            obj,
            predicate,
            with_deleted=mentions_deleted_at(node),
            order=order,
            limit=limit,
            after=decode_cursor(starting_after, order) if starting_after else None,
            before=decode_cursor(ending_before, order) if ending_before else None,
        )
        return json_response(
            {
                "data": {obj.plural: [self.shape(obj, row, depth, fields) for row in page.records]},
                "totalCount": page.total_count,
                "pageInfo": {
                    "hasNextPage": page.has_next_page,
                    "hasPreviousPage": page.has_previous_page,
                    "startCursor": encode_cursor(page.records[0], order) if page.records else None,
                    "endCursor": encode_cursor(page.records[-1], order) if page.records else None,
                },
            }
        )

    def get_one(self, request: Request, obj: ObjectDef, record_id: str) -> Response:
        depth = parse_depth(request.query_params.get("depth"))
        fields = parse_fields(obj, request.query_params.get("fields"))
        row = self.store.get(obj, record_id)  # soft-deleted rows answer 404 (§4.4)
        if row is None:
            raise not_found()
        return json_response({"data": {obj.singular: self.shape(obj, row, depth, fields)}})

    def filtered_rows(
        self, request: Request, obj: ObjectDef, *, only_deleted: bool = False
    ) -> builtins.list[dict[str, Any]]:  # `list` here is the route method below
        """Targets of update/delete/restore by filter, capped at MUTATION_MAXIMUM_AFFECTED_RECORDS (§3)."""
        filter_text = request.query_params.get("filter")
        if not filter_text or not filter_text.strip():
            raise bad_request("'filter' is required when updating, deleting or restoring several records")
        node = parse_filter(filter_text)
        with_deleted = only_deleted or mentions_deleted_at(node)
        rows = self.store.select(obj, compile_filter(obj, node), with_deleted=with_deleted)
        if only_deleted:
            rows = [row for row in rows if row["deletedAt"] is not None]
        maximum = self.config.mutation_max_affected
        if len(rows) > maximum:
            raise bad_request(f"Cannot affect {len(rows)} records at once; the maximum is {maximum}.")
        return sorted(rows, key=lambda row: row["id"])

    # --- writes --------------------------------------------------------------------------------------

    async def create(self, request: Request, obj: ObjectDef, *, batch: bool) -> Response:
        body = await read_json(request)
        upsert = is_true(request.query_params.get("upsert"))
        if batch:
            if not isinstance(body, list):
                raise bad_request("Batch body must be a JSON array of records.")
            if len(body) > self.config.batch_max:
                raise bad_request(f"Maximum number of records to upsert is {self.config.batch_max}.")
            items = body
        else:
            if not isinstance(body, dict):
                raise bad_request(f"Invalid data for object {obj.singular}: expected a JSON object.")
            items = [body]
        records, changes = self.store.create_many(obj, items, upsert=upsert, actor=self.actor)
        self.after_write(changes)
        if batch:
            return json_response({"data": {obj.plural: records}}, 201)
        return json_response({"data": {f"create{obj.singular_label}": records[0]}}, 201)

    async def update_one(self, request: Request, obj: ObjectDef, record_id: str) -> Response:
        body = await read_json(request)
        row = self.store.find_for_write(obj, record_id, with_deleted=False)
        records, changes = self.store.update_many(obj, [row], body, self.actor)
        self.after_write(changes)
        return json_response({"data": {f"update{obj.singular_label}": records[0]}})

    async def update_many(self, request: Request, obj: ObjectDef) -> Response:
        body = await read_json(request)
        records, changes = self.store.update_many(obj, self.filtered_rows(request, obj), body, self.actor)
        self.after_write(changes)
        return json_response({"data": {f"update{obj.plural_label}": records}})

    def delete_one(self, request: Request, obj: ObjectDef, record_id: str) -> Response:
        """§5.5: DELETE destroys unless ``soft_delete=true``; destroy also reaches soft-deleted rows."""
        soft = is_true(request.query_params.get("soft_delete"))
        row = self.store.find_for_write(obj, record_id, with_deleted=not soft)
        if soft:
            _, changes = self.store.soft_delete(obj, [row], self.actor)
        else:
            changes = self.store.destroy(obj, [row])
        self.after_write(changes)
        return json_response({"data": {f"delete{obj.singular_label}": {"id": record_id}}})

    def delete_many(self, request: Request, obj: ObjectDef) -> Response:
        soft = is_true(request.query_params.get("soft_delete"))
        rows = self.filtered_rows(request, obj)
        if soft:
            live = [row for row in rows if row["deletedAt"] is None]
            records, changes = self.store.soft_delete(obj, live, self.actor)
        else:
            records, changes = rows, self.store.destroy(obj, rows)
        self.after_write(changes)
        return json_response({"data": {f"delete{obj.plural_label}": records}})

    def restore_one(self, obj: ObjectDef, record_id: str) -> Response:
        row = self.store.find_for_write(obj, record_id, with_deleted=True)
        records, changes = self.store.restore(obj, [row], self.actor)
        self.after_write(changes)
        return json_response({"data": {f"restore{obj.singular_label}": records[0]}})

    def restore_many(self, request: Request, obj: ObjectDef) -> Response:
        trashed = self.filtered_rows(request, obj, only_deleted=True)
        records, changes = self.store.restore(obj, trashed, self.actor)
        self.after_write(changes)
        return json_response({"data": {f"restore{obj.plural_label}": records}})

    # --- /rest/metadata/webhooks (§9.1) ----------------------------------------------------------------

    def _webhook_values(self, body: Any, creating: bool) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request("Webhook body must be a JSON object.")
        for key in body:
            if key not in WEBHOOK_KEYS:
                raise bad_request(f"property {key} should not exist")
        values = dict(body)
        if creating or "targetUrl" in values:
            target = values.get("targetUrl")
            if not isinstance(target, str) or not target.startswith(("http://", "https://")):
                raise bad_request("targetUrl must be a valid http(s) URL")
        if "operations" in values:
            operations = values["operations"]
            well_formed = isinstance(operations, list) and all(
                isinstance(operation, str) and "." in operation for operation in operations
            )
            if not well_formed:
                raise bad_request("operations must be a list like ['person.*', '*.updated']")
        return values

    async def webhook_route(self, request: Request, webhook_id: str | None) -> Response:
        # Metadata calls are not charged to the record rate limit (§8.1 throttles query runners).
        method = request.method
        if webhook_id is None:
            if method == "GET":
                return json_response(list(self.store.webhooks.values()))
            if method != "POST":
                raise ApiError(404, "NotFoundException", f"Cannot {method} this route")
            values = self._webhook_values(await read_json(request), creating=True)
            now = self.store.transaction_time()
            created = {
                "id": str(uuid.uuid4()),
                "targetUrl": values["targetUrl"],
                "operations": values.get("operations") or ["*.*"],
                "description": values.get("description"),
                # §9.1: newer servers generate a 64-hex secret when none is given
                "secret": values["secret"] if "secret" in values else secrets.token_hex(32),
                "createdAt": now,
                "updatedAt": now,
            }
            self.store.save_webhook(created)
            return json_response(created, 201)
        webhook = self.store.webhooks.get(webhook_id)
        if webhook is None:
            raise not_found("Webhook not found")
        if method == "GET":
            return json_response(webhook)
        if method == "PATCH":
            values = self._webhook_values(await read_json(request), creating=False)
            webhook = {**webhook, **values, "updatedAt": self.store.transaction_time()}
            self.store.save_webhook(webhook)
            return json_response(webhook)
        if method == "DELETE":
            self.store.delete_webhook(webhook_id)
            return json_response(webhook)
        raise ApiError(404, "NotFoundException", f"Cannot {method} this route")

    # --- /_standin admin routes ----------------------------------------------------------------------

    async def admin(self, request: Request) -> Response:
        try:
            self.authenticate(request)
            return await self._admin(request)
        except ApiError as error:
            return error_response(error)

    async def _admin(self, request: Request) -> Response:
        action = request.path_params["action"]
        if action == "faults":
            if request.method == "POST":
                changes = await read_json(request) or {}
                if not isinstance(changes, dict):
                    raise bad_request("faults body must be a JSON object")
                try:
                    self.faults.update(changes)
                except ValueError as problem:
                    raise bad_request(str(problem)) from None
                if any(name.startswith("rate_limit_per_") for name in changes):
                    self.limiter = self._new_limiter()
            return json_response(self.faults.as_dict())
        if action == "stats" and request.method == "GET":
            return json_response(self.stats())
        if action == "reset" and request.method == "POST":
            options = await read_json(request) or {}
            self.faults.update(self.initial_faults.as_dict())
            self.limiter = self._new_limiter()
            self.counters.clear()
            self.dispatcher.stats = WebhookStats()
            if isinstance(options, dict) and options.get("records"):
                self.store.clear()
                config = self.config
                seed(self.store, config.seed_companies, config.seed_people, config.seed_opportunities)
            return json_response({"reset": True, "faults": self.faults.as_dict()})
        raise not_found(f"Unknown stand-in admin route '{action}'")

    def stats(self) -> dict[str, Any]:
        webhook_stats = self.dispatcher.stats
        return {
            "requests": self.counters["requests"],
            "rate_limited": self.counters["rate_limited"],
            "faults_injected": self.counters["faults_injected"],
            "held_by_latency": self.counters["held_by_latency"],
            "responses_by_status": {
                key.removeprefix("status_"): count
                for key, count in sorted(self.counters.items())
                if key.startswith("status_")
            },
            "webhooks_sent": webhook_stats.sent,
            "webhooks_failed": webhook_stats.failed,
            "webhooks_dropped": webhook_stats.dropped,
            "webhooks_blocked": webhook_stats.blocked,
            "webhooks_registered": len(self.store.webhooks),
            "records": {
                plural: {
                    "live": sum(1 for row in table.values() if row["deletedAt"] is None),
                    "soft_deleted": sum(1 for row in table.values() if row["deletedAt"] is not None),
                }
                for plural, table in self.store.tables.items()
            },
        }


def create_app(config: StandinConfig) -> Starlette:
    """ASGI app; ``app.state.standin`` exposes the workspace for in-process use."""
    standin = Standin(config)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await standin.dispatcher.start()
        try:
            yield
        finally:
            await standin.dispatcher.aclose()
            standin.store.close()

    methods = ["GET", "POST", "PATCH", "PUT", "DELETE"]
    app = Starlette(
        routes=[
            Route("/rest/{path:path}", standin.rest, methods=methods),
            Route("/_standin/{action}", standin.admin, methods=["GET", "POST"]),
        ],
        lifespan=lifespan,
    )
    app.state.standin = standin
    return app
