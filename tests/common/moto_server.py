"""moto's server, patched where it falls short of what the tests need.

1. The Rust SDK's CloudWatch client speaks CloudWatch's newest protocol,
   Smithy RPC v2 CBOR (POST /service/SERVICE/operation/OPERATION with a
   CBOR body); moto 5.2 parses only its JSON and query forms. This wraps
   moto's WSGI app: a CBOR request is handed to moto as the same operation
   in AWS JSON 1.0, and moto's JSON answer goes back as CBOR, its
   timestamps and doubles typed by botocore's model of the service (which
   moto has anyway). Everything else passes through untouched.
2. Prefix lists (moto 5.2.1): a route to a list whose target is an ENI
   loses its list (moto looks the list up only for other targets), so
   DescribeRouteTables leaves DestinationPrefixListId out and ReplaceRoute
   cannot find the route; ModifyManagedPrefixList takes a stale
   CurrentVersion (EC2 refuses it: PrefixListVersionMismatch), ignores
   MaxEntries, and lets a list hold more than its maximum.
3. Route quotas: moto has none. A table tagged `moto:route-quota` = N
   refuses a CreateRoute beyond N routes (RouteLimitExceeded), counting a
   route to a prefix list as the list's maximum size, as EC2 does; a list
   it routes cannot grow beyond what it can hold (the modification ends in
   state modify-failed, the table named in the state message).

Run as `python3 moto_server.py -H HOST -p PORT`, like `python3 -m
moto.server`.
"""

import argparse
import base64
import datetime
import gzip
import io
import json
import re

import botocore.session
import cbor2
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

PATH = re.compile(r"^/service/([^/]+)/operation/([^/]+)$")
# Service shape name -> botocore's service name.
SERVICES = {"GraniteServiceVersion20100801": "cloudwatch"}
_models = {}


def model(service):
    if service not in _models:
        _models[service] = botocore.session.get_session().get_service_model(SERVICES[service])
    return _models[service]


def to_json(value):
    """A decoded CBOR request as JSON 1.0 wants it."""
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"no JSON for {type(value)}")


def typed(value, shape):
    """moto's JSON answer with the types the model gives its fields."""
    if shape is None or value is None:
        return value
    if shape.type_name == "structure" and isinstance(value, dict):
        members = shape.members
        return {k: typed(v, members.get(k)) for k, v in value.items()}
    if shape.type_name == "list" and isinstance(value, list):
        return [typed(v, shape.member) for v in value]
    if shape.type_name == "map" and isinstance(value, dict):
        return {k: typed(v, shape.value) for k, v in value.items()}
    if shape.type_name == "timestamp" and isinstance(value, (int, float)):
        return datetime.datetime.fromtimestamp(value, datetime.timezone.utc)
    if shape.type_name in ("double", "float") and isinstance(value, int):
        return float(value)
    return value


def cbor_middleware(app):
    def serve(environ, start_response):
        found = PATH.match(environ.get("PATH_INFO", ""))
        if not found or found.group(1) not in SERVICES:
            return app(environ, start_response)
        service, operation = found.groups()
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length)
        if environ.get("HTTP_CONTENT_ENCODING") == "gzip":
            raw = gzip.decompress(raw)
        body = json.dumps(cbor2.loads(raw) if raw else {}, default=to_json).encode()
        environ = dict(environ)
        environ["PATH_INFO"] = "/"
        environ["CONTENT_TYPE"] = "application/x-amz-json-1.0"
        environ["HTTP_X_AMZ_TARGET"] = f"{service}.{operation}"
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_CONTENT_ENCODING", None)
        environ["wsgi.input"] = io.BytesIO(body)
        answer = {}

        def keep(status, headers, exc_info=None):
            answer["status"] = status
            answer["headers"] = headers

        chunks = b"".join(app(environ, keep))
        status = answer["status"]
        decoded = json.loads(chunks) if chunks.strip() else {}
        if status.startswith("2"):
            output = model(service).operation_model(operation).output_shape
            decoded = typed(decoded, output)
        encoded = cbor2.dumps(decoded, datetime_as_timestamp=True)
        headers = [
            (k, v)
            for k, v in answer["headers"]
            if k.lower() not in ("content-type", "content-length")
        ]
        headers += [
            ("Content-Type", "application/cbor"),
            ("Content-Length", str(len(encoded))),
            ("smithy-protocol", "rpc-v2-cbor"),
        ]
        start_response(status, headers)
        return [encoded]

    return serve


# A route table tagged with this gets that route quota (moto has none).
ROUTE_QUOTA_TAG = "moto:route-quota"


def patch_prefix_lists():
    from moto.core.responses import ActionResult
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.managed_prefixes import ManagedPrefixListBackend
    from moto.ec2.models.route_tables import RouteBackend
    from moto.ec2.responses.vpcs import VPCs
    from moto.ec2.utils import generate_route_id

    create_route = RouteBackend.create_route

    def quota_of(table):
        for tag in table.get_tags():
            key = tag.get("key", tag.get("Key"))
            if key == ROUTE_QUOTA_TAG:
                return int(tag.get("value", tag.get("Value")))
        return None

    def cost_of(route):
        listed = route.destination_prefix_list
        return int(listed.max_entries) if listed is not None else 1

    def create_route_keeping_its_list(
        self, route_table_id, cidr, ipv6_cidr=None, listed=None, *args, **kwargs
    ):
        table = self.get_route_table(route_table_id)
        quota = quota_of(table)
        if quota is not None:
            # As EC2 counts: a route to a list costs the list's maximum size.
            used = sum(cost_of(r) for r in table._routes.values() if not r.local)
            wanted = self.managed_prefix_lists.get(listed) if listed else None
            cost = int(wanted.max_entries) if wanted is not None else 1
            if used + cost > quota:
                raise EC2ClientError(
                    "RouteLimitExceeded",
                    f"The maximum number of routes ({quota}) has been reached for {route_table_id}.",
                )
        route = create_route(self, route_table_id, cidr, ipv6_cidr, listed, *args, **kwargs)
        if listed and route.destination_prefix_list is None:
            table = self.get_route_table(route_table_id)
            table._routes.pop(route.id, None)
            route.destination_prefix_list = self.managed_prefix_lists.get(listed)
            route.id = generate_route_id(table.id, None, None, listed)
            table._routes[route.id] = route
        return route

    RouteBackend.create_route = create_route_keeping_its_list

    modify = ManagedPrefixListBackend.modify_managed_prefix_list

    def modify_as_ec2(self, add_entry, remove_entry, prefix_list_id=None, current_version=None, **kwargs):
        listed = self.managed_prefix_lists.get(prefix_list_id)
        if listed is not None and current_version is not None and current_version != listed.version:
            raise EC2ClientError(
                "PrefixListVersionMismatch",
                f"The prefix list {prefix_list_id} has version {listed.version}, not {current_version}.",
            )
        if listed is not None and listed.max_entries is not None:
            now = {e["Cidr"] for e in listed.entries.get(listed.version, [])}
            after = (now - {e["Cidr"] for e in remove_entry}) | {e["Cidr"] for e in add_entry}
            if len(after) > int(listed.max_entries):
                raise EC2ClientError(
                    "PrefixListMaxEntriesExceeded",
                    f"The prefix list {prefix_list_id} holds at most {listed.max_entries} entries.",
                )
        return modify(
            self, add_entry, remove_entry, prefix_list_id=prefix_list_id,
            current_version=current_version, **kwargs,
        )

    ManagedPrefixListBackend.modify_managed_prefix_list = modify_as_ec2

    respond = VPCs.modify_managed_prefix_list

    def respond_with_resize(self):
        size = self._get_param("MaxEntries")
        listed = self.ec2_backend.managed_prefix_lists.get(self._get_param("PrefixListId"))
        if size is not None and listed is not None:
            version = self._get_param("CurrentVersion")
            if version is not None and int(version) != listed.version:
                raise EC2ClientError(
                    "PrefixListVersionMismatch",
                    f"The prefix list has version {listed.version}, not {version}.",
                )
            # A referencing table that cannot hold the new size fails the
            # modification (EC2 names the first ten in the state message).
            growth = int(size) - int(listed.max_entries)
            too_small = [
                table.id
                for table in self.ec2_backend.route_tables.values()
                if quota_of(table) is not None
                and any(r.destination_prefix_list is listed for r in table._routes.values())
                and sum(cost_of(r) for r in table._routes.values() if not r.local) + growth
                > quota_of(table)
            ]
            if too_small:
                listed.state = "modify-failed"
                listed.state_message = (
                    "The following resources do not support the new maximum size: "
                    + ", ".join(too_small[:10])
                )
                return ActionResult({"PrefixList": listed})
            # EC2 takes a resize alone, never with entries.
            listed.state = "modify-complete"
            listed.max_entries = int(size)
            listed.version += 1
            listed.entries[listed.version] = listed.entries.get(listed.version - 1, [])
            return ActionResult({"PrefixList": listed})
        return respond(self)

    VPCs.modify_managed_prefix_list = respond_with_resize


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args()
    patch_prefix_lists()
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, cbor_middleware(app), threaded=True)


if __name__ == "__main__":
    main()
