"""Pagination for the staff REST API."""

from rest_framework.pagination import LimitOffsetPagination


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """`?limit=` is capped: an unbounded one reaches the database as an out-of-range integer
    (a 500 on PostgreSQL) and would let one request read every row."""

    max_limit = 500
