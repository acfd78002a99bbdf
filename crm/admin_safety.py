"""What every ModelAdmin of the product shares: the database's bounds on its forms, and only
the URL lookups its filters and links use."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.options import BaseModelAdmin

from crm.audit import audit_actor, audit_record
from crm.bounds import formfield_bounded
from crm.models import AuditEntry

# Lookup types a filter or a link of ours puts in a changelist URL; never regex, contains...
SAFE_LOOKUP_TYPES = frozenset(
    {"exact", "iexact", "in", "isnull", "gt", "gte", "lt", "lte", "year", "month", "day"}
)


class BoundedFormsMixin(BaseModelAdmin):
    """Every form field refuses what its column cannot hold (crm.bounds): numbers beyond the
    column's range or digits, NUL bytes, years outside 1900-2200."""

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        return formfield_bounded(
            db_field, super().formfield_for_dbfield(db_field, request, **kwargs)
        )


class LookupAllowListMixin(admin.ModelAdmin):
    """Changelist URL lookups only on the list filters' fields (and `lookup_fields_allowed`),
    with plain comparisons: `?email__regex=(a+)+$` is refused with a 400 instead of running
    a pattern the owner never wrote (or failing with a 500 on a bad one)."""

    lookup_fields_allowed: tuple[str, ...] = ()

    def _lookup_fields(self, request) -> set[str]:
        fields = set(self.lookup_fields_allowed)
        for entry in self.get_list_filter(request):
            name = entry[0] if isinstance(entry, tuple | list) else entry
            if isinstance(name, str):
                fields.add(name)
            elif issubclass(name, admin.SimpleListFilter):
                fields.add(name.parameter_name)
        if self.date_hierarchy:
            fields.add(self.date_hierarchy)
        return fields

    def lookup_allowed(self, lookup, value, request=None):
        parts = lookup.split("__")
        fields = self._lookup_fields(request)
        for cut in range(len(parts), 0, -1):
            path, rest = "__".join(parts[:cut]), parts[cut:]
            if path in fields:
                # A relation filter adds its key: segment__id__exact.
                rest = rest[1:] if rest[:1] in (["id"], ["pk"]) else rest
                if all(part in SAFE_LOOKUP_TYPES for part in rest) and len(rest) <= 1:
                    return super().lookup_allowed(lookup, value, request)
                return False
        return False


class AuditedAdminMixin(admin.ModelAdmin):
    """Every add, change and delete made in the admin goes to the audit trail, next to
    Django's own LogEntry (which anyone with the database can edit)."""

    # A segment's edit is its own kind of entry; other models are "edited".
    audit_change_action = AuditEntry.Action.EDITED

    def log_addition(self, request, obj, message):
        audit_record(actor=audit_actor(request), action=AuditEntry.Action.CREATED, obj=obj)
        return super().log_addition(request, obj, message)

    def log_change(self, request, obj, message):
        items = message if isinstance(message, list) else []
        changed = sorted(
            {
                name
                for item in items
                if isinstance(item, dict)
                for name in item.get("changed", {}).get("fields", [])
            }
        )
        audit_record(
            actor=audit_actor(request),
            action=self.audit_change_action,
            obj=obj,
            detail=f"changed: {', '.join(changed)}" if changed else "",
        )
        return super().log_change(request, obj, message)

    def log_deletions(self, request, queryset):
        actor = audit_actor(request)
        for obj in queryset:
            audit_record(actor=actor, action=AuditEntry.Action.DELETED, obj=obj)
        return super().log_deletions(request, queryset)


class SafeModelAdmin(AuditedAdminMixin, BoundedFormsMixin, LookupAllowListMixin, admin.ModelAdmin):
    """The base of every ModelAdmin in the product."""


class BoundedTabularInline(BoundedFormsMixin, admin.TabularInline):
    pass
