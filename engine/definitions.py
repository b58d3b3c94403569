"""Process definitions: deploy, version, and load specs for running instances.

A definition version is content-addressed: its sha256 covers the serialized spec (with every
called process and DMN table it embeds) and its forms, so a deploy whose content did not
change creates no new version, while a change in a called process or a form does. Instances
keep the version they started with; new starts take the newest. A deploy is one transaction:
either every process of the bundle is stored, or nothing is.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from jsonschema import Draft202012Validator
from jsonschema.validators import validator_for

from . import audit, fastsql, parsing, start_timers
from .audit import AuditEvent, EventType
from .errors import Conflict, NotFound
from .schema import definition_resources, definitions, utcnow


@dataclass
class Definition:
    """A loaded definition version; spec objects are cached per process (not thread-shared)."""

    id: int
    process_id: str
    version: int
    name: str | None
    sha256: str
    deployed_at: datetime
    spec: object
    subprocess_specs: dict
    forms: dict[str, dict]
    _validators: dict = field(default_factory=dict, repr=False)

    @functools.cached_property
    def has_service_tasks(self) -> bool:
        """Whether the process, or a process it calls, has a service task: the transitions of
        the many that have none skip looking for pending calls."""
        from .servicetasks import AsyncServiceTask

        specs = [self.spec, *self.subprocess_specs.values()]
        return any(isinstance(ts, AsyncServiceTask) for s in specs for ts in s.task_specs.values())

    def form_validator(self, form_name: str):
        if form_name not in self._validators:
            schema = self.forms[form_name]
            cls = validator_for(schema, default=Draft202012Validator)
            self._validators[form_name] = cls(schema, format_checker=cls.FORMAT_CHECKER)
        return self._validators[form_name]

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "process_id": self.process_id,
            "version": self.version,
            "name": self.name,
            "sha256": self.sha256,
            "deployed_at": self.deployed_at.isoformat(),
        }


@dataclass(frozen=True)
class DeployResult:
    process_id: str
    version: int
    definition_id: int
    created: bool
    sha256: str

    def to_dict(self) -> dict:
        return {
            "process_id": self.process_id,
            "version": self.version,
            "definition_id": self.definition_id,
            "created": self.created,
            "sha256": self.sha256,
        }


LATEST_ID = fastsql.Statement("SELECT id FROM definitions WHERE process_id = :process_id ORDER BY version DESC LIMIT 1")


class DefinitionStore:
    """Reads and writes definitions; keeps recently used specs deserialized in memory."""

    def __init__(self, db, serializer, cache_size: int = 256):
        self.db = db
        self.serializer = serializer
        self._cache: OrderedDict[int, Definition] = OrderedDict()
        self._cache_size = cache_size

    # -- deploy -------------------------------------------------------------------------
    def compile(self, bundle: parsing.Bundle, operators: set[str] | None = None) -> list[parsing.CompiledProcess]:
        try:
            with self.db.read() as conn:
                deployed = set(conn.execute(sa.select(definitions.c.process_id).distinct()).scalars())
        except sa.exc.DBAPIError:  # no schema yet: validate the files on their own
            deployed = set()
        return parsing.compile_bundle(
            bundle, deployed_ids=deployed, resolve_external=self._resolve_external, operators=operators
        )

    def deploy(
        self,
        bundle: parsing.Bundle,
        deployed_by: str | None = None,
        operators: set[str] | None = None,
        now: datetime | None = None,
    ) -> list[DeployResult]:
        """Store every compiled process of ``bundle`` in one transaction; ``now`` (the engine's
        clock) stamps the versions and schedules timer start events."""
        compiled = self.compile(bundle, operators)
        now = now or utcnow()
        with self.db.write() as conn:
            try:
                return [self._store(conn, proc, deployed_by, now) for proc in compiled]
            except sa.exc.IntegrityError as exc:
                raise Conflict("another deploy of the same process ran at the same time; deploy again") from exc

    def _store(self, conn, proc: parsing.CompiledProcess, deployed_by: str | None, now: datetime) -> DeployResult:
        document = self.serializer.dump_spec(proc.spec, proc.subprocess_specs)
        document["forms"] = proc.forms
        text = json.dumps(document, separators=(",", ":"))  # keeps the designer's field order
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        latest = conn.execute(
            sa.select(definitions.c.id, definitions.c.version, definitions.c.sha256)
            .where(definitions.c.process_id == proc.process_id)
            .order_by(definitions.c.version.desc())
            .limit(1)
        ).first()
        if latest is not None and latest.sha256 == digest:
            return DeployResult(proc.process_id, latest.version, latest.id, False, digest)
        version = 1 if latest is None else latest.version + 1
        def_id = conn.execute(
            definitions.insert().values(
                process_id=proc.process_id,
                version=version,
                name=proc.name,
                sha256=digest,
                spec=text,
                source_file=proc.source_file,
                deployed_at=now,
                deployed_by=deployed_by,
            )
        ).inserted_primary_key[0]
        start_timers.schedule(conn, proc, def_id, now)  # a timer start event: (re)schedule, else unschedule
        self._store_resources(conn, def_id, proc)
        audit.write(
            conn,
            [
                AuditEvent(
                    EventType.DEFINITION_DEPLOYED,
                    now,
                    actor=deployed_by,
                    data={"process_id": proc.process_id, "version": version, "sha256": digest},
                )
            ],
        )
        return DeployResult(proc.process_id, version, def_id, True, digest)

    def _store_resources(self, conn, def_id: int, proc: parsing.CompiledProcess) -> None:
        rows = [
            {"definition_id": def_id, "kind": "source", "name": name, "content": content.decode("utf-8")}
            for name, content in sorted(proc.sources.items())
        ]
        rows += [
            {"definition_id": def_id, "kind": "form", "name": name, "content": json.dumps(schema)}
            for name, schema in sorted(proc.forms.items())
        ]
        if rows:
            conn.execute(definition_resources.insert(), rows)

    def _resolve_external(self, process_id: str):
        with self.db.read() as conn:
            try:
                found = self.latest(conn, process_id)
            except (NotFound, sa.exc.DBAPIError):
                return None
        return found.spec, found.subprocess_specs, found.forms

    # -- read ---------------------------------------------------------------------------
    def get(self, conn, definition_id: int) -> Definition:
        cached = self._cache.get(definition_id)
        if cached is not None:
            self._cache.move_to_end(definition_id)
            return cached
        row = conn.execute(sa.select(definitions).where(definitions.c.id == definition_id)).first()
        if row is None:
            raise NotFound(f"unknown definition {definition_id}")
        return self._remember(self._load(row))

    def latest(self, conn, process_id: str) -> Definition:
        found = fastsql.fetch_one(conn, LATEST_ID, {"process_id": process_id})
        def_id = found[0] if found else None
        if def_id is None:
            raise NotFound(f"no process definition with id {process_id!r} is deployed", process_id=process_id)
        return self.get(conn, def_id)

    def list(self, conn) -> list[dict]:
        rows = conn.execute(
            sa.select(
                definitions.c.id,
                definitions.c.process_id,
                definitions.c.version,
                definitions.c.name,
                definitions.c.sha256,
                definitions.c.deployed_at,
            ).order_by(definitions.c.process_id, definitions.c.version)
        )
        return [
            {
                "id": r.id,
                "process_id": r.process_id,
                "version": r.version,
                "name": r.name,
                "sha256": r.sha256,
                "deployed_at": r.deployed_at.isoformat(),
            }
            for r in rows
        ]

    def _load(self, row) -> Definition:
        document = json.loads(row.spec)
        spec, subs = self.serializer.load_spec(document)
        return Definition(
            row.id,
            row.process_id,
            row.version,
            row.name,
            row.sha256,
            row.deployed_at,
            spec,
            subs,
            document.get("forms", {}),
        )

    def _remember(self, definition: Definition) -> Definition:
        self._cache[definition.id] = definition
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return definition
